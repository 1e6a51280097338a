"""train.py on a tiny synthetic data set (128x192 images, 2 images per step; the data set: tests/conftest.py's
`data_root`): its arguments and running it."""
from __future__ import annotations

import os
import sys

import mindspore as ms

from src.model_utils.config import get_config
from tests.helpers.processes import ROOT, run_script

HEIGHT, WIDTH, NUM_GTS, PROPOSALS = 128, 192, 8, 24
NUM_ANCHORS = get_config([], img_height=HEIGHT, img_width=WIDTH).num_bboxes
ROIS = NUM_GTS + PROPOSALS  # stage-2 candidates: gts + proposals
# 128x192, every anchor and proposal sampled (nothing random to choose), no augmentation, one data worker
TINY = [
    f"--img_height={HEIGHT}", f"--img_width={WIDTH}", "--flip_ratio=0.0", "--expand_ratio=0.0",
    f"--num_gts={NUM_GTS}", f"--num_expected_pos={NUM_ANCHORS}", f"--num_expected_neg={NUM_ANCHORS}",
    "--rpn_proposal_nms_pre=200", f"--rpn_proposal_max_num={PROPOSALS}",
    f"--num_expected_pos_stage2={ROIS}", f"--num_expected_neg_stage2={ROIS}",
    "--rpn_nms_pre=100", "--rpn_max_num=50", "--test_batch_size=1",
    "--base_lr=0.01", "--warmup_step=2", "--batch_size=2", "--keep_checkpoint_max=10", "--num_parallel_workers=1",
    "--python_multiprocessing=False",
]


def tiny_train_args(data_root, mindrecord_dir, *extra: str) -> list[str]:
    """train.py's arguments for `data_root` (a src.data.synthetic set): the CPU config, from scratch, TINY."""
    return [f"--config_path={ROOT}/default_config_cpu.yaml", f"--coco_root={data_root}",
            f"--mindrecord_dir={mindrecord_dir}", "--pre_trained=none", *TINY, *extra]


def run_train(cwd, data_root, *extra: str, check: bool = True):
    """train.py in `cwd` (created) on `data_root` with its `mindrecord/` folder; AssertionError when it fails and
    `check`."""
    os.makedirs(cwd, exist_ok=True)
    return run_script("train.py", tiny_train_args(data_root, data_root / "mindrecord", *extra), cwd=cwd,
                      check=check, timeout=1200)


def read_params(path) -> dict:
    """{name: array} of a checkpoint file."""
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items()}


def train_command() -> list[str]:
    return [sys.executable, os.path.join(ROOT, "train.py")]


# Runs the rest of the command line with SIGINT at its default disposition, as in a terminal: a process started
# ignoring SIGINT (a background job of a script, which pytest may be) passes that on to its children.
_SIGINT_DEFAULT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "os.execv(sys.argv[1], sys.argv[1:])")


def with_sigint_default(command: list[str]) -> list[str]:
    """`command` (an executable's path first) started with SIGINT's default disposition."""
    return [sys.executable, "-c", _SIGINT_DEFAULT, *command]
