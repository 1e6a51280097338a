"""COCO bbox evaluation of the files the inference apps write (scripts/run_infer_310.sh).

    python postprogress.py --anno_path=instances_val2017.json --result_path=./result_Files [--config_path=...]

For every image of the annotation file, `<result_path>/<file name up to its first dot>_{0,1,2}.bin` (boxes+scores,
labels, masks) are read and post-processed as eval.py does; the detections go to `./results.pkl.bbox.json` and
the standard 12-line COCO summary is printed (run_infer_310.sh keeps it in acc.log).
With `--dataset` other than coco, --anno_path is the TXT label file.
"""
from __future__ import annotations

import os
import sys

from pycocotools.coco import COCO

from src.deploy.mindir_app import read_raw_outputs
from src.infra.errors import DataError
from src.infra.runtime import run_job
from src.util import (
    RESULTS_PREFIX,
    bbox2result_1image,
    category_map,
    coco_eval,
    load_ground_truth,
    results2json,
    select_detections,
)

SHOWN_MISSING = 5


def collect_results(cfg, coco: COCO, result_path: str) -> list:
    """Per-image, per-class detections for every image of `coco`, in `getImgIds()` order."""
    if not os.path.isdir(result_path):
        raise DataError(f"result folder not found: {result_path!r} (--result_path)")
    results, missing = [], []
    for image in coco.loadImgs(coco.getImgIds()):
        stem = os.path.basename(image["file_name"]).split(".")[0]
        if not os.path.isfile(os.path.join(result_path, f"{stem}_0.bin")):
            missing.append(image["file_name"])
            continue
        try:
            bboxes, labels, masks = read_raw_outputs(result_path, stem)
        except ValueError as err:
            raise DataError(str(err)) from None
        boxes, kept_labels = select_detections(bboxes, labels, masks, cfg.eval_max_num)
        results.append(bbox2result_1image(boxes, kept_labels, cfg.num_classes))
    if missing:
        raise DataError(f"{len(missing)} of the {len(coco.getImgIds())} images of the annotation file have no "
                        f"results in {result_path} (first: {', '.join(missing[:SHOWN_MISSING])}); run the inference "
                        "on the image folder of this annotation file")
    return results


def evaluate_results(cfg) -> None:
    coco = load_ground_truth(cfg.anno_path, cfg.dataset, cfg.coco_classes)
    results = collect_results(cfg, coco, cfg.result_path)
    print(f"{len(results)} images read from {cfg.result_path}", flush=True)
    cat_ids, note = category_map(coco, cfg.coco_classes)
    if note:
        print(note, flush=True)
    result_files = results2json(coco, results, os.path.join(".", RESULTS_PREFIX), cat_ids=cat_ids)
    coco_eval(result_files["bbox"], coco)


def main() -> int:
    return run_job(evaluate_results, "postprogress.py")


if __name__ == "__main__":
    sys.exit(main())
