"""How well the RPN's anchors fit a training set's boxes, and which anchor_scales or image size would fit better.

Shorthand: n boxes; a box (x1, y1, x2, y2) on the network's canvas (after the training chain's resize,
`src/data/transforms.py` `resize_boxes`), in the anchors' "+1" pixel convention (src/FasterRcnn/anchor_generator.py).

A gt box is covered as the RPN assigner (src/FasterRcnn/bbox_assign_sample.py) sees it: its best IoU over every
anchor of every level that lies inside the canvas either reaches pos_iou_thr (anchors become positives by IoU), or
only min_pos_iou (the gt's best anchors become positives by the low-quality match), or neither (the gt trains no
anchor). The best IoU is exact without the full grid: along each axis the overlap of an anchor with a box only falls
as the anchor's centre moves away from the box's, so for each level and anchor shape the best valid grid position
is the one nearest to the box's centre (of the two around it), clipped to the positions inside the canvas.

Suggestions (when fewer than COVERAGE_TARGET of the boxes reach pos_iou_thr) are found by evaluating candidates
with the same function: sets of up to MAX_SCALES anchor_scales from SCALE_CANDIDATES, and canvases of the same
shape scaled by CANVAS_FACTORS (multiples of 32).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from src.data.transforms import PreprocessSettings, resize_boxes
from src.FasterRcnn.anchor_generator import AnchorGenerator

COVERAGE_TARGET = 0.8  # share of boxes whose best anchor should reach pos_iou_thr
# about four per octave (a box between two anchor sides a and 2a reaches IoU 0.7 with neither when its side is
# near a * sqrt(2)), from an anchor of 1 stride to 32 strides
SCALE_CANDIDATES = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0,
                    24.0, 28.0, 32.0)
MAX_SCALES = 3  # anchor_scales suggested hold at most this many values (num_anchors = 3 x that with 3 ratios)
CANVAS_FACTORS = (0.5, 0.625, 0.75, 0.875, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)  # candidate canvas / current canvas
SIZE_MULTIPLE = 32  # img_height and img_width must divide by it (src/model_utils/config.py)
SEARCH_BOXES = 20000  # at most this many boxes (an even sample) evaluate the candidates; the result, every box
PERCENTILES = (5, 25, 50, 75, 95)
HISTOGRAM_EDGES = (0, 8, 16, 32, 64, 128, 256, 512)  # px, sqrt(w * h): bin k is [edge k, edge k + 1), the last open
BAR_WIDTH = 30  # characters of the histogram's longest bar
CHUNK = 65536  # boxes per vectorised step


@dataclass(frozen=True)
class FitSettings:
    """What the fit depends on: the canvas (img_height x img_width, keep_ratio), the anchors (anchor_strides,
    anchor_scales, anchor_ratios) and the RPN assigner's thresholds."""

    canvas_h: int = 768
    canvas_w: int = 1280
    keep_ratio: bool = True
    strides: tuple[int, ...] = (4, 8, 16, 32, 64)
    scales: tuple[float, ...] = (8.0,)
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    pos_iou_thr: float = 0.7
    min_pos_iou: float = 0.3

    @classmethod
    def from_config(cls, cfg) -> FitSettings:
        return cls(canvas_h=int(cfg.img_height), canvas_w=int(cfg.img_width), keep_ratio=bool(cfg.keep_ratio),
                   strides=tuple(int(s) for s in cfg.anchor_strides),
                   scales=tuple(float(s) for s in cfg.anchor_scales),
                   ratios=tuple(float(r) for r in cfg.anchor_ratios),
                   pos_iou_thr=float(cfg.pos_iou_thr), min_pos_iou=float(cfg.min_pos_iou))

    def feature_shape(self, stride: int) -> tuple[int, int]:
        """(h, w) of the level of `stride`, as the config derives feature_shapes."""
        return math.ceil(self.canvas_h / stride), math.ceil(self.canvas_w / stride)


@dataclass(frozen=True)
class ImageBoxes:
    """One training image: its size (pixels, as stored in the MindRecord) and its non-crowd boxes (k, 4)."""

    height: int
    width: int
    boxes: np.ndarray


@dataclass(frozen=True)
class Coverage:
    """How many of `total` boxes reach pos_iou_thr, only min_pos_iou (low-quality match), or neither."""

    total: int
    positive: int
    low_quality: int
    neither: int

    @property
    def share(self) -> float:
        """The share reaching pos_iou_thr (0 without boxes)."""
        return self.positive / self.total if self.total else 0.0

    def shares(self) -> tuple[float, float, float]:
        total = max(self.total, 1)
        return self.positive / total, self.low_quality / total, self.neither / total


@dataclass(frozen=True)
class Suggestion:
    """Settings that differ from the current ones and the coverage they give."""

    settings: FitSettings
    coverage: Coverage


# ---------------------------------------------------------------------------------------------------------------
# Boxes and coverage
def network_boxes(images: Sequence[ImageBoxes], settings: FitSettings) -> np.ndarray:
    """Every image's boxes on the canvas, as the training chain's resize leaves them: (n, 4) float32."""
    preprocess = PreprocessSettings(settings.canvas_h, settings.canvas_w, settings.keep_ratio, 0.0, 0.0, 0)
    resized = [resize_boxes(image.boxes.astype(np.float64), image.height, image.width, preprocess)
               for image in images if len(image.boxes)]
    return np.concatenate(resized).astype(np.float32) if resized else np.zeros((0, 4), np.float32)


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise IoU ("+1" areas, float32) of boxes a (..., 4) and b (..., 4)."""
    one = np.float32(1)
    iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + one, 0)
    ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + one, 0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + one) * (a[..., 3] - a[..., 1] + one)
    area_b = (b[..., 2] - b[..., 0] + one) * (b[..., 3] - b[..., 1] + one)
    return inter / (area_a + area_b - inter)


def _nearest_positions(box_lo: np.ndarray, box_hi: np.ndarray, anchor_lo: float, anchor_hi: float, stride: int,
                       count: int, limit: int) -> np.ndarray | None:
    """Along one axis: the two grid indices around the best alignment of an anchor [anchor_lo, anchor_hi] (at
    index 0) with boxes [box_lo, box_hi] (n,), clipped to the indices whose anchor lies inside [0, limit - 1];
    (n, 2) int, or None when no index does."""
    first = max(math.ceil(-anchor_lo / stride), 0)
    last = min(math.floor((limit - 1 - anchor_hi) / stride), count - 1)
    if first > last:
        return None
    centre = ((box_lo + box_hi) - (anchor_lo + anchor_hi)) / (2.0 * stride)
    return np.clip(np.stack([np.floor(centre), np.ceil(centre)], axis=1), first, last).astype(np.int64)


def best_anchor_iou(boxes: np.ndarray, settings: FitSettings) -> np.ndarray:
    """Each box's best IoU over the anchors of every level that lie inside the canvas (the RPN's valid anchors):
    boxes (n, 4) on the canvas -> (n,) float32."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    best = np.zeros(len(boxes), np.float32)
    for stride in settings.strides:
        feat_h, feat_w = settings.feature_shape(stride)
        base = AnchorGenerator(stride, settings.scales, settings.ratios).base_anchors
        for x1, y1, x2, y2 in base:
            for start in range(0, len(boxes), CHUNK):
                part = boxes[start:start + CHUNK]
                xs = _nearest_positions(part[:, 0], part[:, 2], x1, x2, stride, feat_w, settings.canvas_w)
                ys = _nearest_positions(part[:, 1], part[:, 3], y1, y2, stride, feat_h, settings.canvas_h)
                if xs is None or ys is None:
                    continue
                sx = (xs * stride).astype(np.float32)[:, :, None]  # (n, 2, 1)
                sy = (ys * stride).astype(np.float32)[:, None, :]  # (n, 1, 2)
                candidates = np.stack(np.broadcast_arrays(x1 + sx, y1 + sy, x2 + sx, y2 + sy), axis=-1)
                iou = _pair_iou(candidates.astype(np.float32), part[:, None, None, :]).reshape(len(part), -1)
                best[start:start + CHUNK] = np.maximum(best[start:start + CHUNK], iou.max(axis=1))
    return best


def coverage_of(best_iou: np.ndarray, settings: FitSettings) -> Coverage:
    """Counts of best IoUs (n,) reaching pos_iou_thr, only min_pos_iou, or neither."""
    positive = int(np.count_nonzero(best_iou >= settings.pos_iou_thr))
    reached = int(np.count_nonzero(best_iou >= min(settings.min_pos_iou, settings.pos_iou_thr)))
    return Coverage(len(best_iou), positive, reached - positive, len(best_iou) - reached)


def coverage(images: Sequence[ImageBoxes], settings: FitSettings) -> Coverage:
    """The coverage of the images' boxes by the anchors of `settings`."""
    return coverage_of(best_anchor_iou(network_boxes(images, settings), settings), settings)


# ---------------------------------------------------------------------------------------------------------------
# Suggestions
def _search_sample(images: Sequence[ImageBoxes]) -> list[ImageBoxes]:
    """Every image when they hold at most SEARCH_BOXES boxes, else an even sample of images holding about that
    many."""
    total = sum(len(image.boxes) for image in images)
    if total <= SEARCH_BOXES:
        return list(images)
    step = total / SEARCH_BOXES
    return [image for i, image in enumerate(images) if int(i / step) != int((i + 1) / step)]


def suggest_scales(images: Sequence[ImageBoxes], settings: FitSettings) -> Suggestion | None:
    """The anchor_scales (at most MAX_SCALES values of SCALE_CANDIDATES) with the fewest values whose coverage
    reaches COVERAGE_TARGET (the best coverage among those), else the best set found; None without boxes."""
    sample = network_boxes(_search_sample(images), settings)
    if not len(sample):
        return None
    per_scale = np.stack([best_anchor_iou(sample, replace(settings, scales=(scale,)))
                          for scale in SCALE_CANDIDATES], axis=1)  # (n, C): a scale set's best = the max
    best_key, best_scales = None, None
    for size in range(1, MAX_SCALES + 1):
        for chosen in itertools.combinations(range(len(SCALE_CANDIDATES)), size):
            share = float(np.mean(per_scale[:, chosen].max(axis=1) >= settings.pos_iou_thr))
            key = (share >= COVERAGE_TARGET, -size if share >= COVERAGE_TARGET else 0, share)
            if best_key is None or key > best_key:
                best_key, best_scales = key, tuple(SCALE_CANDIDATES[i] for i in chosen)
        if best_key[0]:
            break
    fitted = replace(settings, scales=best_scales)
    return Suggestion(fitted, coverage(images, fitted))


def canvas_candidates(settings: FitSettings) -> list[tuple[int, int]]:
    """(img_height, img_width) of the current canvas's shape scaled by CANVAS_FACTORS, multiples of 32."""
    sizes = []
    for factor in CANVAS_FACTORS:
        size = tuple(max(SIZE_MULTIPLE, int(round(side * factor / SIZE_MULTIPLE)) * SIZE_MULTIPLE)
                     for side in (settings.canvas_h, settings.canvas_w))
        if size != (settings.canvas_h, settings.canvas_w) and size not in sizes:
            sizes.append(size)
    return sizes


def suggest_canvas(images: Sequence[ImageBoxes], settings: FitSettings) -> Suggestion | None:
    """The canvas (canvas_candidates) closest in area to the current one whose coverage reaches COVERAGE_TARGET,
    else the one of the best coverage; None without boxes."""
    sample = _search_sample(images)
    if not any(len(image.boxes) for image in sample):
        return None
    current = settings.canvas_h * settings.canvas_w
    best_key, best_settings = None, None
    for height, width in canvas_candidates(settings):
        candidate = replace(settings, canvas_h=height, canvas_w=width)
        share = coverage(sample, candidate).share
        reaches = share >= COVERAGE_TARGET
        key = (reaches, -abs(math.log(height * width / current)) if reaches else share)
        if best_key is None or key > best_key:
            best_key, best_settings = key, candidate
    return Suggestion(best_settings, coverage(images, best_settings))


# ---------------------------------------------------------------------------------------------------------------
# The report
def _number(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.3g}"


def _list(values: Sequence[float]) -> str:
    return "[" + ", ".join(_number(v) for v in values) + "]"


def anchor_sides(settings: FitSettings) -> tuple[float, float]:
    """The smallest and largest square-anchor side (stride x scale) in px."""
    return min(settings.strides) * min(settings.scales), max(settings.strides) * max(settings.scales)


def coverage_line(result: Coverage, settings: FitSettings) -> str:
    positive, low, neither = (100 * share for share in result.shares())
    return (f"best anchor IoU >= pos_iou_thr {_number(settings.pos_iou_thr)}: {positive:.1f}% | only >= "
            f"min_pos_iou {_number(settings.min_pos_iou)} (low-quality match): {low:.1f}% | neither (no anchor "
            f"trained): {neither:.1f}%")


def _reach(result: Coverage, settings: FitSettings) -> str:
    met = "reaches the target" if result.share >= COVERAGE_TARGET else "the best candidate, below the target"
    return f"{100 * result.share:.1f}% reach {_number(settings.pos_iou_thr)} ({met})"


def suggestion_lines(images: Sequence[ImageBoxes], settings: FitSettings) -> list[str]:
    """The suggestions (computed) when the coverage is below COVERAGE_TARGET, one line each."""
    lines = []
    scales = suggest_scales(images, settings)
    if scales is not None:
        count = len(scales.settings.scales) * len(settings.ratios)
        lines.append(f"  --anchor_scales={_list(scales.settings.scales)} --num_anchors={count}: "
                     + _reach(scales.coverage, settings))
    canvas = suggest_canvas(images, settings)
    if canvas is not None:
        lines.append(f"  --img_height={canvas.settings.canvas_h} --img_width={canvas.settings.canvas_w}: "
                     + _reach(canvas.coverage, settings))
    return lines


def _percentiles(values: np.ndarray) -> str:
    return " ".join(f"p{p} {v:.0f}" for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True))


def histogram_lines(sizes: np.ndarray, best_iou: np.ndarray, settings: FitSettings) -> list[str]:
    """sqrt(w * h) in HISTOGRAM_EDGES bins: count, share, a bar, and the share of the bin reaching pos_iou_thr."""
    bins = np.searchsorted(np.asarray(HISTOGRAM_EDGES[1:]), sizes, side="right")
    counts = np.bincount(bins, minlength=len(HISTOGRAM_EDGES))
    lines = [f"  {'sqrt(w*h) px':<13} {'boxes':>7} {'share':>6}  {'':<{BAR_WIDTH}}  reach "
             f"{_number(settings.pos_iou_thr)}"]
    for k, count in enumerate(counts):
        low = HISTOGRAM_EDGES[k]
        label = f"[{low}, {HISTOGRAM_EDGES[k + 1]})" if k + 1 < len(HISTOGRAM_EDGES) else f">= {low}"
        reach = f"{100 * np.mean(best_iou[bins == k] >= settings.pos_iou_thr):5.1f}%" if count else "    -"
        bar = "#" * int(round(BAR_WIDTH * count / max(counts.max(), 1)))
        lines.append(f"  {label:<13} {count:>7} {100 * count / len(sizes):5.1f}%  {bar:<{BAR_WIDTH}}  {reach}")
    return lines


def report_lines(images: Sequence[ImageBoxes], settings: FitSettings, short: bool = False) -> list[str]:
    """The anchor fit report of a training set's images: box sizes on the canvas, coverage and, below
    COVERAGE_TARGET, the computed suggestions. `short`: the few lines printed after a conversion."""
    boxes = network_boxes(images, settings)
    resize = "keep-ratio resize" if settings.keep_ratio else "resize"
    if not len(boxes):
        return [f"anchor fit: no non-crowd box in {len(images)} training images"]
    best = best_anchor_iou(boxes, settings)
    result = coverage_of(best, settings)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    sizes, short_sides = np.sqrt(width * height), np.minimum(width, height)
    low, high = anchor_sides(settings)
    lines = [f"anchor fit: {len(boxes)} non-crowd boxes of {len(images)} training images, as the network sees "
             f"them ({resize} to {settings.canvas_h}x{settings.canvas_w}); anchors {_number(low)}-{_number(high)} "
             f"px (anchor_scales {_list(settings.scales)}, anchor_ratios {_list(settings.ratios)}, anchor_strides "
             f"{_list(settings.strides)})",
             f"box size sqrt(w*h) px: {_percentiles(sizes)}; short side px: {_percentiles(short_sides)}"]
    if not short:
        lines += histogram_lines(sizes, best, settings)
    lines.append(coverage_line(result, settings))
    if result.share < COVERAGE_TARGET:
        lines.append(f"fewer than the target {100 * COVERAGE_TARGET:.0f}% of the boxes reach pos_iou_thr; computed "
                     "alternatives (each evaluated on the same boxes, the other keys unchanged):")
        lines += suggestion_lines(images, settings)
    return lines
