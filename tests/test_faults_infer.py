"""infer.py and export.py as a user runs them when the output is in the way: pictures never replace a file (the
user's own, an earlier run's, another image's of this run), a detections_dir holding the images refused, the folder
checked and held before the network is built, a full disk that keeps detections.json, and a 7-class model naming
its detections from the MINDIR export.py wrote. Real processes: exit status, exactly one error line, sha256 of the
inputs and of the output folder's files before and after.

The model: the fidelity fixture's reference weights cut to 7 classes (the 6 synthetic ones + background), exported
once at 128x192 (module fixture); the images: 2 synthetic ones (320x480 and 480x320).
"""
import json
import os
import shutil

import cv2
import mindspore as ms
import numpy as np
import pytest

from src.deploy.model_facts import read_mindir
from src.infra.fileio import partial_files
from src.infra.run_lock import hold_folder, release_folder
from tests.helpers.processes import ENV, error_lines, run_script, small_filesystem, snapshot
from tests.helpers.reference_ckpt import reference_params

pytestmark = pytest.mark.slow

H, W = 128, 192
SEVEN = ["background", "stop sign", "sports ball", "clock", "kite", "tv", "pizza"]  # src/data/synthetic.py's
SEVEN_ARGS = ["--num_classes=7", f"--coco_classes={SEVEN}"]
OTHER_NAMES = ["background", "stop sign", "sports ball", "clock", "kite", "tv", "cake"]
FULL_DISK_KB = 300  # detections.json (~10 KB) fits, the 2 pictures (~250 KB each) do not


@pytest.fixture(scope="module")
def images(synthetic_data, tmp_path_factory):
    """Two synthetic images in `<root>/syn/val2017`."""
    root = tmp_path_factory.mktemp("images")
    synthetic_data(root / "syn", num_train=0, num_val=2, seed=3)
    return sorted((root / "syn" / "val2017").iterdir())


@pytest.fixture(scope="module")
def seven_mindir(tmp_path_factory):
    """export.py's MINDIR of a 7-class model (keep_ratio False, so that the MINDIR's value is seen in use)."""
    folder = tmp_path_factory.mktemp("seven")
    params = reference_params()
    for name, columns in (("rcnn.cls_scores", 7), ("rcnn.reg_scores", 7 * 4)):
        for leaf in ("weight", "bias"):
            params[f"{name}.{leaf}"] = params[f"{name}.{leaf}"][..., :columns]
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in params.items()], str(folder / "seven.ckpt"))
    done = run_script("export.py", ["--device_target=CPU", f"--ckpt_file={folder / 'seven.ckpt'}", *SEVEN_ARGS,
                                    f"--file_name={folder / 'seven'}", "--batch_size=1", f"--img_height={H}",
                                    f"--img_width={W}", "--keep_ratio=False"], cwd=folder)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return str(folder / "seven.mindir")


def infer(args, cwd, env=None):
    return run_script("infer.py", ["--device_target=CPU", *args], cwd=cwd, env=env)


def one_error(done, status: int) -> str:
    assert done.returncode == status, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr[-3000:]
    return lines[0]


def test_the_mindir_records_the_models_facts(seven_mindir):
    shapes, facts = read_mindir(seven_mindir)
    assert shapes == [(1, 3, H, W), (1, 4)]
    assert facts == {"coco_classes": SEVEN, "num_classes": 7, "img_height": H, "img_width": W, "keep_ratio": False,
                     "batch_size": 1}


def test_pictures_never_replace_a_file_and_never_share_a_name(seven_mindir, images, tmp_path):
    """The user's report: a-2.jpg, a.jpg and a.png gave two `a-2.png`, and a picture replaced the user's x.png.
    Here the output folder holds the user's files and an earlier run's a.jpg.png; the names a list brings in hold
    a comma and brackets; the class names come from the MINDIR (a 7-class model, no --coco_classes given)."""
    source = tmp_path / "in"
    source.mkdir()
    for name, image in (("a-2.jpg", images[0]), ("a.jpg", images[1]), ("b,c [1].jpg", images[0])):
        shutil.copy(image, source / name)
    bgra = cv2.cvtColor(cv2.imread(str(images[1])), cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 128
    cv2.imwrite(str(source / "a.png"), bgra)  # 4 channels
    listing = tmp_path / "list.txt"
    listing.write_text(f"{source / 'b,c [1].jpg'}\n\n{source / 'gone.jpg'}\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jpg.png").write_bytes(b"an earlier run's picture")
    (out / "x.png").write_bytes(b"the user's own picture")
    (out / "notes.txt").write_text("mine")
    inputs, kept = snapshot(source), snapshot(out)

    done = infer([f"--mindir={seven_mindir}", f"--images={source / 'a-2.jpg'},{source / 'a.jpg'},{source / 'a.png'}",
                  f"--images_from={listing}", "--draw=True", "--score_thr=0.6", f"--detections_dir={out}"], tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"WARNING: --images_from: {listing}:3: {source / 'gone.jpg'}: no such file or folder; skipped" \
        in done.stderr
    assert f"pictures under the next free name, theirs being taken (by a file in {out} or another image of this " \
        "run; nothing is replaced): a.jpg-2.png\n" in done.stdout
    assert snapshot(source) == inputs  # every input as it was
    assert {path: facts for path, facts in snapshot(out).items() if path in kept} == kept  # and what out held
    records = json.loads((out / "detections.json").read_text())
    assert [os.path.basename(r["file"]) for r in records] == ["a-2.jpg", "a.jpg", "a.png", "b,c [1].jpg"]
    assert [r["picture"] for r in records] == ["a-2.jpg.png", "a.jpg-2.png", "a.png.png", "b,c [1].jpg.png"]
    new = ["detections.json", *(r["picture"] for r in records)]
    assert sorted(os.listdir(out)) == sorted([os.path.basename(path) for path in kept] + new)
    for record in records:
        picture, image = cv2.imread(str(out / record["picture"])), cv2.imread(record["file"])
        assert picture.shape == image.shape  # drawn on its own image, 3 channels
        assert 0 < np.any(picture != image, axis=2).mean() < 0.9
        assert record["names"] and record["names"] == [SEVEN[label] for label in record["labels"]]  # the MINDIR's
        assert min(record["scores"]) >= 0.6


def test_a_detections_dir_holding_the_images_is_refused_before_any_work(images, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(images[0], folder / "x.jpg")
    cv2.imwrite(str(folder / "y.png"), np.zeros((20, 30, 4), np.uint8))  # an RGBA picture of the user's
    before = snapshot(tmp_path)
    for out, where in ((folder, "holds"), (tmp_path, "contains the folder of")):
        done = infer(["--checkpoint_path=none.ckpt", f"--images={folder}", "--draw=True", f"--detections_dir={out}"],
                     tmp_path)
        assert one_error(done, 2) == (f"infer.py: error: --detections_dir={str(out)!r} {where} the input image "
                                      f"{folder / 'x.jpg'}: give a folder of its own (the default: detections), so "
                                      "that no output lands among your images")
        assert snapshot(tmp_path) == before and sorted(os.listdir(folder)) == ["x.jpg", "y.png"]


def test_a_read_only_detections_dir_is_refused_before_the_model_is_read(images, tmp_path):
    try:
        with small_filesystem(tmp_path / "ro", 64, read_only=True) as folder:
            done = infer(["--checkpoint_path=none.ckpt", f"--images={images[0]}", f"--detections_dir={folder}"],
                         tmp_path)
    except PermissionError as err:
        pytest.skip(str(err))
    assert one_error(done, 2) == \
        f"infer.py: error: --detections_dir: cannot write into {folder!r}: Read-only file system"
    # (a missing checkpoint would be the error had the folder not been checked first)


def test_a_second_run_into_a_held_folder_is_refused(images, tmp_path):
    out = tmp_path / "out"
    lock = hold_folder(str(out), "infer", "infer.py (the first run)")
    try:
        before = snapshot(out)
        done = infer(["--checkpoint_path=none.ckpt", f"--images={images[0]}", f"--detections_dir={out}"], tmp_path)
        line = one_error(done, 2)
        assert snapshot(out) == before
    finally:
        release_folder(lock)
    assert line.startswith(f"infer.py: error: {str(out)!r} is in use by a run that is still going (infer.py (the "
                           f"first run), pid {os.getpid()}, started ")


def test_a_full_disk_keeps_a_complete_detections_json_and_no_partial_file(seven_mindir, images, tmp_path):
    env = dict(ENV, FASTER_RCNN_MIN_FREE_MB="0")  # the start check passes; the pictures fill the disk
    inputs = snapshot(os.path.dirname(images[0]))
    try:
        with small_filesystem(tmp_path / "small", FULL_DISK_KB) as folder:
            done = infer([f"--mindir={seven_mindir}", f"--images={os.path.dirname(images[0])}", "--draw=True",
                          "--score_thr=0", f"--detections_dir={folder}"], tmp_path, env=env)
            names = sorted(os.listdir(folder))
            records = json.loads((tmp_path / "small" / "detections.json").read_text())  # valid json
            leftovers = partial_files(folder)
    except PermissionError as err:
        pytest.skip(str(err))
    line = one_error(done, 1)
    drawn = [r["picture"] for r in records if r["picture"] in names]
    failed = next(r["picture"] for r in records if r["picture"] not in names)
    assert line == (f"infer.py: error: could not write {os.path.join(folder, failed)}: No space left on device; "
                    f"kept: {os.path.join(folder, 'detections.json')} (complete, 2 images) and {len(drawn)} of 2 "
                    "pictures")
    assert [os.path.basename(r["file"]) for r in records] == [os.path.basename(p) for p in images]
    assert all(r["scores"] for r in records)  # every image's detections, score_thr 0
    assert names == sorted(["detections.json", *drawn]) and leftovers == []  # no temporary, no lock file
    assert snapshot(os.path.dirname(images[0])) == inputs


def test_classes_that_disagree_with_the_mindir_are_refused(seven_mindir, images, tmp_path):
    done = infer([f"--mindir={seven_mindir}", f"--images={images[0]}", f"--detections_dir={tmp_path / 'out'}",
                  "--num_classes=7", f"--coco_classes={OTHER_NAMES}"], tmp_path)
    assert one_error(done, 2) == (f"infer.py: error: --coco_classes (7 names) disagree with the 7 classes "
                                  f"{seven_mindir} was exported with (class 6: 'cake' given, 'pizza' in the model); "
                                  "leave them out to use the model's")
    assert os.listdir(tmp_path) == []


def test_a_score_threshold_above_one_is_refused(images, tmp_path):
    done = infer(["--checkpoint_path=none.ckpt", f"--images={images[0]}", "--score_thr=5"], tmp_path)
    assert one_error(done, 2) == ("infer.py: error: --score_thr=5.0: scores are at most 1; give a threshold in "
                                  "[0, 1] (negative: visualize_score_thr)")
    assert os.listdir(tmp_path) == []
