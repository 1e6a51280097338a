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
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
EXPAND_RATIO_RANGE = (1.0, 4.0)  # the expanded canvas is this many times the image's size (uniform)


@dataclass(frozen=True)
class PreprocessSettings:
    """The config values the per-image preprocessing reads."""

    canvas_h: int
    canvas_w: int
    keep_ratio: bool
    flip_ratio: float
    expand_ratio: float
    num_gts: int

    @classmethod
    def from_config(cls, cfg) -> PreprocessSettings:
        return cls(int(cfg.img_height), int(cfg.img_width), bool(cfg.keep_ratio), float(cfg.flip_ratio),
                   float(cfg.expand_ratio), int(cfg.num_gts))


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


def rescale_keep_ratio(image: np.ndarray, canvas_h: int, canvas_w: int) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio to fit the canvas; returns (image, total scale factor).

    Factor min(long bound / long side, short bound / short side); if the height still exceeds the canvas, a
    second resize of the resized image with both bounds = canvas_h (the original's). The third pass, for a
    width still too large (possible only with a portrait canvas), is this port's: the original fails there.
    """
    scale = fit_scale(*image.shape[:2], canvas_w, canvas_h)
    image = resize_by(image, scale)
    for axis, bound in ((0, canvas_h), (1, canvas_w)):
        if image.shape[axis] > bound:
            extra = fit_scale(*image.shape[:2], bound, bound)
            image = resize_by(image, extra)
            scale *= extra
    return image, scale


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


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror (G, 4) boxes in an image `width` wide: x1' = width - x2 - 1, x2' = width - x1 - 1."""
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2] - 1
    flipped[:, 2] = width - boxes[:, 0] - 1
    return flipped


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


def _outputs(image, image_shape, boxes, labels, valid):
    return (np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32), image_shape.astype(np.float32),
            boxes.astype(np.float32), labels.astype(np.int32), valid.astype(np.bool_))


def preprocess_train(image: np.ndarray, annotation: np.ndarray, settings: PreprocessSettings, flip: bool,
                     expand: ExpandDraw | None = None) -> tuple[np.ndarray, ...]:
    """The training chain for one image with the given augmentation draw (see the module docstring)."""
    image = as_rgb3(image)
    boxes, labels, valid = pad_gt(annotation, settings.num_gts)
    if expand is not None:
        image, boxes = expand_canvas(image, boxes, expand.ratio, expand.left, expand.top)
    canvas_h, canvas_w = settings.canvas_h, settings.canvas_w
    if settings.keep_ratio:
        image, scale = rescale_keep_ratio(image, canvas_h, canvas_w)
        boxes = boxes * scale
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, image.shape[1] - 1)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, image.shape[0] - 1)
        image = paste_top_left(image, canvas_h, canvas_w)
    else:
        h, w = image.shape[:2]
        image = cv2.resize(image, (canvas_w, canvas_h), interpolation=cv2.INTER_LINEAR)
        boxes = boxes * np.array([canvas_w / w, canvas_h / h] * 2, dtype=np.float32)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, canvas_w - 1)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, canvas_h - 1)
    image = normalize(image)
    if flip:
        image = image[:, ::-1]
        boxes = flip_boxes(boxes, canvas_w)
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
        flip, expand = draw_augmentation(self._generator(), self.settings, *image.shape[:2])
        return preprocess_train(image, annotation, self.settings, flip, expand)


class EvalPreprocess:
    """The evaluation map function: (image, annotation) -> the five evaluation columns."""

    def __init__(self, settings: PreprocessSettings):
        self.settings = settings

    def __call__(self, image: np.ndarray, annotation: np.ndarray) -> tuple[np.ndarray, ...]:
        return preprocess_eval(image, annotation, self.settings)
