"""Per-image preprocessing of the training and evaluation pipelines (NumPy + OpenCV), numerically the original's.

Input: a decoded image (H, W, 3) uint8 RGB and its annotation rows (n, 6) int32 [x1, y1, x2, y2, label, iscrowd].
Output: image (3, canvas_h, canvas_w) float32, image_shape (3,) train [canvas_h, canvas_w, 1.0] / (4,) eval
[orig_h, orig_w, scale_h, scale_w], box (G, 4) float32, label (G,) int32 (-1 = padding), valid (G,) bool
(not crowd, not padding), with G = num_gts and the canvas img_height x img_width.

Training: expand (probability expand_ratio * 0.5: the original draws `rand() < expand_ratio` and then skips
half the time), keep-ratio rescale (or plain resize), paste on the top left of a zero canvas, normalise, flip
(probability flip_ratio) of the whole canvas. Evaluation: rescale and paste only; its boxes stay in source
pixels with keep_ratio (the original's). The original turns the decoded RGB into BGR and back to RGB inside
normalisation; every step in between treats the channels alike, so both swaps are left out here.

This port's augmentations, each off by default (`AugmentDraw`; none draws from the random stream when off, so the
original's chain and draws stay as they are): photometric distortion first (the original's `PhotoMetricDistortion`,
which it never calls), then expand, a random crop of the image (`random_crop`), the rescale times a scale-jitter
factor with the part beyond the canvas cropped off, normalise, horizontal flip, vertical flip (`vertical_flip_ratio`).
A box a crop cuts is clipped to the crop and becomes a padding row (box 0, label -1, not valid) when less than
`crop_min_visible` of its area stays or its clipped width or height on the canvas is below `crop_min_box_size`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from src.infra.errors import ConfigError

IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
EXPAND_RATIO_RANGE = (1.0, 4.0)  # the expanded canvas is this many times the image's size (uniform)
# The original's PhotoMetricDistortion defaults: pixel values (0-255), factors, hue in degrees (float HSV, 0-360).
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18.0


@dataclass(frozen=True)
class PreprocessSettings:
    """The config values the per-image preprocessing reads."""

    canvas_h: int = 768            # img_height
    canvas_w: int = 1280           # img_width
    keep_ratio: bool = True
    flip_ratio: float = 0.5
    expand_ratio: float = 1.0
    num_gts: int = 128
    photometric_distortion: bool = False
    scale_jitter: tuple[float, float] = (1.0, 1.0)
    random_crop: float = 0.0
    crop_min_box_size: float = 2.0
    crop_min_visible: float = 0.5
    vertical_flip_ratio: float = 0.0

    @classmethod
    def from_config(cls, cfg) -> PreprocessSettings:
        """The settings of `cfg`; ConfigError naming the key for an augmentation value out of its range."""
        jitter = cfg.scale_jitter
        if (not isinstance(jitter, (list, tuple)) or len(jitter) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in jitter)
                or not 0 < jitter[0] <= jitter[1]):
            raise ConfigError(f"scale_jitter={jitter!r}: expected [lo, hi] with 0 < lo <= hi ([1.0, 1.0]: off)")
        for key, low, high in (("random_crop", 0.0, 1.0), ("crop_min_visible", 0.0, 1.0),
                               ("vertical_flip_ratio", 0.0, 1.0), ("crop_min_box_size", 0.0, float("inf"))):
            value = getattr(cfg, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(f"{key}={value!r}: expected a number in [{low}, {high}]")
        return cls(int(cfg.img_height), int(cfg.img_width), bool(cfg.keep_ratio), float(cfg.flip_ratio),
                   float(cfg.expand_ratio), int(cfg.num_gts), bool(cfg.photometric_distortion),
                   (float(jitter[0]), float(jitter[1])), float(cfg.random_crop), float(cfg.crop_min_box_size),
                   float(cfg.crop_min_visible), float(cfg.vertical_flip_ratio))


# ---------------------------------------------------------------------------------------------------------------
# Image operations
def as_rgb3(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 4) -> (H, W, 3); (H, W, 3) unchanged."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def resize_by(image: np.ndarray, scale: float) -> np.ndarray:
    """Bilinear resize to (int(h * scale + 0.5), int(w * scale + 0.5))."""
    h, w = image.shape[:2]
    size = (int(w * scale + 0.5), int(h * scale + 0.5))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def fit_scale(h: int, w: int, bound_a: int, bound_b: int) -> float:
    """The original's keep-ratio factor: the long side to the longer bound, the short side to the shorter."""
    return min(max(bound_a, bound_b) / max(h, w), min(bound_a, bound_b) / min(h, w))


def resized_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """The (height, width) `resize_by(image, scale)` gives an h x w image."""
    return int(h * scale + 0.5), int(w * scale + 0.5)


def keep_ratio_steps(h: int, w: int, canvas_h: int, canvas_w: int) -> tuple[list[float], float]:
    """The factors of the successive resizes `rescale_keep_ratio` applies to an h x w image, and their product.

    Factor min(long bound / long side, short bound / short side); if the height still exceeds the canvas, a
    second resize of the resized image with both bounds = canvas_h (the original's). The third pass, for a
    width still too large (possible only with a portrait canvas), is this port's: the original fails there.
    """
    scale = fit_scale(h, w, canvas_w, canvas_h)
    steps = [scale]
    size = resized_size(h, w, scale)
    for axis, bound in ((0, canvas_h), (1, canvas_w)):
        if size[axis] > bound:
            extra = fit_scale(*size, bound, bound)
            steps.append(extra)
            size = resized_size(*size, extra)
            scale *= extra
    return steps, scale


def rescale_keep_ratio(image: np.ndarray, canvas_h: int, canvas_w: int) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio to fit the canvas (`keep_ratio_steps`); returns (image, total scale
    factor)."""
    steps, scale = keep_ratio_steps(*image.shape[:2], canvas_h, canvas_w)
    for step in steps:
        image = resize_by(image, step)
    return image, scale


def resize_boxes(boxes: np.ndarray, h: int, w: int, settings: PreprocessSettings) -> np.ndarray:
    """Boxes (G, 4) of an h x w image as the training chain's resize leaves them, before the flip: scaled by the
    keep-ratio factor (or stretched to the canvas) and clipped to the resized image (float64 for integer boxes)."""
    canvas_h, canvas_w = settings.canvas_h, settings.canvas_w
    if settings.keep_ratio:
        steps, scale = keep_ratio_steps(h, w, canvas_h, canvas_w)
        for step in steps:
            h, w = resized_size(h, w, step)
        boxes = boxes * scale
    else:
        boxes = boxes * np.array([canvas_w / w, canvas_h / h] * 2, dtype=np.float32)
        h, w = canvas_h, canvas_w
    return clip_boxes(boxes, w, h)


def paste_top_left(image: np.ndarray, canvas_h: int, canvas_w: int) -> np.ndarray:
    """The image on the top left of a zero canvas (canvas_h, canvas_w, 3) of its dtype."""
    h, w = image.shape[:2]
    if h > canvas_h or w > canvas_w:
        raise ValueError(f"image {h}x{w} does not fit the {canvas_h}x{canvas_w} canvas")
    canvas = np.zeros((canvas_h, canvas_w, image.shape[2]), dtype=image.dtype)
    canvas[:h, :w] = image
    return canvas


def normalize(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) -> float32 (x - mean) / std with the ImageNet mean and std (float32 arithmetic)."""
    out = image.astype(np.float32)
    out -= np.asarray(IMAGENET_MEAN_RGB, dtype=np.float32)
    out *= (1.0 / np.asarray(IMAGENET_STD_RGB, dtype=np.float64)).astype(np.float32)
    return out


def expand_canvas(image: np.ndarray, boxes: np.ndarray, ratio: float, left: int, top: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Place the image at (top, left) of a zero canvas int(h * ratio) x int(w * ratio); shift the boxes (G, 4)."""
    h, w, c = image.shape
    canvas = np.zeros((int(h * ratio), int(w * ratio), c), dtype=image.dtype)
    canvas[top:top + h, left:left + w] = image
    return canvas, boxes + np.array([left, top, left, top], dtype=boxes.dtype)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """(G, 4) boxes clipped in place to [0, width - 1] x [0, height - 1] (the original's clip to an image)."""
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width - 1)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height - 1)
    return boxes


def flip_boxes(boxes: np.ndarray, width: int, axis: int = 0) -> np.ndarray:
    """Mirror (G, 4) boxes in an image `width` wide: x1' = width - x2 - 1, x2' = width - x1 - 1; with axis=1
    the y coordinates in an image `width` high (top-bottom)."""
    flipped = boxes.copy()
    flipped[:, axis] = width - boxes[:, axis + 2] - 1
    flipped[:, axis + 2] = width - boxes[:, axis] - 1
    return flipped


def crop_window(image: np.ndarray, boxes: np.ndarray, left: int, top: int, width: int, height: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The window [top, top + height) x [left, left + width) of the image; boxes (G, 4) shifted into it and clipped
    to [0, width] x [0, height]; also the fraction (G,) of each box's area inside the window (a box of zero width or
    height: 1 when it lies inside, else 0)."""
    image = image[top:top + height, left:left + width]
    fractions = []
    for axis, start, size in ((0, left, width), (1, top, height)):
        low, high = boxes[:, axis], boxes[:, axis + 2]
        inside = np.clip(np.minimum(high, start + size) - np.maximum(low, start), 0, None)
        extent = high - low
        point_inside = ((low >= start) & (low <= start + size)).astype(np.float64)
        fractions.append(np.where(extent > 0, inside / np.where(extent > 0, extent, 1), point_inside))
    shifted = boxes - np.array([left, top, left, top], dtype=boxes.dtype)
    return image, clip_boxes(shifted, width + 1, height + 1), fractions[0] * fractions[1]


def window(size: int, fraction: float, position: float) -> tuple[int, int]:
    """(start, length) of a window `fraction` of `size` long (at least 1) at `position` in [0, 1) of the free room."""
    length = min(size, max(1, int(size * fraction + 0.5)))
    return min(int(position * (size - length + 1)), size - length), length


def pad_gt(annotation: np.ndarray, num_gts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (n, 6) -> boxes (G, 4), labels (G,) (-1 padding), valid (G,) bool (not crowd, not padding).

    More than G rows (the original fails there): the non-crowd rows are kept first, in their order.
    """
    annotation = np.asarray(annotation).reshape(-1, 6)
    if len(annotation) > num_gts:
        annotation = annotation[np.argsort(annotation[:, 5] != 0, kind="stable")[:num_gts]]
    pad = num_gts - len(annotation)
    boxes = np.pad(annotation[:, :4], ((0, pad), (0, 0)), constant_values=0)
    labels = np.pad(annotation[:, 4], (0, pad), constant_values=-1)
    crowd = np.pad(annotation[:, 5], (0, pad), constant_values=1)
    return boxes, labels, crowd == 0


def drop_rows(boxes: np.ndarray, labels: np.ndarray, valid: np.ndarray, drop: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows not in `drop` (G,) first, in their order, then padding rows as `pad_gt` writes them."""
    keep = ~drop
    pad = int(drop.sum())
    return (np.concatenate([boxes[keep], np.zeros((pad, 4), boxes.dtype)]),
            np.concatenate([labels[keep], np.full(pad, -1, labels.dtype)]),
            np.concatenate([valid[keep], np.zeros(pad, bool)]))


# ---------------------------------------------------------------------------------------------------------------
# Photometric distortion
@dataclass(frozen=True)
class PhotometricDraw:
    """One draw of the photometric distortion; None = that step skipped (each has probability 0.5)."""

    brightness: float | None        # added to every pixel value, in [-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA]
    contrast: float | None          # multiplies every pixel value, in CONTRAST_RANGE
    contrast_first: bool            # contrast before the HSV steps (else after them)
    saturation: float | None        # multiplies S (0-1), in SATURATION_RANGE
    hue: float | None               # added to H (degrees, wrapped into [0, 360]), in [-HUE_DELTA, HUE_DELTA]
    permutation: tuple[int, int, int] | None  # output channel c = input channel permutation[c]


def draw_photometric(rng: np.random.Generator) -> PhotometricDraw:
    """A draw in the original's order: brightness, mode, (contrast), saturation, hue, (contrast), channel swap."""
    def coin() -> bool:
        return bool(rng.integers(2))

    brightness = rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA) if coin() else None
    contrast_first = coin()
    contrast = rng.uniform(*CONTRAST_RANGE) if contrast_first and coin() else None
    saturation = rng.uniform(*SATURATION_RANGE) if coin() else None
    hue = rng.uniform(-HUE_DELTA, HUE_DELTA) if coin() else None
    if not contrast_first and coin():
        contrast = rng.uniform(*CONTRAST_RANGE)
    permutation = tuple(int(c) for c in rng.permutation(3)) if coin() else None
    return PhotometricDraw(brightness, contrast, contrast_first, saturation, hue, permutation)


def photometric_distortion(image: np.ndarray, draw: PhotometricDraw) -> np.ndarray:
    """(H, W, 3) RGB -> float32 (H, W, 3) with the original's steps in its order and without clipping (values may
    leave 0-255, as in the original): + brightness, (x contrast), to HSV (OpenCV float: H 0-360, S 0-1, V as the
    input), S x saturation, H + hue wrapped, back to RGB, (x contrast), channel permutation. The original works on
    BGR with BGR2HSV, which gives the same HSV as RGB2HSV on RGB; the HSV round trip is skipped when neither S nor
    H changes (the original's round trip changes values by float rounding only)."""
    out = image.astype(np.float32)
    if draw.brightness is not None:
        out += np.float32(draw.brightness)
    if draw.contrast is not None and draw.contrast_first:
        out *= np.float32(draw.contrast)
    if draw.saturation is not None or draw.hue is not None:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        if draw.saturation is not None:
            hsv[..., 1] *= np.float32(draw.saturation)
        if draw.hue is not None:
            hue = hsv[..., 0]
            hue += np.float32(draw.hue)
            hue[hue > 360] -= 360
            hue[hue < 0] += 360
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if draw.contrast is not None and not draw.contrast_first:
        out *= np.float32(draw.contrast)
    if draw.permutation is not None:
        out = np.ascontiguousarray(out[..., list(draw.permutation)])
    return out


# ---------------------------------------------------------------------------------------------------------------
# The two chains
@dataclass(frozen=True)
class ExpandDraw:
    """One draw of the expand augmentation: canvas ratio and the image's offset in it."""

    ratio: float
    left: int
    top: int


def draw_augmentation(rng: np.random.Generator, settings: PreprocessSettings, h: int, w: int
                      ) -> tuple[bool, ExpandDraw | None]:
    """(flip, expand or None) drawn as the original does: flip, then expand, then its own coin and offsets."""
    flip = rng.random() < settings.flip_ratio
    expand = rng.random() < settings.expand_ratio
    if not expand or rng.integers(2):
        return flip, None
    ratio = rng.uniform(*EXPAND_RATIO_RANGE)
    left = int(rng.uniform(0, w * ratio - w))
    top = int(rng.uniform(0, h * ratio - h))
    return flip, ExpandDraw(ratio, left, top)


@dataclass(frozen=True)
class AugmentDraw:
    """One draw of this port's augmentations; the defaults are all off (the original's chain).

    crop: (width fraction, height fraction, x position, y position) of the random crop, positions in [0, 1) of the
    free room (`window`); scale: the scale-jitter factor; offset: (x, y) positions in [0, 1) of the canvas-sized
    window in an image the factor made larger than the canvas.
    """

    photometric: PhotometricDraw | None = None
    crop: tuple[float, float, float, float] | None = None
    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)
    vertical_flip: bool = False


def draw_extra(rng: np.random.Generator, settings: PreprocessSettings) -> AugmentDraw:
    """This port's augmentations, drawn after `draw_augmentation`'s, each only when its setting is on."""
    photometric = draw_photometric(rng) if settings.photometric_distortion else None
    crop = None
    if settings.random_crop > 0:
        crop = (rng.uniform(settings.random_crop, 1.0), rng.uniform(settings.random_crop, 1.0),
                rng.random(), rng.random())
    scale, offset = 1.0, (0.0, 0.0)
    if settings.scale_jitter != (1.0, 1.0):
        scale, offset = rng.uniform(*settings.scale_jitter), (rng.random(), rng.random())
    vertical_flip = settings.vertical_flip_ratio > 0 and rng.random() < settings.vertical_flip_ratio
    return AugmentDraw(photometric, crop, scale, offset, vertical_flip)


def jitter_to_canvas(image: np.ndarray, boxes: np.ndarray, settings: PreprocessSettings, factor: float,
                     offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rescale by `factor` x the fit scale (keep_ratio: one resize by min(canvas_h / h, canvas_w / w), which the
    original's two-pass rescale equals up to rounding; else the plain resize's two scales), keep a canvas-sized
    window at `offset` of what exceeds the canvas, paste it top left. Returns (canvas, boxes, visible fraction)."""
    h, w = image.shape[:2]
    canvas_h, canvas_w = settings.canvas_h, settings.canvas_w
    if settings.keep_ratio:
        scale_x = scale_y = min(canvas_h / h, canvas_w / w) * factor
    else:
        scale_x, scale_y = canvas_w / w * factor, canvas_h / h * factor
    size = (max(1, int(w * scale_x + 0.5)), max(1, int(h * scale_y + 0.5)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    boxes = boxes * np.array([scale_x, scale_y] * 2, dtype=np.float32)
    left, width = window(size[0], min(1.0, canvas_w / size[0]), offset[0])
    top, height = window(size[1], min(1.0, canvas_h / size[1]), offset[1])
    image, boxes, visible = crop_window(image, boxes, left, top, width, height)
    clip_boxes(boxes, width, height)
    if (width, height) == size:  # nothing cut off: boxes only clipped to the image, as without the jitter
        visible = np.ones(len(boxes))
    return paste_top_left(image, canvas_h, canvas_w), boxes, visible


def _outputs(image, image_shape, boxes, labels, valid):
    return (np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32), image_shape.astype(np.float32),
            boxes.astype(np.float32), labels.astype(np.int32), valid.astype(np.bool_))


def preprocess_train(image: np.ndarray, annotation: np.ndarray, settings: PreprocessSettings, flip: bool,
                     expand: ExpandDraw | None = None, extra: AugmentDraw | None = None) -> tuple[np.ndarray, ...]:
    """The training chain for one image with the given augmentation draws (see the module docstring)."""
    extra = extra or AugmentDraw()
    image = as_rgb3(image)
    boxes, labels, valid = pad_gt(annotation, settings.num_gts)
    if extra.photometric is not None:
        image = photometric_distortion(image, extra.photometric)
    if expand is not None:
        image, boxes = expand_canvas(image, boxes, expand.ratio, expand.left, expand.top)
    visible = np.ones(len(boxes))
    if extra.crop is not None:
        left, width = window(image.shape[1], extra.crop[0], extra.crop[2])
        top, height = window(image.shape[0], extra.crop[1], extra.crop[3])
        image, boxes, visible = crop_window(image, boxes, left, top, width, height)
    canvas_h, canvas_w = settings.canvas_h, settings.canvas_w
    if extra.scale != 1.0:
        image, boxes, inside = jitter_to_canvas(image, boxes, settings, extra.scale, extra.offset)
        visible = visible * inside
    else:
        boxes = resize_boxes(boxes, *image.shape[:2], settings)
        if settings.keep_ratio:
            image = paste_top_left(rescale_keep_ratio(image, canvas_h, canvas_w)[0], canvas_h, canvas_w)
        else:
            image = cv2.resize(image, (canvas_w, canvas_h), interpolation=cv2.INTER_LINEAR)
    cut = (visible < 1) & (labels >= 0)
    if cut.any():
        small = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < settings.crop_min_box_size
        boxes, labels, valid = drop_rows(boxes, labels, valid,
                                         cut & ((visible < settings.crop_min_visible) | small))
    image = normalize(image)
    if flip:
        image = image[:, ::-1]
        boxes = flip_boxes(boxes, canvas_w)
    if extra.vertical_flip:
        image = image[::-1]
        boxes = flip_boxes(boxes, canvas_h, axis=1)
    image_shape = np.array([canvas_h, canvas_w, 1.0])
    return _outputs(image, image_shape, boxes, labels, valid)


def preprocess_eval(image: np.ndarray, annotation: np.ndarray, settings: PreprocessSettings
                    ) -> tuple[np.ndarray, ...]:
    """The evaluation chain for one image (see the module docstring)."""
    image = as_rgb3(image)
    boxes, labels, valid = pad_gt(annotation, settings.num_gts)
    h, w = image.shape[:2]
    canvas_h, canvas_w = settings.canvas_h, settings.canvas_w
    if settings.keep_ratio:
        image, scale = rescale_keep_ratio(image, canvas_h, canvas_w)
        image = paste_top_left(image, canvas_h, canvas_w)
        image_shape = np.array([h, w, scale, scale])
    else:
        image = cv2.resize(image, (canvas_w, canvas_h), interpolation=cv2.INTER_LINEAR)
        scale_h, scale_w = canvas_h / h, canvas_w / w
        image_shape = np.array([h, w, scale_h, scale_w])
        boxes = boxes * np.array([scale_w, scale_h] * 2, dtype=np.float32)
        # The original clips these to the source size, not the resized one (the network ignores eval boxes).
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w - 1)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h - 1)
    return _outputs(normalize(image), image_shape, boxes, labels, valid)


class TrainPreprocess:
    """The training map function: (image, annotation) -> the five training columns, random draws per call.

    Each worker process gets its own random stream (forked workers would otherwise repeat each other's draws).
    """

    def __init__(self, settings: PreprocessSettings, seed: int | None = None):
        self.settings = settings
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self._pid = -1

    def _generator(self) -> np.random.Generator:
        if self._rng is None or self._pid != os.getpid():
            self._pid = os.getpid()
            entropy = None if self.seed is None else [self.seed, self._pid]
            self._rng = np.random.default_rng(entropy)
        return self._rng

    def __call__(self, image: np.ndarray, annotation: np.ndarray) -> tuple[np.ndarray, ...]:
        rng = self._generator()
        flip, expand = draw_augmentation(rng, self.settings, *image.shape[:2])
        return preprocess_train(image, annotation, self.settings, flip, expand, draw_extra(rng, self.settings))


class EvalPreprocess:
    """The evaluation map function: (image, annotation) -> the five evaluation columns."""

    def __init__(self, settings: PreprocessSettings):
        self.settings = settings

    def __call__(self, image: np.ndarray, annotation: np.ndarray) -> tuple[np.ndarray, ...]:
        return preprocess_eval(image, annotation, self.settings)
