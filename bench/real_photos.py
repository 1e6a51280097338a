"""A real photo set with small objects: DeepForest's aerial tree crowns, tiled into a TXT and a COCO data set.

    python bench/real_photos.py --out /work/realrun/data [--wheel deepforest-2.1.0-py3-none-any.whl]
                                [--tile 320] [--stride 128] [--val_rows 640]

The data are the four annotated RGB images that the `deepforest==2.1.0` wheel (PyPI, 20 MB, MIT) ships in
`deepforest/data/`: NEON airborne orthophotos at 10 cm/px with one box per tree crown drawn by people (Pascal VOC
xml). `2019_YELL_2_528000_4978000_image_crop2.png` (2299×2472 px, 574 boxes), `2019_YELL_2_541000_4977000_image_
crop.png` (1249×1035, 279), `OSBS_029.png` (400×400, 61) and `SOAP_061.png` (400×400, 37, labelled "Alive"/"Dead":
every box is one class, "tree", here). Without `--wheel` the script downloads it once with
`pip download --no-deps deepforest==2.1.0 -d <out>/wheel` (it says so).

Split, spatially disjoint (no val pixel is in any train tile):
- train: tiles of `--tile` px every `--stride` px (the last row and column flush with the edge) of the big YELL
  image above its bottom `--val_rows` rows, and of the whole second YELL image;
- val: the bottom `--val_rows` rows of the big YELL image in non-overlapping tiles, plus OSBS_029 and SOAP_061
  whole (400×400, other sites).
A box is clipped to its tile and kept when at least `--min_visible` of its area lies inside. Tiles without a box
(background images) are written too. Outputs in `--out` (refused when it already holds a data set):
`train2017/`, `val2017/` (PNG), `train.txt`, `val.txt` (TXT format: `train2017/x.png x1,y1,x2,y2,1,0 ...`,
image_dir = `--out`) and `annotations/instances_{train,val}2017.json` (COCO, category 1 "tree"; `--out` is then a
coco_root). The last lines print the counts and the box-size percentiles (sqrt(w·h) px).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile

import cv2
import numpy as np

WHEEL = "deepforest==2.1.0"
BIG = "2019_YELL_2_528000_4978000_image_crop2"
SECOND = "2019_YELL_2_541000_4977000_image_crop"
OTHER_SITES = ("OSBS_029", "SOAP_061")
CLASS_NAME = "tree"


def find_wheel(wheel: str, out: str) -> str:
    """The wheel's path: `wheel` when given, else a pip download into `<out>/wheel` (or one already there)."""
    if wheel:
        if not os.path.isfile(wheel):
            sys.exit(f"real_photos.py: --wheel {wheel!r} does not exist (the deepforest-2.1.0 wheel from PyPI)")
        return wheel
    target = os.path.join(out, "wheel")
    found = glob.glob(os.path.join(target, "deepforest-2.1.0-*.whl"))
    if not found:
        print(f"no --wheel: downloading it with pip download --no-deps {WHEEL} -d {target}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", target], check=True)
        found = glob.glob(os.path.join(target, "deepforest-2.1.0-*.whl"))
    return found[0]


def read_member_image(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """The wheel's `deepforest/data/<name>.png` as a BGR uint8 array (H, W, 3)."""
    data = np.frombuffer(archive.read(f"deepforest/data/{name}.png"), dtype=np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def read_member_boxes(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """The boxes of `deepforest/data/<name>.xml` (Pascal VOC), float (N, 4) x1, y1, x2, y2 in pixels."""
    root = ET.fromstring(archive.read(f"deepforest/data/{name}.xml"))
    boxes = [[float(obj.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
             for obj in root.iter("object")]
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def starts(length: int, tile: int, stride: int, flush: bool) -> list[int]:
    """Tile origins along one axis: every `stride` px; with `flush` one more flush with the end, so that every
    pixel is in a tile (no partial tile either way)."""
    if length <= tile:
        return [0]
    origins = list(range(0, length - tile + 1, stride))
    if flush and origins[-1] != length - tile:
        origins.append(length - tile)
    return origins


def clip_boxes(boxes: np.ndarray, x0: int, y0: int, width: int, height: int, min_visible: float) -> np.ndarray:
    """`boxes` (N, 4) in the window (x0, y0, width, height), in window pixels, those with at least `min_visible`
    of their area inside; (M, 4)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    clipped = boxes - [x0, y0, x0, y0]
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    return clipped[(area > 0) & (visible >= min_visible * area)]


def windows(image_width: int, tile: int, stride: int, rows: tuple[int, int]):
    """(x0, y0, width, height) of the tiles of the rows [rows[0], rows[1]) of an image: every `stride` px and flush
    with the edges when `stride` < `tile` (train), else side by side (val; a last partial row or column is left
    out, so that no two val tiles overlap)."""
    top, bottom = rows
    for y in starts(bottom - top, tile, stride, stride < tile):
        for x in starts(image_width, tile, stride, stride < tile):
            yield x, top + y, min(tile, image_width), min(tile, bottom - top)


def write_split(out: str, split: str, items: list[tuple[str, np.ndarray, np.ndarray]]) -> dict:
    """Writes `<split>2017/*.png`, `<split>.txt` and `annotations/instances_<split>2017.json`; the counts."""
    folder = f"{split}2017"
    os.makedirs(os.path.join(out, folder))
    lines, images, annotations = [], [], []
    for image_id, (name, pixels, boxes) in enumerate(items, start=1):
        rel = f"{folder}/{name}.png"
        cv2.imwrite(os.path.join(out, rel), pixels)
        rounded = np.round(boxes).astype(int)
        rounded = rounded[(rounded[:, 2] > rounded[:, 0]) & (rounded[:, 3] > rounded[:, 1])]
        lines.append(" ".join([rel] + [f"{x1},{y1},{x2},{y2},1,0" for x1, y1, x2, y2 in rounded]))
        images.append({"id": image_id, "file_name": f"{name}.png", "height": int(pixels.shape[0]),
                       "width": int(pixels.shape[1])})
        for x1, y1, x2, y2 in rounded.tolist():
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    with open(os.path.join(out, f"{split}.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "annotations", f"instances_{split}2017.json"), "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 1, "name": CLASS_NAME, "supercategory": "plant"}]}, f)
    sides = np.sqrt([a["area"] for a in annotations]) if annotations else np.zeros(1)
    widths = [a["bbox"][2] for a in annotations]
    return {"split": split, "images": len(images), "background": sum(1 for ln in lines if " " not in ln),
            "boxes": len(annotations), "max_per_image": max(ln.count(",1,0") for ln in lines),
            "side_p5_p50_p95": np.percentile(sides, [5, 50, 95]).round(1).tolist(),
            "width_min_max": [min(widths, default=0), max(widths, default=0)]}


def build(archive: zipfile.ZipFile, tile: int, stride: int, val_rows: int, min_visible: float):
    """(train items, val items), each a list of (name, BGR tile, boxes (N, 4) in tile pixels)."""
    train, val = [], []
    big, big_boxes = read_member_image(archive, BIG), read_member_boxes(archive, BIG)
    height, width = big.shape[:2]
    split_row = height - val_rows
    for name, image, boxes, rows, step, out in (
            (BIG, big, big_boxes, (0, split_row), stride, train),
            (BIG, big, big_boxes, (split_row, height), tile, val)):
        for x, y, w, h in windows(width, tile, step, rows):
            out.append((f"{name}_{y}_{x}", image[y:y + h, x:x + w], clip_boxes(boxes, x, y, w, h, min_visible)))
    second, second_boxes = read_member_image(archive, SECOND), read_member_boxes(archive, SECOND)
    for x, y, w, h in windows(second.shape[1], tile, stride, (0, second.shape[0])):
        train.append((f"{SECOND}_{y}_{x}", second[y:y + h, x:x + w],
                      clip_boxes(second_boxes, x, y, w, h, min_visible)))
    for name in OTHER_SITES:
        image = read_member_image(archive, name)
        val.append((name, image, clip_boxes(read_member_boxes(archive, name), 0, 0, image.shape[1],
                                            image.shape[0], min_visible)))
    return train, val


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (new, or empty)")
    parser.add_argument("--wheel", default="", help="the deepforest-2.1.0 wheel (default: pip download it)")
    parser.add_argument("--tile", type=int, default=320, help="tile side, px")
    parser.add_argument("--stride", type=int, default=128, help="train tile stride, px")
    parser.add_argument("--val_rows", type=int, default=640, help="bottom rows of the big image kept for val")
    parser.add_argument("--min_visible", type=float, default=0.5, help="keep a clipped box with this area share")
    args = parser.parse_args(argv)
    if os.path.exists(os.path.join(args.out, "train.txt")) or os.path.exists(os.path.join(args.out, "train2017")):
        sys.exit(f"real_photos.py: {args.out} already holds a data set; give a new --out")
    os.makedirs(os.path.join(args.out, "annotations"), exist_ok=True)
    with zipfile.ZipFile(find_wheel(args.wheel, args.out)) as archive:
        train, val = build(archive, args.tile, args.stride, args.val_rows, args.min_visible)
    print(f"{'split':6} {'images':>6} {'background':>10} {'boxes':>6} {'max/img':>7} "
          f"{'side p5/p50/p95 (px)':>22} {'width min-max':>13}")
    for split, items in (("train", train), ("val", val)):
        c = write_split(args.out, split, items)
        p5, p50, p95 = c["side_p5_p50_p95"]
        print(f"{split:6} {c['images']:6d} {c['background']:10d} {c['boxes']:6d} {c['max_per_image']:7d} "
              f"{f'{p5:.1f}/{p50:.1f}/{p95:.1f}':>22} {'-'.join(map(str, c['width_min_max'])):>13}")
    print(f"TXT: --dataset=other --image_dir={args.out} --anno_path={args.out}/train.txt (val.txt); "
          f"COCO: --coco_root={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
