"""The FPN's top-down merge: lateral + x resized by nearest neighbour to the lateral's size."""
from __future__ import annotations

from mindspore import Tensor, nn, ops

from .cpu.upsample_add import UpsampleAdd2x
from .kernels import Kernels


def add_upsampled(lateral: Tensor, x: Tensor, size: tuple[int, int], merge_2x: nn.Cell | None = None) -> Tensor:
    """lateral + x (N, C, h, w) resized to size (H, W) by nearest neighbour, as lateral + ops.interpolate(x, size,
    mode="nearest"). An exact 2x (every FPN level when the image size is a multiple of 32) is out[i, j] =
    lateral[i, j] + x[i // 2, j // 2]: `merge_2x` (the CPU kernel) when given, else one broadcasting add."""
    n, c, h, w = x.shape
    if tuple(size) != (2 * h, 2 * w):
        return lateral + ops.interpolate(x, size=size, mode="nearest")
    if merge_2x is not None:
        return merge_2x(lateral, x)
    return (lateral.reshape(n, c, h, 2, w, 2) + x.reshape(n, c, h, 1, w, 1)).reshape(n, c, 2 * h, 2 * w)


class _FpnMerge(nn.Cell):
    def __init__(self, merge_2x: nn.Cell | None):
        super().__init__()
        self.merge_2x = merge_2x

    def construct(self, lateral: Tensor, x: Tensor, size: tuple[int, int]) -> Tensor:
        return add_upsampled(lateral, x, size, self.merge_2x)


def fpn_merge(kernels: Kernels) -> nn.Cell:
    """A cell computing `add_upsampled(lateral, x, size)`: construct(lateral (N, C, H, W), x (N, C, h, w),
    size (H, W)) -> (N, C, H, W); with Kernels.CPU an exact 2x runs the C++ kernel `UpsampleAdd2x`."""
    return _FpnMerge(UpsampleAdd2x() if kernels is Kernels.CPU else None)
