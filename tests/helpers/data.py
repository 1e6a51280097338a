"""The conversion and the pipelines built from a Config, as train.py and eval.py build them, and hand-made COCO
sets (a json + an image folder)."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np

from src.data.mindrecord import create_mindrecord
from src.data.settings import DataSettings
from src.dataset import PipelineSettings, create_fasterrcnn_dataset


def convert(cfg, prefix: str, is_training: bool, **kwargs) -> str:
    """create_mindrecord on the config's DataSettings; returns the file to open."""
    return create_mindrecord(DataSettings.from_config(cfg), prefix, is_training, **kwargs)


def pipeline(cfg, mindrecord_file: str, batch_size: int, **kwargs):
    """create_fasterrcnn_dataset on the config's PipelineSettings."""
    return create_fasterrcnn_dataset(PipelineSettings.from_config(cfg), mindrecord_file, batch_size, **kwargs)


def write_coco_set(anno_path, image_dir, images, annotations, categories) -> str:
    """A COCO json at `anno_path` and its images under `image_dir` (random PNGs, seeded by the image id).

    images: [(id, file_name relative to image_dir, (height, width))]; annotations: [(image_id, category_id,
    [x, y, w, h], iscrowd)]; categories: [(id, name)]. Returns the json's path.
    """
    entries = []
    for image_id, name, (height, width) in images:
        path = os.path.join(image_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        coarse = np.random.default_rng(image_id).integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), np.uint8)
        cv2.imwrite(path, cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR))
        entries.append({"id": image_id, "file_name": name, "height": height, "width": width})
    anns = [{"id": i, "image_id": image_id, "category_id": cat, "bbox": list(box), "area": box[2] * box[3],
             "iscrowd": crowd} for i, (image_id, cat, box, crowd) in enumerate(annotations, start=1)]
    os.makedirs(os.path.dirname(os.path.abspath(anno_path)), exist_ok=True)
    with open(anno_path, "w", encoding="utf-8") as f:
        json.dump({"images": entries, "annotations": anns,
                   "categories": [{"id": i, "name": name} for i, name in categories]}, f)
    return str(anno_path)
