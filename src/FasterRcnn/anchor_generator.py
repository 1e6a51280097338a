"""Anchors of every FPN level, in the legacy ("+1" pixel) box convention of the original.

A box (x1, y1, x2, y2) covers the pixels x1..x2 inclusive, so its width is x2 - x1 + 1. Base anchors are centred
on ((s - 1) / 2, (s - 1) / 2) for a base size s and rounded to whole pixels; the grid shifts them by
(x * stride, y * stride) with no half-stride offset. Anchors are computed once, in NumPy.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .settings import AnchorSettings


class AnchorGenerator:
    """Anchors of one feature level.

    Args:
        base_size: side of the square reference box (the level's stride).
        scales: anchor side multipliers (e.g. [8]).
        ratios: height / width ratios (e.g. [0.5, 1.0, 2.0]; 0.5 gives a wide box).

    `base_anchors` (A, 4) float64 are ordered ratio-major, scale-minor (A = len(ratios) * len(scales)).
    """

    def __init__(self, base_size: float, scales: Sequence[float], ratios: Sequence[float]):
        self.base_size = base_size
        self.scales = np.asarray(scales, dtype=np.float64)
        self.ratios = np.asarray(ratios, dtype=np.float64)
        self.base_anchors = self._base_anchors()

    @property
    def num_base_anchors(self) -> int:
        return self.base_anchors.shape[0]

    def _base_anchors(self) -> np.ndarray:
        centre = 0.5 * (self.base_size - 1)
        h_ratios = np.sqrt(self.ratios)
        w_ratios = 1.0 / h_ratios
        widths = (self.base_size * w_ratios[:, None] * self.scales[None, :]).reshape(-1)
        heights = (self.base_size * h_ratios[:, None] * self.scales[None, :]).reshape(-1)
        half_w = 0.5 * (widths - 1)
        half_h = 0.5 * (heights - 1)
        boxes = np.stack([centre - half_w, centre - half_h, centre + half_w, centre + half_h], axis=-1)
        return np.round(boxes)

    def grid_anchors(self, featmap_size: Sequence[int], stride: int) -> np.ndarray:
        """Anchors of a (h, w) map: (h * w * A, 4) float32, index = (y * w + x) * A + a."""
        feat_h, feat_w = featmap_size
        shift_x = np.arange(feat_w, dtype=np.float64) * stride
        shift_y = np.arange(feat_h, dtype=np.float64) * stride
        xx, yy = np.meshgrid(shift_x, shift_y)  # (h, w) each, x fastest when flattened
        shifts = np.stack([xx, yy, xx, yy], axis=-1).reshape(-1, 1, 4)
        anchors = shifts + self.base_anchors[None, :, :]
        return anchors.reshape(-1, 4).astype(np.float32)


def multi_level_anchors(settings: AnchorSettings) -> tuple[np.ndarray, ...]:
    """One (h_l * w_l * A, 4) float32 array per level (base size = the level's stride)."""
    strides, shapes = settings.strides, settings.feature_shapes
    if len(strides) != len(shapes):
        raise ValueError(f"anchors: {len(strides)} strides but {len(shapes)} feature_shapes")
    anchors = []
    for stride, shape in zip(strides, shapes, strict=True):
        generator = AnchorGenerator(stride, settings.scales, settings.ratios)
        if generator.num_base_anchors != settings.num_anchors:
            raise ValueError(f"anchors: num_anchors={settings.num_anchors} but scales x ratios give "
                             f"{generator.num_base_anchors} anchors per position")
        anchors.append(generator.grid_anchors(shape, stride))
    return tuple(anchors)
