"""train.py --run_eval end to end on the tiny set-up of tests/helpers/training.py: the evaluation during training is
eval.py's evaluation of the epoch's weights, its AP is logged per epoch, and best.ckpt is the checkpoint of the better
epoch.

A network trained for 4 steps finds none of the synthetic set's small objects (every AP would be 0, and both epochs
tie), so the validation ground truth (--eval_anno_path) is a box over each whole image for every class, which the
large low-score boxes of the barely trained network do overlap, with test_score_thr 0 so that they are kept: the two
epochs then get different, non-zero figures."""
import json
import os
import re

import numpy as np
import pytest

from src.util import SUMMARY_NAMES
from tests.helpers.processes import ROOT, run_script
from tests.helpers.training import TINY, read_params, run_train

pytestmark = pytest.mark.slow  # train.py and eval.py end to end in subprocesses

EVAL_LINE = re.compile(r"^\d+ epoch: (\d+) global_step: (\d+) AP: (\S+) AP50: (\S+)$")
LOW_SCORES = "--test_score_thr=0.0"


@pytest.fixture(scope="module")
def whole_image_gt(data_root, tmp_path_factory):
    """The val split's annotation file with one box over the whole image per image and category."""
    data = json.loads((data_root / "annotations" / "instances_val2017.json").read_text())
    data["annotations"] = [
        {"id": len(data["images"]) * k + i + 1, "image_id": image["id"], "category_id": category["id"],
         "bbox": [0, 0, image["width"], image["height"]], "area": image["width"] * image["height"], "iscrowd": 0}
        for k, category in enumerate(data["categories"]) for i, image in enumerate(data["images"])]
    path = tmp_path_factory.mktemp("gt") / "whole_images.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def trained(data_root, whole_image_gt, tmp_path_factory):
    work = tmp_path_factory.mktemp("run_eval")
    done = run_train(work, data_root, "--epoch_size=2", "--run_eval=True", "--eval_interval=1",
                  f"--eval_anno_path={whole_image_gt}", LOW_SCORES)
    return work, done.stdout


def test_ap_is_logged_for_each_epoch_and_best_ckpt_is_the_better_epoch(trained):
    work, stdout = trained
    lines = (work / "eval_0.log").read_text().splitlines()
    parsed = [EVAL_LINE.match(line) for line in lines]
    assert all(parsed) and len(parsed) == 2, lines
    assert [(int(m.group(1)), int(m.group(2))) for m in parsed] == [(1, 2), (2, 4)]  # 2 steps per epoch
    aps = [float(m.group(3)) for m in parsed]
    assert all(0.0 < ap < 1.0 for ap in aps) and aps[0] != aps[1], aps
    assert "epoch 2 evaluation: AP" in stdout

    ckpt_dir = work / "save_ckpt" / "ckpt_0"
    assert sorted(os.listdir(ckpt_dir)) == ["best.ckpt", "faster_rcnn-1_2.ckpt", "faster_rcnn-2_2.ckpt"]
    better = 1 if aps[0] >= aps[1] else 2  # a tie keeps the earlier epoch
    best, chosen = read_params(ckpt_dir / "best.ckpt"), read_params(ckpt_dir / f"faster_rcnn-{better}_2.ckpt")
    other = read_params(ckpt_dir / f"faster_rcnn-{3 - better}_2.ckpt")
    assert int(best["epoch_num"]) == better and float(best["eval_ap"]) == pytest.approx(aps[better - 1], abs=1e-5)
    for name, value in chosen.items():
        np.testing.assert_array_equal(best[name], value, err_msg=name)
    assert any(not np.array_equal(best[name], other[name]) for name in chosen if name.startswith("rcnn."))


def test_the_last_evaluation_is_eval_py_on_the_epoch_checkpoint(trained, data_root, whole_image_gt,
                                                                 tmp_path):
    """eval.py on the epoch-2 checkpoint finds the detections and figures of the training's last evaluation."""
    work, _ = trained
    done = run_script(
        "eval.py",
        [f"--config_path={ROOT}/default_config_cpu.yaml", f"--coco_root={data_root}",
         f"--mindrecord_dir={data_root / 'mindrecord'}", f"--anno_path={whole_image_gt}",
         f"--checkpoint_path={work / 'save_ckpt' / 'ckpt_0' / 'faster_rcnn-2_2.ckpt'}", LOW_SCORES, *TINY,
         "--run_mode=PYNATIVE"],  # faster here than compiling the graph; the same detections within float noise
        cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    during = work / "eval_0"
    assert sorted(os.listdir(during)) == ["confusion_matrix.csv", "confusion_matrix.png", "mAP.log", "per_class.csv",
                                          "pr_curves.png", "results.pkl.bbox.json"]
    tables = [detection_table(folder / "results.pkl.bbox.json") for folder in (during, tmp_path)]
    assert len(tables[0]) > 100 and tables[0].shape == tables[1].shape
    np.testing.assert_allclose(tables[0], tables[1], atol=1e-4)
    during_map, eval_map = (figures(folder / "mAP.log") for folder in (during, tmp_path))
    assert during_map.keys() == set(SUMMARY_NAMES)
    assert all(abs(during_map[name] - eval_map[name]) <= 1e-3 for name in SUMMARY_NAMES)
    logged_ap = float(EVAL_LINE.match((work / "eval_0.log").read_text().splitlines()[1]).group(3))
    assert abs(eval_map[SUMMARY_NAMES[0]] - logged_ap) <= 5e-4 + 1e-9  # mAP.log has 3 decimals
    assert (during / "per_class.csv").read_text().splitlines()[0] == "class,category_id,ground_truth,AP,AP50"


def detection_table(path):
    """(n, 7) [image_id, category_id, score, x, y, w, h] of a results json, sorted by image, category, score."""
    table = np.array([[r["image_id"], r["category_id"], r["score"], *r["bbox"]] for r in json.loads(path.read_text())],
                     np.float64)
    return table[np.lexsort((-table[:, 2], table[:, 1], table[:, 0]))]


def figures(path):
    """{figure name: value} of an mAP.log."""
    return {name: float(value) for name, value in (line.rsplit(" = ", 1) for line in path.read_text().splitlines())}
