"""Fidelity: the port computes what the original computes.

The reference checkpoint (tests/reference_ckpt.py, salt 0) is loaded strictly; the golden input at 384x640
(batch 1, meta [384, 640, 1, 1]) goes through the network; every stage recorded from the original network
(tests/data/golden_384x640.npz) must match: features at the recorded indices within 1e-3 of the stage's std,
and the original's eval post-processing of the detections (valid candidates by score, best 128) matched as
sets (same label, IoU >= 0.99, |score difference| <= 1e-3). The largest deviation of every stage is printed
(run with -s to see it).
"""
import os

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "3")
import mindspore as ms  # noqa: E402
from mindspore import Tensor  # noqa: E402

from src.FasterRcnn import FasterRcnnResnet50  # noqa: E402
from src.model_utils.config import get_config  # noqa: E402
from tests.reference_ckpt import DATA_DIR, write_reference_ckpt  # noqa: E402

GOLDEN = os.path.join(DATA_DIR, "golden_384x640.npz")
IMG_HEIGHT, IMG_WIDTH = 384, 640
FEATURE_TOL = 1e-3  # times the stage's std
DET_MIN_IOU = 0.99
DET_SCORE_TOL = 1e-3
BACKBONE_STAGES = ("backbone_c2", "backbone_c3", "backbone_c4", "backbone_c5")
FPN_STAGES = ("fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6")


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def run(golden, tmp_path_factory):
    """The port on the golden input: {stage: array} plus the detections."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = get_config([], img_height=IMG_HEIGHT, img_width=IMG_WIDTH, test_batch_size=1)
    net = FasterRcnnResnet50(cfg)
    ckpt = write_reference_ckpt(str(tmp_path_factory.mktemp("fidelity") / "reference.ckpt"), salt=0)
    assert ms.load_param_into_net(net, ms.load_checkpoint(ckpt), strict_load=True) == ([], [])
    net.set_train(False)
    img = Tensor(golden["input"])
    meta = Tensor(np.array([[IMG_HEIGHT, IMG_WIDTH, 1.0, 1.0]], np.float32))
    backbone = net.backbone(img)
    fpn = net.fpn_neck(backbone)
    stages = dict(zip(BACKBONE_STAGES, (t.asnumpy() for t in backbone), strict=True))
    stages.update(zip(FPN_STAGES, (t.asnumpy() for t in fpn), strict=True))
    bboxes, labels, masks = net(img, meta, None, None, None)
    return stages, (bboxes.asnumpy()[0], labels.asnumpy()[0, :, 0], masks.asnumpy()[0, :, 0])


@pytest.mark.parametrize("stage", BACKBONE_STAGES + FPN_STAGES)
def test_feature_stage_matches_original(run, golden, stage):
    got = run[0][stage]
    assert got.shape == tuple(golden[f"{stage}_shape"])
    sampled = got.reshape(-1)[golden[f"{stage}_idx"]]
    std = float(golden[f"{stage}_std"])
    deviation = float(np.abs(sampled - golden[f"{stage}_val"]).max()) / std
    print(f"\n{stage}: largest |port - original| = {deviation:.2e} x std (std {std:.4f})")
    assert deviation <= FEATURE_TOL


def best_detections(bboxes, labels, masks, count):
    """The original's eval post-processing: valid candidates sorted by score (descending), best `count`."""
    boxes, scores, labels = bboxes[masks, :4], bboxes[masks, 4], labels[masks]
    order = np.argsort(-scores, kind="stable")[:count]
    return boxes[order], scores[order], labels[order]


def iou(box, boxes):
    inter_w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    inter_h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = inter_w * inter_h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def test_detections_match_original(run, golden):
    want_boxes, want_scores, want_labels = golden["det_boxes"], golden["det_scores"], golden["det_labels"]
    boxes, scores, labels = best_detections(*run[1], count=len(want_scores))
    assert len(scores) == len(want_scores)
    unmatched = np.ones(len(scores), bool)
    worst_iou, worst_score = 1.0, 0.0
    for box, score, label in zip(want_boxes, want_scores, want_labels, strict=True):
        overlaps = iou(box, boxes)
        score_diff = np.abs(scores - score)
        ok = unmatched & (labels == label) & (overlaps >= DET_MIN_IOU) & (score_diff <= DET_SCORE_TOL)
        assert ok.any(), f"original detection {box} score {score:.4f} label {label} has no match"
        best = np.flatnonzero(ok)[np.argmin(score_diff[ok])]
        unmatched[best] = False
        worst_iou = min(worst_iou, float(overlaps[best]))
        worst_score = max(worst_score, float(score_diff[best]))
    print(f"\ndetections: {len(want_scores)} matched; lowest IoU {worst_iou:.6f}, largest |score diff| "
          f"{worst_score:.2e}")
