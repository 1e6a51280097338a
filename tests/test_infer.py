"""infer.py: detections on image files, folders and patterns of any size, equal to eval.py's for the same images and
weights, the same through the exported MINDIR; bad paths named, counted and skipped.

The end-to-end runs use the fidelity fixture's reference weights at a small canvas on the 2 images of
tests/data/preprocess/coco (800x600 and 500x1000, so both keep-ratio cases), as tests/test_eval_export_infer.py."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from infer import find_images, image_record, picture_names, score_threshold
from src.model_utils.config import ROOT, get_config
from src.visualize import class_color, draw_detections

H, W = 128, 192  # small canvas (multiples of 32)
SIZE_ARGS = [f"--img_height={H}", f"--img_width={W}"]
COCO_DIR = os.path.join(ROOT, "tests", "data", "preprocess", "coco")
ENV = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT)
BOX_TOLERANCE = 1e-3    # pixels
SCORE_TOLERANCE = 1e-4  # infer.py writes 5 decimals


def python(script, *args, cwd, check=True):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, env=ENV,
                            capture_output=True, text=True, check=False, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


# ---------------------------------------------------------------------------------------------------------------
# Unit tests: finding the images, naming the pictures, the records, the threshold
def test_files_folders_and_patterns_in_order_each_file_once(tmp_path):
    for name in ("b.jpg", "a.PNG", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    files, problems = find_images(f"{tmp_path}/b.jpg, {tmp_path},{tmp_path}/*.jpg,{tmp_path}/none.jpg,"
                                  f"{tmp_path}/*.gif,{tmp_path}/empty")
    assert files == [f"{tmp_path}/b.jpg", f"{tmp_path}/a.PNG"]  # the folder's images by name; b.jpg only once
    assert problems == [f"{tmp_path}/none.jpg: no such file or folder",
                        f"{tmp_path}/*.gif: a pattern that matches no file",
                        f"{tmp_path}/empty: a folder without image files (.jpg, .jpeg, .png, .bmp, .tif, .tiff)"]


def test_picture_names_are_distinct():
    assert picture_names(["x/a.jpg", "y/a.png", "b.jpg", "z/a.jpg"]) == ["a.png", "a-2.png", "b.png", "a-3.png"]


def test_record_keeps_the_scores_above_the_threshold_best_first_with_class_names():
    boxes = np.float32([[1, 2, 3, 4, 0.2], [5, 6, 7, 8, 0.9], [9, 10, 11, 12, 0.5]])
    record = image_record("p.jpg", np.float32([600, 800, 0.2, 0.2]), boxes, np.array([0, 2, 1]),
                          ["background", "cat", "dog", "car"], score_thr=0.5)
    assert record == {"file": "p.jpg", "height": 600, "width": 800, "boxes": [[5, 6, 7, 8], [9, 10, 11, 12]],
                      "scores": [0.9, 0.5], "labels": [3, 2], "names": ["car", "dog"]}


def test_no_box_line_crosses_a_label():
    # The better box's left edge (x = 30) runs through the label of the weaker one, which sits on top of y = 40.
    boxes = np.float32([[10, 40, 150, 90, 0.3], [30, 20, 60, 95, 0.9]])
    drawn = draw_detections(np.zeros((100, 200, 3), np.uint8), boxes, np.array([1, 2]), ["bg", "a", "b"])
    assert tuple(drawn[39, 30]) == class_color(1)  # the weaker label's background, not the edge's colour
    assert tuple(drawn[60, 30]) == class_color(2)  # the edge itself below the label
    assert tuple(drawn[60, 10]) == class_color(1)  # and the weaker box's own left edge


def test_threshold_defaults_to_the_drawing_threshold():
    assert score_threshold(get_config([])) == get_config([]).visualize_score_thr == 0.3
    assert score_threshold(get_config(["--score_thr=0.05"])) == 0.05


# ---------------------------------------------------------------------------------------------------------------
# End to end (subprocesses: marked slow)
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("infer")
    shutil.copytree(COCO_DIR, folder / "coco")
    (folder / "bad").mkdir()
    (folder / "bad" / "broken.png").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def evaluated(work, reference_ckpt):
    """eval.py's detections (PyNative, batch 2) of the two images: {file name: (n, 6) [category id, score, box]}."""
    folder = work / "eval"
    folder.mkdir()
    anno = work / "coco" / "annotations" / "instances_val2017.json"
    python("eval.py", "--device_target=CPU", "--run_mode=PYNATIVE", "--test_batch_size=2",
           f"--checkpoint_path={reference_ckpt}", f"--anno_path={anno}", f"--coco_root={work / 'coco'}",
           f"--mindrecord_dir={folder / 'mindrecord'}", *SIZE_ARGS, cwd=folder)
    coco = json.loads(anno.read_text())
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    tables = {}
    for r in json.loads((folder / "results.pkl.bbox.json").read_text()):
        x, y, w, h = r["bbox"]  # eval.py's widths are x2 - x1 + 1
        tables.setdefault(names[r["image_id"]], []).append([r["category_id"], r["score"], x, y, x + w - 1, y + h - 1])
    return {name: sorted_table(rows) for name, rows in tables.items()}, {c["name"]: c["id"] for c in coco["categories"]}


def sorted_table(rows):
    table = np.array(rows, np.float64).reshape(-1, 6)
    return table[np.lexsort((-table[:, 1], table[:, 0]))]


def records_as_tables(records, category_ids):
    return {os.path.basename(r["file"]): sorted_table([[category_ids[name], score, *box] for name, score, box
                                                       in zip(r["names"], r["scores"], r["boxes"], strict=True)])
            for r in records}


@pytest.fixture(scope="module")
def inferred(work, reference_ckpt):
    """infer.py with the checkpoint on a file, a pattern that matches it again and the other image, an unreadable
    file and a missing one; every detection (score_thr 0), drawn."""
    val = work / "coco" / "val2017"
    images = ",".join([str(val / "000000000001.png"), str(val / "*.png"), str(work / "bad" / "broken.png"),
                       str(work / "missing.jpg")])
    result = python("infer.py", "--device_target=CPU", f"--checkpoint_path={reference_ckpt}", f"--images={images}",
                    "--score_thr=0", "--draw=True", f"--detections_dir={work / 'out'}", *SIZE_ARGS, cwd=work)
    return work / "out", result


@pytest.mark.slow
def test_infer_finds_the_detections_of_eval(inferred, evaluated):
    out, _ = inferred
    records = json.loads((out / "detections.json").read_text())
    assert [os.path.basename(r["file"]) for r in records] == ["000000000001.png", "000000000002.png"]
    assert [(r["height"], r["width"]) for r in records] == [(600, 800), (1000, 500)]
    from_eval, category_ids = evaluated
    from_infer = records_as_tables(records, category_ids)
    assert from_infer.keys() == from_eval.keys()
    for name, table in from_eval.items():
        assert len(table) > 10 and from_infer[name].shape == table.shape, name
        np.testing.assert_array_equal(from_infer[name][:, 0], table[:, 0])  # the classes
        np.testing.assert_allclose(from_infer[name][:, 1], table[:, 1], atol=SCORE_TOLERANCE)
        np.testing.assert_allclose(from_infer[name][:, 2:], table[:, 2:], atol=BOX_TOLERANCE)
    for record in records:  # best first, names and labels from the config's classes
        assert record["scores"] == sorted(record["scores"], reverse=True)
        classes = get_config([]).coco_classes
        assert record["names"] == [classes[label] for label in record["labels"]]


@pytest.mark.slow
def test_bad_paths_are_named_counted_and_skipped(work, inferred):
    out, result = inferred
    assert f"WARNING: --images: {work / 'missing.jpg'}: no such file or folder; skipped" in result.stderr
    broken = f"--images: {work / 'bad' / 'broken.png'} is not a BMP/JPEG/PNG/TIFF image"
    assert f"WARNING: {broken}; skipped" in result.stderr
    assert "skipped 2 (missing or unreadable):" in result.stdout and broken in result.stdout
    assert "detections of 2 of 3 image files written to" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
def test_pictures_are_drawn_on_the_images(work, inferred):
    out, _ = inferred
    assert sorted(os.listdir(out)) == ["000000000001.png", "000000000002.png", "detections.json"]
    for name in ("000000000001.png", "000000000002.png"):
        picture, source = cv2.imread(str(out / name)), cv2.imread(str(work / "coco" / "val2017" / name))
        assert picture.shape == source.shape
        assert 0 < np.any(picture != source, axis=2).mean() < 0.9  # boxes drawn, the image still there


@pytest.mark.slow
def test_the_exported_mindir_gives_the_same_detections(work, inferred, reference_mindir):
    python("infer.py", "--device_target=CPU", f"--mindir={reference_mindir}",
           f"--images={work / 'coco' / 'val2017'}", "--score_thr=0", f"--detections_dir={work / 'out_mindir'}",
           cwd=work)  # the input size is the MINDIR's (the config's 768x1280 is not used)
    by_checkpoint = json.loads((inferred[0] / "detections.json").read_text())
    by_mindir = json.loads((work / "out_mindir" / "detections.json").read_text())
    assert [r["file"] for r in by_mindir] == [r["file"] for r in by_checkpoint]
    for a, b in zip(by_checkpoint, by_mindir, strict=True):
        assert len(a["scores"]) == len(b["scores"]) > 10
        assert a["names"] == b["names"] and a["labels"] == b["labels"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=SCORE_TOLERANCE)
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=BOX_TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--images=/nowhere/*.jpg", "--checkpoint_path=x.ckpt"],
     "infer.py: error: --images='/nowhere/*.jpg': no image file found (/nowhere/*.jpg: a pattern that matches no "
     "file)"),
    (["--images=a.jpg"], "infer.py: error: infer.py needs exactly one model: --checkpoint_path=CKPT or --mindir="),
    (["--checkpoint_path=x.ckpt"], "infer.py: error: --images: give image files"),
])
def test_nothing_to_do_is_one_clear_error(tmp_path, args, message):
    result = python("infer.py", "--device_target=CPU", *args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert "Traceback" not in result.stderr and os.listdir(tmp_path) == []
