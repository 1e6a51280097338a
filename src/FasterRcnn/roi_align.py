"""RoI feature extraction from the FPN levels P2..P5 (the original's SingleRoIExtractor): each RoI pooled by
RoIAlign on the level its size selects (`src.ops.roi_align`, which states the level formula and the pooling)."""
from __future__ import annotations

from mindspore import Tensor, nn

from src.ops import Kernels, multi_level_roi_align

from .settings import RoiSettings


class SingleRoIExtractor(nn.Cell):
    """Pool each RoI on its FPN level (settings: out_size, sample_num, out_channels, featmap_strides, finest_scale).

    construct(rois (R, 5) [batch_idx, x1, y1, x2, y2], *feats one (B, C, H_l, W_l) map per level)
        -> (R, C, out_size, out_size), dtype of the maps.
    """

    def __init__(self, settings: RoiSettings, kernels: Kernels):
        super().__init__()
        self.align = multi_level_roi_align(kernels, settings.out_size, settings.sample_num, settings.featmap_strides,
                                           settings.finest_scale, settings.out_channels)

    def construct(self, rois: Tensor, *feats: Tensor) -> Tensor:
        return self.align(rois, feats)
