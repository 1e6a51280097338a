"""Box maths shared by the RPN, the proposal generator, both assigners and the test-time decode.

Boxes are (x1, y1, x2, y2) in pixels, float32, in the legacy convention of the original: a box covers pixels x1..x2
inclusive, so width = x2 - x1 + 1. Every function wraps the MindSpore operator the original uses; what those
operators compute on this MindSpore build is pinned by tests/test_box_ops.py against NumPy:

- IoU: areas and intersection with "+1", intersection clamped at 0 per side.
- encode: centre (x1 + x2) / 2, size x2 - x1 + 1; deltas (dx, dy, dw, dh) = ((g - p) / p_size, log(g_size / p_size)),
  then (delta - mean) / std.
- decode: inverse of encode with dw, dh clamped to |log(wh_ratio_clip)|; x1 = cx - w/2 + 0.5, x2 = cx + w/2 - 0.5;
  x clipped to [0, max_w] and y to [0, max_h] (the canvas size itself, not size - 1).
- inside: x1 >= 0, y1 >= 0, x2 <= w * ratio - 1, y2 <= h * ratio - 1 for img_meta (h, w, ratio).

NMS is `src.ops.nms.nms_with_mask`.
"""
from __future__ import annotations

from collections.abc import Sequence

from mindspore import Tensor, ops

# The original's (and MindSpore's) default limit on the decoded size change: |dw|, |dh| <= |log(0.016)|.
DEFAULT_WH_RATIO_CLIP = 0.016


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    # The operators reject ints (a yaml list may say [0, 0, 0, 0]).
    return tuple(float(v) for v in values)


def box_iou(boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """IoU of every gt with every box, "+1" areas: boxes (N, 4), gt_boxes (G, 4) -> (G, N) float32."""
    return ops.iou(boxes, gt_boxes)


def encode_boxes(boxes: Tensor, gt_boxes: Tensor, means: Sequence[float], stds: Sequence[float]) -> Tensor:
    """Regression targets taking boxes (N, 4) to gt_boxes (N, 4): (N, 4) (dx, dy, dw, dh), normalised."""
    return ops.bounding_box_encode(boxes, gt_boxes, _floats(means), _floats(stds))


def decode_boxes(boxes: Tensor, deltas: Tensor, max_shape: Sequence[int], means: Sequence[float],
                 stds: Sequence[float], wh_ratio_clip: float = DEFAULT_WH_RATIO_CLIP) -> Tensor:
    """Apply deltas (N, 4) to boxes (N, 4); result clipped to the canvas max_shape = (height, width): (N, 4)."""
    return ops.bounding_box_decode(boxes, deltas, tuple(max_shape), _floats(means), _floats(stds),
                                   float(wh_ratio_clip))


def boxes_inside(boxes: Tensor, img_meta: Tensor) -> Tensor:
    """Which boxes (N, 4) lie fully inside the image of img_meta (3,) = (h, w, ratio): (N,) bool."""
    return ops.check_valid(boxes, img_meta)
