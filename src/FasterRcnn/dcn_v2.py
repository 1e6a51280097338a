"""Modulated deformable 3x3 convolution, computing exactly what the original faster_rcnn_dcn layer computes.

The original layer (per output pixel (i, j), kernel tap (a, b), k = 3a + b, stride s, input H x W):

    out[:, i, j] = sum_k conv.weight[:, :, a, b] . sigmoid(m_k) * bilinear(x, clip(s*i + a + dy_k, 0, H-1),
                                                                        clip(s*j + b + dx_k, 0, W-1))

with dy = p_conv(x)[:, 0:9], dx = p_conv(x)[:, 9:18], m = m_conv(x) (both 3x3 pad-1 convs with the layer's
stride): the standard padded-conv grid (s*i - 1 + a) shifted by +1 pixel, samples clamped into the map (edge
replication, no zeros). The sampling and contraction are `src.ops.deform_conv`.
"""
from __future__ import annotations

from mindspore import Tensor, nn, ops
from mindspore.common.initializer import HeNormal

from src.ops import Kernels, conv3x3, deform_conv
from src.ops.deform_conv import KERNEL_SIZE, NUM_TAPS, PADDING


class DeformConv2d(nn.Cell):
    """The original's modulated deformable 3x3 conv (no bias, one deformable group, edge-clamped sampling).

    Sub-cells `conv` (out, in, 3, 3), `p_conv` (18, in, 3, 3), `m_conv` (9, in, 3, 3) keep the original's
    parameter names. Input (N, in, H, W) -> (N, out, ceil(H / stride), ceil(W / stride)), computed by
    `src.ops.deform_conv(kernels, stride)`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = KERNEL_SIZE, stride: int = 1,
                 padding: int = PADDING, *, kernels: Kernels):
        super().__init__()
        if kernel_size != KERNEL_SIZE or padding != PADDING:
            raise ValueError(f"DeformConv2d supports kernel_size={KERNEL_SIZE}, padding={PADDING} (the original's "
                             f"use), got kernel_size={kernel_size}, padding={padding}")
        self.stride = stride
        self.conv = nn.Conv2d(in_channels, out_channels, KERNEL_SIZE, stride=KERNEL_SIZE, pad_mode="valid",
                              has_bias=False, weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))
        # Zero offsets and mask logits: the layer starts as its plain (+1 px shifted) conv with mask 0.5.
        self.p_conv = nn.Conv2d(in_channels, 2 * NUM_TAPS, KERNEL_SIZE, stride=stride, pad_mode="pad",
                                padding=padding, has_bias=False, weight_init="zeros")
        self.m_conv = nn.Conv2d(in_channels, NUM_TAPS, KERNEL_SIZE, stride=stride, pad_mode="pad",
                                padding=padding, has_bias=False, weight_init="zeros")
        self.offset_conv = conv3x3(kernels, stride)
        self.deform = deform_conv(kernels, stride)

    def construct(self, x: Tensor, weight: Tensor | None = None) -> Tensor:
        """weight: used instead of conv.weight (a BatchNorm folded into it); offsets and mask come from x."""
        if weight is None:
            weight = self.conv.weight
        # One 27-channel conv instead of p_conv and m_conv separately: x is read once, forward and backward.
        offset_mask = self.offset_conv(x, ops.concat((self.p_conv.weight, self.m_conv.weight), axis=0).astype(x.dtype))
        return self.deform(x, offset_mask, weight)
