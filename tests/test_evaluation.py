"""The evaluation set's ground truth (src/evaluation/evaluator.py) against pycocotools on hand-made sets: boxes the
conversion drops and images it skips are left out of what COCOeval counts; the files are written after the figures, and
a failed write keeps what was written."""
import json
import os

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from src.data.settings import DataSettings
from src.evaluation.evaluator import prepare_evaluation_set, write_evaluation_files
from src.infra.errors import WriteError
from src.infra.fileio import partial_files, write_json_atomic
from src.model_utils.config import get_config
from src.util import evaluate_records, load_ground_truth, per_class_ap, write_per_class, write_summary

CLASSES_CAR = 3  # "car" is coco_classes[3]
GOOD = [10, 10, 40, 40]            # x, y, w, h
DEGENERATE = [60.2, 60, 0.5, 20]   # x2 = 60.7 truncates to x1 = 60: empty, dropped by the conversion
# AP of one exact detection when a second ground-truth box is missed: precision 1 up to recall 0.5, then 0, over
# COCO's 101 recall points 0, 0.01, ..., 1 -> 51 of them
HALF_RECALL_AP = 51 / 101


def write_set(root, boxes_by_image, missing=()):
    """A COCO val2017 set of 100x100 images with one 'car' box list each (category id 3); image ids 1, 2, ...;
    the files of `missing` ids are not written. Returns the annotation file."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for image_id, boxes in enumerate(boxes_by_image, start=1):
        name = f"{image_id}.png"
        if image_id not in missing:
            cv2.imwrite(str(root / "val2017" / name), np.full((100, 100, 3), 128, np.uint8))
        images.append({"id": image_id, "file_name": name, "height": 100, "width": 100})
        for box in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 3, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 3, "name": "car"}]}))
    return str(path)


def evaluation_set(root, anno, **overrides):
    cfg = get_config([], coco_root=str(root), mindrecord_dir=str(root / "mr"), anno_path=anno, **overrides)
    data = DataSettings.from_config(cfg)
    return prepare_evaluation_set(data, load_ground_truth(anno, "coco", data.classes), anno)


def exact(image_id, box, score=0.9):
    return {"image_id": image_id, "bbox": list(box), "score": score, "category_id": 3}


def car_row(evaluator, coco):
    (row,) = per_class_ap(evaluator, coco, ["background", "car"], [3])
    return row


def pycocotools_ap(anno, records):
    """AP (IoU 0.50:0.95, all areas) of pycocotools on the annotation file as it is."""
    coco = COCO(anno)
    evaluator = COCOeval(coco, coco.loadRes(records), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats[0]


def test_a_box_the_conversion_drops_still_counts_as_in_the_original_and_the_note_says_so(tmp_path, capsys):
    anno = write_set(tmp_path, [[GOOD, DEGENERATE]])
    records = [exact(1, GOOD)]
    assert pycocotools_ap(anno, records) == pytest.approx(HALF_RECALL_AP)  # the file as is: the box counts
    evaluated = evaluation_set(tmp_path, anno)
    out = capsys.readouterr().out
    assert "1 degenerate dropped" in out
    assert "note: 1 degenerate boxes of" in out and "count as ground truth here" in out
    evaluator = evaluate_records(records, evaluated.coco, verbose=False)
    row = car_row(evaluator, evaluated.coco)
    assert row["ground_truth"] == 2  # per_class.csv's count agrees with the note
    assert evaluator.stats[0] == pytest.approx(HALF_RECALL_AP)


def test_images_skipped_by_the_conversion_are_left_out_and_named(tmp_path, capsys):
    anno = write_set(tmp_path, [[GOOD], [GOOD], [GOOD]], missing={2})
    records = [exact(1, GOOD), exact(3, GOOD)]
    # the file as is: image 2's box is a miss, precision 1 up to recall 2/3 (67 of the 101 recall points)
    assert pycocotools_ap(anno, records) == pytest.approx(67 / 101)
    evaluated = evaluation_set(tmp_path, anno, skip_bad_images=True)
    out = capsys.readouterr().out
    assert ("WARNING: 1 images of " + anno + " are not in the evaluation MindRecord (skipped as missing or "
            "unreadable, or not in the file it was made from; first: 2.png): they and their 1 boxes are left out of "
            "the evaluation (detections are matched to images by image id)") in out
    assert "matched to images by position" not in out
    assert evaluated.coco.getImgIds() == [1, 3] and evaluated.num_images == 2
    evaluator = evaluate_records(records, evaluated.coco, verbose=False)
    assert evaluator.stats[0] == pytest.approx(1.0)
    assert car_row(evaluator, evaluated.coco)["ground_truth"] == 2


def test_files_follow_the_figures_and_a_failed_write_keeps_the_earlier_ones(tmp_path):
    records = [exact(1, GOOD)]
    summary = {"AP": 0.5}
    rows = [{"class": "car", "category_id": 3, "ground_truth": 1, "AP": 1.0, "AP50": 1.0}]
    (tmp_path / "per_class.csv").mkdir()  # where the last file should go: a folder, so its rename fails
    paths = [str(tmp_path / n) for n in ("results.pkl.bbox.json", "mAP.log", "per_class.csv")]
    writes = [(paths[0], lambda: write_json_atomic(records, paths[0])),
              (paths[1], lambda: write_summary(summary, paths[1])),
              (paths[2], lambda: write_per_class(rows, paths[2]))]
    with pytest.raises(WriteError) as failure:
        write_evaluation_files(writes, paths[0])
    message = str(failure.value)
    assert message.startswith(f"could not write {paths[2]}: Is a directory")
    assert message.endswith("the figures are printed above; written before it: results.pkl.bbox.json, mAP.log")
    assert json.loads((tmp_path / "results.pkl.bbox.json").read_text()) == records
    assert (tmp_path / "mAP.log").read_text() == "AP = 0.500\n"
    assert partial_files(str(tmp_path)) == []
    assert os.listdir(tmp_path / "per_class.csv") == []
