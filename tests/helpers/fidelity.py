"""Shared by the fidelity tests (tests/test_fidelity*.py, tests/test_float16.py).

- `kernels_and_mode`: run in GRAPH or PYNATIVE mode, with the kernel choice to build the network with: this project's
  CPU kernels or MindSpore's own operators (DeformableOffsets, ROIAlign, NMSWithMask: the graph GPU and Ascend run);
- `reference_network`: the port's network from a config and a kernel choice, the reference checkpoint loaded strictly;
- `StagesAndDetections`: backbone and FPN outputs plus the detections, from one graph;
- `best_detections` / `match_detections`: the original's eval post-processing and set matching of detections;
- `one_training_step`: one step of the project's train-step cell with the SGD of the training golden, recorded as
  the golden records it (the six loss terms, each trainable parameter's update norm and sampled values).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn
from mindspore.nn import SGD

from src.FasterRcnn import FasterRcnnResnet50, build_model
from src.network_define import LossNet, TrainOneStepCell, WithLossCell
from src.ops import Kernels
from tests.helpers.box_reference import np_iou
from tests.helpers.reference_ckpt import DATA_DIR

GOLDEN_INFER = os.path.join(DATA_DIR, "golden_384x640.npz")
GOLDEN_TRAIN = os.path.join(DATA_DIR, "golden_train_256x384.npz")
CONFIG_GPU = "default_config_gpu.yaml"
INFER_SIZE = (384, 640)
# The training golden's configuration (tests/data/FIDELITY.md): both samplers are asked for more samples than there
# are candidates, so they take every candidate and the losses are fixed functions of the inputs.
TRAIN_OVERRIDES = dict(img_height=256, img_width=384, batch_size=2, num_gts=8, num_expected_pos=32768,
                       num_expected_neg=32768, rpn_proposal_nms_pre=2000, rpn_proposal_max_num=256,
                       num_expected_pos_stage2=272, num_expected_neg_stage2=272)
TRAIN_INPUTS = ("input", "img_metas", "gt_bboxes", "gt_labels", "gt_valids")

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


@contextmanager
def kernels_and_mode(kernels: str, mode: str) -> Iterator[Kernels]:
    """Runs inside in `mode` (a MODES key), restored after; yields the Kernels whose value is `kernels` ("cpu",
    "mindspore", "gather": the ids of tests/conftest.py's `kernels` fixture) to build the network with."""
    previous_mode = ms.get_context("mode")
    ms.set_context(mode=MODES[mode])
    try:
        yield Kernels(kernels)
    finally:
        ms.set_context(mode=previous_mode)


def reference_network(cfg, ckpt_path: str, kernels: Kernels, dtype: ms.Type = ms.float32) -> FasterRcnnResnet50:
    """The network of `cfg` computing in `dtype` with `kernels` and every parameter loaded from the reference
    checkpoint (strict: names and shapes are the original's, nothing missing, nothing left over)."""
    net = build_model(cfg, kernels=kernels, dtype=dtype)
    assert ms.load_param_into_net(net, ms.load_checkpoint(ckpt_path), strict_load=True) == ([], [])
    return net


class StagesAndDetections(nn.Cell):
    """Inference in one graph: construct(img, img_metas) -> ((c2..c5), (p2..p6), bboxes, labels, masks)."""

    def __init__(self, net: FasterRcnnResnet50):
        super().__init__()
        self.net = net

    def construct(self, img, img_metas):
        backbone = self.net.backbone(img)
        fpn = self.net.fpn_neck(backbone)
        bboxes, labels, masks = self.net.detect(fpn, img_metas)
        return backbone, fpn, bboxes, labels, masks


def best_detections(bboxes: np.ndarray, labels: np.ndarray, masks: np.ndarray,
                    count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The original's eval post-processing of one image's network outputs (N, 5), (N,), (N,) bool: valid candidates
    sorted by score (descending), the best `count` -> (boxes (n, 4), scores (n,), labels (n,))."""
    boxes, scores, labels = bboxes[masks, :4], bboxes[masks, 4].astype(np.float32), labels[masks]
    order = np.argsort(-scores, kind="stable")[:count]
    return boxes[order], scores[order], labels[order]


@dataclass
class DetectionMatch:
    matched: int  # wanted detections with a match
    total: int  # wanted detections
    lowest_iou: float  # over the matched pairs
    largest_score_diff: float
    first_unmatched: str | None  # a description of the first wanted detection without a match


def match_detections(want: tuple[np.ndarray, np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray, np.ndarray],
                     min_iou: float, score_tol: float) -> DetectionMatch:
    """Match each wanted (boxes, scores, labels) detection to a distinct one of `got` with the same label, IoU >=
    min_iou and |score difference| <= score_tol (the closest score among the candidates)."""
    boxes, scores, labels = got
    unmatched = np.ones(len(scores), bool)
    matched, lowest_iou, largest_diff, first_miss = 0, 1.0, 0.0, None
    for box, score, label in zip(*want, strict=True):
        overlaps = np_iou(boxes, box[None], plus_one=False, dtype=None)[0]
        score_diff = np.abs(scores - score)
        ok = unmatched & (labels == label) & (overlaps >= min_iou) & (score_diff <= score_tol)
        if not ok.any():
            first_miss = first_miss or f"box {box} score {score:.4f} label {label}"
            continue
        best = np.flatnonzero(ok)[np.argmin(score_diff[ok])]
        unmatched[best] = False
        matched += 1
        lowest_iou = min(lowest_iou, float(overlaps[best]))
        largest_diff = max(largest_diff, float(score_diff[best]))
    return DetectionMatch(matched, len(want[1]), lowest_iou, largest_diff, first_miss)


@dataclass
class StepRecord:
    """One training step as the golden records it."""
    terms: np.ndarray  # (6,) float64, the network's six training outputs (LOSS_TERMS order)
    loss: float  # the step's returned loss
    trainable_names: list[str]
    update_norms: dict[str, float]  # L2 norm of param_after - param_before
    update_samples: dict[str, np.ndarray]  # the update at the golden's `upd/<name>/idx` (where the golden has it)
    nonfinite: list[str]  # parameters that are not finite after the step


def one_training_step(net: FasterRcnnResnet50, golden: dict) -> StepRecord:
    """One step of the project's train-step cell on the golden batch, with the golden's SGD (constant lr, momentum,
    weight decay, static loss scale over net.trainable_params()); `net` in training mode."""
    params = net.trainable_params()
    before = [p.asnumpy().copy() for p in params]
    loss_scale = float(golden["loss_scale"])
    optimizer = SGD(params=params, learning_rate=float(golden["lr"]), momentum=float(golden["momentum"]),
                    weight_decay=float(golden["weight_decay"]), loss_scale=loss_scale)
    step = TrainOneStepCell(WithLossCell(net, LossNet()), optimizer, sens=loss_scale)
    loss, terms = step(*(Tensor(golden[key]) for key in TRAIN_INPUTS))
    norms, samples, nonfinite = {}, {}, []
    for param, value in zip(params, before, strict=True):
        after = param.asnumpy()
        if not np.all(np.isfinite(after)):
            nonfinite.append(param.name)
        update = after.astype(np.float64) - value
        norms[param.name] = float(np.linalg.norm(update))
        index = golden.get(f"upd/{param.name}/idx")
        if index is not None:
            samples[param.name] = update.reshape(-1)[index]
    return StepRecord(terms.asnumpy().astype(np.float64), float(loss.asnumpy()), [p.name for p in params], norms,
                      samples, nonfinite)


def parameter_group(name: str) -> str:
    """The part of the network a parameter belongs to, for reports: backbone.layerN[.offset], fpn, rpn, rcnn."""
    parts = name.split(".")
    if parts[0] == "backbone":
        group = ".".join(parts[:2])
        return group + (".offsets" if "p_conv" in name or "m_conv" in name else "")
    return {"fpn_ncek": "fpn", "rpn_with_loss": "rpn"}.get(parts[0], parts[0])
