"""Independent references of the original's multi-level RoIAlign, for tests/test_roi_align.py,
tests/test_custom_ops.py and bench/bench_kernels.py (nothing here imports the code under test).

- NumPy: MindSpore's CPU ROIAlign (roi_end_mode 1) written out tap by tap, in float32 positions as the kernel
  forms them, accumulated in float64; forward and gradient to the maps.
- `AllLevelsThenSelect`: the original extractor's computation in MindSpore ops (ROIAlign on every level, then
  each RoI's level selected).

RoIs are rows [batch_idx, x1, y1, x2, y2] in image pixels; the level of a RoI is
floor(log2(sqrt(x2 - x1 + 1) * sqrt(y2 - y1 + 1) / finest_scale + 1e-6)), clamped to the levels.
"""

from collections.abc import Sequence

import mindspore as ms
import numpy as np
from mindspore import nn, ops

LEVEL_EPS = 1e-6  # the original's offset inside the log2 of the level formula
SKIP_TOL = 1e-3  # MindSpore's kernel skips a RoI whose x1 and x2 both lie within this distance of 0


def roi_level(roi: np.ndarray, finest_scale: float, num_levels: int) -> int:
    """Level index (0 = the finest map) of one RoI, in float32 as the network computes it."""
    f32 = np.float32
    scale = np.sqrt(f32(roi[3] - roi[1]) + f32(1)) * np.sqrt(f32(roi[4] - roi[2]) + f32(1))
    level = np.floor(np.log(scale / f32(finest_scale) + f32(LEVEL_EPS)) / np.log(f32(2)))
    return int(np.clip(level, 0, num_levels - 1))


def roi_align_taps(roi: np.ndarray, scale: float, out_size: int, sample_num: int, height: int,
                   width: int) -> list[tuple[int, int, float]]:
    """Bilinear taps of one RoI on an H x W map with `scale` = 1 / stride: [(bin, flat pixel index, weight)],
    the weight already divided by the sample count; samples outside [-1, size] contribute nothing."""
    f32 = np.float32
    scale = f32(scale)
    start_w, start_h = f32(roi[1]) * scale, f32(roi[2]) * scale
    bin_w = ((f32(roi[3]) + f32(1)) * scale - start_w) / f32(out_size)
    bin_h = ((f32(roi[4]) + f32(1)) * scale - start_h) / f32(out_size)
    count = sample_num * sample_num
    taps = []
    for ph in range(out_size):
        for pw in range(out_size):
            for iy in range(sample_num):
                y = start_h + f32(ph) * bin_h + f32(iy + 0.5) * bin_h / f32(sample_num)
                for ix in range(sample_num):
                    x = start_w + f32(pw) * bin_w + f32(ix + 0.5) * bin_w / f32(sample_num)
                    if y < -1 or y > height or x < -1 or x > width:
                        continue
                    yc, xc = max(y, f32(0)), max(x, f32(0))
                    y0, x0 = int(np.floor(yc)), int(np.floor(xc))
                    if y0 >= height - 1:
                        y0 = y1 = height - 1
                        yc = f32(y0)
                    else:
                        y1 = y0 + 1
                    if x0 >= width - 1:
                        x0 = x1 = width - 1
                        xc = f32(x0)
                    else:
                        x1 = x0 + 1
                    ly, lx = float(yc - y0), float(xc - x0)
                    for (yy, xx), w in (((y0, x0), (1 - ly) * (1 - lx)), ((y0, x1), (1 - ly) * lx),
                                        ((y1, x0), ly * (1 - lx)), ((y1, x1), ly * lx)):
                        taps.append((ph * out_size + pw, yy * width + xx, w / count))
    return taps


def roi_align_one(feat: np.ndarray, roi: np.ndarray, scale: float, out_size: int, sample_num: int) -> np.ndarray:
    """One RoI pooled on one image's map feat (C, H, W) -> (C, out_size, out_size), float64 (no skip rule)."""
    channels, height, width = feat.shape
    plane = feat.reshape(channels, -1).astype(np.float64)
    out = np.zeros((channels, out_size * out_size))
    for bin_index, index, weight in roi_align_taps(roi, scale, out_size, sample_num, height, width):
        out[:, bin_index] += weight * plane[:, index]
    return out.reshape(channels, out_size, out_size)


def multi_level_roi_align(rois: np.ndarray, feats: Sequence[np.ndarray], strides: Sequence[int], out_size: int,
                          sample_num: int, finest_scale: float, dout: np.ndarray | None = None):
    """Each RoI (R, 5) pooled on its level of feats (one (B, C, H_l, W_l) map per stride).

    Returns the forward (R, C, out_size, out_size) and, given dout of that shape, the gradients to the maps
    (else zeros); float64. RoIs that MindSpore's kernel skips (x1 and x2 near 0) give zeros.
    """
    channels = feats[0].shape[1]
    out = np.zeros((len(rois), channels, out_size * out_size))
    grads = [np.zeros(f.shape) for f in feats]
    for r, roi in enumerate(rois):
        if abs(roi[1]) < SKIP_TOL and abs(roi[3]) < SKIP_TOL:
            continue
        level, batch = roi_level(roi, finest_scale, len(strides)), int(roi[0])
        _, _, height, width = feats[level].shape
        plane = feats[level][batch].reshape(channels, -1).astype(np.float64)
        for bin_index, index, weight in roi_align_taps(roi, 1.0 / strides[level], out_size, sample_num, height,
                                                       width):
            out[r, :, bin_index] += weight * plane[:, index]
            if dout is not None:
                grads[level][batch].reshape(channels, -1)[:, index] += weight * dout[r, :, bin_index // out_size,
                                                                                        bin_index % out_size]
    return out.reshape(len(rois), channels, out_size, out_size), grads


class AllLevelsThenSelect(nn.Cell):
    """The original extractor's computation: MindSpore's ROIAlign on every level, then each RoI's level kept.

    construct(rois (R, 5), feats tuple of (B, C, H_l, W_l)) -> (R, C, out_size, out_size) float32. A RoI that
    ROIAlign skips keeps whatever the kernel's output held there (compare only the others).
    """

    def __init__(self, out_size: int, sample_num: int, strides: Sequence[int], finest_scale: float):
        super().__init__()
        self.out_size = out_size
        self.num_levels = len(strides)
        self.finest_scale = finest_scale
        self.align = [ops.ROIAlign(out_size, out_size, 1.0 / s, sample_num) for s in strides]

    def construct(self, rois, feats):
        scale = ops.sqrt(rois[:, 3:4] - rois[:, 1:2] + 1) * ops.sqrt(rois[:, 4:5] - rois[:, 2:3] + 1)
        level = ops.floor(ops.log(scale / self.finest_scale + LEVEL_EPS) / ops.log(ops.full_like(scale, 2)))
        level = ops.clip(level.astype(ms.int32), 0, self.num_levels - 1).reshape(-1, 1, 1, 1)
        res = ops.zeros((rois.shape[0], feats[0].shape[1], self.out_size, self.out_size), ms.float32)
        for i in range(self.num_levels):
            pooled = self.align[i](feats[i], rois)
            res = ops.select(ops.broadcast_to(level == i, pooled.shape), pooled, res)
        return res
