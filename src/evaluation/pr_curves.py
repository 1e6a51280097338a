"""Precision against recall per class, from COCOeval's interpolated precision (eval.py's pr_curves.png).

The curves are COCOeval's own numbers (`eval["precision"]` at area "all", 100 detections per image, on its R = 101
recall points 0, 0.01, ..., 1), so a curve's mean is the class's AP in per_class.csv: at IoU 0.5 (AP50), and
averaged over the ten IoU thresholds 0.5:0.95 before the mean over recall (AP). Precision is 0 beyond the highest
recall the class reaches.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from pycocotools.cocoeval import COCOeval

from src.infra.fileio import atomic_path
from src.util import class_precision

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's params.recThrs
LEGEND_COLUMNS = 4  # at the most: 80 classes in 20 rows


def precision_recall_curves(evaluator: COCOeval | None, cat_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(at_50, mean), each (K, R) for the K model classes (category ids `cat_ids`) at the recall points
    RECALL_POINTS: the precision at IoU 0.5 and its mean over the IoU thresholds 0.5:0.95. NaN rows for a class
    without ground truth; zeros when nothing was detected (no evaluator)."""
    at_50 = np.zeros((len(cat_ids), len(RECALL_POINTS)))
    mean = np.zeros_like(at_50)
    for k, cat_id in enumerate(cat_ids):
        precision = class_precision(evaluator, cat_id)
        if precision is None:
            continue
        if np.all(precision == -1):
            at_50[k] = mean[k] = np.nan
            continue
        at_50[k] = precision[int(np.flatnonzero(np.isclose(evaluator.params.iouThrs, 0.5))[0])]
        mean[k] = precision.mean(axis=0)
    return at_50, mean


def draw_pr_curves(at_50: np.ndarray, mean: np.ndarray, class_names: Sequence[str], path: str,
                   has_ground_truth: Sequence[bool]) -> None:
    """Two panels (IoU 0.5; mean over IoU 0.5:0.95), one line per class with ground truth, and one legend below
    them giving each class's AP and AP50 (the means of its curves), best AP first; PNG written atomically."""
    shown = [k for k in range(len(class_names)) if has_ground_truth[k] and not np.isnan(at_50[k]).any()]
    shown.sort(key=lambda k: -mean[k].mean())
    columns = min(LEGEND_COLUMNS, max(-(-len(shown) // 5), 1))  # 1 column for up to 5 classes, 4 from 16
    rows = -(-len(shown) // columns) if shown else 1
    figure = Figure(figsize=(12.0, 5.0 + 0.2 * rows), dpi=110, layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    colors = _colors(len(shown))
    lines = []
    for axes, curves, title in ((panels[0], at_50, "IoU 0.5"), (panels[1], mean, "mean over IoU 0.5:0.95")):
        lines = [axes.plot(RECALL_POINTS, curves[k], color=colors[rank], linewidth=1.4, zorder=len(shown) - rank)[0]
                 for rank, k in enumerate(shown)]
        axes.set_xlim(0.0, 1.0)
        axes.set_ylim(0.0, 1.02)
        axes.set_xlabel("recall")
        axes.grid(True, alpha=0.3)
        axes.set_title(title, fontsize=10)
        if not shown:
            axes.text(0.5, 0.5, "no class has ground truth", ha="center", va="center", transform=axes.transAxes)
    panels[0].set_ylabel("precision (interpolated, area all, 100 detections per image)")
    if shown:
        labels = [f"{class_names[k]}: AP {mean[k].mean():.3f}, AP50 {at_50[k].mean():.3f}" for k in shown]
        figure.legend(lines, labels, loc="outside lower center", ncol=columns,
                      fontsize="small" if rows <= 10 else "x-small")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def _colors(count: int) -> list:
    """`count` distinguishable colours: tab10/tab20 while they last, then evenly along the turbo map."""
    from matplotlib import colormaps  # noqa: PLC0415 (the registry is only needed when drawing)

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["turbo"](v) for v in np.linspace(0.02, 0.98, count)]
