"""COCO bbox evaluation of a Faster R-CNN-DCN checkpoint (COCO val2017, or a TXT-labelled set).

    python eval.py --checkpoint_path=CKPT --anno_path=instances_val2017.json --coco_root=COCO_ROOT \
        [--mindrecord_dir=DIR] [--visualize=N] [--config_path=...yaml]

Writes, next to the accuracy log (`./mAP.log`, the original's): `results.pkl.bbox.json` (COCO detection
records), `per_class.csv` (AP and AP50 per class), `confusion_matrix.csv`/`.png` and `pr_curves.png` (where the
errors are: src/evaluation/confusion_matrix.py, pr_curves.py) and, with --visualize N, `visualize/<image id>.png` for
the first N images. Prints the standard 12-line COCO summary and the per-class table; mAP.log gets one
`<figure> = <value>` line per figure. The evaluation itself is src/evaluation/evaluator.py's (train.py --run_eval runs
it too). The output folder is checked (writable, FASTER_RCNN_MIN_FREE_MB free) and held against a second eval.py
before the network is built.
"""
from __future__ import annotations

import os
import sys

from src.data.settings import DataSettings
from src.evaluation.evaluator import (
    ACCLOG_NAME,
    EvaluationSettings,
    fasterrcnn_eval,
    ground_truth_path,
    prepare_evaluation_set,
)
from src.infra.errors import CheckpointError
from src.infra.fileio import check_output_dir
from src.infra.run_lock import hold_folder
from src.infra.runtime import device_id, load_inference_network, run_job, set_up_device
from src.model_utils.config import classes_from_data
from src.util import load_ground_truth


def evaluation_paths(cfg) -> tuple[str, str, str, str]:
    """(coco_root, mindrecord_dir, checkpoint_path, accuracy log path) of this run: the config's, or on ModelArts
    under data_path, load_path and output_path (as the original)."""
    if cfg.enable_modelarts:
        return (cfg.data_path, os.path.join(cfg.data_path, "MindRecord_COCO"),
                os.path.join(cfg.load_path, cfg.checkpoint_path), os.path.join(cfg.output_path, ACCLOG_NAME))
    return cfg.coco_root, cfg.mindrecord_dir, cfg.checkpoint_path, os.path.join(".", ACCLOG_NAME)


def eval_fasterrcnn(cfg) -> None:
    coco_root, mindrecord_dir, checkpoint_path, acclog_path = evaluation_paths(cfg)
    cfg = classes_from_data(cfg.replace(coco_root=coco_root, mindrecord_dir=mindrecord_dir), is_training=False)
    set_up_device(cfg.device_target, cfg.run_mode, device_id(cfg))
    if not os.path.isfile(checkpoint_path):
        raise CheckpointError(f"checkpoint file not found: {checkpoint_path!r} (config key checkpoint_path)")
    # the output folder before the long work: writable, with room, and not another run's
    out_dir = os.path.dirname(os.path.abspath(acclog_path))
    check_output_dir(out_dir, f"the output folder (of {ACCLOG_NAME} and the other evaluation files)")
    hold_folder(out_dir, "eval", "eval.py")
    data = DataSettings.from_config(cfg)
    anno_path = ground_truth_path(data)
    # the ground truth and the checkpoint first: a wrong path or file fails before the long conversion
    coco = load_ground_truth(anno_path, data.dataset, data.classes)
    net = load_inference_network(cfg, checkpoint_path)
    evaluation_set = prepare_evaluation_set(data, coco, anno_path)
    print("Start Eval!", flush=True)
    fasterrcnn_eval(EvaluationSettings.from_config(cfg), net, evaluation_set, acclog_path)


def main() -> int:
    return run_job(eval_fasterrcnn, "eval.py")


if __name__ == "__main__":
    sys.exit(main())
