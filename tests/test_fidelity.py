"""Fidelity at inference: the port computes what the original computes.

The reference checkpoint (tests/helpers/reference_ckpt.py, salt 0) is loaded strictly into the network of
default_config_gpu.yaml at 384x640; the golden input (batch 1, meta [384, 640, 1, 1]) goes through it; every stage
recorded from the original network (tests/data/golden_384x640.npz) must match: features at the recorded indices
within 1e-3 of the stage's std, and the original's eval post-processing of the detections (valid candidates by
score, best 128) matched as sets (same label, IoU >= 0.99, |score difference| <= 1e-3).

Each check runs with this project's CPU kernels and with MindSpore's own operators (Kernels.MINDSPORE: the
graph GPU and Ascend run), in GRAPH_MODE (what eval.py runs) and in PYNATIVE_MODE, and with the gathers of the
exported graph (Kernels.GATHER, what export.py writes) in GRAPH_MODE. The largest deviation of every stage is
printed (run with -s to see it).
"""

import numpy as np
import pytest
from mindspore import Tensor

from src.model_utils.config import get_config
from tests.helpers.fidelity import (
    CONFIG_GPU,
    GOLDEN_INFER,
    INFER_SIZE,
    StagesAndDetections,
    best_detections,
    kernels_and_mode,
    match_detections,
    reference_network,
)

pytestmark = pytest.mark.slow  # five network builds and graph compilations

FEATURE_TOL = 1e-3  # times the stage's std
DET_MIN_IOU = 0.99
DET_SCORE_TOL = 1e-3
BACKBONE_STAGES = ("backbone_c2", "backbone_c3", "backbone_c4", "backbone_c5")
FPN_STAGES = ("fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6")
RUNS = [("cpu", "graph"), ("cpu", "pynative"), ("mindspore", "graph"),
        ("mindspore", "pynative"), ("gather", "graph")]


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN_INFER))


@pytest.fixture(scope="module", params=RUNS, ids=["-".join(run) for run in RUNS])
def run(request, golden, reference_ckpt):
    """The port on the golden input: ({stage: array}, (bboxes, labels, masks) of the image, the run's name)."""
    height, width = INFER_SIZE
    with kernels_and_mode(*request.param) as kernels:
        cfg = get_config([f"--config_path={CONFIG_GPU}"], img_height=height, img_width=width, test_batch_size=1)
        net = reference_network(cfg, reference_ckpt, kernels)
        net.set_train(False)
        meta = Tensor(np.array([[height, width, 1.0, 1.0]], np.float32))
        backbone, fpn, bboxes, labels, masks = StagesAndDetections(net)(Tensor(golden["input"]), meta)
        stages = dict(zip(BACKBONE_STAGES, (t.asnumpy() for t in backbone), strict=True))
        stages.update(zip(FPN_STAGES, (t.asnumpy() for t in fpn), strict=True))
        detections = bboxes.asnumpy()[0], labels.asnumpy()[0, :, 0], masks.asnumpy()[0, :, 0]
        return stages, detections, "-".join(request.param)


@pytest.mark.parametrize("stage", BACKBONE_STAGES + FPN_STAGES)
def test_feature_stage_matches_original(run, golden, stage):
    got = run[0][stage]
    assert got.shape == tuple(golden[f"{stage}_shape"])
    sampled = got.reshape(-1)[golden[f"{stage}_idx"]]
    std = float(golden[f"{stage}_std"])
    deviation = float(np.abs(sampled - golden[f"{stage}_val"]).max()) / std
    print(f"\n{run[2]} {stage}: largest |port - original| = {deviation:.2e} x std (std {std:.4f})")
    assert deviation <= FEATURE_TOL


def test_detections_match_original(run, golden):
    want = golden["det_boxes"], golden["det_scores"], golden["det_labels"]
    got = best_detections(*run[1], count=len(want[1]))
    assert len(got[1]) == len(want[1])
    match = match_detections(want, got, DET_MIN_IOU, DET_SCORE_TOL)
    assert match.matched == match.total, f"original detection {match.first_unmatched} has no match"
    print(f"\n{run[2]} detections: {match.matched} matched; lowest IoU {match.lowest_iou:.6f}, largest |score diff| "
          f"{match.largest_score_diff:.2e}")
