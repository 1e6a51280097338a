"""Multi-level RoIAlign: each RoI pooled on the FPN level its size selects (the original's SingleRoIExtractor).

Level of a RoI (legacy "+1" box sizes, `roi_levels`):
    scale = sqrt(x2 - x1 + 1) * sqrt(y2 - y1 + 1)
    level = clamp(floor(log2(scale / finest_scale + 1e-6)), 0, num_levels - 1)
Pooling: MindSpore's `ops.ROIAlign` (roi_end_mode 1, sample_num x sample_num samples per bin) on that level; a RoI
that ROIAlign skips (|x1| and |x2| < 0.001) gets zeros.

`multi_level_roi_align(kernels, ...)` returns a cell, construct(rois (R, 5) [batch_idx, x1, y1, x2, y2] in input
pixels, feats (tuple of one (B, C, H_l, W_l) map per level)) -> (R, C, out_size, out_size) in the maps' dtype:
Kernels.CPU (four levels): the C++ kernel `MultiLevelRoIAlign` (src/ops/cpu); Kernels.GATHER: gathers and matmuls
(src/ops/gathered.py, the exported graph); else one `ops.ROIAlign` per level that sees only the RoIs of its level
(the others are handed to it as all-zero boxes, which ROIAlign and ROIAlignGrad skip).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import mindspore as ms
from mindspore import Tensor, nn, ops

from .cpu.roi_align import NUM_LEVELS as CPU_KERNEL_LEVELS
from .cpu.roi_align import MultiLevelRoIAlign
from .gathered import multi_level_roi_align_gathered
from .kernels import Kernels

# The original's offset inside log2(scale / finest_scale + eps): it keeps exact powers of two on the upper level.
LEVEL_EPS = 1e-6
# ops.ROIAlign skips a RoI whose x1 and x2 both lie within this distance of 0.
ROI_ALIGN_SKIP_TOL = 0.001


def roi_levels(rois: Tensor, finest_scale: float, num_levels: int) -> Tensor:
    """FPN level index (0 = P2) of each RoI.

    Args:
        rois: (R, 5) float32 [batch_idx, x1, y1, x2, y2] in input-image pixels.
        finest_scale: RoIs with sqrt(area) < 2 * finest_scale go to level 0.
        num_levels: number of pooled levels; the result is clamped to [0, num_levels - 1].
    Returns:
        (R,) int32.
    """
    width = rois[:, 3] - rois[:, 1] + 1.0
    height = rois[:, 4] - rois[:, 2] + 1.0
    scale = ops.sqrt(width) * ops.sqrt(height)
    level = ops.floor(ops.log(scale / finest_scale + LEVEL_EPS) / math.log(2.0))
    # clamped while float (whole numbers: the same as after the cast); ONNX opset 11 has no integer Clip
    return ops.clamp(level, 0.0, float(num_levels - 1)).astype(ms.int32)


def roi_align_skips(rois: Tensor) -> Tensor:
    """(R,) bool: the RoIs that ops.ROIAlign leaves uncomputed (x1 and x2 both within 0.001 of 0)."""
    return (ops.abs(rois[:, 1]) < ROI_ALIGN_SKIP_TOL) & (ops.abs(rois[:, 3]) < ROI_ALIGN_SKIP_TOL)


class _MindSporeRoIAlign(nn.Cell):
    def __init__(self, out_size: int, sample_num: int, featmap_strides: Sequence[int], finest_scale: float,
                 out_channels: int):
        super().__init__()
        self.out_size = out_size
        self.out_channels = out_channels
        self.finest_scale = finest_scale
        self.num_levels = len(featmap_strides)
        self.aligners = [ops.ROIAlign(out_size, out_size, 1.0 / stride, sample_num, 1) for stride in featmap_strides]

    def construct(self, rois: Tensor, feats: tuple) -> Tensor:
        levels = roi_levels(rois, self.finest_scale, self.num_levels)
        computed = ops.logical_not(roi_align_skips(rois))
        batch_idx = rois[:, :1]
        boxes = rois[:, 1:]
        no_box = ops.zeros_like(boxes)
        out = ops.zeros((rois.shape[0], self.out_channels, self.out_size, self.out_size), feats[0].dtype)
        for level in range(self.num_levels):
            on_level = ops.logical_and(levels == level, computed)
            level_rois = ops.concat((batch_idx, ops.where(on_level.reshape(-1, 1), boxes, no_box)), axis=1)
            pooled = self.aligners[level](feats[level], level_rois)
            out = ops.where(on_level.reshape(-1, 1, 1, 1), pooled, out)
        return out


class _GatheredRoIAlign(nn.Cell):
    def __init__(self, out_size: int, sample_num: int, featmap_strides: Sequence[int], finest_scale: float):
        super().__init__()
        self.out_size = out_size
        self.sample_num = sample_num
        self.strides = tuple(featmap_strides)
        self.finest_scale = finest_scale

    def construct(self, rois: Tensor, feats: tuple) -> Tensor:
        levels = roi_levels(rois, self.finest_scale, len(self.strides))
        return multi_level_roi_align_gathered(rois, feats, levels, self.strides, self.out_size, self.sample_num)


def multi_level_roi_align(kernels: Kernels, out_size: int, sample_num: int, featmap_strides: Sequence[int],
                          finest_scale: float, out_channels: int) -> nn.Cell:
    """The multi-level RoIAlign (module docstring) as a cell, construct(rois, feats); out_channels: C of the maps."""
    finest_scale = float(finest_scale)
    if kernels is Kernels.CPU and len(featmap_strides) == CPU_KERNEL_LEVELS:
        return MultiLevelRoIAlign(out_size, sample_num, featmap_strides, finest_scale)
    if kernels is Kernels.GATHER:
        return _GatheredRoIAlign(out_size, sample_num, featmap_strides, finest_scale)
    return _MindSporeRoIAlign(out_size, sample_num, featmap_strides, finest_scale, out_channels)
