"""The MindRecord -> training / evaluation pipelines (the MindRecord itself: src/data/mindrecord.py).

Batched with a leading batch dimension B:
- training rows: `image` (B, 3, H, W) f32, `image_shape` (B, 3) [H, W, 1.0], `box` (B, G, 4) f32 (x1, y1, x2,
  y2 on the canvas), `label` (B, G) i32 (-1 = padding), `valid_num` (B, G) bool; shuffled, last partial batch
  dropped (the original's).
- evaluation rows: the same five columns with `image_shape` (B, 4) [orig_h, orig_w, scale, scale] and boxes in
  source pixels, plus `image_id` (B,) int64. Rows follow the MindRecord's order (the json's `getImgIds()` order);
  the last batch is completed with repeats of the first rows carrying `image_id` -1, so no image is lost to
  `drop_remainder` and consumers skip rows whose `image_id` is negative.
H x W = img_height x img_width; G = num_gts. The per-image work is in `src/data/transforms.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import mindspore.dataset as de
import numpy as np
from mindspore.dataset import vision

from src.data.mindrecord import is_mindrecord_complete
from src.data.transforms import EvalPreprocess, PreprocessSettings, TrainPreprocess
from src.infra.errors import DataError
from src.model_utils.config import cap_workers, warn

if TYPE_CHECKING:
    from src.model_utils.config import Config

PREFETCH_ROWS = 8           # the original's dataset prefetch size
TRAIN_COLUMNS = ["image", "image_shape", "box", "label", "valid_num"]
EVAL_COLUMNS = TRAIN_COLUMNS + ["image_id"]


@dataclass(frozen=True)
class PipelineSettings:
    """What a pipeline is built from: the per-image preprocessing and its workers."""

    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)
    workers: int = 1                      # num_parallel_workers (capped at the machine's cores)
    python_multiprocessing: bool = False  # training's preprocessing in processes instead of threads

    @classmethod
    def from_config(cls, cfg: Config) -> PipelineSettings:
        return cls(PreprocessSettings.from_config(cfg), int(cfg.num_parallel_workers),
                   bool(cfg.python_multiprocessing))


def _pad_rows(mindrecord: str, columns: list[str], shards: dict, rows: int, batch_size: int):
    """Rows that complete the last evaluation batch: the first rows again, with image_id -1."""
    missing = (-rows) % batch_size
    if missing == 0:
        return None
    extra = de.MindDataset(mindrecord, columns_list=columns, shuffle=False, **shards)
    extra = extra.repeat(-(-missing // rows)).take(missing)
    return extra.map(lambda image_id: np.full_like(image_id, -1), input_columns=["image_id"])


def warn_boxes_over_num_gts(mindrecord_file: str, num_gts: int) -> int:
    """Warn (one line) when training images hold more boxes than num_gts, which the pipeline cuts to num_gts
    (non-crowd first, `pad_gt`); returns the number of boxes left out. Reads the annotations only, not the images."""
    rows = de.MindDataset(mindrecord_file, columns_list=["annotation", "image_id"], shuffle=False)
    counts = [(int(row["image_id"]), len(row["annotation"]))
              for row in rows.create_dict_iterator(output_numpy=True, num_epochs=1)]
    over = sorted(((count, image_id) for image_id, count in counts if count > num_gts), reverse=True)
    dropped = sum(count - num_gts for count, _ in over)
    if over:
        most, most_id = over[0]
        warn(f"{len(over)} of {len(counts)} training images in {mindrecord_file} have more than num_gts={num_gts} "
             f"boxes; each keeps {num_gts} (non-crowd first), so {dropped} boxes are not trained on (the most: image "
             f"id {most_id} with {most}); raise num_gts to keep them")
    return dropped


def create_fasterrcnn_dataset(settings: PipelineSettings, mindrecord_file: str, batch_size: int, device_num: int = 1,
                              rank_id: int = 0, is_training: bool = True) -> de.Dataset:
    """The training or evaluation pipeline over a MindRecord (columns: see the module docstring).

    Workers: settings.workers, at most the machine's cores. With device_num > 1 each rank reads its shard `rank_id`
    of `device_num`.
    """
    if not is_mindrecord_complete(mindrecord_file):
        raise DataError(f"{mindrecord_file} is not a complete MindRecord written by create_mindrecord")
    if not 0 <= rank_id < device_num:
        raise ValueError(f"rank_id={rank_id} must lie in [0, device_num={device_num})")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    if is_training and rank_id == 0:
        warn_boxes_over_num_gts(mindrecord_file, settings.preprocess.num_gts)
    cv2.setNumThreads(0)
    de.config.set_prefetch_size(PREFETCH_ROWS)
    workers = cap_workers(settings.workers)
    columns = ["image", "annotation"] + ([] if is_training else ["image_id"])
    shards = {"num_shards": device_num, "shard_id": rank_id} if device_num > 1 else {}
    ds = de.MindDataset(mindrecord_file, columns_list=columns, num_parallel_workers=workers, shuffle=is_training,
                        **shards)
    if not is_training:
        extra = _pad_rows(mindrecord_file, columns, shards, ds.get_dataset_size(), batch_size)
        if extra is not None:
            ds = ds.concat(extra)
    ds = ds.map(vision.Decode(), input_columns=["image"])
    if is_training:
        ds = ds.map(TrainPreprocess(settings.preprocess), input_columns=["image", "annotation"],
                    output_columns=TRAIN_COLUMNS, num_parallel_workers=workers,
                    python_multiprocessing=settings.python_multiprocessing)
        ds = ds.project(TRAIN_COLUMNS)
    else:
        ds = ds.map(EvalPreprocess(settings.preprocess), input_columns=["image", "annotation"],
                    output_columns=TRAIN_COLUMNS, num_parallel_workers=workers)
        ds = ds.project(EVAL_COLUMNS)
    return ds.batch(batch_size, drop_remainder=True)
