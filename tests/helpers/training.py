"""train.py on a tiny synthetic data set (128x192 images, 2 images per step): the arguments and the data."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers.processes import ENV, ROOT

HEIGHT, WIDTH, NUM_GTS, PROPOSALS = 128, 192, 8, 24


def tiny_train_args(data_root, mindrecord_dir, *extra: str) -> list[str]:
    """train.py's arguments for `data_root` (a src.data.synthetic set): 128x192, from scratch, CPU, one data worker,
    every anchor and proposal sampled (nothing random to choose), no augmentation."""
    from src.model_utils.config import get_config  # noqa: PLC0415  (only where the arguments are built)

    anchors = get_config([], img_height=HEIGHT, img_width=WIDTH).num_bboxes
    rois = NUM_GTS + PROPOSALS
    return [
        f"--config_path={ROOT}/default_config_cpu.yaml", f"--coco_root={data_root}",
        f"--mindrecord_dir={mindrecord_dir}", "--pre_trained=none",
        f"--img_height={HEIGHT}", f"--img_width={WIDTH}", "--flip_ratio=0.0", "--expand_ratio=0.0",
        f"--num_gts={NUM_GTS}", f"--num_expected_pos={anchors}", f"--num_expected_neg={anchors}",
        "--rpn_proposal_nms_pre=200", f"--rpn_proposal_max_num={PROPOSALS}",
        f"--num_expected_pos_stage2={rois}", f"--num_expected_neg_stage2={rois}",
        "--rpn_nms_pre=100", "--rpn_max_num=50", "--test_batch_size=1",
        "--base_lr=0.01", "--warmup_step=2", "--batch_size=2", "--keep_checkpoint_max=10",
        "--num_parallel_workers=1", "--python_multiprocessing=False", *extra,
    ]


def make_synthetic(folder, num_train: int = 4, num_val: int = 2, seed: int = 3) -> None:
    """A COCO-layout synthetic data set in `folder` (src.data.synthetic)."""
    subprocess.run([sys.executable, "-m", "src.tools.synthetic_data", "--out", str(folder),
                    "--num_train", str(num_train), "--num_val", str(num_val), "--seed", str(seed)],
                   cwd=ROOT, env=ENV, check=True, capture_output=True)


def train_command() -> list[str]:
    return [sys.executable, os.path.join(ROOT, "train.py")]


# Runs the rest of the command line with SIGINT at its default disposition, as in a terminal: a process started
# ignoring SIGINT (a background job of a script, which pytest may be) passes that on to its children.
_SIGINT_DEFAULT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "os.execv(sys.argv[1], sys.argv[1:])")


def with_sigint_default(command: list[str]) -> list[str]:
    """`command` (an executable's path first) started with SIGINT's default disposition."""
    return [sys.executable, "-c", _SIGINT_DEFAULT, *command]

