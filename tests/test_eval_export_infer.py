"""eval.py, export.py, the CPU inference flow (scripts/run_infer_310.sh -> src/deploy/mindir_app.py) and postprogress.py
on a 2-image COCO set at a small canvas, with the fidelity fixture's reference weights.

Agreement: the COCO figures of eval.py and of the exported MINDIR + postprogress.py are compared against a
ground truth made from the MINDIR's own detections (some exact, some moved), so that the AP is far from 0 and
from 1 and any difference in detections between the two paths shows."""
import json
import os
import shutil
from pathlib import Path

import cv2
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from src.checkpoint.detector import load_for_inference, match_checkpoint, read_checkpoint
from src.deploy.mindir_app import read_raw_outputs
from src.deploy.model_facts import read_mindir
from src.evaluation.visualize import class_color, draw_detections
from src.FasterRcnn import build_infer_model, build_model
from src.infra.errors import CheckpointError
from src.model_utils.config import ROOT, get_config
from src.ops import Kernels
from src.util import (
    SUMMARY_NAMES,
    coco_eval,
    foreground_category_ids,
    load_ground_truth,
    select_detections,
)
from tests.helpers.processes import run_script
from tests.helpers.reference_ckpt import reference_params, write_reference_ckpt

pytestmark = pytest.mark.slow  # eval.py, export.py and the inference script end to end

H, W = 128, 192  # small canvas (multiples of 32)
SIZE_ARGS = [f"--img_height={H}", f"--img_width={W}"]
COCO_DIR = os.path.join(ROOT, "tests", "data", "preprocess", "coco")
ENV = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT)
AP_TOLERANCE = 1e-3
LOG_ROUNDING = 5e-4 + 1e-9  # figures in logs are printed with 3 decimals
GT_PER_IMAGE = 4             # pseudo ground truth: the best detections of each image ...
MOVED_PER_IMAGE = 1          # ... of which this many are shifted by half their width (a miss and a false positive)


def python(script, *args, cwd, check=True):
    return run_script(script, args, cwd=cwd, check=check, timeout=None)


def logged_figures(text):
    """{figure name: value} of `<name> = <value>` lines (mAP.log) or of COCOeval's printed summary."""
    figures = {}
    for line in text.splitlines():
        name, sep, value = line.rpartition(" = ")
        if sep and name.strip() in SUMMARY_NAMES:
            figures[name.strip()] = float(value)
    return figures


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval_export_infer")
    shutil.copytree(COCO_DIR, folder / "coco")
    write_reference_ckpt(str(folder / "reference.ckpt"))
    return folder


@pytest.fixture(scope="module")
def exported(reference_mindir):
    """export.py's MINDIR of the reference weights at H x W (conftest.py; the same weights as work's checkpoint)."""
    return Path(reference_mindir)


def run_infer_script(work, model, folder_name: str):
    """scripts/run_infer_310.sh on the CPU with export.py's `model` (MINDIR or ONNX) on the val images, in
    work/<folder_name>; the folder."""
    folder = work / folder_name
    folder.mkdir()
    anno = work / "coco" / "annotations" / "instances_val2017.json"
    result = run_script("scripts/run_infer_310.sh", [model, work / "coco" / "val2017", anno, "0", "CPU"],
                        cwd=folder, check=True, timeout=None)
    assert "Average Precision" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def inferred(work, exported):
    return run_infer_script(work, exported, "infer")


@pytest.fixture(scope="module")
def onnx_inferred(work, reference_onnx):
    """The same with export.py's ONNX file of the same weights (onnxruntime)."""
    return run_infer_script(work, reference_onnx, "infer_onnx")


@pytest.fixture(scope="module")
def pseudo_gt(work, inferred):
    """An annotation file with the same images and categories whose boxes are the MINDIR's best detections; its
    images are listed in the reverse order of the data set's, which eval.py must report (and survive)."""
    with open(work / "coco" / "annotations" / "instances_val2017.json") as f:
        data = json.load(f)
    coco = load_ground_truth(str(work / "coco" / "annotations" / "instances_val2017.json"), "coco", [])
    cat_ids = foreground_category_ids(coco)
    annotations = []
    for image in data["images"]:
        stem = image["file_name"].split(".")[0]
        boxes, labels = select_detections(*read_raw_outputs(str(inferred / "result_Files"), stem), 128)
        assert len(boxes) >= GT_PER_IMAGE, "the reference weights should give detections"
        for rank, k in enumerate(np.argsort(-boxes[:, 4], kind="stable")[:GT_PER_IMAGE]):
            x1, y1, x2, y2 = (float(v) for v in boxes[k, :4])
            w, h = x2 - x1 + 1, y2 - y1 + 1
            if rank >= GT_PER_IMAGE - MOVED_PER_IMAGE:
                x1 += w / 2
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "iscrowd": 0,
                                "category_id": cat_ids[int(labels[k])], "bbox": [x1, y1, w, h], "area": w * h})
    data["annotations"] = annotations
    data["images"] = data["images"][::-1]
    path = work / "pseudo_gt.json"
    with open(path, "w") as f:
        json.dump(data, f)
    return path


@pytest.fixture(scope="module")
def evaluated(work, pseudo_gt):
    """scripts/run_eval_cpu.sh (waiting for eval.py) at the small canvas, batch 2, one image drawn."""
    result = run_script("scripts/run_eval_cpu.sh", [pseudo_gt, work / "reference.ckpt", work / "coco",
                                                    "--run_mode=PYNATIVE", "--test_batch_size=2", "--visualize=1",
                                                    *SIZE_ARGS],
                        cwd=work, check=True, timeout=None, env=dict(ENV, FOREGROUND="1"))
    folder = work / "eval"
    log = (folder / "log").read_text()
    assert "eval end" in log, result.stdout + log[-3000:]
    return folder, log


def test_export_has_the_documented_inputs(exported):
    assert read_mindir(str(exported))[0] == [(1, 3, H, W), (1, 4)]
    model = ms.train.mind_ir_pb2.ModelProto()
    model.ParseFromString(exported.read_bytes())
    assert [item.tensor[0].data_type for item in model.graph.input] == [ms.train.mind_ir_pb2.TensorProto.FLOAT] * 2


def test_infer_script_writes_one_output_set_per_image(inferred):
    cfg = get_config(SIZE_ARGS)
    candidates = cfg.rpn_max_num * (cfg.num_classes - 1)
    names = sorted(os.listdir(inferred / "result_Files"))
    assert names == [f"00000000000{i}_{k}.bin" for i in (1, 2) for k in range(3)]
    for i in (1, 2):
        sizes = [os.path.getsize(inferred / "result_Files" / f"00000000000{i}_{k}.bin") for k in range(3)]
        assert sizes == [candidates * 5 * 4, candidates * 4, candidates]  # float32 boxes, int32 labels, bool masks
    assert "NN inference cost average time" in (inferred / "time_Result" / "test_perform_static.txt").read_text()
    assert len(logged_figures((inferred / "acc.log").read_text())) == len(SUMMARY_NAMES)


def test_eval_and_the_exported_model_agree(work, pseudo_gt, inferred, evaluated):
    eval_dir, eval_stdout = evaluated
    # the annotation file lists the images in another order than the data set: said, and matched by image id
    assert "WARNING: image 0 of the evaluation set has id 1 but the annotation file's image 0 is 2" in eval_stdout
    post_dir = work / "post"
    post_dir.mkdir()
    post = python("postprogress.py", f"--anno_path={pseudo_gt}", f"--result_path={inferred / 'result_Files'}",
                  cwd=post_dir)
    coco = load_ground_truth(str(pseudo_gt), "coco", [])
    from_eval = coco_eval(str(eval_dir / "results.pkl.bbox.json"), coco, verbose=False)
    from_mindir = coco_eval(str(post_dir / "results.pkl.bbox.json"), coco, verbose=False)
    # a ground truth made of detections: far from 0 and from 1, so that the comparison means something
    assert 0.3 < from_mindir[SUMMARY_NAMES[0]] < 0.95
    for name in SUMMARY_NAMES:
        assert abs(from_eval[name] - from_mindir[name]) <= AP_TOLERANCE, name
    # what each tool printed and logged is what its json gives
    for figures, reference in ((logged_figures((eval_dir / "mAP.log").read_text()), from_eval),
                               (logged_figures(eval_stdout), from_eval), (logged_figures(post.stdout), from_mindir)):
        assert figures.keys() == set(SUMMARY_NAMES)
        assert all(abs(figures[n] - reference[n]) <= LOG_ROUNDING for n in SUMMARY_NAMES)
    # and the detections themselves: same images and classes, boxes and scores within float noise
    tables = [detection_table(json.loads((d / "results.pkl.bbox.json").read_text())) for d in (eval_dir, post_dir)]
    assert len(tables[0]) > 2 * GT_PER_IMAGE and tables[0].shape == tables[1].shape
    np.testing.assert_array_equal(tables[0][:, :2], tables[1][:, :2])  # image and category of every detection
    np.testing.assert_allclose(tables[0][:, 2:], tables[1][:, 2:], atol=1e-3)  # score, box


def test_the_onnx_file_in_onnxruntime_gives_the_mindirs_figures_and_eval_pys(work, pseudo_gt, inferred, evaluated,
                                                                               onnx_inferred):
    eval_dir, _ = evaluated
    coco = load_ground_truth(str(pseudo_gt), "coco", [])
    figures = {}
    for name, results in (("mindir", inferred / "result_Files"), ("onnx", onnx_inferred / "result_Files")):
        post_dir = work / f"post_{name}"
        post_dir.mkdir()
        python("postprogress.py", f"--anno_path={pseudo_gt}", f"--result_path={results}", cwd=post_dir)
        figures[name] = coco_eval(str(post_dir / "results.pkl.bbox.json"), coco, verbose=False)
    from_eval = coco_eval(str(eval_dir / "results.pkl.bbox.json"), coco, verbose=False)
    assert 0.3 < figures["onnx"][SUMMARY_NAMES[0]] < 0.95
    for name in SUMMARY_NAMES:
        assert abs(figures["onnx"][name] - figures["mindir"][name]) <= AP_TOLERANCE, name
        assert abs(figures["onnx"][name] - from_eval[name]) <= AP_TOLERANCE, name


def test_an_onnx_file_is_refused_by_the_ascend_app_in_one_line(work, reference_onnx):
    anno = work / "coco" / "annotations" / "instances_val2017.json"
    result = run_script("scripts/run_infer_310.sh", [reference_onnx, work / "coco" / "val2017", anno, "0", "Ascend"],
                        cwd=work, timeout=None)
    assert result.returncode == 2 and "is an ONNX file" in result.stderr and "DEVICE_TARGET=CPU" in result.stderr


def detection_table(records):
    """(n, 7) [image_id, category_id, score, x, y, w, h] sorted by image, category, then score."""
    table = np.array([[r["image_id"], r["category_id"], r["score"], *r["bbox"]] for r in records], np.float64)
    return table[np.lexsort((-table[:, 2], table[:, 1], table[:, 0]))]


def test_eval_visualizes_detections(work, evaluated):
    eval_dir, _ = evaluated
    assert sorted(os.listdir(eval_dir / "visualize")) == ["1.png"]  # --visualize=1: the data set's first image
    picture = cv2.imread(str(eval_dir / "visualize" / "1.png"))
    source = cv2.imread(str(work / "coco" / "val2017" / "000000000001.png"))
    assert picture.shape == source.shape  # drawn on the original image
    changed = np.any(picture != source, axis=2)
    # boxes were drawn (the reference weights give detections above visualize_score_thr), the rest is untouched
    assert 0 < changed.mean() < 0.5


def test_drawn_box_has_its_class_colour_and_leaves_the_inside_alone():
    image = np.zeros((100, 200, 3), np.uint8)
    drawn = draw_detections(image, np.float32([[20, 30, 120, 80, 0.9]]), np.array([2]), ["a", "b", "cat"])
    colour = class_color(2)
    assert tuple(drawn[55, 20]) == colour and tuple(drawn[55, 120]) == colour  # left and right edges
    assert tuple(drawn[80, 70]) == colour                                     # bottom edge
    assert not drawn[40:75, 25:115].any()                                     # inside the box
    assert not drawn[85:, :].any() and not drawn[:, 125:].any()               # outside it and its label


def test_infer_script_on_ascend_needs_the_toolkit(work, exported, tmp_path):
    result = run_script("scripts/run_infer_310.sh", [exported, work / "coco" / "val2017",
                                                     work / "coco" / "annotations" / "instances_val2017.json"],
                        cwd=tmp_path, timeout=None, env=dict(ENV, ASCEND_HOME_PATH=str(tmp_path / "no_toolkit")))
    assert result.returncode == 2
    assert "run_infer_310.sh: error: no Ascend toolkit" in result.stderr and "DEVICE_TARGET=CPU" in result.stderr
    assert os.listdir(tmp_path) == []  # nothing built, nothing run


@pytest.mark.parametrize("device, file_format, message", [
    ("CPU", "AIR", "--file_format=AIR is supported only with --device_target=Ascend, not on CPU"),
    ("GPU", "ONNX", "--file_format=ONNX is supported only with --device_target=CPU, not on GPU"),
])
def test_unsupported_export_formats_fail_before_any_work(tmp_path, device, file_format, message):
    result = python("export.py", f"--device_target={device}", f"--file_format={file_format}",
                    "--ckpt_file=missing.ckpt", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and os.listdir(tmp_path) == []


def test_eval_names_a_missing_checkpoint(tmp_path):
    result = python("eval.py", "--device_target=CPU", "--checkpoint_path=nowhere.ckpt", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "checkpoint file not found: 'nowhere.ckpt'" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_rejects_a_checkpoint_of_another_network(work, tmp_path):
    other = tmp_path / "dense.ckpt"
    ms.save_checkpoint(nn.Dense(3, 2), str(other))
    result = python("eval.py", "--device_target=CPU", "--run_mode=PYNATIVE", f"--checkpoint_path={other}",
                    f"--anno_path={work / 'coco' / 'annotations' / 'instances_val2017.json'}",
                    f"--coco_root={work / 'coco'}", f"--mindrecord_dir={tmp_path / 'mindrecord'}", *SIZE_ARGS,
                    cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stdout[-2000:]
    assert "is not a Faster R-CNN-DCN checkpoint" in result.stderr and "bias, weight" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def small_net():
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    return build_model(get_config(SIZE_ARGS), kernels=Kernels.CPU)


def test_checkpoint_mismatches_are_named(small_net, tmp_path):
    params = {name: ms.Parameter(ms.Tensor(value), name=name) for name, value in reference_params().items()}
    del params["rcnn.cls_scores.bias"]
    params["backbone.conv1.weight"] = ms.Parameter(ms.Tensor(np.zeros((64, 3, 3, 3), np.float32)),
                                                   name="backbone.conv1.weight")
    with pytest.raises(CheckpointError) as info:
        match_checkpoint(small_net, params, "x.ckpt")
    message = str(info.value)
    assert "1 network parameters are missing: rcnn.cls_scores.bias" in message
    assert "backbone.conv1.weight (64, 3, 3, 3) (network (64, 3, 7, 7))" in message
    # export's wrapper: checkpoint names get its `network.` prefix, and are reported without it
    with pytest.raises(CheckpointError, match="missing: rcnn.cls_scores.bias"):
        match_checkpoint(build_infer_model(get_config(SIZE_ARGS), kernels=Kernels.MINDSPORE), params, "x.ckpt",
                         key_prefix="network.")


def test_float16_checkpoint_with_optimizer_state_loads(small_net, tmp_path):
    values = reference_params()
    items = [{"name": n, "data": ms.Tensor(v.astype(np.float16))} for n, v in values.items()]
    items += [{"name": "moments.backbone.conv1.weight", "data": ms.Tensor(np.zeros(3, np.float32))},
              {"name": "global_step", "data": ms.Tensor(np.array([5], np.int32))}]
    path = tmp_path / "fp16.ckpt"
    ms.save_checkpoint(items, str(path))
    assert load_for_inference(small_net, str(path)) == 2
    loaded = small_net.parameters_dict()["rcnn.cls_scores.weight"]
    assert loaded.dtype == ms.float32
    np.testing.assert_array_equal(loaded.asnumpy(), values["rcnn.cls_scores.weight"].astype(np.float16))


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.ckpt is not a readable MindSpore checkpoint"):
        read_checkpoint(str(path))


def test_postprogress_names_images_without_results(work, tmp_path):
    (tmp_path / "results").mkdir()
    result = python("postprogress.py", f"--anno_path={work / 'coco' / 'annotations' / 'instances_val2017.json'}",
                    f"--result_path={tmp_path / 'results'}", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "2 of the 2 images of the annotation file have no results" in result.stderr
    assert "000000000001.png" in result.stderr
