"""RoI feature extraction from the FPN levels P2..P5 (the original's SingleRoIExtractor).

Each RoI is assigned to one level by its size, as the original does (legacy "+1" box sizes):
    scale = sqrt(x2 - x1 + 1) * sqrt(y2 - y1 + 1)
    level = clamp(floor(log2(scale / finest_scale + 1e-6)), 0, num_levels - 1)
and pooled there with `ops.ROIAlign` (roi_end_mode 1, the MindSpore default the original uses).

The original pools every RoI on all four levels and keeps one result per RoI. Here each level's ROIAlign
only sees the RoIs of that level: the others are handed to it as all-zero boxes, which the ROIAlign /
ROIAlignGrad kernels skip (a box with |x1| < 0.001 and |x2| < 0.001 is not computed; measured on the CPU op),
so the pooled values of every RoI are the same numbers with a quarter of the work. A RoI that the kernels skip
on its own (a degenerate box at the left edge) gets zeros here; the original leaves whatever the output
buffer held. With Kernels.CPU, `MultiLevelRoIAlign` (src/custom_ops) computes the same in one C++ kernel; with
Kernels.GATHER (the exported graph) `multi_level_roi_align_gathered` does, in standard operators.
"""
from __future__ import annotations

import math

import mindspore as ms
from mindspore import Tensor, nn, ops

from src.custom_ops import MultiLevelRoIAlign

from .gathered_ops import multi_level_roi_align_gathered
from .settings import Kernels, RoiSettings

# The original's offset inside log2(scale / finest_scale + eps): it keeps exact powers of two on the upper level.
LEVEL_EPS = 1e-6
# MultiLevelRoIAlign's gradient takes a fixed number of maps.
MULTI_LEVEL_KERNEL_LEVELS = 4
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


class SingleRoIExtractor(nn.Cell):
    """Pool each RoI on its FPN level (settings: out_size, sample_num, out_channels, featmap_strides, finest_scale;
    see `roi_levels`), with `MultiLevelRoIAlign` for Kernels.CPU on four levels, else with `ops.ROIAlign`.

    construct(rois (R, 5) [batch_idx, x1, y1, x2, y2], *feats one (B, C, H_l, W_l) map per level)
        -> (R, C, out_size, out_size), dtype of the maps.
    """

    def __init__(self, settings: RoiSettings, kernels: Kernels):
        super().__init__()
        strides = settings.featmap_strides
        self.out_size = settings.out_size
        self.out_channels = settings.out_channels
        self.finest_scale = float(settings.finest_scale)
        self.num_levels = len(strides)
        self.strides = tuple(strides)
        self.sample_num = settings.sample_num
        self.gathered = kernels is Kernels.GATHER
        self.aligners = [ops.ROIAlign(self.out_size, self.out_size, 1.0 / stride, settings.sample_num, 1)
                         for stride in strides]
        use_kernel = kernels is Kernels.CPU and self.num_levels == MULTI_LEVEL_KERNEL_LEVELS
        self.cpu_align = (MultiLevelRoIAlign(self.out_size, settings.sample_num, strides, self.finest_scale)
                          if use_kernel else None)

    def construct(self, rois: Tensor, *feats: Tensor) -> Tensor:
        if self.cpu_align is not None:
            return self.cpu_align(rois, feats)
        levels = roi_levels(rois, self.finest_scale, self.num_levels)
        if self.gathered:
            return multi_level_roi_align_gathered(rois, feats, levels, self.strides, self.out_size, self.sample_num)
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
