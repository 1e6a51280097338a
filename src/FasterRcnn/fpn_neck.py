"""Feature pyramid neck of the original: lateral 1x1 convs, top-down nearest upsampling and sum, 3x3 output
convs, extra levels by stride-2 subsampling of the coarsest output. No activation, no normalisation."""
from __future__ import annotations

from collections.abc import Sequence

from mindspore import Tensor, nn, ops


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """Conv with bias, XavierUniform weight and zero bias (the original's init); 'same' padding, stride 1."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, pad_mode="same", has_bias=True,
                     weight_init="XavierUniform", bias_init="zeros")


def upsample_nearest(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of x (N, C, h, w) to size (H, W), as ops.interpolate(mode="nearest"). An exact 2x
    (every FPN level when the image size is a multiple of 32) is a broadcast: out[i, j] = x[i // 2, j // 2]."""
    n, c, h, w = x.shape
    if tuple(size) == (2 * h, 2 * w):
        return ops.broadcast_to(x.reshape(n, c, h, 1, w, 1), (n, c, h, 2, w, 2)).reshape(n, c, 2 * h, 2 * w)
    return ops.interpolate(x, size=size, mode="nearest")


class FeatPyramidNeck(nn.Cell):
    """(c2, c3, c4, c5) -> (p2, p3, p4, p5, p6), every output with `out_channels` channels.

    in_channels: channels of the inputs, fine to coarse (config fpn_in_channels); num_outs: outputs (fpn_num_outs,
    at least len(in_channels)); feature_shapes: [h, w] of every output level, fine to coarse (config
    feature_shapes, derived from the image size): the top-down path upsamples each level to the next finer
    level's size. Params `lateral_convs_list.i.*`, `fpn_convs_list.i.*`.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_outs: int,
                 feature_shapes: Sequence[Sequence[int]]):
        super().__init__()
        self.num_levels = len(in_channels)
        if num_outs < self.num_levels:
            raise ValueError(f"FeatPyramidNeck: num_outs={num_outs} is less than the {self.num_levels} input levels")
        if len(feature_shapes) < num_outs:
            raise ValueError(f"FeatPyramidNeck: feature_shapes has {len(feature_shapes)} levels, num_outs={num_outs}")
        self.num_outs = num_outs
        self.upsample_sizes = tuple(tuple(int(v) for v in shape) for shape in feature_shapes[:self.num_levels])
        self.lateral_convs_list = nn.CellList([_conv(ch, out_channels, 1) for ch in in_channels])
        self.fpn_convs_list = nn.CellList([_conv(out_channels, out_channels, 3) for _ in in_channels])
        # 1x1 max pool, stride 2, 'same': keeps every other pixel from (0, 0); output ceil(h / 2).
        self.subsample = nn.MaxPool2d(kernel_size=1, stride=2, pad_mode="same")

    def construct(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        laterals = [self.lateral_convs_list[i](inputs[i]) for i in range(self.num_levels)]
        merged = [laterals[-1]]  # coarse to fine
        for i in range(self.num_levels - 2, -1, -1):
            upsampled = upsample_nearest(merged[-1], self.upsample_sizes[i])
            merged.append(laterals[i] + upsampled)
        outs = ()
        for i in range(self.num_levels):
            outs += (self.fpn_convs_list[i](merged[self.num_levels - 1 - i]),)
        for _ in range(self.num_outs - self.num_levels):
            outs += (self.subsample(outs[-1]),)
        return outs
