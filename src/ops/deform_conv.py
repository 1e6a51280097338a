"""The original's modulated deformable 3x3 convolution from its raw offset/mask predictions: `deform_conv(kernels,
stride)` returns a cell computing, per output pixel (i, j) and kernel tap (a, b), k = 3a + b, input H x W,

    out[:, i, j] = sum_k weight[:, :, a, b] . sigmoid(m_k) * bilinear(x, clip(s*i + a + dy_k, 0, H-1),
                                                                      clip(s*j + b + dx_k, 0, W-1))

construct(x (N, C, H, W), offset_mask (N, 27, Ho, Wo) = [dy (9), dx (9), mask logits (9)], weight (O, C, 3, 3))
    -> (N, O, Ho, Wo) in x's dtype, Ho = ceil(H / stride); positions formed in float32.

Kernels.CPU: the C++ kernel `DeformConv2dOriginal` (src/ops/cpu); Kernels.GATHER: gathers and a matmul
(src/ops/gathered.py, the exported graph); Kernels.MINDSPORE: `ops.deformable_conv2d`, below.
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from .cpu.deform_conv import DeformConv2dOriginal
from .gathered import deform_conv2d_gathered
from .kernels import Kernels

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
    """The original's deformable conv (module docstring) by `ops.deformable_conv2d`.

    That operator samples at s*i - 1 + a + offset with zeros outside the map (the standard padded-conv grid), the
    original at s*i + a + dy clamped into the map (edge replication): it is handed offsets that already contain the
    +1 pixel shift and the clamp, so the clamped position always lies inside the map and the two agree.
    x: (N, C, H, W); weight: (O, C, 3, 3); offset_mask: (N, 27, Ho, Wo). Returns (N, O, Ho, Wo).
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


class _MindSporeDeformConv(nn.Cell):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def construct(self, x: Tensor, offset_mask: Tensor, weight: Tensor) -> Tensor:
        return deform_conv2d_edge_clamped(x, weight, offset_mask, self.stride)


class _GatheredDeformConv(nn.Cell):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def construct(self, x: Tensor, offset_mask: Tensor, weight: Tensor) -> Tensor:
        return deform_conv2d_gathered(x, weight, offset_mask, self.stride, KERNEL_SIZE)


def deform_conv(kernels: Kernels, stride: int) -> nn.Cell:
    """The deformable 3x3 conv of this stride as a cell, construct(x, offset_mask, weight) (module docstring)."""
    if kernels is Kernels.CPU:
        return DeformConv2dOriginal(stride)
    if kernels is Kernels.GATHER:
        return _GatheredDeformConv(stride)
    return _MindSporeDeformConv(stride)
