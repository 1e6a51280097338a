"""Greedy NMS with the outputs of MindSpore's `ops.NMSWithMask`: boxes sorted by score (descending), IoU WITHOUT
"+1", a box dropped if its IoU with a kept box is strictly above the threshold (exact greedy NMS).
"""
from __future__ import annotations

from mindspore import nn, ops

from .cpu.nms import NmsWithMask
from .kernels import Kernels


def nms_with_mask(kernels: Kernels, iou_threshold: float) -> nn.Cell:
    """Greedy NMS as a cell: dets (K, 5) [x1, y1, x2, y2, score] -> (dets sorted by descending score (K, 5),
    indices (K,) int32 = 0..K-1, keep mask (K,) bool aligned with the sorted rows). `ops.NMSWithMask`, or with
    Kernels.CPU the C++ kernel that gives its outputs without filling the whole K x K IoU matrix."""
    if kernels is Kernels.CPU:
        return NmsWithMask(float(iou_threshold))
    return ops.NMSWithMask(float(iou_threshold))
