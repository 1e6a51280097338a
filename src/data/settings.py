"""Where a data set's files are and how its conversion to MindRecord treats them.

`DataSettings.from_config(cfg)` is the only code that reads the config's data keys; the conversion
(src/data/mindrecord.py) and the evaluation set (src/evaluation/evaluator.py) receive the settings, never the config.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from src.model_utils.config import Config


@dataclass(frozen=True)
class DataSettings:
    """A COCO (`dataset` "coco": a json + an image folder per split, by default under `coco_root`) or TXT (a label
    file + an image folder) set."""

    classes: tuple[str, ...]          # coco_classes: the class names, background first; a box's label = its index
    dataset: str = "coco"             # "coco", anything else: TXT
    coco_root: str = ""
    train_data_type: str = "train2017"
    val_data_type: str = "val2017"
    instance_set: str = "annotations/instances_{}.json"  # a split's json under coco_root
    train_anno_path: str = ""         # COCO: the training json; empty: <coco_root>/<instance_set of train_data_type>
    train_image_dir: str = ""         # COCO: the folder of its file_names; empty: <coco_root>/<train_data_type>
    val_anno_path: str = ""           # the same for the validation split
    val_image_dir: str = ""
    anno_path: str = ""               # TXT: the label file; evaluation: the ground truth (COCO default: the val json)
    image_dir: str = ""               # TXT: the folder the label file's image paths are relative to
    mindrecord_dir: str = ""          # empty: under coco_root, or beside the json (no coco_root) / TXT label file
    num_gts: int = 128                # boxes kept per training image (counted when an image has more)
    skip_bad_images: bool = False     # skip and count missing / unreadable images instead of stopping
    skip_background_images: bool = False  # leave training images without a usable box out (counted)
    exif_transpose: bool = False      # store images in their displayed frame (EXIF orientation applied)
    allow_outside_paths: bool = False  # TXT image paths may be absolute or lead out of image_dir
    rank_id: int = 0                  # only rank 0 writes a MindRecord; the others wait for it

    @property
    def is_coco(self) -> bool:
        return self.dataset == "coco"

    def _given_files(self, is_training: bool) -> tuple[str, str]:
        """The split's (json, image folder) as given (train_/val_anno_path, train_/val_image_dir; "" = not given)."""
        if is_training:
            return self.train_anno_path, self.train_image_dir
        return self.val_anno_path, self.val_image_dir

    def source_files(self, is_training: bool) -> tuple[str, str]:
        """(annotation file, image folder) of the training or validation set: COCO's json and folder (given, or the
        split's under coco_root), or the TXT label file and image_dir."""
        if not self.is_coco:
            return self.anno_path, self.image_dir
        split = self.train_data_type if is_training else self.val_data_type
        anno, images = self._given_files(is_training)
        return (anno or os.path.join(self.coco_root, self.instance_set.format(split)),
                images or os.path.join(self.coco_root, split))

    def needs_coco_root(self, is_training: bool) -> bool:
        """Whether a file of the split is found through coco_root (one of its two paths not given)."""
        return self.is_coco and not all(self._given_files(is_training))

    def annotation_keys(self, is_training: bool) -> str:
        """The config keys that name the split's annotation file (for messages)."""
        if not self.is_coco:
            return "anno_path"
        if self._given_files(is_training)[0]:
            return "train_anno_path" if is_training else "val_anno_path"
        return "coco_root, instance_set"

    @classmethod
    def from_config(cls, cfg: Config) -> DataSettings:
        return cls(classes=tuple(cfg.coco_classes), dataset=str(cfg.dataset), coco_root=str(cfg.coco_root),
                   train_data_type=str(cfg.train_data_type), val_data_type=str(cfg.val_data_type),
                   instance_set=str(cfg.instance_set), train_anno_path=str(cfg.train_anno_path),
                   train_image_dir=str(cfg.train_image_dir), val_anno_path=str(cfg.val_anno_path),
                   val_image_dir=str(cfg.val_image_dir), anno_path=str(cfg.anno_path), image_dir=str(cfg.image_dir),
                   mindrecord_dir=str(cfg.mindrecord_dir), num_gts=int(cfg.num_gts),
                   skip_bad_images=bool(cfg.skip_bad_images),
                   skip_background_images=bool(cfg.skip_background_images), exif_transpose=bool(cfg.exif_transpose),
                   allow_outside_paths=bool(cfg.allow_outside_paths), rank_id=int(cfg.rank_id))
