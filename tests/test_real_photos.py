"""bench/real_photos.py: tiles, clipped boxes, a spatially disjoint split, TXT and COCO files that agree.

The wheel is a stand-in zip with deepforest's four file names: images whose pixel value encodes its position, so
that every tile's origin can be read back from its pixels, and boxes placed by hand.
"""
from __future__ import annotations

import io
import json
import zipfile

import cv2
import numpy as np
import pytest

from bench import real_photos

BOXES = {  # name: (width, height, boxes x1, y1, x2, y2)
    real_photos.BIG: (700, 800, [[10, 10, 40, 40], [300, 150, 340, 200], [100, 470, 160, 530], [600, 700, 650, 760]]),
    real_photos.SECOND: (400, 320, [[0, 0, 30, 30]]),
    "OSBS_029": (400, 400, [[5, 5, 25, 25]]),
    "SOAP_061": (400, 400, [[50, 60, 90, 100], [390, 390, 400, 400]]),
}


def position_image(width: int, height: int, seed: int) -> np.ndarray:
    """BGR uint8: blue = x mod 256, green = y mod 256, red = x // 256 * 16 + y // 256 + seed (all < 256 here)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, x // 256 * 16 + y // 256 + seed], axis=-1).astype(np.uint8)


def voc_xml(boxes: list[list[int]]) -> str:
    objects = "".join(f"<object><name>Tree</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                      f"<ymax>{y2}</ymax></bndbox></object>" for x1, y1, x2, y2 in boxes)
    return f"<annotation>{objects}</annotation>"


@pytest.fixture
def wheel(tmp_path):
    path = tmp_path / "deepforest-2.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for seed, (name, (width, height, boxes)) in enumerate(BOXES.items()):
            ok, png = cv2.imencode(".png", position_image(width, height, seed * 4))
            assert ok
            archive.writestr(f"deepforest/data/{name}.png", png.tobytes())
            archive.writestr(f"deepforest/data/{name}.xml", voc_xml(boxes))
    return path


def test_starts_and_clipping_by_hand():
    assert real_photos.starts(700, 320, 128, flush=True) == [0, 128, 256, 380]
    assert real_photos.starts(700, 320, 320, flush=False) == [0, 320]
    assert real_photos.starts(300, 320, 128, flush=True) == [0]
    boxes = np.array([[0.0, 0.0, 10, 10], [-6, 0, 4, 10], [-4, 0, 6, 10], [5, 5, 5, 9]])
    # 100 % inside; 40 % visible (dropped); 60 % visible (clipped to x 0..6); zero area (dropped)
    np.testing.assert_array_equal(real_photos.clip_boxes(boxes, 0, 0, 50, 50, 0.5), [[0, 0, 10, 10], [0, 0, 6, 10]])
    np.testing.assert_array_equal(real_photos.clip_boxes(boxes + 100, 100, 100, 50, 50, 0.5),
                                  [[0, 0, 10, 10], [0, 0, 6, 10]])


def read_txt(path):
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, *groups = line.split(" ")
        rows[name] = [[int(v) for v in g.split(",")] for g in groups]
    return rows


def test_data_set_is_disjoint_and_txt_matches_coco(wheel, tmp_path, capsys):
    out = tmp_path / "data"
    assert real_photos.main(["--out", str(out), "--wheel", str(wheel), "--tile", "320", "--stride", "128",
                             "--val_rows", "320"]) == 0
    train, val = read_txt(out / "train.txt"), read_txt(out / "val.txt")
    # big image 700x800, train rows 0..480: origins y 0, 128, 160 (flush), x 0, 128, 256, 380; second 400x320: x 0, 80
    assert len(train) == 3 * 4 + 2
    # val: the bottom 320 rows in side-by-side tiles (x 0, 320; 380..700 would overlap) and the two other sites
    assert len(val) == 2 + 2
    split_row = 800 - 320
    for name in train:
        if real_photos.BIG not in name:
            continue
        pixels = cv2.imread(str(out / name))
        y0, x0 = (int(v) for v in name.rsplit(".", 1)[0].split("_")[-2:])
        # the pixels are those of the window the name says, and it ends above the val band
        np.testing.assert_array_equal(pixels, position_image(700, 800, 0)[y0:y0 + 320, x0:x0 + 320])
        assert y0 + 320 <= split_row
    for name in val:
        if real_photos.BIG in name:
            assert int(name.split("_")[-2]) >= split_row
    # by hand: the box (300, 150, 340, 200) in the tile at x 256, y 128 is (44, 22, 84, 72); the tile at x 380,
    # y 160 holds no box: a background image, kept as a line without a group
    assert train[f"train2017/{real_photos.BIG}_128_256.png"] == [[44, 22, 84, 72, 1, 0]]
    assert train[f"train2017/{real_photos.BIG}_160_380.png"] == []
    # the tile at x 0, y 160 shows 40 % of (300, 150, 340, 200) and 10/60 of (100, 470, 160, 530): both dropped
    assert train[f"train2017/{real_photos.BIG}_160_0.png"] == []
    # (100, 470, 160, 530) straddles the split: 50/60 of it in the val tile at x 0, y 480 (kept, clipped), 10/60 in
    # the train tile above (dropped); (600, 700, 650, 760) is 40/50 inside the val tile at x 320
    assert val[f"val2017/{real_photos.BIG}_480_0.png"] == [[100, 0, 160, 50, 1, 0]]
    assert val[f"val2017/{real_photos.BIG}_480_320.png"] == [[280, 220, 320, 280, 1, 0]]
    assert val["val2017/SOAP_061.png"] == [[50, 60, 90, 100, 1, 0], [390, 390, 400, 400, 1, 0]]
    for split, rows in (("train", train), ("val", val)):
        coco = json.loads((out / "annotations" / f"instances_{split}2017.json").read_text(encoding="utf-8"))
        assert coco["categories"] == [{"id": 1, "name": "tree", "supercategory": "plant"}]
        files = {img["id"]: f"{split}2017/{img['file_name']}" for img in coco["images"]}
        assert sorted(files.values()) == sorted(rows)
        from_coco = {name: [] for name in rows}
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            from_coco[files[ann["image_id"]]].append([x, y, x + w, y + h, ann["category_id"], ann["iscrowd"]])
        assert from_coco == rows
    printed = capsys.readouterr().out
    assert "train      14" in printed and "val         4" in printed


def test_refuses_an_existing_data_set(wheel, tmp_path):
    out = tmp_path / "data"
    real_photos.main(["--out", str(out), "--wheel", str(wheel)])
    before = (out / "train.txt").read_bytes()
    with pytest.raises(SystemExit, match="already holds a data set"):
        real_photos.main(["--out", str(out), "--wheel", str(wheel)])
    assert (out / "train.txt").read_bytes() == before


def test_missing_wheel_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="--wheel .* does not exist"):
        real_photos.main(["--out", str(tmp_path / "d"), "--wheel", str(tmp_path / "nope.whl")])


def test_reads_the_wheel_members():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("deepforest/data/a.xml", voc_xml([[1, 2, 3, 4], [5, 6, 7, 8]]))
    with zipfile.ZipFile(buffer) as archive:
        np.testing.assert_array_equal(real_photos.read_member_boxes(archive, "a"), [[1, 2, 3, 4], [5, 6, 7, 8]])
