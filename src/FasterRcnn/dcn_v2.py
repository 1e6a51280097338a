"""Modulated deformable 3x3 convolution, computing exactly what the original faster_rcnn_dcn layer computes.

The original layer (per output pixel (i, j), kernel tap (a, b), k = 3a + b, stride s, input H x W):

    out[:, i, j] = sum_k conv.weight[:, :, a, b] . sigmoid(m_k) * bilinear(x, clip(s*i + a + dy_k, 0, H-1),
                                                                        clip(s*j + b + dx_k, 0, W-1))

with dy = p_conv(x)[:, 0:9], dx = p_conv(x)[:, 9:18], m = m_conv(x) (both 3x3 pad-1 convs with the layer's
stride). Its sampling grid is the standard padded-conv grid (s*i - 1 + a) shifted by +1 pixel, and samples are
clamped into the map (edge replication, no zeros). `ops.deformable_conv2d` samples at s*i - 1 + a + offset with
zeros outside the map, so the layer hands it offsets that already contain the shift and the clamp; the clamped
position always lies inside the map and the two computations agree.
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops
from mindspore.common.initializer import HeNormal

from src.custom_ops import DeformConv2dOriginal

from .conv import conv3x3, winograd_for
from .gathered_ops import deform_conv2d_gathered
from .settings import Kernels

KERNEL_SIZE = 3
PADDING = KERNEL_SIZE // 2
NUM_TAPS = KERNEL_SIZE * KERNEL_SIZE
# Kernel row a and column b of tap k = 3a + b, shaped to broadcast over (N, 9, Ho, Wo).
_TAP_ROW = np.repeat(np.arange(KERNEL_SIZE), KERNEL_SIZE).reshape(1, NUM_TAPS, 1, 1).astype(np.float32)
_TAP_COL = np.tile(np.arange(KERNEL_SIZE), KERNEL_SIZE).reshape(1, NUM_TAPS, 1, 1).astype(np.float32)


def _clamped_offset(delta: Tensor, base: Tensor, size: int) -> Tensor:
    """Offset for `ops.deformable_conv2d` that makes it sample at clip(base + delta, 0, size - 1).

    delta: learned displacement (N, 9, Ho, Wo); base: s*i + a (rows) or s*j + b (columns), broadcastable to delta.
    `ops.deformable_conv2d` adds its own grid base - 1, hence the result is clip(base + delta) - (base - 1).
    The upper clamp is written as size - 1 - relu(size - 1 - v) so that a tap lying exactly on the last row/column
    gets zero gradient, as in the original (whose two bilinear corners coincide there); the lower clamp passes
    the gradient at the boundary, as the original's clip does.
    """
    low = ops.clamp(delta, min=-base)  # = max(base + delta, 0) - base
    return (size - base) - ops.relu((size - 1) - base - low)


def deform_conv2d_edge_clamped(x: Tensor, weight: Tensor, offset_mask: Tensor, stride: int) -> Tensor:
    """The original's deformable conv from raw offset/mask predictions.

    x: (N, C, H, W); weight: (O, C, 3, 3); offset_mask: (N, 27, Ho, Wo) = [dy (9), dx (9), mask logits (9)]
    (the original's channel order; Ho = ceil(H / stride)). Returns (N, O, Ho, Wo).
    Positions are formed in float32 (exact to well below a pixel at any map size) whatever x's dtype.
    """
    height, width = x.shape[2], x.shape[3]
    out_h, out_w = offset_mask.shape[2], offset_mask.shape[3]
    rows = ops.arange(0, out_h * stride, stride).reshape(1, 1, out_h, 1).astype(ms.float32) + Tensor(_TAP_ROW)
    cols = ops.arange(0, out_w * stride, stride).reshape(1, 1, 1, out_w).astype(ms.float32) + Tensor(_TAP_COL)
    dy, dx, mask_logits = ops.split(offset_mask.astype(ms.float32), NUM_TAPS, axis=1)
    # ops.deformable_conv2d wants (column offsets, row offsets, mask), tap k = 3a + b within each block.
    offsets = ops.concat((_clamped_offset(dx, cols, width), _clamped_offset(dy, rows, height),
                          ops.sigmoid(mask_logits)), axis=1).astype(x.dtype)
    return ops.deformable_conv2d(x, weight.astype(x.dtype), offsets, (KERNEL_SIZE, KERNEL_SIZE),
                                 (1, 1, stride, stride), (PADDING,) * 4)


class DeformConv2d(nn.Cell):
    """The original's modulated deformable 3x3 conv (no bias, one deformable group, edge-clamped sampling).

    Sub-cells `conv` (out, in, 3, 3), `p_conv` (18, in, 3, 3), `m_conv` (9, in, 3, 3) keep the original's
    parameter names. Input (N, in, H, W) -> (N, out, ceil(H / stride), ceil(W / stride)). Computed by the CPU
    kernel `DeformConv2dOriginal` with Kernels.CPU (3-7x faster there, bench_kernels.py), by gathers and a matmul
    with Kernels.GATHER (gathered_ops.py, the exported graph), else by `ops.deformable_conv2d`.
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
        self.offset_winograd = winograd_for(kernels, stride)
        self.cpu_deform = DeformConv2dOriginal(stride) if kernels is Kernels.CPU else None
        self.gathered = kernels is Kernels.GATHER

    def construct(self, x: Tensor, weight: Tensor | None = None) -> Tensor:
        """weight: used instead of conv.weight (a BatchNorm folded into it); offsets and mask come from x."""
        if weight is None:
            weight = self.conv.weight
        # One 27-channel conv instead of p_conv and m_conv separately: x is read once, forward and backward.
        offset_weight = ops.concat((self.p_conv.weight, self.m_conv.weight), axis=0).astype(x.dtype)
        offset_mask = conv3x3(x, offset_weight, None, self.offset_winograd, stride=self.stride)
        if self.cpu_deform is not None:
            return self.cpu_deform(x, offset_mask, weight)
        if self.gathered:
            return deform_conv2d_gathered(x, weight, offset_mask, self.stride, KERNEL_SIZE)
        return deform_conv2d_edge_clamped(x, weight, offset_mask, self.stride)

