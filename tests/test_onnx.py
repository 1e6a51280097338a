"""export.py --file_format=ONNX and onnxruntime running its file (src/deploy/).

The fidelity check: export.py writes the reference checkpoint (tests/helpers/reference_ckpt.py) at the fidelity size
(default_config_gpu.yaml, 384x640, batch 1); onnxruntime's detections on the golden input must match the original's
recorded ones (tests/data/golden_384x640.npz) and this port's network's, with the tolerances of
tests/data/FIDELITY.md (same label, IoU >= 0.99, |score difference| <= 1e-3, every detection matched).
"""
import json
import os
import stat
import sys

import mindspore as ms
import numpy as np
import onnx
import pytest
from mindspore import Tensor, nn, ops

from src.deploy.model_facts import MODEL_FACTS_KEY
from src.deploy.onnx_export import METADATA_KEYS, ONNX_REQUIREMENT, OUTPUT_NAMES, export_onnx
from src.deploy.onnx_infer import ONNXRUNTIME_REQUIREMENT, onnx_detector
from src.infra.errors import InferError
from src.model_utils.config import get_config
from src.ops import Kernels
from tests.helpers.fidelity import (
    CONFIG_GPU,
    GOLDEN_INFER,
    INFER_SIZE,
    best_detections,
    match_detections,
    reference_network,
)
from tests.helpers.processes import ENV, ROOT, error_lines, run_script, snapshot

DET_MIN_IOU = 0.99  # tests/data/FIDELITY.md
DET_SCORE_TOL = 1e-3
NUM_CLASSES = 81  # default_config_gpu.yaml
RPN_MAX_NUM = 1000


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN_INFER))


@pytest.fixture(scope="module")
def exported(reference_ckpt, tmp_path_factory):
    """export.py's ONNX file of the reference checkpoint at the fidelity size, batch 1 (a real process)."""
    folder = tmp_path_factory.mktemp("onnx")
    height, width = INFER_SIZE
    result = run_script("export.py", ["--device_target=CPU", "--file_format=ONNX",
                                      f"--config_path={os.path.join(ROOT, CONFIG_GPU)}",
                                      f"--ckpt_file={reference_ckpt}", f"--file_name={folder / 'dcn'}",
                                      "--batch_size=1", f"--img_height={height}", f"--img_width={width}"], cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"exported {folder / 'dcn.onnx'}: inputs img (1, 3, {height}, {width})" in result.stdout
    return folder / "dcn.onnx"


@pytest.fixture(scope="module")
def onnx_outputs(exported, golden):
    """onnxruntime's (boxes, labels, masks) of the golden input."""
    detect, batch, size = onnx_detector(str(exported))
    assert (batch, size) == (1, INFER_SIZE)
    return detect(golden["input"], np.float32([[*INFER_SIZE, 1.0, 1.0]]))


@pytest.mark.slow
def test_export_writes_only_the_model_with_the_networks_interface(exported):
    assert os.listdir(exported.parent) == ["dcn.onnx"]  # no temporary left beside it
    assert stat.S_IMODE(os.stat(exported).st_mode) & 0o600 == 0o600  # the exporter's read-only mode undone
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    height, width = INFER_SIZE
    candidates = RPN_MAX_NUM * (NUM_CLASSES - 1)

    def interface(values):
        return [(v.name, v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim])
                for v in values]

    assert interface(model.graph.input) == [("img", onnx.TensorProto.FLOAT, [1, 3, height, width]),
                                            ("img_metas", onnx.TensorProto.FLOAT, [1, 4])]
    assert interface(model.graph.output) == [("boxes", onnx.TensorProto.FLOAT, [1, candidates, 5]),
                                             ("labels", onnx.TensorProto.INT32, [1, candidates, 1]),
                                             ("masks", onnx.TensorProto.BOOL, [1, candidates, 1])]
    metadata = {p.key: p.value for p in model.metadata_props}
    facts = json.loads(metadata.pop(MODEL_FACTS_KEY))  # what infer.py --onnx names the classes from
    assert metadata == dict(batch_size="1", img_height=str(height), img_width=str(width),
                            num_classes=str(NUM_CLASSES), rpn_max_num=str(RPN_MAX_NUM))
    assert facts == {"coco_classes": get_config([f"--config_path={os.path.join(ROOT, CONFIG_GPU)}"]).coco_classes,
                     "num_classes": NUM_CLASSES, "img_height": height, "img_width": width, "keep_ratio": True,
                     "batch_size": 1}


@pytest.mark.slow
def test_onnx_detections_match_the_original(onnx_outputs, golden):
    boxes, labels, masks = onnx_outputs
    want = golden["det_boxes"], golden["det_scores"], golden["det_labels"]
    got = best_detections(boxes[0], labels[0, :, 0], masks[0, :, 0], count=len(want[1]))
    match = match_detections(want, got, DET_MIN_IOU, DET_SCORE_TOL)
    print(f"\nONNX vs the original: {match.matched} of {match.total} matched; lowest IoU {match.lowest_iou:.6f}, "
          f"largest |score diff| {match.largest_score_diff:.2e}")
    assert match.matched == match.total == len(got[1]), f"original detection {match.first_unmatched} has no match"


@pytest.mark.slow
def test_onnx_gives_the_networks_candidates(onnx_outputs, golden, reference_ckpt, graph):
    height, width = INFER_SIZE
    cfg = get_config([f"--config_path={CONFIG_GPU}"], img_height=height, img_width=width, test_batch_size=1)
    net = reference_network(cfg, reference_ckpt, Kernels.CPU)
    net.set_train(False)
    want = [o.asnumpy() for o in net(Tensor(golden["input"]), Tensor(np.float32([[height, width, 1.0, 1.0]])),
                                     None, None, None)]
    boxes, labels, masks = onnx_outputs
    np.testing.assert_array_equal(labels, want[1])
    np.testing.assert_array_equal(masks, want[2])  # the same candidates survive both NMS stages
    valid = want[2][0, :, 0]
    assert valid.sum() > 1000
    match = match_detections(best_detections(want[0][0], want[1][0, :, 0], valid, count=valid.size),
                             best_detections(boxes[0], labels[0, :, 0], masks[0, :, 0], count=valid.size),
                             DET_MIN_IOU, DET_SCORE_TOL)
    print(f"\nONNX vs the network: {match.matched} of {match.total} valid candidates matched; lowest IoU "
          f"{match.lowest_iou:.6f}, largest |score diff| {match.largest_score_diff:.2e}")
    assert match.matched == match.total


@pytest.mark.slow
def test_a_model_of_another_size_or_class_count_is_refused_in_one_line(exported):
    height, width = INFER_SIZE
    for request, expected in (
            (dict(image_size=(128, 192)), f"{exported} takes {height}x{width} images, not the requested 128x192"),
            (dict(num_classes=3), f"{exported} was exported for num_classes={NUM_CLASSES}, not the requested 3")):
        with pytest.raises(InferError) as info:
            onnx_detector(str(exported), **request)
        assert str(info.value).startswith(expected) and "\n" not in str(info.value)
    detect, _, _ = onnx_detector(str(exported), image_size=INFER_SIZE, num_classes=NUM_CLASSES)
    with pytest.raises(InferError, match=r"img has shape \(1, 3, 128, 192\), the model takes \(1, 3, 384, 640\)"):
        detect(np.zeros((1, 3, 128, 192), np.float32), np.float32([[128, 192, 1, 1]]))


def test_unreadable_models_and_a_missing_onnxruntime_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(InferError, match="ONNX model not found: 'nowhere.onnx'"):
        onnx_detector("nowhere.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(InferError) as info:
        onnx_detector(str(text))
    assert str(info.value).startswith(f"{text} is not a readable ONNX model: ") and "\n" not in str(info.value)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as when it is not installed
    with pytest.raises(InferError, match=f"needs onnxruntime: pip install {ONNXRUNTIME_REQUIREMENT}$"):
        onnx_detector(str(text))


class _Tiny(nn.Cell):
    """The network's interface on a trivial graph: boxes (N, 1, 5) = [img_metas, mean of img], labels = 2 * the
    first meta, masks = mean > 0."""

    def construct(self, img, img_metas):
        scores = img.mean(axis=(1, 2, 3)).reshape(-1, 1, 1)
        boxes = ops.concat((img_metas.reshape(-1, 1, 4), scores), axis=2)
        return boxes, (boxes[:, :, :1] * 2).astype(ms.int32), boxes[:, :, 4:] > 0


def _tiny_inputs(batch: int = 2, height: int = 8, width: int = 12):
    img = np.arange(batch * 3 * height * width, dtype=np.float32).reshape(batch, 3, height, width) - 200.0
    metas = np.float32([[height + k, width, 1.0, 1.0 + k] for k in range(batch)])
    return img, metas


def test_writer_names_the_outputs_and_records_the_sizes(tmp_path, graph):
    img, metas = _tiny_inputs()
    target = tmp_path / "tiny.onnx"
    sizes = dict(zip(METADATA_KEYS, (2, 8, 12, 5, 7), strict=True))
    export_onnx(_Tiny(), Tensor(img), Tensor(metas), str(target), sizes)
    assert os.listdir(tmp_path) == ["tiny.onnx"]
    model = onnx.load(str(target))
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    assert {p.key: p.value for p in model.metadata_props} == {k: str(v) for k, v in sizes.items()}
    detect, batch, size = onnx_detector(str(target), image_size=(8, 12), num_classes=5)
    assert (batch, size) == (2, (8, 12))
    boxes, labels, masks = detect(img, metas)
    means = img.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(boxes[:, 0], np.concatenate([metas, means[:, None]], axis=1), rtol=1e-6)
    np.testing.assert_array_equal(labels[:, 0, 0], 2 * metas[:, 0].astype(np.int32))
    np.testing.assert_array_equal(masks[:, 0, 0], means > 0)
    assert means.min() < 0 < means.max()


def test_a_failed_export_leaves_nothing_and_keeps_an_older_file(tmp_path, graph):
    img, metas = _tiny_inputs()
    target = tmp_path / "tiny.onnx"
    target.write_bytes(b"an older model")
    before = snapshot(tmp_path)
    with pytest.raises(KeyError):  # fails after MindSpore wrote its file: metadata without the sizes
        export_onnx(_Tiny(), Tensor(img), Tensor(metas), str(target), {})
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_export_without_the_onnx_package_is_one_line_before_any_work(tmp_path, reference_ckpt):
    shadow = tmp_path / "shadow" / "onnx"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('onnx is not installed')\n")
    work = tmp_path / "work"
    work.mkdir()
    result = run_script("export.py", ["--device_target=CPU", "--file_format=ONNX", f"--ckpt_file={reference_ckpt}"],
                        cwd=work, env=dict(ENV, PYTHONPATH=f"{shadow.parent}{os.pathsep}{ROOT}"))
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        f"export.py: error: --file_format=ONNX needs the onnx package: pip install {ONNX_REQUIREMENT}"]
    assert "Traceback" not in result.stderr and os.listdir(work) == []
