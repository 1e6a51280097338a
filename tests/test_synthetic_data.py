"""The synthetic data set: real COCO (pycocotools), deterministic, tight boxes, the TXT file agrees with the json."""
import filecmp
import os

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from src.data.synthetic import CLASSES
from src.model_utils.config import get_config
from src.tools.synthetic_data import main

NUM_TRAIN, NUM_VAL = 40, 6


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    main(["--out", str(out), "--num_train", str(NUM_TRAIN), "--num_val", str(NUM_VAL), "--seed", "5"])
    return out


def _coco(root, split):
    return COCO(os.path.join(root, "annotations", f"instances_{split}.json"))


def _all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def test_same_seed_same_bytes_other_seed_other_images(synthetic, tmp_path):
    main(["--out", str(tmp_path / "again"), "--num_train", str(NUM_TRAIN), "--num_val", str(NUM_VAL),
          "--seed", "5"])
    files = _all_files(synthetic)
    assert files == _all_files(tmp_path / "again")
    match, mismatch, errors = filecmp.cmpfiles(synthetic, tmp_path / "again", files, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(files)
    main(["--out", str(tmp_path / "other"), "--num_train", "3", "--num_val", "0", "--seed", "6"])
    first = "train2017/000000000001.jpg"
    assert not filecmp.cmp(synthetic / first, tmp_path / "other" / first, shallow=False)


def test_real_coco_with_coco_names_and_ids(synthetic):
    coco_classes = get_config([]).coco_classes
    for split, count in (("train2017", NUM_TRAIN), ("val2017", NUM_VAL)):
        coco = _coco(synthetic, split)
        assert len(coco.getImgIds()) == count
        # COCO's 80 categories with COCO's ids (1..90 without its unused ones), in coco_classes order.
        coco_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
        cats = coco.loadCats(coco.getCatIds())
        assert [(c["id"], c["name"]) for c in cats] == list(zip(coco_ids, coco_classes[1:], strict=True))
        used = sorted({a["category_id"] for a in coco.loadAnns(coco.getAnnIds())})
        assert len(used) >= 5 and used != list(range(used[0], used[0] + len(used)))  # non-contiguous ids
        for img in coco.loadImgs(coco.getImgIds()):
            assert os.path.isfile(os.path.join(synthetic, split, img["file_name"]))
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
            assert 1 <= len(anns) <= 8
            for ann in anns:
                x, y, w, h = ann["bbox"]
                assert 0 <= x and 0 <= y and x + w <= img["width"] and y + h <= img["height"]
                assert 0 < ann["area"] <= w * h and ann["iscrowd"] == 0


def test_variety_sizes_small_border_overlap(synthetic):
    coco = _coco(synthetic, "train2017")
    imgs = coco.loadImgs(coco.getImgIds())
    assert len({(i["height"], i["width"]) for i in imgs}) >= 3
    anns = coco.loadAnns(coco.getAnnIds())
    assert len({a["category_id"] for a in anns}) == len(CLASSES)
    sides = np.array([max(a["bbox"][2], a["bbox"][3]) for a in anns])
    assert sides.min() >= 10 and sides.max() <= 201 and (sides <= 32).sum() >= 5
    size = {i["id"]: (i["width"], i["height"]) for i in imgs}
    at_border = [a for a in anns if a["bbox"][0] == 0 or a["bbox"][1] == 0
                 or a["bbox"][0] + a["bbox"][2] == size[a["image_id"]][0]
                 or a["bbox"][1] + a["bbox"][3] == size[a["image_id"]][1]]
    assert len(at_border) >= 3
    overlapping = 0
    for img in imgs:
        boxes = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))]
        for i, (x, y, w, h) in enumerate(boxes):
            for ox, oy, ow, oh in boxes[i + 1:]:
                overlapping += min(x + w, ox + ow) > max(x, ox) and min(y + h, oy + oh) > max(y, oy)
    assert overlapping >= 3


def test_boxes_are_tight_around_the_class_colour(synthetic):
    """An object not touched by another box: its hue band's saturated pixels span exactly its box (±2 px)."""
    coco = _coco(synthetic, "train2017")
    hue_of = {c.category_id: c.hue for c in CLASSES}
    checked = 0
    for img in coco.loadImgs(coco.getImgIds()[:15]):
        bgr = cv2.imread(os.path.join(synthetic, "train2017", img["file_name"]))
        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV).astype(int)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        for ann in anns:
            x, y, w, h = ann["bbox"]
            others = [o["bbox"] for o in anns if o is not ann]
            if any(min(x + w, ox + ow) + 3 > max(x, ox) - 3 and min(y + h, oy + oh) + 3 > max(y, oy) - 3
                   for ox, oy, ow, oh in others):
                continue
            lo, hi = hue_of[ann["category_id"]]
            x0, y0 = max(x - 4, 0), max(y - 4, 0)
            window = hsv[y0:y + h + 4, x0:x + w + 4]
            hit = (window[..., 1] > 120) & (window[..., 2] > 120) & \
                  (window[..., 0] >= lo - 3) & (window[..., 0] <= hi + 3)
            ys, xs = np.nonzero(hit)
            got = np.array([xs.min() + x0, ys.min() + y0, xs.max() + x0 + 1, ys.max() + y0 + 1])
            np.testing.assert_allclose(got, [x, y, x + w, y + h], atol=2, err_msg=str(ann))
            checked += 1
    assert checked >= 10


def test_txt_file_is_the_same_training_set(synthetic):
    coco = _coco(synthetic, "train2017")
    classes = get_config([]).coco_classes
    lines = (synthetic / "train.txt").read_text().splitlines()
    assert len(lines) == NUM_TRAIN
    for line, img in zip(lines, coco.loadImgs(coco.getImgIds()), strict=True):
        name, *boxes = line.split(" ")
        assert name == "train2017/" + img["file_name"]
        expected = [f"{x},{y},{x + w},{y + h},{classes.index(coco.cats[a['category_id']]['name'])},0"
                    for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])) for x, y, w, h in [a["bbox"]]]
        assert boxes == expected
