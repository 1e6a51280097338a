"""A small deterministic detection data set written as real COCO (plus the original's TXT label format).

`python -m src.tools.synthetic_data --out DIR --num_train N --num_val M --seed S` writes
  DIR/train2017/*.jpg, DIR/val2017/*.jpg, DIR/annotations/instances_{train,val}2017.json,
  DIR/train.txt and DIR/val.txt (TXT label files, paths relative to DIR, classes = indices in coco_classes).
Images of a few sizes hold 1-8 objects of six classes on textured, desaturated backgrounds. Each class has its
own shape and its own hue band (so a small detector learns them quickly); objects are 20-200 px, some small,
some overlapping, some cut by the border. Class names and category ids are COCO's, and the json lists all 80
COCO categories (as COCO's own files do; six of them have objects), so the default `coco_classes` apply unchanged
and a category's position in `getCatIds()` matches its class index, as the original's evaluation assumes.
The same seed gives byte-identical files; image i of a split depends only on (seed, split, i).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from src.infra.fileio import write_text_atomic


@dataclass(frozen=True)
class ShapeClass:
    """A synthetic class: COCO name and id, the shape drawn, the OpenCV hue band (0-180) of its colour."""

    name: str
    category_id: int
    shape: str
    hue: tuple[int, int]


CLASSES = (
    ShapeClass("stop sign", 13, "octagon", (0, 6)),
    ShapeClass("sports ball", 37, "disc", (12, 18)),
    ShapeClass("clock", 85, "ring", (26, 32)),
    ShapeClass("kite", 38, "diamond", (55, 70)),
    ShapeClass("tv", 72, "frame", (105, 120)),
    ShapeClass("pizza", 59, "triangle", (140, 155)),
)
# COCO's category ids of its 80 classes, in the order of coco_classes[1:] (COCO leaves 12, 26, 29, ... unused).
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
                     31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
                     56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
                     85, 86, 87, 88, 89, 90)
IMAGE_SIZES = ((320, 480), (480, 320), (384, 384), (360, 640), (300, 400))  # (height, width)
OBJECTS_PER_IMAGE = (1, 8)
OBJECT_SIZE = (20, 200)          # px, the object's long side
ELONGATION = (1.0, 1.6)          # long side / short side (discs and rings stay round)
SMALL_OBJECT_SIZE = (20, 32)
SMALL_FRACTION = 0.2
BORDER_FRACTION = 0.15           # objects placed across the image border
MAX_IOU = 0.3                    # overlap allowed between two objects' boxes
MIN_VISIBLE_FRACTION = 0.5       # of a border object's pixels inside the image
OUTLINE_FRACTION = 0.14          # line width of the ring and the frame, relative to the object size
NOISE_SIGMA = 6.0
JPEG_QUALITY = 92
VAL_ID_OFFSET = 1_000_000        # val image ids start after this (COCO's ids are unique across splits)
PLACEMENT_TRIES = 60


@dataclass
class SyntheticObject:
    cls: ShapeClass
    mask: np.ndarray      # (H, W) bool, the object's pixels inside the image
    bbox: tuple[int, int, int, int]  # x, y, w, h (inclusive pixel extent: w = x_max - x_min + 1)


def _colour(rng: np.random.Generator, hue: tuple[int, int]) -> tuple[int, int, int]:
    hsv = np.array([[[rng.integers(hue[0], hue[1] + 1), rng.integers(170, 256), rng.integers(170, 256)]]],
                   dtype=np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Desaturated texture: a tinted grey, low-frequency blotches, grey strokes (BGR uint8)."""
    base = rng.uniform(60, 190) + rng.uniform(-12, 12, size=3)
    grid = rng.uniform(-45, 45, size=(height // 32 + 2, width // 32 + 2, 1))
    blotches = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)[:, :, None]
    image = np.clip(base + blotches, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 12))):
        grey = int(rng.integers(30, 226))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(image, p1, p2, (grey, grey, grey), int(rng.integers(1, 4)), cv2.LINE_AA)
    return image


def _shape_mask(shape: str, height: int, width: int, cx: float, cy: float, w: float, h: float) -> np.ndarray:
    """The shape's pixels (H, W) uint8 {0, 1}, drawn around (cx, cy) in a w x h box."""
    mask = np.zeros((height, width), np.uint8)
    line = max(2, int(round(OUTLINE_FRACTION * min(w, h))))
    if shape in ("disc", "ring"):
        # a ring's line is centred on its radius: keep its outer edge on the box
        radius = int(round(min(w, h) / 2 - (0 if shape == "disc" else line / 2)))
        cv2.circle(mask, (int(round(cx)), int(round(cy))), radius, 1, -1 if shape == "disc" else line)
        return mask
    if shape == "frame":
        p1 = (int(round(cx - w / 2 + line / 2)), int(round(cy - h / 2 + line / 2)))
        p2 = (int(round(cx + w / 2 - line / 2)), int(round(cy + h / 2 - line / 2)))
        cv2.rectangle(mask, p1, p2, 1, line)
        return mask
    if shape == "octagon":
        angles = np.pi / 8 + np.arange(8) * np.pi / 4
        corners = np.stack([cx + w / 2 * np.cos(angles), cy + h / 2 * np.sin(angles)], axis=1)
    elif shape == "diamond":
        corners = np.array([[cx, cy - h / 2], [cx + w / 2, cy], [cx, cy + h / 2], [cx - w / 2, cy]])
    elif shape == "triangle":
        corners = np.array([[cx, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])
    else:
        raise ValueError(f"unknown shape {shape!r}")
    cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
    return mask


def _place_object(rng: np.random.Generator, height: int, width: int, placed: list[SyntheticObject]
                  ) -> SyntheticObject | None:
    cls = CLASSES[int(rng.integers(len(CLASSES)))]
    size_range = SMALL_OBJECT_SIZE if rng.random() < SMALL_FRACTION else OBJECT_SIZE
    size = float(np.exp(rng.uniform(np.log(size_range[0]), np.log(min(size_range[1], 0.6 * min(height, width))))))
    elongation = 1.0 if cls.shape in ("disc", "ring") else float(rng.uniform(*ELONGATION))
    w, h = (size, size / elongation) if rng.random() < 0.5 else (size / elongation, size)
    across_border = rng.random() < BORDER_FRACTION
    margin_x, margin_y = (0.0, 0.0) if across_border else (w / 2, h / 2)
    cx = rng.uniform(margin_x, width - margin_x)
    cy = rng.uniform(margin_y, height - margin_y)
    mask = _shape_mask(cls.shape, height, width, cx, cy, w, h).astype(bool)
    # the whole shape's pixel count, drawn on a canvas with room for it all around
    pad_x, pad_y = int(w) + 2, int(h) + 2
    full = _shape_mask(cls.shape, height + 2 * pad_y, width + 2 * pad_x, cx + pad_x, cy + pad_y, w, h).sum()
    if mask.sum() < MIN_VISIBLE_FRACTION * full or mask.sum() == 0:
        return None
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    if min(x1 - x0 + 1, y1 - y0 + 1) < SMALL_OBJECT_SIZE[0] // 2:
        return None
    box = np.array([x0, y0, x1 + 1, y1 + 1], dtype=np.float64)
    for other in placed:
        ox, oy, ow, oh = other.bbox
        inter_w = min(box[2], ox + ow) - max(box[0], ox)
        inter_h = min(box[3], oy + oh) - max(box[1], oy)
        inter = max(inter_w, 0) * max(inter_h, 0)
        union = (box[2] - box[0]) * (box[3] - box[1]) + ow * oh - inter
        if inter / union > MAX_IOU:
            return None
    return SyntheticObject(cls, mask, (x0, y0, x1 - x0 + 1, y1 - y0 + 1))


def make_image(rng: np.random.Generator) -> tuple[np.ndarray, list[SyntheticObject]]:
    """One image (H, W, 3) BGR uint8 and its objects."""
    height, width = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    image = _background(rng, height, width)
    wanted = int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))
    objects: list[SyntheticObject] = []
    for _ in range(PLACEMENT_TRIES):
        if len(objects) == wanted:
            break
        obj = _place_object(rng, height, width, objects)
        if obj is not None:
            image[obj.mask] = _colour(rng, obj.cls.hue)
            objects.append(obj)
    noise = rng.normal(0.0, NOISE_SIGMA, size=image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return image, objects


def write_split(out: str, split: str, stream: int, count: int, seed: int, first_image_id: int, first_ann_id: int,
                classes: Sequence[str]) -> tuple[dict, list[str], int]:
    """Images of one split, their COCO dict and TXT lines; returns (coco dict, txt lines, next annotation id)."""
    os.makedirs(os.path.join(out, split), exist_ok=True)
    label_of = {name: i for i, name in enumerate(classes)}
    shape_of = {c.name: c.shape for c in CLASSES}
    categories = [{"id": cat_id, "name": name, "supercategory": shape_of.get(name, "none")}
                  for cat_id, name in zip(COCO_CATEGORY_IDS, classes[1:], strict=True)]
    id_of = {cat["name"]: cat["id"] for cat in categories}
    wrong = [c.name for c in CLASSES if id_of.get(c.name) != c.category_id]
    if wrong:
        raise ValueError(f"classes must be COCO's 80 names (background first); {wrong} are not at COCO's ids")
    coco = {"info": {"description": "synthetic shapes (src/data/synthetic.py)", "seed": seed, "split": split},
            "licenses": [], "images": [], "annotations": [], "categories": categories}
    lines, ann_id = [], first_ann_id
    for index in range(count):
        rng = np.random.default_rng([seed, stream, index])
        image, objects = make_image(rng)
        image_id = first_image_id + index
        file_name = f"{image_id:012d}.jpg"
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {file_name}")
        with open(os.path.join(out, split, file_name), "wb") as f:
            f.write(encoded.tobytes())
        coco["images"].append({"id": image_id, "file_name": file_name, "height": image.shape[0],
                               "width": image.shape[1]})
        fields = [f"{split}/{file_name}"]
        for obj in objects:
            x, y, w, h = obj.bbox
            coco["annotations"].append({"id": ann_id, "image_id": image_id, "category_id": obj.cls.category_id,
                                        "bbox": [x, y, w, h], "area": int(obj.mask.sum()), "iscrowd": 0})
            fields.append(f"{x},{y},{x + w},{y + h},{label_of[obj.cls.name]},0")
            ann_id += 1
        lines.append(" ".join(fields))
    return coco, lines, ann_id


def generate(out: str, num_train: int, num_val: int, seed: int, classes: Sequence[str]) -> dict[str, str]:
    """Write the data set under `out`; returns the paths of its json and TXT files."""
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    paths, ann_id = {}, 1
    splits = (("train2017", num_train, 1), ("val2017", num_val, VAL_ID_OFFSET + 1))
    for stream, (split, count, first_id) in enumerate(splits):
        coco, lines, ann_id = write_split(out, split, stream, count, seed, first_id, ann_id, classes)
        paths[split + "_json"] = os.path.join(out, "annotations", f"instances_{split}.json")
        write_text_atomic(paths[split + "_json"], json.dumps(coco, indent=None, separators=(",", ":")))
        paths[split + "_txt"] = os.path.join(out, split.replace("2017", "") + ".txt")
        write_text_atomic(paths[split + "_txt"], "\n".join(lines) + ("\n" if lines else ""))
    return paths
