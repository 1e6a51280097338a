"""EXIF orientation (src/data/image_files.py) and where images are read with it: the frames against PIL's
ImageOps.exif_transpose, a MindRecord of an orientation-6 JPEG in either frame (pixel check of the box), and the
inference loader's reported size."""
import json
import os

import cv2
import numpy as np
import pytest
from mindspore import dataset as de
from PIL import Image, ImageOps

from src.data.image_files import (
    ORIENTATION_TAG,
    OrientationNotes,
    exif_orientation,
    read_image_bgr,
    to_displayed,
)
from src.data.mindrecord import create_mindrecord
from src.data.settings import DataSettings
from src.data.transforms import PreprocessSettings
from src.deploy.mindir_app import load_image
from src.model_utils.config import get_config
from tests.helpers.processes import run_script

STORED_H, STORED_W = 96, 160   # the JPEG's stored frame; orientation 6 displays it 160 high, 96 wide
SQUARE = (20, 100, 30, 30)     # x, y, w, h of the red square in the displayed frame (outside the stored frame's rows)
RED_BGR = (0, 0, 255)


def save_with_orientation(path, rgb: np.ndarray, orientation: int, **options) -> None:
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[ORIENTATION_TAG] = orientation
    image.save(path, exif=exif, **options)


def displayed_picture() -> np.ndarray:
    """BGR (160, 96): grey with the red square at SQUARE."""
    picture = np.full((STORED_W, STORED_H, 3), 90, np.uint8)
    x, y, w, h = SQUARE
    picture[y:y + h, x:x + w] = RED_BGR
    return picture


def oriented_jpeg(path) -> None:
    """The displayed picture stored turned back (90 degrees counter-clockwise), tagged orientation 6."""
    stored = np.rot90(displayed_picture(), 1)
    assert stored.shape[:2] == (STORED_H, STORED_W)
    save_with_orientation(path, np.ascontiguousarray(stored[:, :, ::-1]), 6, quality=95)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_displayed_frame_is_pils_exif_transpose(tmp_path, orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "a.png"  # lossless, so the pixels compare exactly
    save_with_orientation(path, stored, orientation)
    assert exif_orientation(str(path)) == orientation
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    np.testing.assert_array_equal(to_displayed(stored, orientation), expected)
    np.testing.assert_array_equal(read_image_bgr(str(path), True), expected[:, :, ::-1])
    np.testing.assert_array_equal(read_image_bgr(str(path), False), stored[:, :, ::-1])


def test_orientation_of_files_without_one(tmp_path):
    cv2.imwrite(str(tmp_path / "plain.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert exif_orientation(str(tmp_path / "plain.jpg")) == 1
    assert exif_orientation(str(tmp_path / "junk.jpg")) == 1
    assert exif_orientation(str(tmp_path / "none.jpg")) == 1
    assert read_image_bgr(str(tmp_path / "junk.jpg"), True) is None


def test_notes_count_and_name_the_first_images():
    notes = OrientationNotes()
    assert notes.line(False) is None
    for i in range(7):
        notes.note(f"{i}.jpg", 1 if i == 0 else 6)
    line = notes.line(False)
    assert line == ("WARNING: 6 images have an EXIF orientation other than 1 (first: 1.jpg, 2.jpg, 3.jpg, 4.jpg, "
                    "5.jpg): stored frame used; set exif_transpose=True to use the displayed frame")
    assert notes.line(True).startswith("note: 6 images") and "displayed frame" in notes.line(True)


@pytest.fixture
def oriented_coco(tmp_path):
    """A COCO val set of one orientation-6 JPEG whose box (the red square) is given in the displayed frame."""
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    oriented_jpeg(root / "val2017" / "turned.jpg")
    data = {"images": [{"id": 5, "file_name": "turned.jpg", "height": STORED_W, "width": STORED_H}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 3, "bbox": list(SQUARE), "area": 900.0,
                             "iscrowd": 0}],
            "categories": [{"id": 3, "name": "car"}]}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root


def stored_row(path):
    (row,) = de.MindDataset(path, columns_list=["image", "annotation"], shuffle=False).create_dict_iterator(
        output_numpy=True, num_epochs=1)
    return row["image"].tobytes(), row["annotation"]


def test_mindrecord_in_the_displayed_frame_holds_the_labelled_square(oriented_coco, capsys):
    cfg = get_config([], coco_root=str(oriented_coco), mindrecord_dir=str(oriented_coco / "mr"),
                     exif_transpose=True)
    data, annotation = stored_row(create_mindrecord(DataSettings.from_config(cfg), "eval.mindrecord", False))
    assert data.startswith(b"\x89PNG")  # re-encoded losslessly
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (STORED_W, STORED_H)  # the displayed frame: 160 high, 96 wide
    x, y, w, h = SQUARE
    np.testing.assert_array_equal(annotation, [[x, y, x + w, y + h, 3, 0]])  # not clipped
    x1, y1, x2, y2 = annotation[0, :4]
    red = (image[:, :, 2] > 200) & (image[:, :, 1] < 80) & (image[:, :, 0] < 80)
    rows, cols = np.nonzero(red)
    assert red[y1 + 2:y2 - 2, x1 + 2:x2 - 2].all()  # the square fills the box ...
    assert rows.min() >= y1 - 1 and rows.max() <= y2 and cols.min() >= x1 - 1 and cols.max() <= x2  # ... only it
    out = capsys.readouterr().out
    assert "note: 1 images have an EXIF orientation other than 1 (first: turned.jpg)" in out


def test_mindrecord_in_the_stored_frame_by_default_names_the_image(oriented_coco, capsys):
    cfg = get_config([], coco_root=str(oriented_coco), mindrecord_dir=str(oriented_coco / "mr"))
    path = create_mindrecord(DataSettings.from_config(cfg), "eval.mindrecord", is_training=False)
    data, annotation = stored_row(path)
    with open(oriented_coco / "val2017" / "turned.jpg", "rb") as f:
        assert data == f.read()  # the file's own bytes, stored frame
    assert annotation[0, 5] == 1  # the box, below the stored frame's 96 rows, is empty once clipped: no usable box
    out = capsys.readouterr().out
    assert ("WARNING: 1 images have an EXIF orientation other than 1 (first: turned.jpg): stored frame used; set "
            "exif_transpose=True to use the displayed frame") in out
    create_mindrecord(DataSettings.from_config(cfg), "eval.mindrecord", is_training=False)  # reused: said again
    assert "WARNING: 1 images have an EXIF orientation" in capsys.readouterr().out
    cfg = cfg.replace(exif_transpose=True)
    create_mindrecord(DataSettings.from_config(cfg), "eval.mindrecord", is_training=False)
    assert "exif_transpose changed" in capsys.readouterr().out  # toggling it rebuilds the set
    data, _ = stored_row(path)
    assert data.startswith(b"\x89PNG")


def test_inference_loader_reports_the_frame_it_used(oriented_coco):
    settings = PreprocessSettings(canvas_h=192, canvas_w=192, keep_ratio=True, flip_ratio=0.0, expand_ratio=0.0,
                                  num_gts=1)
    path = str(oriented_coco / "val2017" / "turned.jpg")
    notes = OrientationNotes()
    _, stored_meta = load_image(path, settings, notes=notes)
    _, displayed_meta = load_image(path, settings, exif_transpose=True, notes=notes)
    np.testing.assert_array_equal(stored_meta[:2], [STORED_H, STORED_W])
    np.testing.assert_array_equal(displayed_meta[:2], [STORED_W, STORED_H])
    assert notes.count == 2 and notes.names == [os.path.basename(path)] * 2


@pytest.mark.slow  # a process: the line comes when it ends
def test_images_read_one_at_a_time_are_reported_when_the_process_ends(oriented_coco):
    path = str(oriented_coco / "val2017" / "turned.jpg")
    code = ("from src.data.transforms import PreprocessSettings; from src.deploy.mindir_app import load_image; "
            "s = PreprocessSettings(canvas_h=192, canvas_w=192, keep_ratio=True, flip_ratio=0.0, expand_ratio=0.0, "
            f"num_gts=1); load_image({path!r}, s); load_image({path!r}, s); print('loaded')")
    done = run_script(f"-c {code}", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-2:] == [
        "loaded", "WARNING: 2 images have an EXIF orientation other than 1 (first: turned.jpg, turned.jpg): stored "
        "frame used; set exif_transpose=True to use the displayed frame"]
