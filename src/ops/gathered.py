"""The deformable convolution's sampling and the multi-level RoIAlign in standard MindSpore operators, for the
exported graph (Kernels.GATHER): the bilinear samples read rows of a channels-last copy of the maps (Gather), so the
work is contiguous runs over channels, and their weights are applied by batched matmuls (per DCN sample its four
corners; per RoI the separable row and column weights of ROIAlign); the graph references no machine-local library.
Only export.py builds it; the arithmetic is the CPU kernels' (src/ops/cpu/*.cc), which is the original's on
MindSpore's operators (src/ops/deform_conv.py, roi_align.py). Index tables are NumPy constants and no integer `%` or
LogicalNot is used: MindSpore's ONNX exporter converts every operator here, so export.py's ONNX file is this graph.
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Tensor, ops

CORNERS = 4
# ROIAlign's rules (MindSpore's CPU kernel): a RoI with |x1| and |x2| below SKIP_TOL is not pooled (zeros here);
# a sample outside [-1, H] x [-1, W] contributes 0; the batch index is rounded after adding INDEX_EPS.
SKIP_TOL = 0.001
INDEX_EPS = 0.00007


def _channels_last_rows(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N * H * W, C): row n * H * W + y * W + x holds the channels of pixel (y, x) of image n."""
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def _edge_clamped_axis(position: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """(low index, high index, fraction) of positions clipped into [0, size - 1], high = min(low + 1, size - 1)."""
    clipped = ops.clamp(position, 0.0, float(size - 1))
    low = ops.floor(clipped)
    return low.astype(ms.int32), ops.minimum(low + 1.0, float(size - 1)).astype(ms.int32), clipped - low


def deform_conv2d_gathered(x: Tensor, weight: Tensor, offset_mask: Tensor, stride: int, kernel_size: int) -> Tensor:
    """The original's modulated deformable conv (see deform_conv.py): tap k = K a + b of output pixel (i, j) samples x
    at row clip(s i + a + dy_k, 0, H-1), column clip(s j + b + dx_k, 0, W-1), times sigmoid(m_k).

    x: (N, C, H, W); weight: (O, C, K, K); offset_mask: (N, 3 K^2, Ho, Wo) = [dy, dx, mask logits].
    Returns (N, O, Ho, Wo) in x's dtype; positions in float32.
    """
    n, channels, height, width = x.shape
    taps = kernel_size * kernel_size
    out_h, out_w = offset_mask.shape[2], offset_mask.shape[3]
    tap = np.arange(taps)
    tap_row = Tensor((tap // kernel_size).astype(np.float32).reshape(1, 1, 1, taps))
    tap_col = Tensor((tap % kernel_size).astype(np.float32).reshape(1, 1, 1, taps))
    # (N, Ho, Wo, K^2): output pixels first, then taps, the order of the im2col rows below
    dy, dx, logits = ops.split(offset_mask.astype(ms.float32).transpose(0, 2, 3, 1), taps, axis=-1)
    rows = ops.arange(0, out_h * stride, stride).astype(ms.float32).reshape(1, out_h, 1, 1) + tap_row
    cols = ops.arange(0, out_w * stride, stride).astype(ms.float32).reshape(1, 1, out_w, 1) + tap_col
    r0, r1, fy = _edge_clamped_axis(rows + dy, height)
    c0, c1, fx = _edge_clamped_axis(cols + dx, width)
    image = (ops.arange(n, dtype=ms.int32) * (height * width)).reshape(n, 1, 1, 1, 1)
    index = ops.stack((r0 * width + c0, r0 * width + c1, r1 * width + c0, r1 * width + c1), axis=-1)
    mask = ops.sigmoid(logits)
    gy, gx = 1.0 - fy, 1.0 - fx
    corner_weight = ops.stack((gy * gx, gy * fx, fy * gx, fy * fx), axis=-1) * mask.expand_dims(-1)
    # (N Ho Wo K^2) samples: their 4 corner rows gathered, blended by a batched (1 x 4) @ (4 x C) product
    samples = n * out_h * out_w * taps
    corners = ops.gather(_channels_last_rows(x), (index + image).reshape(-1), 0)
    columns = ops.bmm(corner_weight.astype(x.dtype).reshape(samples, 1, CORNERS),
                      corners.reshape(samples, CORNERS, channels))
    kernel = weight.astype(x.dtype).transpose(0, 2, 3, 1).reshape(weight.shape[0], taps * channels)
    out = ops.matmul(columns.reshape(n * out_h * out_w, taps * channels), kernel.T)
    return out.reshape(n, out_h, out_w, -1).transpose(0, 3, 1, 2)


def _roi_align_axis(position: Tensor, size: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MindSpore ROIAlign's bilinear rule along one axis, per sample: (valid, low, high, fraction).

    position (R, S) float32, size (R, 1) float32 (the RoI's level extent). Valid inside [-1, size]; negative
    positions clamp to 0; at or beyond the last row both corners are the last row with fraction 0.
    """
    valid = ops.logical_and(position >= -1.0, position <= size)
    position = ops.maximum(position, 0.0)
    low = ops.floor(position)
    last = size - 1.0
    at_end = low >= last
    low = ops.where(at_end, ops.broadcast_to(last, low.shape), low)
    fraction = ops.where(at_end, ops.zeros_like(position), position - low)
    high = ops.where(at_end, low, low + 1.0)
    return valid, low.astype(ms.int32), high.astype(ms.int32), fraction


def _bin_weights(position: Tensor, size: Tensor, out_size: int, sample_num: int, keep: Tensor):
    """One axis of ROIAlign as a matrix: (the 2 S pixel indices the samples read, S = out_size * sample_num,
    low and high corner of each sample; (R, 2 S) int32) and (R, out_size, 2 S) float32, the weight of each of
    them in each bin (bilinear weight / sample_num; 0 for invalid samples, and for RoIs whose `keep` is 0)."""
    valid, low, high, fraction = _roi_align_axis(position, size)
    num_rois, samples = position.shape
    pixels = ops.stack((low, high), axis=-1).reshape(num_rois, 2 * samples)
    share = valid.astype(ms.float32) * keep / sample_num
    corner = ops.stack(((1.0 - fraction) * share, fraction * share), axis=-1).reshape(num_rois, 1, 2 * samples)
    in_bin = np.arange(2 * samples).reshape(1, 1, -1) // (2 * sample_num) == np.arange(out_size).reshape(1, -1, 1)
    return pixels, corner * Tensor(in_bin.astype(np.float32))


def multi_level_roi_align_gathered(rois: Tensor, feats: tuple, levels: Tensor, strides: tuple, out_size: int,
                                   sample_num: int) -> Tensor:
    """Each RoI pooled by ROIAlign (roi_end_mode 1, sample_num x sample_num samples per bin) on its level only.

    rois: (R, 5) float32 [batch, x1, y1, x2, y2] (input pixels); feats: one (B, C, H_l, W_l) map per level;
    levels: (R,) int32 level of each RoI. Returns (R, C, out_size, out_size) in the maps' dtype; a RoI that
    ROIAlign skips (|x1|, |x2| < 0.001) gets zeros.

    Bilinear sampling and the bin average are separable: bins = Wy @ F @ Wx^T with F the (2 S, 2 S) pixels the
    samples' corners read (gathered once per RoI) and Wy, Wx (out_size, 2 S) per RoI, two batched matmuls.
    """
    batch, channels = feats[0].shape[0], feats[0].shape[1]
    rows, start = [], 0
    for level, feat in enumerate(feats):
        rows.append([1.0 / strides[level], feat.shape[2], feat.shape[3], start])
        start += batch * feat.shape[2] * feat.shape[3]
    level_table = Tensor(rows, ms.float32)
    scale, height, width, start = ops.split(ops.gather(level_table, levels, 0), 1, axis=1)  # each (R, 1)
    image = ops.floor(rois[:, :1] + INDEX_EPS + 0.5)  # rint for the non-negative indices
    base = (start + image * height * width).astype(ms.int32)  # (R, 1): the RoI's map in the stacked table
    skip = ops.logical_and(ops.abs(rois[:, 1:2]) < SKIP_TOL, ops.abs(rois[:, 3:4]) < SKIP_TOL)
    keep = 1.0 - skip.astype(ms.float32)

    sample = np.arange(out_size * sample_num).reshape(1, -1)
    steps = Tensor((sample // sample_num).astype(np.float32))
    within = Tensor((sample % sample_num).astype(np.float32) + 0.5)

    def sample_positions(low: Tensor, high: Tensor) -> Tensor:
        begin = low * scale
        bin_size = ((high + 1.0) * scale - begin) / out_size
        return begin + steps * bin_size + within * bin_size / sample_num  # (R, S)

    row_pixels, row_weights = _bin_weights(sample_positions(rois[:, 2:3], rois[:, 4:5]), height, out_size,
                                           sample_num, keep)
    col_pixels, col_weights = _bin_weights(sample_positions(rois[:, 1:2], rois[:, 3:4]), width, out_size,
                                           sample_num, ops.ones_like(keep))
    index = (base + row_pixels * width.astype(ms.int32)).expand_dims(-1) + col_pixels.expand_dims(1)  # (R, 2S, 2S)
    table = ops.concat([_channels_last_rows(f) for f in feats], axis=0)
    num_rois, span = index.shape[0], index.shape[1]
    pixels = ops.gather(table, index.reshape(-1), 0).reshape(num_rois, span, span * channels)
    dtype = table.dtype
    by_rows = ops.bmm(row_weights.astype(dtype), pixels)  # (R, row bin, 2S * C)
    # then per (RoI, row bin): (col bin, 2S) @ (2S, C)
    col_weights = ops.broadcast_to(col_weights.expand_dims(1), (num_rois, out_size, out_size, span))
    pooled = ops.bmm(col_weights.reshape(-1, out_size, span).astype(dtype),
                     by_rows.reshape(num_rois * out_size, span, channels))
    return pooled.reshape(num_rois, out_size, out_size, channels).transpose(0, 3, 1, 2)  # (R, C, row bin, col bin)
