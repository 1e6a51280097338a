"""Which class a detector takes for which: the confusion matrix of its detections at one IoU and one score threshold
(eval.py's confusion_matrix.csv and confusion_matrix.png).

K model classes. The matrix (K + 1, K + 1) counts boxes: row = ground-truth class, column = predicted class, the
last row and column "background": [K, j] a detection of class j that matches no ground truth (a false positive),
[i, K] a ground-truth box of class i that no detection matches (a miss); [K, K] is empty (0).

Per image, among the detections scoring >= score_thr and the ground-truth boxes of the model's classes, each
detection and each box matched once at most (IoU as COCOeval's, on [x, y, w, h] boxes):
1. every class on its own, as COCOeval matches: the detections by descending score each take the unmatched box of
   their class with the highest IoU >= iou_thr (the diagonal: true positives);
2. the detections left, by descending score, take the unmatched box of another class with the highest IoU >= iou_thr
   (off the diagonal: one class taken for another);
3. a detection still left that lies on a crowd region of its class (intersection / detection area >= iou_thr) is
   not counted, as COCOeval ignores it; the others are false positives, and the boxes left are misses.
Crowd regions are never rows (they cannot be missed). mmdetection's tools/analysis_tools/confusion_matrix.py
instead counts a detection in the cell of every box it overlaps; here the counts add up: row i sums to the
class's ground-truth boxes, column j to its detections above the threshold (less the ignored ones).
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from src.infra.fileio import atomic_path, write_text_atomic

BACKGROUND = "background"
IOU_THRESHOLD = 0.5
MAX_ALL_CLASSES = 20  # up to this many classes the picture shows all; above, the classes that occur
CORNER = "ground_truth\\predicted"  # the CSV's top-left cell


def confusion_matrix(coco: COCO, records: Sequence[dict], cat_ids: Sequence[int], score_thr: float,
                     iou_thr: float = IOU_THRESHOLD) -> np.ndarray:
    """(K + 1, K + 1) int64 counts (see the module docstring) over every image of `coco`.

    records: COCO detection records ({image_id, category_id, bbox [x, y, w, h], score}, `det2json`'s); cat_ids: the
    category id of each model class 0..K-1 (`category_map`). Detections and boxes of other categories are left out.
    """
    index = {int(cat_id): k for k, cat_id in enumerate(cat_ids)}
    matrix = np.zeros((len(cat_ids) + 1, len(cat_ids) + 1), np.int64)
    by_image = defaultdict(list)
    for record in records:
        if record["score"] >= score_thr and int(record["category_id"]) in index:
            by_image[int(record["image_id"])].append(record)
    for image_id in coco.getImgIds():
        anns = [a for a in coco.imgToAnns.get(image_id, []) if int(a["category_id"]) in index]
        dets = sorted(by_image.get(image_id, []), key=lambda r: -r["score"])
        _count_image(matrix, [index[int(r["category_id"])] for r in dets], [r["bbox"] for r in dets],
                     [index[int(a["category_id"])] for a in anns], [a["bbox"] for a in anns],
                     [bool(a.get("iscrowd", 0)) for a in anns], iou_thr)
    return matrix


def _count_image(matrix: np.ndarray, det_cls: list[int], det_boxes: list, gt_cls: list[int], gt_boxes: list,
                 crowd: list[bool], iou_thr: float) -> None:
    """Add one image's matches to `matrix`; the detections come by descending score."""
    background = matrix.shape[0] - 1
    det_cls, gt_cls, crowd = np.asarray(det_cls, int), np.asarray(gt_cls, int), np.asarray(crowd, bool)
    if len(det_cls) and len(gt_cls):
        # (D, G); for a crowd column: intersection / detection area
        ious = np.asarray(mask_utils.iou(det_boxes, gt_boxes, crowd.astype(np.uint8).tolist()))
    else:
        ious = np.zeros((len(det_cls), len(gt_cls)))
    open_gt = ~crowd
    open_det = np.ones(len(det_cls), bool)
    for same_class in (True, False):
        for d in np.flatnonzero(open_det):
            fits = open_gt & ((gt_cls == det_cls[d]) == same_class) & (ious[d] >= iou_thr)
            if fits.any():
                g = int(np.argmax(np.where(fits, ious[d], -1.0)))
                matrix[gt_cls[g], det_cls[d]] += 1
                open_gt[g] = open_det[d] = False
    for d in np.flatnonzero(open_det):
        if not (crowd & (gt_cls == det_cls[d]) & (ious[d] >= iou_thr)).any():
            matrix[background, det_cls[d]] += 1
    for g in np.flatnonzero(open_gt):
        matrix[gt_cls[g], background] += 1


def summary_line(matrix: np.ndarray) -> str:
    """One line for the log: true positives, confusions, false positives and misses of `matrix`."""
    classes = matrix[:-1, :-1]
    return (f"{int(np.trace(classes))} true positives, {int(classes.sum() - np.trace(classes))} taken for another "
            f"class, {int(matrix[-1, :-1].sum())} false positives, {int(matrix[:-1, -1].sum())} missed")


def write_confusion_csv(matrix: np.ndarray, class_names: Sequence[str], path: str) -> None:
    """`matrix` as a CSV table, atomically: a header row (the corner cell, the predicted classes, background), then
    one row per ground-truth class and the background row (its last cell empty)."""
    names = [*class_names, BACKGROUND]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([CORNER, *names])
    for i, name in enumerate(names):
        cells = [str(int(v)) for v in matrix[i]]
        if i == len(names) - 1:
            cells[-1] = ""
        writer.writerow([name, *cells])
    write_text_atomic(path, text.getvalue())


def shown_classes(matrix: np.ndarray) -> np.ndarray:
    """Indices of the classes the picture shows: all of them up to MAX_ALL_CLASSES, else those with a count in
    their row or column."""
    classes = np.arange(matrix.shape[0] - 1)
    if len(classes) <= MAX_ALL_CLASSES:
        return classes
    return classes[(matrix[:-1].sum(axis=1) + matrix[:, :-1].sum(axis=0)) > 0]


def draw_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str, score_thr: float,
                          iou_thr: float = IOU_THRESHOLD) -> None:
    """The PNG of `matrix` (atomically): a cell's colour is its share of its row (of the ground-truth class's boxes;
    of all false positives on the background row), its text the count (none for 0)."""
    keep = np.append(shown_classes(matrix), matrix.shape[0] - 1)
    counts = matrix[np.ix_(keep, keep)]
    names = [*(class_names[k] for k in keep[:-1]), BACKGROUND]
    n = len(names)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = counts / counts.sum(axis=1, keepdims=True)
    share = np.nan_to_num(share)
    share[-1, -1] = np.nan  # not defined
    cell = 0.42 if n <= MAX_ALL_CLASSES + 1 else 0.26  # inches
    font = 9 if n <= MAX_ALL_CLASSES + 1 else 5.5
    side = max(cell * n, 3.0) + 2.2
    figure = Figure(figsize=(side + 1.0, side), dpi=110, layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, shrink=0.6, label="share of the row")
    for i in range(n):
        for j in range(n):
            if counts[i, j] and not (i == j == n - 1):
                axes.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=font,
                          color="white" if share[i, j] > 0.55 else "black").set_in_layout(False)
    axes.set_xticks(range(n), names, rotation=90, fontsize=font)
    axes.set_yticks(range(n), names, fontsize=font)
    axes.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    axes.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    axes.grid(which="minor", color="0.85", linewidth=0.5)
    axes.tick_params(which="minor", length=0)
    axes.set_xlabel("predicted class (background: missed ground truth)")
    axes.set_ylabel("ground-truth class (background: false positives)")
    hidden = matrix.shape[0] - n
    axes.set_title(f"boxes matched at IoU >= {iou_thr:g}, detections scoring >= {score_thr:g}"
                   + (f"\n({hidden} classes without boxes or detections not shown)" if hidden else ""),
                   fontsize=10)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
