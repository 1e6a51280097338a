"""Multi-level RoIAlign as one CPU custom op (forward and gradient), numerically the original's extractor.

The original model (SingleRoIExtractor over MindSpore's `ops.ROIAlign`, roi_end_mode 1) pools every RoI on
every FPN level and keeps the level its size selects; this op pools it on that level only. See roi_align.cc.
"""

from collections.abc import Sequence

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from src.ops.cpu.build import library_path
from src.ops.cpu.dtypes import require_float32

ROI_COLUMNS = 5  # batch index, x1, y1, x2, y2
NUM_LEVELS = 4  # P2..P5, as the original's extractor


def _check_inputs(rois_shape, config_shape, feat_shapes, num_levels: int) -> None:
    if len(rois_shape) != 2 or rois_shape[1] != ROI_COLUMNS:
        raise ValueError(f"MultiLevelRoIAlign: rois must have shape (R, 5), got {tuple(rois_shape)}")
    if len(feat_shapes) != num_levels:
        raise ValueError(f"MultiLevelRoIAlign: expected {num_levels} feature maps (one per stride), "
                         f"got {len(feat_shapes)}")
    for i, shape in enumerate(feat_shapes):
        if len(shape) != 4 or tuple(shape[:2]) != tuple(feat_shapes[0][:2]):
            raise ValueError(f"MultiLevelRoIAlign: feature map {i} has shape {tuple(shape)}; all maps must be "
                             f"(B, C, H, W) with the same B and C as {tuple(feat_shapes[0])}")


class MultiLevelRoIAlign(nn.Cell):
    """RoIAlign of each RoI on the FPN level chosen by its size (CPU custom op).

    Level: lvl = floor(log2(sqrt(x2 - x1 + 1) * sqrt(y2 - y1 + 1) / finest_scale + 1e-6)), clamped to
    [0, len(featmap_strides) - 1]; then MindSpore's ROIAlign(out_size, out_size, 1 / stride, sample_num,
    roi_end_mode) on that level. RoIs whose x1 and x2 are both within 1e-3 of 0 are skipped, as MindSpore's
    kernel does (its output there is unwritten memory; here zeros; no gradient). Gradients flow to the
    feature maps only (rois get zeros).

    Args:
        out_size: pooled height and width (7).
        sample_num: bilinear samples per bin side (2); <= 0 means adaptive, as in MindSpore.
        featmap_strides: stride of each level's map (4, 8, 16, 32).
        finest_scale: RoI scale mapped to the first level (56).
        roi_end_mode: 1 = legacy "+1" box end (the original), 0 = no "+1" and RoI size >= 1.

    Inputs: rois (R, 5) float32 [batch_idx, x1, y1, x2, y2] in image pixels; feats, a tuple of the level maps
    (B, C, H_l, W_l) float32. Output: (R, C, out_size, out_size) float32.
    """

    def __init__(self, out_size: int, sample_num: int, featmap_strides: Sequence[int], finest_scale: float,
                 roi_end_mode: int = 1):
        super().__init__()
        num_levels = len(featmap_strides)
        if num_levels != NUM_LEVELS:  # a graph-mode bprop cannot take *args: the level count is fixed
            raise ValueError(f"MultiLevelRoIAlign supports {NUM_LEVELS} levels, got featmap_strides "
                             f"{list(featmap_strides)}")
        scales = [np.float32(1.0 / stride) for stride in featmap_strides]
        self.config = Tensor(np.array([finest_scale, sample_num, roi_end_mode, *scales], dtype=np.float32))
        library = library_path("roi_align")

        def forward_shape(rois_shape, config_shape, *feat_shapes):
            _check_inputs(rois_shape, config_shape, feat_shapes, num_levels)
            return [rois_shape[0], feat_shapes[0][1], out_size, out_size]

        def forward_dtype(rois_dtype, config_dtype, *feat_dtypes):
            require_float32("MultiLevelRoIAlign", "rois and feature maps", [rois_dtype, *feat_dtypes])
            return mstype.float32

        def grad_shape(rois_shape, config_shape, dout_shape, *feat_shapes):
            return tuple(list(shape) for shape in feat_shapes)

        def grad_dtype(rois_dtype, config_dtype, dout_dtype, *feat_dtypes):
            return tuple(feat_dtypes)

        grad_op = ops.Custom(f"{library}:RoiAlignMultiLevelGrad", out_shape=grad_shape, out_dtype=grad_dtype,
                             func_type="aot")

        def bprop(rois, config, feat0, feat1, feat2, feat3, out, dout):
            dfeats = grad_op(rois, config, dout, feat0, feat1, feat2, feat3)
            return (ops.zeros_like(rois), ops.zeros_like(config), *dfeats)

        self.align = ops.Custom(f"{library}:RoiAlignMultiLevel", out_shape=forward_shape, out_dtype=forward_dtype,
                                func_type="aot", bprop=bprop)

    def construct(self, rois, feats):
        return self.align(rois, self.config, *feats)
