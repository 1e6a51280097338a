"""Feature pyramid neck of the original: lateral 1x1 convs, top-down nearest upsampling and sum, 3x3 output
convs, extra levels by stride-2 subsampling of the coarsest output. No activation, no normalisation."""
from __future__ import annotations

from collections.abc import Sequence

from mindspore import Tensor, nn, ops

from src.custom_ops import UpsampleAdd2x

from .conv import SameConv3x3
from .settings import Kernels

# The original's initialisation of every FPN conv: XavierUniform weights, zero biases.
WEIGHT_INIT = "XavierUniform"


def add_upsampled(lateral: Tensor, x: Tensor, size: tuple[int, int], merge_2x: UpsampleAdd2x | None = None) -> Tensor:
    """lateral + x (N, C, h, w) resized to size (H, W) by nearest neighbour, as lateral + ops.interpolate(x, size,
    mode="nearest"). An exact 2x (every FPN level when the image size is a multiple of 32) is out[i, j] =
    lateral[i, j] + x[i // 2, j // 2]: `merge_2x` (the CPU kernel) when given, else one broadcasting add."""
    n, c, h, w = x.shape
    if tuple(size) != (2 * h, 2 * w):
        return lateral + ops.interpolate(x, size=size, mode="nearest")
    if merge_2x is not None:
        return merge_2x(lateral, x)
    return (lateral.reshape(n, c, h, 2, w, 2) + x.reshape(n, c, h, 1, w, 1)).reshape(n, c, 2 * h, 2 * w)


class FeatPyramidNeck(nn.Cell):
    """(c2, c3, c4, c5) -> (p2, p3, p4, p5, p6), every output with `out_channels` channels.

    in_channels: channels of the inputs, fine to coarse (config fpn_in_channels); num_outs: outputs (fpn_num_outs,
    at least len(in_channels)); feature_shapes: [h, w] of every output level, fine to coarse (config
    feature_shapes, derived from the image size): the top-down path upsamples each level to the next finer
    level's size; kernels: what computes the 3x3 output convs and the top-down merges.
    Params `lateral_convs_list.i.*`, `fpn_convs_list.i.*`.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_outs: int,
                 feature_shapes: Sequence[Sequence[int]], *, kernels: Kernels):
        super().__init__()
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
        self.merge_2x = UpsampleAdd2x() if kernels is Kernels.CPU else None
        # 1x1 max pool, stride 2, 'same': keeps every other pixel from (0, 0); output ceil(h / 2).
        self.subsample = nn.MaxPool2d(kernel_size=1, stride=2, pad_mode="same")

    def construct(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        laterals = [self.lateral_convs_list[i](inputs[i]) for i in range(self.num_levels)]
        merged = [laterals[-1]]  # coarse to fine
        for i in range(self.num_levels - 2, -1, -1):
            merged.append(add_upsampled(laterals[i], merged[-1], self.upsample_sizes[i], self.merge_2x))
        outs = ()
        for i in range(self.num_levels):
            outs += (self.fpn_convs_list[i](merged[self.num_levels - 1 - i]),)
        for _ in range(self.num_outs - self.num_levels):
            outs += (self.subsample(outs[-1]),)
        return outs
