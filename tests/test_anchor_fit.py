"""The anchor fit (src/data/anchor_fit.py): each box's best IoU over the valid anchor grid against the brute-force IoU
of every anchor of multi_level_anchors inside the canvas (tests/helpers/box_reference.py), coverage of hand-computed
box sets, suggestions that reach the target when re-checked by the reference, the boxes as the training chain
scales them, the command-line report and the short report after train.py's conversion."""
import cv2
import numpy as np
import pytest

from src.data.anchor_fit import (
    COVERAGE_TARGET,
    FitSettings,
    ImageBoxes,
    best_anchor_iou,
    coverage,
    network_boxes,
    suggest_canvas,
    suggest_scales,
)
from src.data.settings import DataSettings
from src.data.transforms import PreprocessSettings, preprocess_train
from src.FasterRcnn.anchor_generator import multi_level_anchors
from src.FasterRcnn.settings import AnchorSettings
from tests.helpers.box_reference import np_inside, np_iou
from tests.helpers.processes import run_script

CANVAS = (256, 384)  # (height, width)


def reference_best_iou(boxes: np.ndarray, settings: FitSettings) -> np.ndarray:
    """Best IoU of each box over every anchor of the full grid that lies inside the canvas."""
    shapes = tuple(settings.feature_shape(s) for s in settings.strides)
    anchors = np.concatenate(multi_level_anchors(AnchorSettings(
        strides=settings.strides, scales=settings.scales, ratios=settings.ratios,
        num_anchors=len(settings.scales) * len(settings.ratios), feature_shapes=shapes)))
    anchors = anchors[np_inside(anchors, settings.canvas_h, settings.canvas_w)]
    return np_iou(anchors, np.asarray(boxes, np.float32)).max(axis=1)


def shares(best: np.ndarray, settings: FitSettings) -> tuple[float, float, float]:
    positive = np.mean(best >= settings.pos_iou_thr)
    reached = np.mean(best >= settings.min_pos_iou)
    return positive, reached - positive, 1 - reached


def on_canvas(boxes) -> list[ImageBoxes]:
    """One image of the canvas's size (scale factor 1) holding `boxes`."""
    return [ImageBoxes(*CANVAS, np.asarray(boxes, np.float64).reshape(-1, 4))]


@pytest.mark.parametrize("scales", [(8.0,), (2.0, 5.0)])
@pytest.mark.parametrize("canvas", [(256, 384), (128, 192), (384, 256)])
def test_best_iou_is_the_full_grids(canvas, scales):
    rng = np.random.default_rng(7)
    settings = FitSettings(canvas_h=canvas[0], canvas_w=canvas[1], scales=scales)
    centres = rng.uniform(-20, max(canvas) + 20, (300, 2))
    sides = np.exp(rng.uniform(np.log(4), np.log(600), (300, 2)))
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], axis=1)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, canvas[1] - 1)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, canvas[0] - 1)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])].astype(np.float32)
    np.testing.assert_array_equal(best_anchor_iou(boxes, settings), reference_best_iou(boxes, settings))


def test_hand_computed_coverage():
    """Default anchors (scale 8: 32 px at stride 4, 64 px at stride 8, ...; "+1" widths, no half-stride offset):
    - a 32x32 box on a stride-4 square anchor ([4j - 14, 4j + 17]) has IoU 1;
    - a 32x32 box centred on a stride-8 anchor centre (8i + 3.5) lies 2 px off the nearest stride-4 anchor on
      both axes: IoU 30 * 30 / (2 * 1024 - 900) = 0.784, a positive;
    - a 48x48 box: at best inside a 64 px anchor, 2304 / 4096 = 0.5625: only the low-quality match;
    - a 10x10 box: at best inside the smallest anchor (stride 4, ratio 0.5, rounded to 46x22), 100 / 1012:
      neither."""
    settings = FitSettings(canvas_h=CANVAS[0], canvas_w=CANVAS[1])
    boxes = np.array([[26, 26, 57, 57],           # 32 px on the stride-4 anchor j = 10
                      [28, 28, 59, 59],           # 32 px centred on 43.5 (stride 8, i = 5)
                      [200, 100, 247, 147],       # 48 px centred on 223.5 = 8 * 27.5 + 3.5
                      [100, 100, 109, 109]], np.float32)
    best = best_anchor_iou(boxes, settings)
    np.testing.assert_allclose(best, [1.0, 900 / 1148, 2304 / 4096, 100 / 1012], rtol=1e-6)
    np.testing.assert_array_equal(best, reference_best_iou(boxes, settings))
    result = coverage(on_canvas(boxes), settings)
    assert (result.total, result.positive, result.low_quality, result.neither) == (4, 2, 1, 1)


def test_small_boxes_reach_nothing_and_the_suggested_scale_fits_them():
    """10 px boxes on the stride-4 grid ([4j - 3, 4j + 6]): no default anchor reaches min_pos_iou; anchor_scales
    [2.5] (10 px anchors at stride 4, [4j - 3, 4j + 6]) covers each with IoU 1, and no other single candidate reaches
    0.7 (8 px: 0.64, 12 px: 0.69)."""
    settings = FitSettings(canvas_h=CANVAS[0], canvas_w=CANVAS[1])
    boxes = np.array([[4 * j - 3, 4 * k - 3, 4 * j + 6, 4 * k + 6] for j in (5, 20, 40) for k in (5, 30)],
                     np.float32)
    images = on_canvas(boxes)
    assert coverage(images, settings).neither == len(boxes)
    assert reference_best_iou(boxes, settings).max() < settings.min_pos_iou
    suggestion = suggest_scales(images, settings)
    assert suggestion.settings.scales == (2.5,)
    assert suggestion.coverage.positive == len(boxes)
    np.testing.assert_allclose(reference_best_iou(boxes, suggestion.settings), 1.0)


def test_canvas_suggestion_reaches_the_target_by_the_reference():
    """32 px boxes of a 256x384 image on the stride-4 anchors, seen at 128x192 (16 px: IoU <= 0.25); the suggested
    canvas (a multiple of 32) gives the coverage the reference computes for it, at least the target."""
    settings = FitSettings(canvas_h=128, canvas_w=192)
    boxes = np.array([[4 * j - 14, 4 * k - 14, 4 * j + 17, 4 * k + 17] for j in (4, 20, 50, 80) for k in (4, 30, 50)],
                     np.float64)
    images = [ImageBoxes(256, 384, boxes)]
    assert coverage(images, settings).share == 0
    suggestion = suggest_canvas(images, settings)
    fitted = suggestion.settings
    assert fitted.canvas_h % 32 == 0 and fitted.canvas_w % 32 == 0
    reference = reference_best_iou(network_boxes(images, fitted), fitted)
    assert suggestion.coverage.share == np.mean(reference >= fitted.pos_iou_thr) >= COVERAGE_TARGET


@pytest.mark.parametrize("keep_ratio", [True, False])
def test_network_boxes_are_the_training_chains(keep_ratio):
    """The boxes the training chain outputs (no flip, no expand) for images of several sizes."""
    settings = FitSettings(canvas_h=CANVAS[0], canvas_w=CANVAS[1], keep_ratio=keep_ratio)
    preprocess = PreprocessSettings(*CANVAS, keep_ratio, 0.0, 0.0, num_gts=4)
    rng = np.random.default_rng(3)
    for height, width in ((300, 400), (480, 320), (1000, 90), (50, 60)):
        rows = np.concatenate([rng.integers(0, 40, (3, 2)), rng.integers(45, 50, (3, 2)), np.ones((3, 1)),
                               np.zeros((3, 1))], axis=1).astype(np.int32)
        expected = preprocess_train(np.zeros((height, width, 3), np.uint8), rows, preprocess, flip=False)[2][:3]
        got = network_boxes([ImageBoxes(height, width, rows[:, :4].astype(np.float64))], settings)
        np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.fixture
def tiny_txt_set(tmp_path):
    """Two 256x384 images; boxes (TXT, "+1" widths x2 - x1 + 1): 32 px on an anchor, 48 px, 10 px, and a crowd box
    that the report leaves out."""
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((*CANVAS, 3), 90, np.uint8))
    (tmp_path / "train.txt").write_text("a.png 26,26,57,57,1,0 200,100,247,147,2,0\n"
                                        "b.png 100,100,109,109,3,0 0,0,200,200,1,1\n")
    return tmp_path


def txt_arguments(root) -> list[str]:
    return ["--config_path=default_config_cpu.yaml", "--dataset=other", f"--anno_path={root / 'train.txt'}",
            f"--image_dir={root}", f"--img_height={CANVAS[0]}", f"--img_width={CANVAS[1]}",
            f"--mindrecord_dir={root / 'mindrecord'}"]


COVERAGE_LINE = ("best anchor IoU >= pos_iou_thr 0.7: 33.3% | only >= min_pos_iou 0.3 (low-quality match): 33.3% | "
                 "neither (no anchor trained): 33.3%")


@pytest.mark.slow
def test_command_line_report(tiny_txt_set):
    done = run_script("-m src.tools.anchor_report", txt_arguments(tiny_txt_set), check=True)
    lines = done.stdout.splitlines()
    assert COVERAGE_LINE in lines
    assert any(line.startswith("anchor fit: 3 non-crowd boxes of 2 training images") for line in lines)
    assert not (tiny_txt_set / "mindrecord").exists()


def test_report_printed_once_after_train_py_converts(tiny_txt_set, capsys):
    from src.data.training_boxes import training_mindrecord  # noqa: PLC0415  (MindSpore's FileWriter)
    from src.model_utils.config import get_config  # noqa: PLC0415

    cfg = get_config(txt_arguments(tiny_txt_set))
    data, fit = DataSettings.from_config(cfg), FitSettings.from_config(cfg)
    training_mindrecord(data, fit, "FasterRcnn.mindrecord", rank=0)
    first = capsys.readouterr().out.splitlines()
    assert COVERAGE_LINE in first
    assert first.index(COVERAGE_LINE) > next(i for i, line in enumerate(first) if line.startswith("MindRecord "))
    training_mindrecord(data, fit, "FasterRcnn.mindrecord", rank=0)  # reused: no report
    assert COVERAGE_LINE not in capsys.readouterr().out
