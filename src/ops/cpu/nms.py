"""Greedy NMS with the outputs of MindSpore's `ops.NMSWithMask`, as a CPU custom op (see nms.cc).

MindSpore's CPU kernel fills the whole N x N IoU matrix of every call (80 classes x 1000 RoIs at test time); this
one sorts with the same bitonic network and computes an IoU only where greedy NMS needs it.
"""

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from src.ops.cpu.build import library_path
from src.ops.cpu.dtypes import require_float32

BOX_COLUMNS = 5  # x1, y1, x2, y2, score


class NmsWithMask(nn.Cell):
    """Drop-in for `ops.NMSWithMask(iou_threshold)` on float32 input (CPU custom op, no gradient).

    Input dets (N, 5) [x1, y1, x2, y2, score]. Outputs: dets sorted by descending score (N, 5) (ties ordered as
    NMSWithMask orders them), indices (N,) int32 (0..N-1, as NMSWithMask returns), keep mask (N,) bool: a row is
    dropped iff its IoU (areas without "+1") with a kept higher-ranked row is above iou_threshold.
    """

    def __init__(self, iou_threshold: float):
        super().__init__()
        self.threshold = Tensor(np.array([iou_threshold], dtype=np.float32))

        def out_shape(dets_shape, threshold_shape):
            if len(dets_shape) != 2 or dets_shape[1] != BOX_COLUMNS:
                raise ValueError(f"NmsWithMask: dets must have shape (N, 5), got {tuple(dets_shape)}")
            return list(dets_shape), [dets_shape[0]], [dets_shape[0]]

        def out_dtype(dets_dtype, threshold_dtype):
            require_float32("NmsWithMask", "dets", [dets_dtype])
            return mstype.float32, mstype.int32, mstype.bool_

        self.nms = ops.Custom(f"{library_path('nms')}:NmsWithMask", out_shape=out_shape, out_dtype=out_dtype,
                              func_type="aot")

    def construct(self, dets):
        return self.nms(dets, self.threshold)
