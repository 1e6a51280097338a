"""The confusion matrix (src/evaluation/confusion_matrix.py) and the precision-recall curves (pr_curves.py) on a
hand-made two-class case whose matrix and curves are worked out by hand below; the curves also against
pycocotools' own array."""
import csv

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from src.evaluation.confusion_matrix import (
    MAX_ALL_CLASSES,
    confusion_matrix,
    draw_confusion_matrix,
    shown_classes,
    summary_line,
    write_confusion_csv,
)
from src.evaluation.evaluator import EvaluationSettings, error_analysis_writes, write_evaluation_files
from src.evaluation.pr_curves import RECALL_POINTS, draw_pr_curves, precision_recall_curves
from src.util import evaluate_records, per_class_ap

CAT, DOG, BIRD, TOOTHBRUSH = 17, 18, 19, 90  # category ids; the model knows cat and dog; no bird in any image
NAMES = ["cat", "dog"]
SCORE_THR = 0.3
A, B, C = [10, 10, 40, 40], [60, 60, 30, 30], [20, 20, 50, 50]  # x, y, w, h
D, E, CROWD = [0, 0, 30, 30], [40, 40, 30, 30], [50, 50, 40, 40]


def two_class_case():
    """Four 100x100 images (cat = row/column 0, dog 1, background 2):
    1: cat A found as cat (TP, [0, 0]); dog B found as a cat (confusion, [1, 0]); a toothbrush box the model does
       not know (left out).
    2: cat C found only by a detection below the score threshold (miss, [0, 2]); a dog where there is nothing
       (false positive, [2, 1]).
    3: dog D found (IoU 750 / 1050 = 0.714: TP, [1, 1]) and found again by a lower score (false positive,
       [2, 1]); a cat inside a crowd region of cats (ignored).
    4: dog E seen as a cat at 0.95 and as a dog at 0.5: the dog takes it ([1, 1]), the cat is a false positive
       ([2, 0]).
    """
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 100, "width": 100} for i in (1, 2, 3, 4)]
    boxes = [(1, CAT, A, 0), (1, DOG, B, 0), (1, TOOTHBRUSH, [0, 0, 5, 5], 0), (2, CAT, C, 0), (3, DOG, D, 0),
             (3, CAT, CROWD, 1), (4, DOG, E, 0)]
    annotations = [{"id": k + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3],
                    "iscrowd": crowd} for k, (img, cat, box, crowd) in enumerate(boxes)]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": [
        {"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}, {"id": BIRD, "name": "bird"},
        {"id": TOOTHBRUSH, "name": "toothbrush"}]}
    coco.createIndex()
    records = [(1, CAT, A, 0.9), (1, CAT, B, 0.8), (2, CAT, [20, 20, 50, 42], 0.2), (2, DOG, [0, 70, 20, 20], 0.7),
               (3, DOG, [5, 0, 30, 30], 0.65), (3, DOG, [0, 5, 30, 30], 0.55), (3, CAT, [55, 55, 20, 20], 0.6),
               (4, CAT, E, 0.95), (4, DOG, E, 0.5)]
    return coco, [{"image_id": img, "category_id": cat, "bbox": box, "score": score}
                  for img, cat, box, score in records]


# rows: ground truth cat, dog, background; columns: predicted cat, dog, background (see two_class_case)
BY_HAND = np.array([[1, 0, 1],
                    [1, 2, 0],
                    [1, 2, 0]])


def test_the_matrix_of_the_hand_made_case():
    coco, records = two_class_case()
    matrix = confusion_matrix(coco, records, [CAT, DOG], SCORE_THR)
    np.testing.assert_array_equal(matrix, BY_HAND)
    assert summary_line(matrix) == "3 true positives, 1 taken for another class, 3 false positives, 1 missed"


def test_the_score_threshold_and_the_iou_threshold_decide_what_counts():
    coco, records = two_class_case()
    # every detection counts: the cat below the threshold finds C
    everything = confusion_matrix(coco, records, [CAT, DOG], 0.0)
    np.testing.assert_array_equal(everything, BY_HAND + [[1, 0, -1], [0, 0, 0], [0, 0, 0]])
    # at IoU 0.75 the dog of image 3 misses D (0.714): both its detections are false positives, D a miss
    strict = confusion_matrix(coco, records, [CAT, DOG], SCORE_THR, iou_thr=0.75)
    np.testing.assert_array_equal(strict, BY_HAND + [[0, 0, 0], [0, -1, 1], [0, 1, 0]])


def test_a_class_the_detector_cannot_name_leaves_its_detections_out():
    coco, records = two_class_case()
    only_cat = confusion_matrix(coco, records, [CAT], SCORE_THR)
    # cat row: A found, C missed; background row: the cat on B (no cat there) and the cat on E
    np.testing.assert_array_equal(only_cat, [[1, 1], [2, 0]])


def test_csv_and_picture(tmp_path):
    coco, records = two_class_case()
    matrix = confusion_matrix(coco, records, [CAT, DOG], SCORE_THR)
    write_confusion_csv(matrix, NAMES, str(tmp_path / "confusion_matrix.csv"))
    with open(tmp_path / "confusion_matrix.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["ground_truth\\predicted", "cat", "dog", "background"], ["cat", "1", "0", "1"],
                    ["dog", "1", "2", "0"], ["background", "1", "2", ""]]
    draw_confusion_matrix(matrix, NAMES, str(tmp_path / "confusion_matrix.png"), SCORE_THR)
    picture = cv2.imread(str(tmp_path / "confusion_matrix.png"))
    assert picture is not None and picture.shape[0] > 300 and picture.shape[1] > 300


def test_many_classes_show_only_those_that_occur():
    matrix = np.zeros((81, 81), np.int64)
    matrix[3, 3] = matrix[7, 80] = matrix[80, 50] = 1
    assert shown_classes(matrix).tolist() == [3, 7, 50]
    assert shown_classes(np.zeros((MAX_ALL_CLASSES + 1,) * 2)).tolist() == list(range(MAX_ALL_CLASSES))


# By hand, COCOeval's interpolated precision (all detections, whatever their score) at its 101 recall points:
# cat (gt A, C; the crowd cat ignored): E 0.95 FP, A 0.9 TP, B 0.8 FP, C' 0.2 TP at IoU 0.84 -> at IoU <= 0.8
# precision 0.5 up to recall 1; at IoU 0.85-0.95 0.5 up to recall 0.5 (51 points), then 0.
# dog (gt B, D, E): far 0.7 FP, D' 0.65 TP at IoU 0.714, D'' 0.55 FP, E 0.5 TP -> at IoU <= 0.7 precision 0.5 up to
# recall 2/3 (67 points); at IoU 0.75-0.95 only E: 1/4 up to recall 1/3 (34 points).
CAT_AT_50 = np.full(101, 0.5)
CAT_MEAN = np.where(RECALL_POINTS <= 0.5 + 1e-9, 0.5, 0.35)
DOG_AT_50 = np.where(np.arange(101) < 67, 0.5, 0.0)
DOG_MEAN = np.where(np.arange(101) < 34, 0.375, np.where(np.arange(101) < 67, 0.25, 0.0))


def test_pr_curves_are_the_hand_computed_ones_and_pycocotools_array():
    coco, records = two_class_case()
    evaluator = evaluate_records(records, coco, verbose=False)
    at_50, mean = precision_recall_curves(evaluator, [CAT, DOG])
    np.testing.assert_allclose(at_50, [CAT_AT_50, DOG_AT_50], atol=1e-12)
    np.testing.assert_allclose(mean, [CAT_MEAN, DOG_MEAN], atol=1e-12)
    precision = evaluator.eval["precision"]  # (T, R, K, A, M): K in catIds order, A 0 = all, M 2 = 100
    assert evaluator.params.catIds[:2] == [CAT, DOG] and evaluator.params.maxDets[2] == 100
    np.testing.assert_array_equal(at_50, precision[0, :, :2, 0, 2].T)
    np.testing.assert_allclose(mean, precision[:, :, :2, 0, 2].mean(axis=0).T)
    np.testing.assert_array_equal(RECALL_POINTS, evaluator.params.recThrs)
    # a curve's mean is per_class.csv's AP: 0.5 and 43/101 (cat), 33.5/101 and 21/101 (dog)
    rows = per_class_ap(evaluator, coco, ["background", *NAMES], [CAT, DOG])
    assert [(r["AP50"], r["AP"]) for r in rows] == [pytest.approx((0.5, 43 / 101)), pytest.approx((33.5 / 101,
                                                                                                    21 / 101))]
    for k, row in enumerate(rows):
        assert at_50[k].mean() == pytest.approx(row["AP50"]) and mean[k].mean() == pytest.approx(row["AP"])


def test_a_class_without_ground_truth_has_no_curve_and_no_detection_gives_zeros(tmp_path):
    coco, records = two_class_case()
    evaluator = evaluate_records(records, coco, verbose=False)
    at_50, mean = precision_recall_curves(evaluator, [BIRD, TOOTHBRUSH])
    assert np.isnan(at_50[0]).all() and np.isnan(mean[0]).all()  # bird: no ground truth, no curve
    assert not at_50[1].any() and not mean[1].any()  # toothbrush: one box, never detected: precision 0
    at_50, mean = precision_recall_curves(None, [CAT, DOG])
    assert not at_50.any() and not mean.any()
    draw_pr_curves(at_50, mean, NAMES, str(tmp_path / "pr.png"), [True, True])
    assert cv2.imread(str(tmp_path / "pr.png")) is not None


def test_evaluation_writes_the_three_files(tmp_path, capsys):
    coco, records = two_class_case()
    evaluator = evaluate_records(records, coco, verbose=False)
    settings = EvaluationSettings(classes=("background", *NAMES), num_classes=3, visualize_score_thr=SCORE_THR)
    rows = per_class_ap(evaluator, coco, settings.classes, [CAT, DOG])
    writes = error_analysis_writes(settings, coco, records, evaluator, [CAT, DOG], rows, str(tmp_path))
    assert "confusion at IoU 0.5, score >= 0.3: 3 true positives, 1 taken for another class" in capsys.readouterr().out
    write_evaluation_files(writes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix.csv", "confusion_matrix.png",
                                                          "pr_curves.png"]
    assert all(cv2.imread(str(tmp_path / n)) is not None for n in ("confusion_matrix.png", "pr_curves.png"))
