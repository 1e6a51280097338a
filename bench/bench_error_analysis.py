"""What the confusion matrix and the precision-recall curves add to an evaluation, beside COCOeval itself, as a table.

    .venv/bin/python bench/bench_error_analysis.py [--num_images 5000] [--detections 100] [--out DIR]

A COCO-val-sized case made in memory: `--num_images` images of 640x480 with 1-14 boxes of the 80 COCO classes
(7.5 on average; val2017: 7.3), and per image `--detections` detections: each box found again with a jittered
box (its class, or another one in 1 of 8), the rest random boxes of random classes, scores uniform. Timed: COCOeval
(evaluate + accumulate + summarize, what eval.py runs anyway), then what eval.py adds: the confusion matrix at
score >= 0.3, its CSV and PNG, the curves from COCOeval's array and their PNG (written into `--out`).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

import numpy as np
from pycocotools.coco import COCO

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.bench_common import print_table  # noqa: E402
from src.data.synthetic import COCO_CATEGORY_IDS  # noqa: E402
from src.evaluation.confusion_matrix import (  # noqa: E402
    confusion_matrix,
    draw_confusion_matrix,
    write_confusion_csv,
)
from src.evaluation.pr_curves import draw_pr_curves, precision_recall_curves  # noqa: E402
from src.model_utils.config import get_config  # noqa: E402
from src.util import evaluate_records, per_class_ap  # noqa: E402

SCORE_THR = 0.3
WIDTH, HEIGHT = 640, 480


def make_case(num_images: int, detections: int, seed: int = 0) -> tuple[COCO, list[dict]]:
    """The ground truth and the detection records described in the module docstring."""
    rng = np.random.default_rng(seed)
    cats = np.asarray(COCO_CATEGORY_IDS)
    images, annotations, records = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": WIDTH, "height": HEIGHT})
        count = int(rng.integers(1, 15))
        sizes = rng.uniform(10, 300, (count, 2))
        corners = rng.uniform(0, 1, (count, 2)) * ([WIDTH, HEIGHT] - sizes)
        labels = rng.choice(cats, count)
        for (x, y), (w, h), cat in zip(corners, sizes, labels, strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cat),
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            jitter = rng.normal(0, 0.1, 4) * [w, h, w, h]
            found = int(cat) if rng.random() > 1 / 8 else int(rng.choice(cats))
            records.append({"image_id": image_id, "category_id": found, "score": float(rng.uniform(0, 1)),
                            "bbox": [x + jitter[0], y + jitter[1], max(w + jitter[2], 1), max(h + jitter[3], 1)]})
        for _ in range(max(detections - count, 0)):
            w, h = rng.uniform(10, 200, 2)
            records.append({"image_id": image_id, "category_id": int(rng.choice(cats)),
                            "score": float(rng.uniform(0, 0.6)),
                            "bbox": [rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h), w, h]})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": int(c), "name": str(c)} for c in cats]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="per image")
    parser.add_argument("--out", default="", help="folder for the files (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="bench_error_analysis_")
    classes = get_config([]).coco_classes
    cat_ids = list(COCO_CATEGORY_IDS)
    coco, records = make_case(args.num_images, args.detections)
    times = {}

    def timed(name, call):
        start = time.perf_counter()
        result = call()
        times[name] = time.perf_counter() - start
        return result

    evaluator = timed("COCOeval (evaluate, accumulate, summarize)", lambda: evaluate_records(records, coco, False))
    rows = per_class_ap(evaluator, coco, classes, cat_ids)
    matrix = timed("confusion matrix", lambda: confusion_matrix(coco, records, cat_ids, SCORE_THR))
    timed("confusion_matrix.csv", lambda: write_confusion_csv(matrix, classes[1:], os.path.join(out, "cm.csv")))
    timed("confusion_matrix.png", lambda: draw_confusion_matrix(matrix, classes[1:], os.path.join(out, "cm.png"),
                                                                SCORE_THR))
    at_50, mean = timed("curves from COCOeval's array", lambda: precision_recall_curves(evaluator, cat_ids))
    timed("pr_curves.png", lambda: draw_pr_curves(at_50, mean, classes[1:], os.path.join(out, "pr.png"),
                                                  [row["ground_truth"] > 0 for row in rows]))
    added = sum(v for k, v in times.items() if not k.startswith("COCOeval"))
    print_table(f"{args.num_images} images, {len(coco.anns)} boxes, {len(records)} detections, 80 classes "
                f"(files in {out})", [*((name, f"{value:.2f} s") for name, value in times.items()),
                                      ("added by the error files", f"{added:.2f} s")])


if __name__ == "__main__":
    main()
