"""COCO conversion and evaluation of the network's test outputs (src/util.py) against hand-made cases."""
import csv
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO

from src.deploy.mindir_app import read_raw_outputs
from src.infra.errors import DataError
from src.infra.progress import Progress
from src.util import (
    SUMMARY_NAMES,
    bbox2result_1image,
    category_map,
    check_image_order,
    coco_eval,
    det2json,
    foreground_category_ids,
    load_ground_truth,
    per_class_ap,
    per_class_table,
    results2json,
    run_cocoeval,
    select_detections,
    summary_figures,
    write_per_class,
    write_summary,
    xyxy2xywh,
)

NUM_CLASSES = 4  # background + 3


def make_coco(images, annotations, categories):
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    coco.createIndex()
    return coco


def gt_coco():
    """Two 100x100 images, one 40x40 'cat' box each; category ids are not contiguous (as COCO's 1..90)."""
    images = [{"id": 42, "file_name": "a.jpg", "height": 100, "width": 100},
              {"id": 7, "file_name": "b.jpg", "height": 100, "width": 100}]
    boxes = {42: [10, 10, 40, 40], 7: [50, 20, 40, 40]}
    annotations = [{"id": i + 1, "image_id": img, "category_id": 17, "bbox": box, "area": 1600.0, "iscrowd": 0}
                   for i, (img, box) in enumerate(boxes.items())]
    categories = [{"id": 3, "name": "car"}, {"id": 17, "name": "cat"}, {"id": 90, "name": "toothbrush"}]
    return make_coco(images, annotations, categories)


def exact_xyxy(x, y, w, h):
    """The network box whose original-style xywh conversion (+1 widths) is exactly [x, y, w, h]."""
    return [x, y, x + w - 1, y + h - 1]


def per_class(*rows_by_label):
    """Per-class result list for one image from {label: rows}."""
    out = [np.zeros((0, 5), np.float32) for _ in range(NUM_CLASSES - 1)]
    for label, rows in rows_by_label:
        out[label] = np.array(rows, np.float32).reshape(-1, 5)
    return out


def evaluate(coco, results, tmp_path, **kwargs):
    files = results2json(coco, results, str(tmp_path / "results.pkl"))
    return coco_eval(files["bbox"], coco, verbose=False, **kwargs)


def test_select_detections_keeps_valid_rows_then_the_best_scores():
    boxes = np.array([[0, 0, 1, 1, s] for s in (0.3, 0.9, 0.5, 0.8, 0.7)], np.float32)
    labels = np.array([[0], [1], [2], [0], [1]], np.int32)
    mask = np.array([[True], [True], [False], [True], [True]])
    kept, kept_labels = select_detections(boxes, labels, mask, max_num=10)
    np.testing.assert_array_equal(kept[:, 4], np.float32([0.3, 0.9, 0.8, 0.7]))  # valid rows, order unchanged
    np.testing.assert_array_equal(kept_labels, [0, 1, 0, 1])
    kept, kept_labels = select_detections(boxes, labels, mask, max_num=2)
    np.testing.assert_array_equal(kept[:, 4], np.float32([0.9, 0.8]))  # the masked-out 0.5 is not a candidate
    np.testing.assert_array_equal(kept_labels, [1, 0])


def test_select_detections_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match="disagree in length"):
        select_detections(np.zeros((3, 5)), np.zeros(3), np.zeros(2, bool), max_num=5)


def test_bbox2result_groups_rows_by_label():
    boxes = np.arange(15, dtype=np.float32).reshape(3, 5)
    grouped = bbox2result_1image(boxes, np.array([2, 0, 2]), NUM_CLASSES)
    assert len(grouped) == NUM_CLASSES - 1
    np.testing.assert_array_equal(grouped[0], boxes[[1]])
    assert grouped[1].shape == (0, 5)
    np.testing.assert_array_equal(grouped[2], boxes[[0, 2]])
    assert all(g.shape == (0, 5) for g in bbox2result_1image(np.zeros((0, 5)), np.zeros(0), NUM_CLASSES))


def test_xywh_uses_inclusive_pixel_widths():
    assert xyxy2xywh([10.0, 20.0, 19.0, 49.5, 0.9]) == [10.0, 20.0, 10.0, 30.5]


def test_det2json_maps_labels_by_position_and_images_in_annotation_order():
    coco = gt_coco()
    results = [per_class((1, [exact_xyxy(10, 10, 40, 40) + [0.75]])),
               per_class((0, [[1, 2, 3, 4, 0.5]]), (2, [[5, 6, 7, 8, 0.25]]))]
    records = det2json(coco, results)
    assert records == [
        {"image_id": 42, "bbox": [10.0, 10.0, 40.0, 40.0], "score": 0.75, "category_id": 17},
        {"image_id": 7, "bbox": [1.0, 2.0, 3.0, 3.0], "score": 0.5, "category_id": 3},
        {"image_id": 7, "bbox": [5.0, 6.0, 3.0, 3.0], "score": 0.25, "category_id": 90},
    ]
    # fewer result sets than images: the remaining images simply get no detections
    assert [r["image_id"] for r in det2json(coco, results[:1])] == [42]


def test_background_category_of_txt_annotations_is_not_a_class():
    coco = make_coco([{"id": 1, "file_name": "x.jpg", "height": 10, "width": 10}], [],
                     [{"id": i, "name": n} for i, n in enumerate(["background", "car", "cat", "toothbrush"])])
    assert foreground_category_ids(coco) == [1, 2, 3]
    assert det2json(coco, [per_class((0, [[0, 0, 1, 1, 0.5]]))])[0]["category_id"] == 1


def test_exact_detections_on_every_image_give_ap_one(tmp_path):
    coco = gt_coco()
    results = [per_class((1, [exact_xyxy(10, 10, 40, 40) + [0.9]])),
               per_class((1, [exact_xyxy(50, 20, 40, 40) + [0.8]]))]
    summary = evaluate(coco, results, tmp_path)
    assert list(summary) == list(SUMMARY_NAMES)
    ap, ap50, ap75, ap_small, ap_medium, ap_large = list(summary.values())[:6]
    assert ap == ap50 == ap75 == ap_medium == pytest.approx(1.0)
    assert ap_small == ap_large == -1.0  # pycocotools: no ground truth of that size


def test_images_without_detections_count_as_in_the_original(tmp_path):
    # The original sets imgIds to loadRes(...).getImgIds(), meaning "images with detections"; pycocotools fills that
    # with every annotated image, so a missed image costs recall: over both images recall stops at 1/2 with
    # precision 1, i.e. 51 of COCO's 101 recall points.
    coco = gt_coco()
    results = [per_class((1, [exact_xyxy(10, 10, 40, 40) + [0.9]])), per_class()]
    summary = evaluate(coco, results, tmp_path)
    assert summary[SUMMARY_NAMES[0]] == pytest.approx(51 / 101)
    assert summary[SUMMARY_NAMES[8]] == pytest.approx(0.5)  # AR@100


def test_a_better_scored_false_positive_halves_the_precision(tmp_path):
    coco = gt_coco()
    wrong_place = exact_xyxy(60, 60, 30, 30) + [0.95]
    results = [per_class((1, [wrong_place, exact_xyxy(10, 10, 40, 40) + [0.6]])),
               per_class((1, [exact_xyxy(50, 20, 40, 40) + [0.5]]))]
    summary = evaluate(coco, results, tmp_path)
    # ranked FP (0.95), TP, TP: precision 0/1, 1/2, 2/3 at recall 0, 1/2, 1; interpolated: 2/3 at every recall point
    assert summary[SUMMARY_NAMES[1]] == pytest.approx(2 / 3)


def test_wrong_class_scores_zero(tmp_path):
    coco = gt_coco()
    results = [per_class((0, [exact_xyxy(10, 10, 40, 40) + [0.9]])), per_class()]  # label 0 = car, gt is cat
    assert evaluate(coco, results, tmp_path)[SUMMARY_NAMES[0]] == 0.0


def test_no_detections_at_all_gives_zeros(tmp_path):
    coco = gt_coco()
    summary = evaluate(coco, [per_class(), per_class()], tmp_path)
    assert summary == dict.fromkeys(SUMMARY_NAMES, 0.0)


def test_results_json_is_complete_and_leaves_no_temporary_file(tmp_path):
    coco = gt_coco()
    files = results2json(coco, [per_class((2, [[1, 1, 5, 5, 0.5]]))], str(tmp_path / "results.pkl"))
    path = str(tmp_path / "results.pkl.bbox.json")
    assert files == {"bbox": path, "proposal": path}
    with open(files["bbox"]) as f:
        assert json.load(f) == [{"image_id": 42, "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.5, "category_id": 90}]
    assert os.listdir(tmp_path) == ["results.pkl.bbox.json"]


def test_summary_file_has_the_original_line_format(tmp_path):
    values = dict(zip(SUMMARY_NAMES, np.linspace(0.0, 1.0, 12), strict=True))
    path = tmp_path / "mAP.log"
    write_summary(values, str(path))
    lines = path.read_text().splitlines()
    assert len(lines) == 12
    assert lines[0] == "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.000"
    assert lines[5] == "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.455"


def test_image_order_check_names_the_problem():
    coco = gt_coco()  # getImgIds() == [42, 7]
    assert check_image_order(coco, [42, 7], 2) == []
    assert check_image_order(coco, None, 2) == []
    (count,) = check_image_order(coco, None, 1)
    assert "lists 2 images but 1 were evaluated" in count and "by position" in count
    (count,) = check_image_order(coco, [42], 1)
    assert "lists 2 images but 1 were evaluated" in count and "by image id" in count and "missed" in count
    (order,) = check_image_order(coco, [7, 42], 2)
    assert "image 0 of the evaluation set has id 7" in order and "is 42" in order


def test_progress_reports_the_time_left():
    now = [100.0]
    progress = Progress(total=10, clock=lambda: now[0])
    assert progress.status() == "0/10, elapsed 0:00:00, ETA ?"
    now[0] += 30.0
    assert progress.step(3) == "3/10, elapsed 0:00:30, ETA 0:01:10"
    now[0] += 3600.0
    assert progress.step(7) == "10/10, elapsed 1:00:30, ETA 0:00:00"


def test_explicit_category_map_overrides_the_positional_one():
    coco = gt_coco()
    records = det2json(coco, [per_class((0, [[0, 0, 1, 1, 0.5]]))], cat_ids=[17, 3, 90])
    assert records[0]["category_id"] == 17


@pytest.mark.parametrize("box_dtype", [np.float16, np.float32])
def test_raw_outputs_round_trip_in_either_box_precision(tmp_path, box_dtype):
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 100, (6, 5)).astype(box_dtype)
    labels = rng.integers(0, 80, (6, 1)).astype(np.int32)
    masks = rng.random((6, 1)) > 0.5
    for k, array in enumerate((boxes, labels, masks)):
        array.tofile(tmp_path / f"img_{k}.bin")
    got_boxes, got_labels, got_masks = read_raw_outputs(str(tmp_path), "img")
    assert got_boxes.dtype == np.float32
    np.testing.assert_array_equal(got_boxes, boxes.astype(np.float32))
    np.testing.assert_array_equal(got_labels, labels.reshape(-1))
    np.testing.assert_array_equal(got_masks, masks.reshape(-1))


def test_raw_outputs_with_wrong_sizes_are_named(tmp_path):
    np.zeros((4, 5), np.float64).tofile(tmp_path / "img_0.bin")
    np.zeros(4, np.int32).tofile(tmp_path / "img_1.bin")
    np.zeros(4, np.bool_).tofile(tmp_path / "img_2.bin")
    with pytest.raises(ValueError, match="img_0.bin: 160 bytes is not 4 boxes"):
        read_raw_outputs(str(tmp_path), "img")
    np.zeros(3, np.int32).tofile(tmp_path / "img_1.bin")
    with pytest.raises(ValueError, match="img_1.bin: 3 int32 labels"):
        read_raw_outputs(str(tmp_path), "img")
    with pytest.raises(ValueError, match="other_0.bin"):
        read_raw_outputs(str(tmp_path), "other")


def test_ground_truth_from_a_txt_label_file(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a.jpg 10,20,50,60,2,0 0,0,5,5,1,1\n\nb.jpg 1,1,9,9,3,0\n")
    coco = load_ground_truth(str(labels), "txt", ["background", "car", "cat", "toothbrush"])
    assert coco.getImgIds() == [1, 2]
    assert foreground_category_ids(coco) == [1, 2, 3]
    first = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [(a["bbox"], a["category_id"], a["iscrowd"]) for a in first] == \
        [([10.0, 20.0, 40.0, 40.0], 2, 0), ([0.0, 0.0, 5.0, 5.0], 1, 1)]


def test_unusable_ground_truth_files_are_named(tmp_path):
    with pytest.raises(DataError, match="annotation file not found: 'nowhere.json'"):
        load_ground_truth("nowhere.json", "coco", [])
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": 3}')
    with pytest.raises(DataError, match="broken.json is not a COCO annotation file"):
        load_ground_truth(str(broken), "coco", [])


def test_category_map_is_positional_when_the_file_lists_exactly_the_model_classes():
    coco = gt_coco()  # car 3, cat 17, toothbrush 90
    assert category_map(coco, ["background", "car", "cat", "toothbrush"]) == ([3, 17, 90], None)


def test_category_map_matches_names_when_the_file_lists_more_categories():
    # a model of 2 classes evaluated on a file with all three: the original's positional map would give car, cat
    ids, note = category_map(gt_coco(), ["background", "cat", "toothbrush"])
    assert ids == [17, 90]
    assert note.startswith("note: the annotation file lists 3 categories for the model's 2 classes")


def test_category_map_keeps_the_positional_rule_when_names_are_missing():
    ids, note = category_map(gt_coco(), ["background", "automobile", "cat", "toothbrush"])
    assert ids == [3, 17, 90]
    assert note.startswith("WARNING") and "'automobile'" in note


def test_category_map_of_txt_ground_truth(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a.jpg 10,20,50,60,2,0\n")
    classes = ["background", "car", "cat", "toothbrush"]
    assert category_map(load_ground_truth(str(labels), "txt", classes), classes) == ([1, 2, 3], None)


def two_class_case():
    """cat: one box, found exactly. car: two boxes, one found at IoU 1240/1960 = 0.633 (a match at the IoU
    thresholds 0.50, 0.55 and 0.60 only), the other missed. toothbrush: no ground truth, one detection."""
    images = [{"id": 42, "file_name": "a.jpg", "height": 100, "width": 100},
              {"id": 7, "file_name": "b.jpg", "height": 100, "width": 100}]
    boxes = [(42, 17, [10, 10, 40, 40]), (7, 3, [50, 20, 40, 40]), (7, 3, [5, 60, 30, 30])]
    annotations = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3],
                    "iscrowd": 0} for i, (img, cat, box) in enumerate(boxes)]
    categories = [{"id": 3, "name": "car"}, {"id": 17, "name": "cat"}, {"id": 90, "name": "toothbrush"}]
    coco = make_coco(images, annotations, categories)
    results = [per_class((1, [exact_xyxy(10, 10, 40, 40) + [0.9]])),
               per_class((0, [exact_xyxy(59, 20, 40, 40) + [0.8]]), (2, [exact_xyxy(0, 0, 20, 20) + [0.7]]))]
    return coco, results


def test_per_class_ap_from_cocoeval_precision(tmp_path):
    coco, results = two_class_case()
    files = results2json(coco, results, str(tmp_path / "results.pkl"))
    evaluator = run_cocoeval(files["bbox"], coco, verbose=False)
    classes = ["background", "car", "cat", "toothbrush"]
    cat_ids, _ = category_map(coco, classes)
    rows = per_class_ap(evaluator, coco, classes, cat_ids)
    # COCO's 101-point interpolation: the found car gives precision 1 at recall 0..0.50 (51 points) and 0 beyond
    # (the second car is never found), at 3 of the 10 IoU thresholds; the cat is perfect at every threshold.
    half = 51 / 101
    assert [(r["class"], r["category_id"], r["ground_truth"]) for r in rows] == \
        [("car", 3, 2), ("cat", 17, 1), ("toothbrush", 90, 0)]
    assert [r["AP50"] for r in rows] == pytest.approx([half, 1.0, -1.0])
    assert [r["AP"] for r in rows] == pytest.approx([0.3 * half, 1.0, -1.0])
    # the summary's AP and AP50 are the means over the classes with ground truth
    summary = summary_figures(evaluator)
    assert summary[SUMMARY_NAMES[0]] == pytest.approx((0.3 * half + 1.0) / 2)
    assert summary[SUMMARY_NAMES[1]] == pytest.approx((half + 1.0) / 2)

    path = tmp_path / "per_class.csv"
    write_per_class(rows, str(path))
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["class"] for r in table] == ["car", "cat", "toothbrush"]
    assert [float(r["AP"]) for r in table] == pytest.approx([0.3 * half, 1.0, -1.0], abs=5e-5)
    assert [float(r["AP50"]) for r in table] == pytest.approx([half, 1.0, -1.0], abs=5e-5)
    assert sorted(os.listdir(tmp_path)) == ["per_class.csv", "results.pkl.bbox.json"]  # no temporary file left
    assert per_class_table(rows).splitlines()[1].split() == ["car", "2", "0.151", "0.505"]


def test_per_class_ap_without_any_detection():
    coco, _ = two_class_case()
    rows = per_class_ap(None, coco, ["background", "car", "cat", "toothbrush"], [3, 17, 90])
    assert [(r["AP"], r["AP50"]) for r in rows] == [(0.0, 0.0), (0.0, 0.0), (-1.0, -1.0)]


def test_ground_truth_without_area_gets_the_box_area(tmp_path, capsys):
    """Boxes of each COCO size range (small < 32^2 <= medium < 96^2 <= large), so the area decides the split."""
    boxes = {1: [5, 5, 20, 20], 2: [10, 10, 50, 60], 3: [0, 0, 100, 120]}
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 200, "width": 200} for i in boxes]
    categories = [{"id": 17, "name": "cat"}]
    detections = [{"image_id": i, "bbox": [x + 1, y, w, h], "score": 0.5 + i / 10, "category_id": 17}
                  for i, (x, y, w, h) in boxes.items()]
    figures = []
    for with_area in (True, False):
        annotations = [dict({"id": i, "image_id": i, "category_id": 17, "bbox": box, "iscrowd": 0},
                            **({"area": float(box[2] * box[3])} if with_area else {})) for i, box in boxes.items()]
        path = tmp_path / f"gt_{with_area}.json"
        path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        coco = load_ground_truth(str(path), "coco", [])
        out = capsys.readouterr().out
        assert (f"WARNING: {path}: 3 annotations have no 'area'" in out) is not with_area
        results = tmp_path / f"results_{with_area}.json"
        results.write_text(json.dumps(detections))
        figures.append(coco_eval(str(results), coco, verbose=False))
    assert figures[1] == figures[0]
    assert all(figures[0][SUMMARY_NAMES[k]] > 0 for k in (3, 4, 5))  # each size range has its box
