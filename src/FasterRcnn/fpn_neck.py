"""Feature pyramid neck of the original: lateral 1x1 convs, top-down nearest upsampling and sum, 3x3 output
convs, extra levels by stride-2 subsampling of the coarsest output. No activation, no normalisation."""
from __future__ import annotations

from collections.abc import Sequence

from mindspore import Tensor, nn

from src.ops import Kernels, SameConv3x3, fpn_merge

from .settings import FpnSettings

# The original's initialisation of every FPN conv: XavierUniform weights, zero biases.
WEIGHT_INIT = "XavierUniform"


class FeatPyramidNeck(nn.Cell):
    """(c2, c3, c4, c5) -> (p2, p3, p4, p5, p6), every output with `settings.out_channels` channels.

    settings: in_channels, channels of the inputs, fine to coarse; num_outs, outputs (at least len(in_channels));
    feature_shapes, [h, w] of every output level, fine to coarse (derived from the image size): the top-down path
    upsamples each level to the next finer level's size. kernels: what computes the 3x3 output convs and the
    top-down merges. Params `lateral_convs_list.i.*`, `fpn_convs_list.i.*`.
    """

    def __init__(self, settings: FpnSettings, *, kernels: Kernels):
        super().__init__()
        in_channels, out_channels, num_outs = settings.in_channels, settings.out_channels, settings.num_outs
        feature_shapes = settings.feature_shapes
        self.num_levels = len(in_channels)
        if num_outs < self.num_levels:
            raise ValueError(f"FeatPyramidNeck: num_outs={num_outs} is less than the {self.num_levels} input levels")
        if len(feature_shapes) < num_outs:
            raise ValueError(f"FeatPyramidNeck: feature_shapes has {len(feature_shapes)} levels, num_outs={num_outs}")
        self.num_outs = num_outs
        self.upsample_sizes = tuple(tuple(int(v) for v in shape) for shape in feature_shapes[:self.num_levels])
        self.lateral_convs_list = nn.CellList([
            nn.Conv2d(ch, out_channels, 1, pad_mode="same", has_bias=True, weight_init=WEIGHT_INIT, bias_init="zeros")
            for ch in in_channels])
        self.fpn_convs_list = nn.CellList([SameConv3x3(out_channels, out_channels, kernels=kernels,
                                                       weight_init=WEIGHT_INIT) for _ in in_channels])
        self.merge = fpn_merge(kernels)
        # 1x1 max pool, stride 2, 'same': keeps every other pixel from (0, 0); output ceil(h / 2).
        self.subsample = nn.MaxPool2d(kernel_size=1, stride=2, pad_mode="same")

    def construct(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        laterals = [self.lateral_convs_list[i](inputs[i]) for i in range(self.num_levels)]
        merged = [laterals[-1]]  # coarse to fine
        for i in range(self.num_levels - 2, -1, -1):
            merged.append(self.merge(laterals[i], merged[-1], self.upsample_sizes[i]))
        outs = ()
        for i in range(self.num_levels):
            outs += (self.fpn_convs_list[i](merged[self.num_levels - 1 - i]),)
        for _ in range(self.num_outs - self.num_levels):
            outs += (self.subsample(outs[-1]),)
        return outs
