"""From the network's raw test outputs to COCO results, and their COCO bbox evaluation.

The network returns, per image, `rpn_max_num * 80` candidate boxes [x1, y1, x2, y2, score] in original-image pixels,
a foreground label 0..79 for each and a validity mask. As the original:
- keep the valid candidates, at most `max_num` of them (the best by score), grouped per class;
- label `i` becomes `coco.getCatIds()[i]` (by position), the box becomes [x1, y1, x2 - x1 + 1, y2 - y1 + 1];
- results are assigned to images in `coco.getImgIds()` order;
- COCOeval (bbox) over the image ids of the loaded results: pycocotools' `loadRes` copies every image of the
  annotation file into the results for bbox results, so every annotated image is evaluated, detections or not.
Beside the 12 COCO figures: AP and AP50 per class (`per_class_ap`, eval.py's per_class.csv).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from src.data.sources import txt_to_coco_dict
from src.infra.errors import DataError
from src.infra.fileio import write_json_atomic, write_text_atomic

# The 12 lines of COCOeval.summarize() for bbox, in the order of `COCOeval.stats`; also the keys of mAP.log.
SUMMARY_NAMES = (
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
)
# The original's name prefix for the results json (only `<prefix>.bbox.json` is written).
RESULTS_PREFIX = "results.pkl"
# The columns of per_class.csv.
PER_CLASS_FIELDS = ("class", "category_id", "ground_truth", "AP", "AP50")


def load_ground_truth(anno_path: str, dataset: str, classes: Sequence[str]) -> COCO:
    """The evaluation ground truth: a COCO json (`dataset` "coco"), else the TXT label file turned into a COCO
    object as the original does (categories = `classes`, the background at id 0). DataError if unusable or if it
    lists no image."""
    if not anno_path or not os.path.isfile(anno_path):
        raise DataError(f"annotation file not found: {anno_path!r} (config key anno_path)")
    if dataset != "coco":
        coco = COCO()
        coco.dataset = txt_to_coco_dict(anno_path, classes)
        coco.createIndex()
    else:
        try:
            coco = COCO(anno_path)
        except (ValueError, KeyError, TypeError, AssertionError) as err:
            raise DataError(f"{anno_path} is not a COCO annotation file ({type(err).__name__}: {err})") from None
    if not coco.getImgIds():
        raise DataError(f"{anno_path}: no images (a COCO json needs a non-empty 'images' list; a TXT file one line "
                        "per image)")
    filled = fill_missing_areas(coco, anno_path)
    if filled:
        print(f"WARNING: {anno_path}: {filled} annotations have no 'area'; computed from their box (w * h) for the "
              "evaluation's small/medium/large split", flush=True)
    return coco


def fill_missing_areas(coco: COCO, where: str = "the ground truth") -> int:
    """Give every annotation of `coco` without an 'area' (hand-made files, some converters') the area of its box,
    w * h in pixels, as pycocotools' loadRes does for detections (COCOeval needs it); returns how many."""
    filled = 0
    for i, ann in enumerate(coco.dataset.get("annotations", [])):
        if "area" not in ann:
            try:
                _, _, w, h = ann["bbox"]
                ann["area"] = float(w) * float(h)  # the same dict as coco.anns[id]: the index sees it
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{where}: annotations[{i}] has neither 'area' nor a 'bbox' [x, y, w, h]") from None
            filled += 1
    return filled


def select_detections(bboxes: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                      max_num: int) -> tuple[np.ndarray, np.ndarray]:
    """The valid candidates of one image, at most `max_num` of them, best score first when there are more.

    bboxes (N, 5) [x1, y1, x2, y2, score]; labels (N,) or (N, 1); mask (N,) or (N, 1) bool.
    Returns (boxes (K, 5), labels (K,)), K <= max_num.
    """
    bboxes = np.asarray(bboxes).reshape(-1, 5)
    labels = np.asarray(labels).reshape(-1)
    mask = np.asarray(mask).reshape(-1).astype(bool)
    if not len(bboxes) == len(labels) == len(mask):
        raise ValueError(f"bboxes, labels and mask disagree in length: {len(bboxes)}, {len(labels)}, {len(mask)}")
    boxes, labels = bboxes[mask], labels[mask]
    if len(boxes) > max_num:
        keep = np.argsort(-boxes[:, 4], kind="stable")[:max_num]
        boxes, labels = boxes[keep], labels[keep]
    return boxes, labels


def bbox2result_1image(bboxes: np.ndarray, labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Group one image's detections by class: a list of `num_classes - 1` arrays (k_i, 5), entry i for label i."""
    if len(bboxes) == 0:
        return [np.zeros((0, 5), dtype=np.float32) for _ in range(num_classes - 1)]
    return [bboxes[labels == i, :] for i in range(num_classes - 1)]


def xyxy2xywh(box: Sequence[float]) -> list[float]:
    """[x1, y1, x2, y2] -> [x1, y1, w, h] with the original's inclusive-pixel widths (x2 - x1 + 1)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return [x1, y1, x2 - x1 + 1, y2 - y1 + 1]


def foreground_category_ids(coco: COCO) -> list[int]:
    """`coco.getCatIds()` without a category named 'background'.

    COCO files have no such category, so this is the original's `getCatIds()[label]`. Annotations built from TXT
    labels list the background as category 0; the original then mapped label i to category i, one class off.
    """
    return [c for c in coco.getCatIds() if coco.cats[c].get("name") != "background"]


def category_map(coco: COCO, classes: Sequence[str]) -> tuple[list[int], str | None]:
    """Category id of each network label 0..K-2 (`classes` = the config's coco_classes, background first), and a
    note for the log when it is not the original's positional `getCatIds()[label]`.

    The original's map is right only when the annotation file lists exactly the model's classes in order. When
    every class name is found in the file, ids are matched by name (the same ids whenever the original's are
    right); otherwise the positional map is kept and the note says which names are missing.
    """
    by_position = foreground_category_ids(coco)
    ids_by_name = {cat["name"]: cat_id for cat_id, cat in coco.cats.items()}
    wanted = list(classes[1:])
    missing = [name for name in wanted if name not in ids_by_name]
    if missing:
        return by_position, (f"WARNING: the annotation file has no category named {missing[:5]}: labels are mapped "
                             "to its categories by position (the original's rule)")
    by_name = [ids_by_name[name] for name in wanted]
    if by_name == by_position:
        return by_position, None
    return by_name, (f"note: the annotation file lists {len(by_position)} categories for the model's {len(wanted)} "
                     "classes; category ids are matched by class name (the original's positional map fits only "
                     "a file listing exactly the model's classes in order)")


def det2json(coco: COCO, results: Sequence[list[np.ndarray]], img_ids: Sequence[int] | None = None,
             cat_ids: Sequence[int] | None = None) -> list[dict]:
    """COCO detection records of per-image, per-class results.

    results[k] belongs to `img_ids[k]` (default: `coco.getImgIds()`, the original's positional assignment; extra
    ids without results, or results without ids, are skipped). Class index i maps to `cat_ids[i]` (default:
    `foreground_category_ids(coco)`, the original's positional map).
    """
    cat_ids = foreground_category_ids(coco) if cat_ids is None else list(cat_ids)
    img_ids = coco.getImgIds() if img_ids is None else list(img_ids)
    records = []
    for img_id, per_class in zip(img_ids, results, strict=False):
        if len(per_class) > len(cat_ids):
            raise ValueError(f"results have {len(per_class)} classes but the annotation file lists {len(cat_ids)}")
        for label, boxes in enumerate(per_class):
            for box in boxes:
                records.append({"image_id": int(img_id), "bbox": xyxy2xywh(box), "score": float(box[4]),
                                "category_id": int(cat_ids[label])})
    return records


def results2json(coco: COCO, results: Sequence[list[np.ndarray]], out_prefix: str,
                 img_ids: Sequence[int] | None = None, cat_ids: Sequence[int] | None = None) -> dict[str, str]:
    """Write `<out_prefix>.bbox.json` (atomically; records of `det2json`); returns {'bbox': path, 'proposal':
    path} as the original."""
    path = f"{out_prefix}.bbox.json"
    write_json_atomic(det2json(coco, results, img_ids, cat_ids), path)
    return {"bbox": path, "proposal": path}


def run_cocoeval(result_file: str, coco: COCO, verbose: bool = True) -> COCOeval | None:
    """COCOeval (bbox) of a results json, evaluated and accumulated (its `eval["precision"]` filled) and
    summarised; None when the file holds no detection. Every image of `coco` counts (see the module docstring).
    `verbose` prints pycocotools' output, the 12-line summary included."""
    with open(result_file, encoding="utf-8") as f:
        records = json.load(f)
    return evaluate_records(records, coco, verbose, source=result_file)


def evaluate_records(records: list[dict], coco: COCO, verbose: bool = True,
                     source: str = "the results") -> COCOeval | None:
    """`run_cocoeval` of detection records held in memory (`det2json`'s), before or without writing them."""
    if not records:
        if verbose:
            print(f"no detections in {source}: every figure is 0")
        return None
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        detections = coco.loadRes([dict(r) for r in records])  # loadRes adds keys to the dicts it is given
        evaluator = COCOeval(coco, detections, "bbox")
        # the original's restriction to "detected" images: loadRes lists every annotated image (bbox results)
        evaluator.params.imgIds = detections.getImgIds()
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def summary_figures(evaluator: COCOeval | None) -> dict:
    """{summary line name: value} of the 12 standard figures; all zeros without an evaluator (no detection, as
    the original)."""
    if evaluator is None:
        return dict.fromkeys(SUMMARY_NAMES, 0.0)
    return {name: float(value) for name, value in zip(SUMMARY_NAMES, evaluator.stats, strict=True)}


def coco_eval(result_file: str, coco: COCO, verbose: bool = True) -> dict:
    """COCO bbox evaluation of a results json; returns {summary line name: value} for the 12 standard figures.

    An empty results file gives all zeros, as the original. `verbose` prints pycocotools' output."""
    return summary_figures(run_cocoeval(result_file, coco, verbose))


def class_precision(evaluator: COCOeval | None, cat_id: int) -> np.ndarray | None:
    """COCOeval's interpolated precision of one category at area "all" and 100 detections per image: (T, R), the
    IoU thresholds `params.iouThrs` by the recall points `params.recThrs` (-1 where the category has no ground
    truth); None without an evaluator or when the category was not evaluated."""
    if evaluator is None or cat_id not in evaluator.params.catIds:
        return None
    params = evaluator.params
    return evaluator.eval["precision"][:, :, params.catIds.index(cat_id), params.areaRngLbl.index("all"),
                                       params.maxDets.index(100)]


def per_class_ap(evaluator: COCOeval | None, coco: COCO, classes: Sequence[str],
                 cat_ids: Sequence[int]) -> list[dict]:
    """AP (IoU 0.50:0.95) and AP50 of each model class, as the summary's first two figures are computed but for
    one category: the mean of COCOeval's interpolated precision `eval["precision"]` (T IoU thresholds, R = 101
    recall points, K categories in `params.catIds` order, A areas, M maxDets) over the recall points (and the IoU
    thresholds for AP) at area "all" and 100 detections per image. The summary's AP is the mean of these over the
    classes with ground truth.

    `classes`: the config's coco_classes (background first); `cat_ids`: the category id of each foreground class
    (`category_map`). Returns one dict per class: name, category_id, ground_truth (non-crowd boxes), AP, AP50;
    -1 for a class without ground truth (COCO's convention), 0 for the others when nothing was detected at all.
    """
    rows = []
    for name, cat_id in zip(classes[1:], cat_ids, strict=True):
        ground_truth = len(coco.getAnnIds(catIds=[cat_id], iscrowd=False))
        ap = ap50 = 0.0 if ground_truth else -1.0
        precision = class_precision(evaluator, cat_id)
        if precision is not None:
            at_50 = precision[np.flatnonzero(np.isclose(evaluator.params.iouThrs, 0.5))]
            ap, ap50 = (float(np.mean(p[p > -1])) if np.any(p > -1) else -1.0 for p in (precision, at_50))
        rows.append({"class": name, "category_id": int(cat_id), "ground_truth": ground_truth, "AP": ap,
                     "AP50": ap50})
    return rows


def write_per_class(rows: Sequence[dict], path: str) -> None:
    """The rows of `per_class_ap` as a CSV file with a header (AP and AP50 with 4 decimals), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(PER_CLASS_FIELDS)
    for row in rows:
        writer.writerow([row["class"], row["category_id"], row["ground_truth"], f"{row['AP']:.4f}",
                         f"{row['AP50']:.4f}"])
    write_text_atomic(path, text.getvalue())


def per_class_table(rows: Sequence[dict]) -> str:
    """The rows of `per_class_ap` as an aligned text table for the log (-1: no ground truth)."""
    width = max([len("class")] + [len(row["class"]) for row in rows])
    lines = [f"{'class':<{width}}  {'gt':>6}  {'AP':>6}  {'AP50':>6}"]
    lines += [f"{row['class']:<{width}}  {row['ground_truth']:>6d}  {row['AP']:>6.3f}  {row['AP50']:>6.3f}"
              for row in rows]
    return "\n".join(lines)


def write_summary(summary: dict, path: str) -> None:
    """The original's mAP.log: one `<name> = <value:.3f>` line per figure (written atomically)."""
    write_text_atomic(path, "".join(f"{name} = {value:.3f}\n" for name, value in summary.items()))


def check_image_order(coco: COCO, evaluated_ids: Sequence[int] | None, evaluated_count: int) -> list[str]:
    """Problems (as sentences) with the evaluated images versus the annotation file's `getImgIds()` list.

    `evaluated_ids` are the image ids the data set reported, in order (None when it carries none);
    `evaluated_count` the number of images that produced results. An empty list means all is well.
    """
    expected = list(coco.getImgIds())
    problems = []
    if evaluated_count != len(expected) and evaluated_ids is None:
        problems.append(f"the annotation file lists {len(expected)} images but {evaluated_count} were evaluated; "
                        "the results are matched to images by position, so the figures are only right when both "
                        "list the same images in the same order")
    elif evaluated_count != len(expected):
        problems.append(f"the annotation file lists {len(expected)} images but {evaluated_count} were evaluated; "
                        "the results are matched to images by image id, and the boxes of the images without "
                        "results count as missed")
    if evaluated_ids is not None:
        ids = [int(i) for i in evaluated_ids]
        for position, (got, want) in enumerate(zip(ids, expected, strict=False)):
            if got != want:
                problems.append(f"image {position} of the evaluation set has id {got} but the annotation file's "
                                f"image {position} is {want} (the MindRecord and the annotation file list the "
                                "images in a different order)")
                break
    return problems
