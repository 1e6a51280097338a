"""3x3 convolutions (padding 1) computed by the network's `Kernels`: with Kernels.CPU, the stride-1 ones go through
the Winograd CPU kernel (src/custom_ops/winograd_conv.py), in the forward pass and in the gradients."""
from __future__ import annotations

import mindspore as ms
from mindspore import Tensor, nn, ops

from src.custom_ops import WinogradConv3x3

from .settings import Kernels

# Below this many output pixels per map a 256 -> 256 direct convolution is faster than Winograd's (too few tiles to
# keep the products efficient): measured crossing between 24x40 and 48x80 (bench/RESULTS.md).
WINOGRAD_MIN_PIXELS = 48 * 80


def winograd_for(kernels: Kernels, stride: int = 1) -> WinogradConv3x3 | None:
    """The Winograd op a 3x3 conv of this stride uses with these kernels, or None (ops.conv2d)."""
    return WinogradConv3x3() if kernels is Kernels.CPU and stride == 1 else None


def conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None, winograd: WinogradConv3x3 | None, *, stride: int = 1,
            min_pixels: int = 0) -> Tensor:
    """conv2d(x (N, C, H, W), weight (K, C, 3, 3), padding 1, stride) + bias (K,) if given: by `winograd` for float32
    maps of at least `min_pixels` pixels (stride 1), else by ops.conv2d."""
    if winograd is not None and x.dtype == ms.float32 and x.shape[2] * x.shape[3] >= min_pixels:
        if bias is None:
            bias = ops.zeros(weight.shape[0], ms.float32)
        return winograd(x, weight, bias)
    out = ops.conv2d(x, weight, stride=stride, pad_mode="pad", padding=1)
    return out if bias is None else ops.bias_add(out, bias)


class SameConv3x3(nn.Conv2d):
    """nn.Conv2d(in_channels, out_channels, 3, stride 1, pad_mode 'same', with bias): same parameters (weight,
    bias), same value; with Kernels.CPU maps of at least WINOGRAD_MIN_PIXELS pixels go through Winograd."""

    def __init__(self, in_channels: int, out_channels: int, *, kernels: Kernels, weight_init, bias_init="zeros"):
        super().__init__(in_channels, out_channels, 3, stride=1, pad_mode="same", has_bias=True,
                         weight_init=weight_init, bias_init=bias_init)
        self.winograd = winograd_for(kernels)

    def construct(self, x: Tensor) -> Tensor:
        return conv3x3(x, self.weight, self.bias, self.winograd, min_pixels=WINOGRAD_MIN_PIXELS)
