"""How well the anchors fit the training set's boxes (src/data/anchor_fit.py), with computed suggestions.

    python -m src.tools.anchor_report --config_path=CFG [--dataset=other --anno_path=FILE --image_dir=DIR |
        --coco_root=DIR] [--key=value ...]

The data set and every other key as train.py takes them; the annotations and image headers are read, no MindRecord
is written. Prints the box sizes on the network's canvas (percentiles, a histogram with the share of each size that
reaches pos_iou_thr), the share of boxes whose best anchor reaches pos_iou_thr / only min_pos_iou / neither, and
below 80% the anchor_scales and img_height x img_width that would fit, with the coverage each gives.
"""
from __future__ import annotations

import sys

from src.data.anchor_fit import FitSettings
from src.data.settings import DataSettings
from src.data.training_boxes import print_report
from src.infra.runtime import run_job
from src.model_utils.config import classes_from_data


def report(cfg) -> None:
    cfg = classes_from_data(cfg, is_training=True)  # a --train_anno_path json's classes, as train.py takes them
    print_report(DataSettings.from_config(cfg), FitSettings.from_config(cfg))


def main() -> int:
    return run_job(report, "anchor_report")


if __name__ == "__main__":
    sys.exit(main())
