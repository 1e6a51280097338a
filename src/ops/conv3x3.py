"""3x3 convolutions with zero padding 1: `conv3x3(kernels, stride)` for a weight the caller computes (a folded
BatchNorm, the DCN's offset convs), `SameConv3x3` for a conv layer with its own parameters (the FPN's outputs, the
RPN head). With Kernels.CPU the stride-1 ones run through the Winograd CPU kernel (src/ops/cpu/winograd_conv.py),
in the forward pass and in the gradients; else, and for float16 maps, through `ops.conv2d`.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import Tensor, nn, ops

from .cpu.winograd_conv import WINOGRAD_MIN_PIXELS, WinogradConv3x3
from .kernels import Kernels


def _direct(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
    out = ops.conv2d(x, weight, stride=stride, pad_mode="pad", padding=1)
    return out if bias is None else ops.bias_add(out, bias)


class _DirectConv3x3(nn.Cell):
    """`ops.conv2d` (+ `ops.bias_add`)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def construct(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        return _direct(x, weight, bias, self.stride)


class _WinogradConv3x3(nn.Cell):
    """The Winograd CPU kernel for float32 maps of at least `min_pixels` pixels, else `ops.conv2d`; stride 1."""

    def __init__(self, min_pixels: int):
        super().__init__()
        self.min_pixels = min_pixels
        self.winograd = WinogradConv3x3()

    def construct(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        if x.dtype == ms.float32 and x.shape[2] * x.shape[3] >= self.min_pixels:
            if bias is None:
                bias = ops.zeros(weight.shape[0], ms.float32)
            return self.winograd(x, weight, bias)
        return _direct(x, weight, bias, 1)


def conv3x3(kernels: Kernels, stride: int = 1, min_pixels: int = 0) -> nn.Cell:
    """A cell computing conv2d(x (N, C, H, W), weight (K, C, 3, 3), padding 1, stride) + bias (K,) if given:
    (N, K, ceil(H / stride), ceil(W / stride)). With Kernels.CPU and stride 1 by Winograd for float32 maps of at
    least `min_pixels` pixels."""
    if kernels is Kernels.CPU and stride == 1:
        return _WinogradConv3x3(min_pixels)
    return _DirectConv3x3(stride)


class SameConv3x3(nn.Conv2d):
    """nn.Conv2d(in_channels, out_channels, 3, stride 1, pad_mode 'same', with bias): same parameters (weight,
    bias), same value, computed by `conv3x3(kernels)` (on the CPU by Winograd from WINOGRAD_MIN_PIXELS pixels on,
    where it is the faster one for 256 channels)."""

    def __init__(self, in_channels: int, out_channels: int, *, kernels: Kernels, weight_init, bias_init="zeros"):
        super().__init__(in_channels, out_channels, 3, stride=1, pad_mode="same", has_bias=True,
                         weight_init=weight_init, bias_init=bias_init)
        self.conv3x3 = conv3x3(kernels, min_pixels=WINOGRAD_MIN_PIXELS)

    def construct(self, x: Tensor) -> Tensor:
        return self.conv3x3(x, self.weight, self.bias)
