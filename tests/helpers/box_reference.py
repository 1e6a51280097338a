"""NumPy references of the original's box maths, the reference of every box-side test: IoU (the legacy "+1" pixel
areas, or exact areas as NMSWithMask), encode / decode (BoundingBoxEncode / Decode with the "+1" widths), greedy NMS
without "+1", the inside-the-image check and the original's assignment rule (its per-gt loop, literally). Nothing here
imports the code under test.
"""
import numpy as np


def np_iou(boxes: np.ndarray, gts: np.ndarray, plus_one: bool = True, dtype=np.float32) -> np.ndarray:
    """(G, N) IoU of gts (G, 4) with boxes (N, 4) [x1, y1, x2, y2]: with `plus_one` the original's pixel areas
    ((x2 - x1 + 1) * (y2 - y1 + 1): BboxAssign, IoU), else exact areas (NMSWithMask, matching detections). In `dtype`
    arithmetic (None: the arrays' own); an empty union gives 0 without "+1" (only zero-area boxes have one)."""
    b = boxes if dtype is None else boxes.astype(dtype)
    g = gts if dtype is None else gts.astype(dtype)
    one = np.asarray(1, b.dtype) if plus_one else 0
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    area_g = (g[:, 2] - g[:, 0] + one) * (g[:, 3] - g[:, 1] + one)
    iw = np.maximum(np.minimum(g[:, None, 2], b[None, :, 2]) - np.maximum(g[:, None, 0], b[None, :, 0]) + one, 0)
    ih = np.maximum(np.minimum(g[:, None, 3], b[None, :, 3]) - np.maximum(g[:, None, 1], b[None, :, 1]) + one, 0)
    inter = iw * ih
    union = area_g[:, None] + area_b[None, :] - inter
    return inter / (union if plus_one else np.maximum(union, 1e-12))


def np_encode(boxes, gts, means=(0, 0, 0, 0), stds=(1, 1, 1, 1)) -> np.ndarray:
    p = boxes.astype(np.float64)
    g = gts.astype(np.float64)
    pw, ph = p[:, 2] - p[:, 0] + 1, p[:, 3] - p[:, 1] + 1
    gw, gh = g[:, 2] - g[:, 0] + 1, g[:, 3] - g[:, 1] + 1
    dx = ((g[:, 0] + g[:, 2]) - (p[:, 0] + p[:, 2])) * 0.5 / pw
    dy = ((g[:, 1] + g[:, 3]) - (p[:, 1] + p[:, 3])) * 0.5 / ph
    d = np.stack([dx, dy, np.log(gw / pw), np.log(gh / ph)], 1)
    return (d - np.asarray(means)) / np.asarray(stds)


def np_decode(boxes, deltas, max_shape, means=(0, 0, 0, 0), stds=(1, 1, 1, 1), wh_ratio_clip=0.016):
    p = boxes.astype(np.float64)
    d = deltas.astype(np.float64) * np.asarray(stds) + np.asarray(means)
    limit = abs(np.log(wh_ratio_clip))
    dw, dh = np.clip(d[:, 2], -limit, limit), np.clip(d[:, 3], -limit, limit)
    pw, ph = p[:, 2] - p[:, 0] + 1, p[:, 3] - p[:, 1] + 1
    cx = (p[:, 0] + p[:, 2]) * 0.5 + pw * d[:, 0]
    cy = (p[:, 1] + p[:, 3]) * 0.5 + ph * d[:, 1]
    w, h = pw * np.exp(dw), ph * np.exp(dh)
    height, width = max_shape
    return np.stack([np.clip(cx - 0.5 * w + 0.5, 0, width), np.clip(cy - 0.5 * h + 0.5, 0, height),
                     np.clip(cx + 0.5 * w - 0.5, 0, width), np.clip(cy + 0.5 * h - 0.5, 0, height)], 1)


def np_nms_keep(dets: np.ndarray, thr: float) -> np.ndarray:
    """Exact greedy NMS on score-sorted dets (K, 5); IoU without "+1", drop iff IoU > thr. Keep mask (K,)."""
    d = dets.astype(np.float32)
    keep = np.zeros(len(d), bool)
    dropped = np.zeros(len(d), bool)
    for i in range(len(d)):
        if dropped[i]:
            continue
        keep[i] = True
        dropped[i + 1:] |= np_iou(d[i + 1:, :4], d[i:i + 1, :4], plus_one=False)[0] > np.float32(thr)
    return keep


def ref_assign(gts, gt_valids, boxes, valid, pos_iou_thr, neg_iou_thr, min_pos_iou):
    """The original's assignment, step by step (with its loop over gts): -1 ignore, 0 negative, j + 1 gt j."""
    gts = np.where(gt_valids[:, None], gts, -1.0).astype(np.float32)
    boxes = np.where(valid[:, None], boxes, -2.0).astype(np.float32)
    overlaps = np_iou(boxes, gts)
    best_iou, best_gt = overlaps.max(0), overlaps.argmax(0)
    gt_max = overlaps.max(1)
    assigned = np.full(len(boxes), -1, np.int64)
    assigned[(best_iou >= 0) & (best_iou < neg_iou_thr)] = 0
    assigned[best_iou >= pos_iou_thr] = best_gt[best_iou >= pos_iou_thr] + 1
    for j in range(len(gts)):
        if gt_max[j] >= min_pos_iou:
            assigned[overlaps[j] == gt_max[j]] = j + 1
    assigned[~valid] = -1
    return assigned


def np_inside(boxes, height, width):
    return (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= width - 1) & (boxes[:, 3] <= height - 1)
