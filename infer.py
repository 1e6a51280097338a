"""Detect objects in your own images with a trained checkpoint (or an exported MINDIR).

    python infer.py --checkpoint_path=CKPT --images=PATH[,PATH...] [--detections_dir=detections] [--draw=True]
        [--score_thr=T] [--config_path=...yaml]
    python infer.py --mindir=FILE.mindir --images=...      (a MINDIR written by export.py)

PATH: an image file, a folder (its image files, by name) or a quoted glob pattern (`'photos/*.jpg'`); several are
separated by commas. Images of any size go through the evaluation's preprocessing (keep-ratio resize to the network's
img_height x img_width, or the MINDIR's, padded at the bottom and right; src/data_transforms.py). The detections
scoring at least score_thr (negative, the default: visualize_score_thr) among the eval_max_num best of each image
are written, atomically, to `<detections_dir>/detections.json`: a list with one record per image,
`{"file", "height", "width", "boxes": [[x1, y1, x2, y2], ...] (the image's pixels), "scores", "labels" (indices
into coco_classes, background = 0), "names"}`, best score first; with --draw=True also `<detections_dir>/<name>.png`
(the image with its boxes, names and scores; the record's "picture"). A missing or unreadable image is named,
skipped and counted; the run fails only when no image at all can be read.
"""
from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Callable, Sequence

import cv2
import mindspore as ms
import numpy as np
from mindspore import nn

from src.data_transforms import PreprocessSettings
from src.errors import CheckpointError, ConfigError, DataError, InferError
from src.fileio import write_json_atomic
from src.mindir_infer import file_stem, load_image, mindir_input_shapes
from src.mindrecord import read_image
from src.progress import Progress
from src.runtime import device_id, load_inference_network, run_job, set_up_device
from src.util import select_detections
from src.visualize import draw_detections, picture_for, save_png

DETECTIONS_FILE = "detections.json"
# What a folder contributes (files given by name or pattern are tried whatever their extension).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")  # the formats src/mindrecord.py reads
GLOB_CHARACTERS = "*?["
BOX_DECIMALS = 4  # pixels
SCORE_DECIMALS = 5

# (images (B, 3, H, W) float32, metas (B, 4) float32) -> (boxes (B, N, 5), labels (B, N, 1), masks (B, N, 1))
DetectBatch = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def find_images(spec: str) -> tuple[list[str], list[str]]:
    """The image files of a comma-separated list of files, folders and glob patterns, in the order given (a
    folder's and a pattern's files by name, each file once), and one problem line per entry that gives none."""
    files, problems = [], []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        if os.path.isdir(entry):
            found = sorted(os.path.join(entry, name) for name in os.listdir(entry)
                           if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
                           and os.path.isfile(os.path.join(entry, name)))
            why = "a folder without image files (" + ", ".join(IMAGE_EXTENSIONS) + ")"
        elif any(c in entry for c in GLOB_CHARACTERS):
            found = sorted(path for path in glob.glob(entry) if os.path.isfile(path))
            why = "a pattern that matches no file"
        else:
            found = [entry] if os.path.isfile(entry) else []
            why = "no such file or folder"
        if not found:
            problems.append(f"{entry}: {why}")
        files += [path for path in found if path not in files]
    return files, problems


def picture_names(files: Sequence[str]) -> list[str]:
    """A distinct PNG name per file: `<stem>.png`, `<stem>-2.png` for the second file with that stem, ..."""
    names, seen = [], {}
    for path in files:
        stem = file_stem(path) or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.png" if seen[stem] == 1 else f"{stem}-{seen[stem]}.png")
    return names


def evaluation_preprocessing(canvas_h: int, canvas_w: int, keep_ratio: bool) -> PreprocessSettings:
    """The evaluation's preprocessing for a canvas (no augmentation; no ground truth, so one padding box)."""
    return PreprocessSettings(canvas_h=int(canvas_h), canvas_w=int(canvas_w), keep_ratio=bool(keep_ratio),
                              flip_ratio=0.0, expand_ratio=0.0, num_gts=1)


def checkpoint_detector(cfg) -> tuple[DetectBatch, int, PreprocessSettings]:
    """The network of cfg with cfg.checkpoint_path loaded (as eval.py), one image per call, cfg's image size."""
    if not os.path.isfile(cfg.checkpoint_path):
        raise CheckpointError(f"checkpoint file not found: {cfg.checkpoint_path!r} (config key checkpoint_path)")
    net = load_inference_network(cfg, cfg.checkpoint_path, test_batch_size=1)

    def detect(images: np.ndarray, metas: np.ndarray):
        outputs = net(ms.Tensor(images), ms.Tensor(metas), None, None, None)
        return tuple(o.asnumpy() for o in outputs)

    return detect, 1, evaluation_preprocessing(cfg.img_height, cfg.img_width, cfg.keep_ratio)


def mindir_detector(cfg) -> tuple[DetectBatch, int, PreprocessSettings]:
    """The MINDIR cfg.mindir through `mindspore.load` + `nn.GraphCell` (as src/mindir_infer.py): its batch size
    and input size."""
    (batch, _, height, width), _ = mindir_input_shapes(cfg.mindir)
    graph = nn.GraphCell(ms.load(cfg.mindir))

    def detect(images: np.ndarray, metas: np.ndarray):
        return tuple(o.asnumpy() for o in graph(ms.Tensor(images), ms.Tensor(metas)))

    return detect, batch, evaluation_preprocessing(height, width, cfg.keep_ratio)


def image_record(path: str, meta: np.ndarray, boxes: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                 score_thr: float) -> dict:
    """One image's detections.json record from its selected detections: boxes (K, 5) [x1, y1, x2, y2, score] in its
    pixels, labels (K,) foreground indices 0..; `classes` = coco_classes (background first)."""
    order = [k for k in np.argsort(-boxes[:, 4], kind="stable") if boxes[k, 4] >= score_thr]
    indices = [int(labels[k]) + 1 for k in order]
    return {"file": path, "height": int(meta[0]), "width": int(meta[1]),
            "boxes": [[round(float(v), BOX_DECIMALS) for v in boxes[k, :4]] for k in order],
            "scores": [round(float(boxes[k, 4]), SCORE_DECIMALS) for k in order],
            "labels": indices,
            "names": [classes[i] if i < len(classes) else f"class {i}" for i in indices]}


def draw_record(record: dict, image: np.ndarray, meta: np.ndarray, class_names: Sequence[str], path: str) -> None:
    """The record's detections drawn on its image file (or, if cv2 cannot read it, the network input scaled back)."""
    picture = picture_for(cv2.imread(record["file"], cv2.IMREAD_COLOR), image, meta)
    boxes = np.array([[*box, score] for box, score in zip(record["boxes"], record["scores"], strict=True)],
                     np.float32).reshape(-1, 5)
    save_png(draw_detections(picture, boxes, np.array(record["labels"]) - 1, class_names), path)


def score_threshold(cfg) -> float:
    """score_thr, or visualize_score_thr when score_thr is negative."""
    return float(cfg.score_thr if cfg.score_thr >= 0 else cfg.visualize_score_thr)


def check_request(cfg) -> None:
    """ConfigError before any work when the model or the images are not given as expected."""
    if bool(cfg.checkpoint_path) == bool(cfg.mindir):
        raise ConfigError("infer.py needs exactly one model: --checkpoint_path=CKPT or --mindir=FILE.mindir")
    if not cfg.images.strip():
        raise ConfigError("--images: give image files, folders or quoted glob patterns, separated by commas")


def infer(cfg) -> list[dict]:
    """Detect, write detections.json (and the pictures); returns the records."""
    check_request(cfg)
    files, problems = find_images(cfg.images)
    skipped = [f"--images: {problem}" for problem in problems]
    for problem in skipped:
        print(f"WARNING: {problem}; skipped", file=sys.stderr, flush=True)
    if not files:
        raise InferError(f"--images={cfg.images!r}: no image file found ({'; '.join(problems)})")
    set_up_device(cfg.device_target, cfg.run_mode, device_id(cfg))
    detect, batch, settings = mindir_detector(cfg) if cfg.mindir else checkpoint_detector(cfg)
    model = cfg.mindir or cfg.checkpoint_path
    threshold = score_threshold(cfg)
    print(f"{len(files)} images, {model}, input {settings.canvas_h}x{settings.canvas_w}, batch {batch}, "
          f"score >= {threshold}", flush=True)

    out_dir = cfg.detections_dir
    pictures = dict(zip(files, picture_names(files), strict=True))
    records, pending, call_seconds = [], [], []
    progress = Progress(len(files))

    def run_pending() -> None:
        images = np.stack([image for _, image, _ in pending] + [pending[-1][1]] * (batch - len(pending)))
        metas = np.stack([meta for _, _, meta in pending] + [pending[-1][2]] * (batch - len(pending)))
        start = time.perf_counter()
        boxes, labels, masks = detect(images, metas)
        call_seconds.append(time.perf_counter() - start)
        for j, (path, image, meta) in enumerate(pending):
            kept, kept_labels = select_detections(boxes[j], labels[j], masks[j], cfg.eval_max_num)
            record = image_record(path, meta, kept, kept_labels, cfg.coco_classes, threshold)
            if cfg.draw:
                record["picture"] = pictures[path]
                draw_record(record, image, meta, cfg.coco_classes[1:], os.path.join(out_dir, pictures[path]))
            records.append(record)
            print(f"{path}: {len(record['scores'])} detections ({progress.step()})", flush=True)
        pending.clear()

    for path in files:
        try:
            read_image(path, "--images")  # one line naming the file when it is missing, no image or undecodable
            image, meta = load_image(path, settings, cfg.exif_transpose)
        except (DataError, InferError, OSError) as err:
            skipped.append(str(err))
            print(f"WARNING: {err}; skipped ({progress.step()})", file=sys.stderr, flush=True)
            continue
        pending.append((path, image, meta))
        if len(pending) == batch:
            run_pending()
    if pending:
        run_pending()

    if skipped:
        print(f"skipped {len(skipped)} (missing or unreadable):\n  " + "\n  ".join(skipped), flush=True)
    if not records:
        raise InferError(f"none of the {len(files)} image files could be read ({'; '.join(skipped[:3])})")
    out_path = os.path.join(out_dir, DETECTIONS_FILE)
    write_json_atomic(records, out_path, indent=1)
    print(f"detections of {len(records)} of {len(files)} image files written to {out_path}"
          + (f", pictures to {out_dir}/" if cfg.draw else ""), flush=True)
    first, steady = call_seconds[0], call_seconds[1:]
    timing = f"{sum(steady) / len(steady) / batch:.3f} s per image after the first call, " if steady else ""
    print(f"inference: {timing}first call {first:.1f} s (graph compilation included); {progress.status()}",
          flush=True)
    return records


def main() -> int:
    return run_job(infer, "infer.py")


if __name__ == "__main__":
    sys.exit(main())
