"""infer.py: detections on image files, folders and patterns of any size, equal to eval.py's for the same images and
weights, the same through the exported MINDIR; bad paths named, counted and skipped.

The end-to-end runs use the fidelity fixture's reference weights at a small canvas on the 2 images of
tests/data/preprocess/coco (800x600 and 500x1000, so both keep-ratio cases), as tests/test_eval_export_infer.py."""
import json
import os
import re
import shutil
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from mindspore.train import mind_ir_pb2
from PIL import Image

from src.data.image_files import find_images, read_image_list
from src.deploy.detect_images import (
    check_detections_dir,
    check_request,
    draw_record,
    evaluation_preprocessing,
    exported_model,
    image_record,
    picture_names,
    score_threshold,
)
from src.deploy.model_facts import MODEL_FACTS_KEY, model_facts, read_mindir, record_model_facts
from src.evaluation.evaluator import EvaluationSettings, visualize_image
from src.evaluation.visualize import class_color, draw_detections, save_png
from src.infra.errors import ConfigError, InferError, OutputError, WriteError
from src.model_utils.config import ROOT, get_config
from tests.helpers.processes import run_script

H, W = 128, 192  # small canvas (multiples of 32)
SIZE_ARGS = [f"--img_height={H}", f"--img_width={W}"]
COCO_DIR = os.path.join(ROOT, "tests", "data", "preprocess", "coco")
ENV = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT)
BOX_TOLERANCE = 1e-3    # pixels
SCORE_TOLERANCE = 1e-4  # infer.py writes 5 decimals


def python(script, *args, cwd, check=True):
    return run_script(script, args, cwd=cwd, check=check, timeout=900)


# ---------------------------------------------------------------------------------------------------------------
# Unit tests: finding the images, naming the pictures (never over a file), the records, the threshold
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


def test_a_literal_file_name_is_never_a_pattern_or_a_list(tmp_path):
    for name in ("c[1].jpg", "c1.jpg", "a,b.jpg", "a"):
        (tmp_path / name).write_bytes(b"x")
    # `c[1].jpg` as a pattern would match c1.jpg; as the existing file it is itself
    assert find_images(f"{tmp_path}/c[1].jpg") == ([f"{tmp_path}/c[1].jpg"], [])
    assert find_images(f"{tmp_path}/c[1].jpg,{tmp_path}/c[0-9].jpg")[0] == [f"{tmp_path}/c[1].jpg",
                                                                          f"{tmp_path}/c1.jpg"]
    assert find_images(f"{tmp_path}/a,b.jpg") == ([f"{tmp_path}/a,b.jpg"], [])  # the whole value names a file
    assert find_images(f"{tmp_path}/a,{tmp_path}/c1.jpg") == ([f"{tmp_path}/a", f"{tmp_path}/c1.jpg"], [])


def test_an_image_list_is_taken_line_by_line_as_written(tmp_path):
    for name in ("a,b.jpg", "c [1].jpg", " lead.jpg", "*.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "d.png").write_bytes(b"x")
    lines = [f"{tmp_path}/a,b.jpg", "", f"{tmp_path}/c [1].jpg", "   ", f"{tmp_path}/ lead.jpg",
             f"{tmp_path}/*.jpg", f"{tmp_path}/c?1?.jpg", f"{tmp_path}/folder", f"{tmp_path}/a,b.jpg",
             f"{tmp_path}/gone.jpg"]
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\n")  # BOM and CRLF as an editor writes
    files, problems = read_image_list(str(listing))
    assert files == [f"{tmp_path}/a,b.jpg", f"{tmp_path}/c [1].jpg", f"{tmp_path}/ lead.jpg", f"{tmp_path}/*.jpg",
                     f"{tmp_path}/folder/d.png"]  # `*.jpg` the file of that name, no pattern; each file once
    assert problems == [f"{listing}:7: {tmp_path}/c?1?.jpg: no such file or folder",
                        f"{listing}:10: {tmp_path}/gone.jpg: no such file or folder"]
    with pytest.raises(ConfigError, match="--images_from='nowhere.txt': cannot read the list: No such file"):
        read_image_list("nowhere.txt")


def test_picture_names_keep_the_extension_and_never_repeat_or_take_an_existing_name():
    # a-2.jpg, a.jpg and a.png gave two `a-2.png` before; an existing a.jpg.png (any case) is never taken
    files = ["in/a-2.jpg", "in/a.jpg", "in/a.png", "other/a.jpg", "in/.hidden.jpg", "in/A.JPG"]
    assert picture_names(files, taken=["A.jpg.png", "notes.txt"]) == [
        "a-2.jpg.png", "a.jpg-2.png", "a.png.png", "a.jpg-3.png", "hidden.jpg.png", "A.JPG-4.png"]
    assert picture_names(["x/b.jpg", "y/b.jpg-2"]) == ["b.jpg.png", "b.jpg-2.png"]
    assert picture_names(["x/b.jpg-2", "y/b.jpg", "z/b.jpg"]) == ["b.jpg-2.png", "b.jpg.png", "b.jpg-3.png"]


def test_a_detections_dir_holding_or_containing_input_images_is_refused(tmp_path):
    (tmp_path / "photos" / "2024").mkdir(parents=True)
    image = str(tmp_path / "photos" / "2024" / "x.jpg")
    check_detections_dir(str(tmp_path / "detections"), [image])  # a folder of its own
    check_detections_dir(str(tmp_path / "photos" / "2024" / "out"), [image])  # below the images: none of them
    with pytest.raises(OutputError, match=r"--detections_dir='.*2024' holds the input image .*x\.jpg"):
        check_detections_dir(str(tmp_path / "photos" / "2024"), [image])
    with pytest.raises(OutputError, match="contains the folder of the input image"):
        check_detections_dir(str(tmp_path / "photos" / "."), [image])


@pytest.mark.parametrize("value, refused", [(-1, False), (-0.5, False), (0, False), (1, False), (1.0001, True),
                                            (5, True)])
def test_score_thr_above_one_is_refused(value, refused):
    cfg = get_config(["--checkpoint_path=x.ckpt", "--images=a.jpg", f"--score_thr={value}"])
    if refused:
        with pytest.raises(ConfigError, match=rf"--score_thr={float(value)}: scores are at most 1"):
            check_request(cfg)
    else:
        check_request(cfg)


def test_save_png_without_replace_never_changes_an_existing_file(tmp_path):
    image = np.full((8, 12, 3), 40, np.uint8)
    (tmp_path / "mine.png").write_bytes(b"the user's own file")
    with pytest.raises(WriteError, match=r"mine\.png exists and was not written by this run: kept, not replaced"):
        save_png(image, str(tmp_path / "mine.png"), replace=False)
    assert (tmp_path / "mine.png").read_bytes() == b"the user's own file"
    save_png(image, str(tmp_path / "new.png"), replace=False)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "new.png")), image)
    assert sorted(os.listdir(tmp_path)) == ["mine.png", "new.png"]  # no temporary left


@pytest.mark.parametrize("exif_transpose", [False, True])
def test_the_drawing_uses_the_frame_the_network_saw_of_a_rotated_jpeg(tmp_path, exif_transpose):
    # EXIF orientation 6 (turn 90 degrees): cv2's default reading turns the image, the network's decoder does not
    # (unless exif_transpose): the picture must be that frame itself, not the network input scaled back (by 2.56
    # or so: not exact), which is what the drawing fell back to when the sizes disagreed.
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 255, (50, 70, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.jpg"
    Image.fromarray(stored[:, :, ::-1]).save(path, exif=exif, quality=95)
    as_stored = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    expected = np.ascontiguousarray(np.rot90(as_stored, -1)) if exif_transpose else as_stored  # turned clockwise
    assert cv2.imread(str(path), cv2.IMREAD_COLOR).shape == (70, 50, 3)  # cv2's default: displayed
    height, width = expected.shape[:2]
    record = {"file": str(path), "height": height, "width": width, "boxes": [], "scores": [], "labels": []}
    settings = evaluation_preprocessing(H, W, keep_ratio=True)
    draw_record(record, settings, ["a"], str(tmp_path / "turned.jpg.png"), exif_transpose)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "turned.jpg.png")), expected)


SEVEN = ["background", "stop sign", "sports ball", "clock", "kite", "tv", "pizza"]


def mindir_header(path, facts=None, user_info=None):
    """A file that read_mindir takes for an export (its graph inputs; no nodes): `facts` as export.py records
    them, or a raw user_info entry."""
    model = mind_ir_pb2.ModelProto()
    for dims in ((1, 3, H, W), (1, 4)):
        model.graph.input.add().tensor.add().dims.extend(dims)
    if facts is not None:
        record_model_facts(model, facts)
    if user_info is not None:
        model.user_info.add(key=MODEL_FACTS_KEY, value=user_info)
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_a_mindir_names_its_own_classes(tmp_path, capsys):
    facts = model_facts(get_config([], num_classes=7, coco_classes=SEVEN, keep_ratio=False), batch_size=1)
    mindir = mindir_header(tmp_path / "seven.mindir", facts)
    assert read_mindir(mindir) == ([(1, 3, H, W), (1, 4)], facts)
    # no classes given: the MINDIR's (and its keep_ratio), though the config's are COCO's 81
    assert exported_model(get_config([f"--mindir={mindir}"])) == (mindir, SEVEN, False)
    same = get_config([f"--mindir={mindir}", "--num_classes=7", f"--coco_classes={SEVEN}"])
    assert exported_model(same)[1] == SEVEN  # given and equal: fine
    other = get_config([f"--mindir={mindir}", "--num_classes=7", f"--coco_classes={SEVEN[:6] + ['cake']}"])
    with pytest.raises(ConfigError, match=r"--coco_classes \(7 names\) disagree with the 7 classes .*seven\.mindir "
                                          r"was exported with \(class 6: 'cake' given, 'pizza' in the model\)"):
        exported_model(other)
    with pytest.raises(ConfigError, match="--keep_ratio=True disagrees with .*keep_ratio=False"):
        exported_model(get_config([f"--mindir={mindir}", "--keep_ratio=True"]))
    assert capsys.readouterr().err == ""


def test_an_older_mindir_takes_the_config_classes_with_a_warning(tmp_path, capsys):
    mindir = mindir_header(tmp_path / "old.mindir")
    cfg = get_config([f"--mindir={mindir}"])
    assert read_mindir(mindir) == ([(1, 3, H, W), (1, 4)], None)
    assert exported_model(cfg) == (mindir, cfg.coco_classes, True)
    assert capsys.readouterr().err == (f"WARNING: {mindir} does not record its classes (exported before export.py "
                                       "wrote them): the 81 class names and keep_ratio come from the config "
                                       "(coco_classes of the default yaml)\n")


@pytest.mark.parametrize("user_info, expected", [
    ("not json", "expected a JSON object"),
    ('{"coco_classes": ["background"], "num_classes": 2, "img_height": 128, "img_width": 192, "keep_ratio": true,'
     ' "batch_size": 1}', "expected num_classes class names"),
    ('{"coco_classes": ["background"], "num_classes": true}', "expected num_classes (int), img_height (int)"),
])
def test_unreadable_model_facts_are_named(tmp_path, user_info, expected):
    mindir = mindir_header(tmp_path / "odd.mindir", user_info=user_info)
    with pytest.raises(InferError, match=rf"odd\.mindir: its model facts \('faster_rcnn_dcn'\) are not "
                                         rf"export\.py's: {re.escape(expected)}"):
        read_mindir(mindir)


def test_eval_pictures_never_replace_a_file_they_did_not_write(tmp_path):
    folder = tmp_path / "visualize"
    folder.mkdir()
    (folder / "7.png").write_bytes(b"an earlier run's picture")
    (folder / "7-2.png").write_bytes(b"another one")
    settings = EvaluationSettings.from_config(get_config([]).replace(dataset="txt", image_dir=str(tmp_path / "none")))
    meta = np.float32([H, W, 1, 1])
    image = np.zeros((3, H, W), np.float32)
    boxes, labels = np.float32([[10, 10, 50, 40, 0.9]]), np.array([0])
    coco = SimpleNamespace(imgs={})  # no source file: drawn on the network input
    for _ in range(2):  # an evaluation during training redraws the same image: its own picture, in place
        visualize_image(settings, coco, str(folder), image, meta, 7, boxes, labels)
        visualize_image(settings, coco, str(folder), image, meta, 8, boxes, labels)
    assert sorted(os.listdir(folder)) == ["7-2.png", "7-3.png", "7.png", "8.png"]
    assert (folder / "7.png").read_bytes() == b"an earlier run's picture"
    assert (folder / "7-2.png").read_bytes() == b"another one"
    assert cv2.imread(str(folder / "7-3.png")).shape == (H, W, 3)


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
    assert sorted(os.listdir(out)) == ["000000000001.png.png", "000000000002.png.png", "detections.json"]
    records = json.loads((out / "detections.json").read_text())
    assert [r["picture"] for r in records] == ["000000000001.png.png", "000000000002.png.png"]
    for name in ("000000000001.png", "000000000002.png"):
        picture, source = cv2.imread(str(out / f"{name}.png")), cv2.imread(str(work / "coco" / "val2017" / name))
        assert picture.shape == source.shape
        assert 0 < np.any(picture != source, axis=2).mean() < 0.9  # boxes drawn, the image still there


@pytest.mark.slow
@pytest.mark.parametrize("option, fixture", [("--mindir", "reference_mindir"), ("--onnx", "reference_onnx")],
                         ids=["mindir", "onnx"])
def test_an_exported_model_gives_the_same_detections(work, inferred, option, fixture, request):
    """export.py's MINDIR (MindSpore's runtime) and ONNX file (onnxruntime): their input size and classes, the
    checkpoint's detections."""
    out = work / f"out_{option.strip('-')}"
    python("infer.py", f"{option}={request.getfixturevalue(fixture)}", f"--images={work / 'coco' / 'val2017'}",
           "--score_thr=0", f"--detections_dir={out}", cwd=work)
    by_checkpoint = json.loads((inferred[0] / "detections.json").read_text())
    by_export = json.loads((out / "detections.json").read_text())
    assert [r["file"] for r in by_export] == [r["file"] for r in by_checkpoint]
    for a, b in zip(by_checkpoint, by_export, strict=True):
        assert len(a["scores"]) == len(b["scores"]) > 10
        assert a["names"] == b["names"] and a["labels"] == b["labels"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=SCORE_TOLERANCE)
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=BOX_TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--images=/nowhere/*.jpg", "--checkpoint_path=x.ckpt"],
     "infer.py: error: no image file found (--images: /nowhere/*.jpg: a pattern that matches no file)"),
    (["--images=a.jpg"], "infer.py: error: infer.py needs exactly one model: --checkpoint_path=CKPT, --mindir="),
    (["--checkpoint_path=x.ckpt"], "infer.py: error: --images: give image files"),
])
def test_nothing_to_do_is_one_clear_error(tmp_path, args, message):
    result = python("infer.py", "--device_target=CPU", *args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert "Traceback" not in result.stderr and os.listdir(tmp_path) == []
