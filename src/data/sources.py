"""Reading a data set's annotations: COCO json or the TXT label file, checked, as per-image records.

A record's boxes are rows `[x1, y1, x2, y2, label, iscrowd]` in source pixels (x2 = x + w for COCO), with
`label` the index of the class name in the classes (coco_classes: 1..num_classes-1; 0 is the background).
Errors name the file and the line or the json entry; they are `DataError`, never a deep traceback.

TXT format (the original's): one image per line,
`relative/path.jpg x1,y1,x2,y2,class,iscrowd x1,y1,x2,y2,class,iscrowd ...`, `class` an index into
`coco_classes`, paths relative to `image_dir`. Blank lines are ignored. An image's id is its 1-based position
among the non-blank lines (the ids `txt_to_coco_dict` gives it). Files written by other tools are read too: a UTF-8
byte-order mark and Windows line ends are accepted; the image path is everything before the first later token that
contains a comma (every box does), so it may contain spaces; a path that itself contains a comma is written in
double quotes (`"a,b.jpg" 1,2,30,40,3,0`). An image listed on two lines is refused, naming both lines (merge its
boxes into one line). A path that leads outside `image_dir` (absolute, or out through `..`) is refused unless the
caller allows it (config key allow_outside_paths).
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO

from src.infra.errors import DataError

BOX_FIELDS = ("x1", "y1", "x2", "y2", "class", "iscrowd")


@dataclass
class ImageRecord:
    """One image of a data set: its file, its id, its boxes (n, 6) float64 [x1, y1, x2, y2, label, iscrowd]."""

    path: str
    image_id: int
    boxes: np.ndarray
    where: str  # "file:line" or "file: images[i]", for messages


# ----------------------------------------------------------------------------------------------------------------
# TXT
def parse_txt_box(text: str, num_classes: int, where: str) -> list[float]:
    """`"x1,y1,x2,y2,class,iscrowd"` -> [x1, y1, x2, y2, class, iscrowd]; DataError naming `where` if unusable."""
    fields = text.split(",")
    if len(fields) != len(BOX_FIELDS):
        raise DataError(f"{where}: box {text!r} has {len(fields)} comma-separated fields, expected "
                        f"{len(BOX_FIELDS)} ({','.join(BOX_FIELDS)})")
    coords = []
    for name, field in zip(BOX_FIELDS[:4], fields[:4], strict=True):
        try:
            value = float(field)
        except ValueError:
            raise DataError(f"{where}: box {text!r}: {name}={field!r} is not a number") from None
        if not math.isfinite(value):
            raise DataError(f"{where}: box {text!r}: {name}={field!r} is not a finite number")
        coords.append(value)
    ints = []
    for name, field in zip(BOX_FIELDS[4:], fields[4:], strict=True):
        try:
            ints.append(int(field))
        except ValueError:
            raise DataError(f"{where}: box {text!r}: {name}={field!r} is not an integer") from None
    x1, y1, x2, y2 = coords
    label, iscrowd = ints
    if x2 <= x1:
        raise DataError(f"{where}: box {text!r}: xmax={x2:g} <= xmin={x1:g}")
    if y2 <= y1:
        raise DataError(f"{where}: box {text!r}: ymax={y2:g} <= ymin={y1:g}")
    if not 1 <= label < num_classes:
        raise DataError(f"{where}: box {text!r}: class {label} is outside the config's classes "
                        f"(1..{num_classes - 1}; 0 is the background)")
    if iscrowd not in (0, 1):
        raise DataError(f"{where}: box {text!r}: iscrowd={iscrowd} must be 0 or 1")
    return [x1, y1, x2, y2, float(label), float(iscrowd)]


def split_txt_line(line: str, where: str) -> tuple[str, list[str]] | None:
    """One TXT line -> (image path, box tokens); None for a blank line (see the module docstring for the rule)."""
    text = line.strip()
    if not text:
        return None
    if text.startswith('"'):
        end = text.find('"', 1)
        if end < 0:
            raise DataError(f"{where}: the quoted image path is not closed (expected a second \")")
        path, rest = text[1:end], text[end + 1:]
        if rest and not rest[0].isspace():
            raise DataError(f"{where}: expected a space after the quoted image path {path!r}")
        if not path:
            raise DataError(f"{where}: the image path is empty")
        return path, rest.split()
    tokens = list(re.finditer(r"\S+", text))
    first_box = next((i for i, token in enumerate(tokens) if i > 0 and "," in token.group()), len(tokens))
    if first_box == len(tokens):
        return text, []
    return text[:tokens[first_box].start()].rstrip(), [token.group() for token in tokens[first_box:]]


def parse_txt_line(line: str, num_classes: int, where: str) -> tuple[str, np.ndarray] | None:
    """One TXT line -> (relative image path, boxes (n, 6) float64); None for a blank line."""
    split = split_txt_line(line, where)
    if split is None:
        return None
    name, box_tokens = split
    boxes = [parse_txt_box(text, num_classes, where) for text in box_tokens]
    return name, np.array(boxes, dtype=np.float64).reshape(-1, len(BOX_FIELDS))


def is_outside(name: str) -> bool:
    """Whether the TXT image path `name` leads outside the folder it is relative to (absolute, or out through
    `..`; judged on the text, symbolic links are not followed)."""
    return os.path.isabs(name) or os.path.normpath(name).split(os.sep)[0] == os.pardir


def read_txt_lines(anno_path: str, num_classes: int,
                   allow_outside_paths: bool = False) -> list[tuple[str, str, np.ndarray]]:
    """The images of a TXT label file in line order: (where "file:line", relative path, boxes (n, 6)); DataError
    naming the file and line for a bad line, an image listed twice, or (unless `allow_outside_paths`) a path
    outside image_dir."""
    if not os.path.isfile(anno_path):
        raise DataError(f"TXT label file not found: {anno_path!r} (config key anno_path)")
    try:
        with open(anno_path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{anno_path}: not a UTF-8 text file ({err})") from None
    images, first_line = [], {}
    for line_no, line in enumerate(lines, start=1):
        where = f"{anno_path}:{line_no}"
        parsed = parse_txt_line(line, num_classes, where)
        if parsed is None:
            continue
        name, boxes = parsed
        if not allow_outside_paths and is_outside(name):
            raise DataError(f"{where}: image path {name!r} leads outside image_dir (paths are relative to image_dir; "
                            "set allow_outside_paths=True to accept absolute and '..' paths)")
        if name in first_line:
            raise DataError(f"{where}: image {name!r} is already listed on line {first_line[name]} (merge its boxes "
                            "into one line)")
        first_line[name] = line_no
        images.append((where, name, boxes))
    return images


def read_txt_records(anno_path: str, image_dir: str, classes: Sequence[str],
                     allow_outside_paths: bool = False) -> list[ImageRecord]:
    """All images of a TXT label file, in line order; image paths joined to `image_dir` (an absolute one, allowed
    with `allow_outside_paths`, replaces it; the files are not checked here)."""
    if not os.path.isdir(image_dir):
        raise DataError(f"image directory not found: {image_dir!r} (config key image_dir)")
    lines = read_txt_lines(anno_path, len(classes), allow_outside_paths)
    return [ImageRecord(os.path.join(image_dir, name), image_id, boxes, where)
            for image_id, (where, name, boxes) in enumerate(lines, start=1)]


def txt_to_coco_dict(anno_path: str, classes: Sequence[str]) -> dict:
    """The TXT label file as a COCO ground-truth dict (for COCOeval), as the original builds it.

    Images get ids 1, 2, ... in line order; categories are every name of `classes` with id = its index (the
    background included at id 0); bbox = [x1, y1, x2 - x1, y2 - y1].
    """
    data = {"images": [], "annotations": [],
            "categories": [{"id": i, "name": name} for i, name in enumerate(classes)]}
    # the paths are only names here (images are read from the MindRecord, whose conversion checks them)
    for image_id, (_, name, boxes) in enumerate(read_txt_lines(anno_path, len(classes), True), start=1):
        data["images"].append({"file_name": name, "id": image_id})
        for x1, y1, x2, y2, label, iscrowd in boxes.tolist():
            w, h = x2 - x1, y2 - y1
            data["annotations"].append({"bbox": [x1, y1, w, h], "area": w * h, "category_id": int(label),
                                        "iscrowd": int(iscrowd), "image_id": image_id,
                                        "id": len(data["annotations"]) + 1})
    return data


# ----------------------------------------------------------------------------------------------------------------
# COCO
_REQUIRED = {
    "images": {"id": int, "file_name": str},
    "annotations": {"id": int, "image_id": int, "category_id": int, "bbox": list, "iscrowd": int},
    "categories": {"id": int, "name": str},
}


def load_coco_json(json_path: str) -> dict:
    """Read a COCO instances json and check the keys this port (and pycocotools) relies on."""
    if not os.path.isfile(json_path):
        raise DataError(f"COCO annotation file not found: {json_path!r}")
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{json_path}: not valid json ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{json_path}: expected a json object with {sorted(_REQUIRED)}")
    for section, keys in _REQUIRED.items():
        entries = data.get(section)
        if not isinstance(entries, list):
            raise DataError(f"{json_path}: missing the list {section!r}")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise DataError(f"{json_path}: {section}[{i}] is not an object")
            for key, kind in keys.items():
                if key not in entry:
                    raise DataError(f"{json_path}: {section}[{i}] has no {key!r}")
                value = entry[key]
                if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                    raise DataError(f"{json_path}: {section}[{i}].{key}={value!r} is not an integer")
                if kind is not int and not isinstance(value, kind):
                    raise DataError(f"{json_path}: {section}[{i}].{key}={value!r} is not a {kind.__name__}")
    image_ids = {img["id"] for img in data["images"]}
    category_ids = {cat["id"] for cat in data["categories"]}
    for i, ann in enumerate(data["annotations"]):
        bbox = ann["bbox"]
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                     and math.isfinite(v) for v in bbox):
            raise DataError(f"{json_path}: annotations[{i}].bbox={bbox!r} is not 4 finite numbers [x, y, w, h]")
        if ann["image_id"] not in image_ids:
            raise DataError(f"{json_path}: annotations[{i}].image_id={ann['image_id']} is not in images")
        if ann["category_id"] not in category_ids:
            raise DataError(f"{json_path}: annotations[{i}].category_id={ann['category_id']} is not in categories")
    return data


def category_names(json_path: str) -> list[str]:
    """The names of a COCO json's categories ordered by category id; DataError when two share a name."""
    categories = sorted(load_coco_json(json_path)["categories"], key=lambda cat: cat["id"])
    names = [cat["name"] for cat in categories]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"{json_path}: categories {repeated} appear more than once (a class name maps to one label)")
    return names


def coco_category_labels(categories: Sequence[dict], classes: Sequence[str], used_ids: set[int],
                         where: str) -> dict[int, int]:
    """COCO category id -> contiguous label (index of its name in `classes`), as the original maps them.

    A category that has annotations (`used_ids`) but whose name is not in `classes` is an error: the config's
    `coco_classes` must list the data set's class names (background first).
    """
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(cat["name"] for cat in categories if cat["id"] in used_ids and cat["name"] not in index)
    if unknown:
        raise DataError(f"{where}: categories {unknown} are not in the config's coco_classes; set coco_classes "
                        "(background first) and num_classes to the data set's class names")
    return {cat["id"]: index[cat["name"]] for cat in categories if cat["name"] in index}


def read_coco_records(json_path: str, image_root: str, classes: Sequence[str]) -> tuple[list[ImageRecord], dict]:
    """All images of a COCO json in `getImgIds()` order (json order), crowd boxes kept with iscrowd = 1.

    Returns (records, category id -> label). Image paths are `image_root/file_name` (not checked here).
    """
    data = load_coco_json(json_path)
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    used = {ann["category_id"] for ann in data["annotations"]}
    labels = coco_category_labels(data["categories"], classes, used, json_path)
    records = []
    for i, image_id in enumerate(coco.getImgIds()):
        info = coco.imgs[image_id]
        rows = []
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
            x, y, w, h = ann["bbox"]
            rows.append([x, y, x + w, y + h, labels[ann["category_id"]], int(ann["iscrowd"])])
        boxes = np.array(rows, dtype=np.float64).reshape(-1, len(BOX_FIELDS))
        records.append(ImageRecord(os.path.join(image_root, info["file_name"]), image_id, boxes,
                                   f"{json_path}: images[{i}] (id {image_id})"))
    return records, labels
