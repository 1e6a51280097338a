"""COCO evaluation of a network on the evaluation set, shared by eval.py and the evaluation during training
(src/engine/hooks.py): the set (ground truth + MindRecord), the inference loop, the figures and the files.

Files written into one folder: `results.pkl.bbox.json` (COCO detection records), the accuracy log (`mAP.log`: one
`<figure> = <value>` line per figure of the 12-line COCO summary), `per_class.csv` (AP and AP50 per class),
`confusion_matrix.csv` and `.png` (which class is taken for which at IoU 0.5 and visualize_score_thr:
src/evaluation/confusion_matrix.py), `pr_curves.png` (precision against recall per class: pr_curves.py) and,
with visualize = N, `visualize/<image id>.png` for the first N images (`<image id>-2.png`, ... where a file
this process did not write has the name: a picture never replaces one). The figures are computed and printed before
the files are written: a write that fails (disk full) ends the run with one line naming the file, the reason and the
files that were written, and the figures stay on the screen (the results json is written first).

The ground truth the figures are computed on is the annotation file's, as in the original, without the images the
conversion skipped with skip_bad_images as missing or unreadable (their boxes are not counted as misses: the network
never saw those images; a warning counts and names them). Boxes the conversion dropped as degenerate (empty once
clipped to the image and truncated to whole pixels; training leaves them out) stay ground truth, as in the
original, and a note says how many: they can only be missed.
"""
from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mindspore.dataset as de
import numpy as np
from mindspore import nn
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from src.data.image_files import read_image_bgr
from src.data.mindrecord import create_mindrecord, file_sha256, read_sidecar
from src.data.settings import DataSettings
from src.dataset import PipelineSettings, create_fasterrcnn_dataset
from src.evaluation.confusion_matrix import (
    confusion_matrix,
    draw_confusion_matrix,
    summary_line,
    write_confusion_csv,
)
from src.evaluation.pr_curves import draw_pr_curves, precision_recall_curves
from src.evaluation.visualize import draw_detections, picture_for, save_png
from src.infra.errors import DataError, WriteError
from src.infra.fileio import write_json_atomic
from src.infra.progress import Progress
from src.util import (
    RESULTS_PREFIX,
    bbox2result_1image,
    category_map,
    check_image_order,
    det2json,
    evaluate_records,
    per_class_ap,
    per_class_table,
    select_detections,
    summary_figures,
    write_per_class,
    write_summary,
)

MINDRECORD_PREFIX = "FasterRcnn_eval.mindrecord"
ACCLOG_NAME = "mAP.log"
PER_CLASS_NAME = "per_class.csv"
CONFUSION_CSV_NAME = "confusion_matrix.csv"
CONFUSION_PNG_NAME = "confusion_matrix.png"
PR_CURVES_NAME = "pr_curves.png"
VISUALIZE_DIR = "visualize"
FileWrite = tuple[str, Callable[[], None]]  # a file's path and the call that writes it (atomically)
_PICTURES: dict[tuple[str, int], str] = {}  # (visualize folder, image id) -> the picture this process draws


@dataclass(frozen=True)
class EvaluationSettings:
    """What the evaluation loop reads from the config (`from_config`, once per evaluation set-up): the model's
    classes, the pipeline, the batch, the detections kept per image and the pictures drawn."""

    classes: tuple[str, ...]       # coco_classes: the model's class names, background first
    num_classes: int               # with the background
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)  # the evaluation pipeline
    batch_size: int = 2            # test_batch_size
    max_detections: int = 128      # eval_max_num: the best detections kept per image (the original's 128)
    visualize: int = 0             # images whose detections are drawn into visualize/
    visualize_score_thr: float = 0.3
    image_folder: str = ""         # the evaluated images' files (for the pictures)
    exif_transpose: bool = False   # their frame: displayed (EXIF orientation applied) or stored

    @classmethod
    def from_config(cls, cfg) -> EvaluationSettings:
        _, image_folder = DataSettings.from_config(cfg).source_files(is_training=False)
        return cls(classes=tuple(cfg.coco_classes), num_classes=int(cfg.num_classes),
                   pipeline=PipelineSettings.from_config(cfg),
                   batch_size=int(cfg.test_batch_size), max_detections=int(cfg.eval_max_num),
                   visualize=int(cfg.visualize), visualize_score_thr=float(cfg.visualize_score_thr),
                   image_folder=image_folder, exif_transpose=bool(cfg.exif_transpose))


@dataclass(frozen=True)
class EvaluationSet:
    """The images to evaluate on: the ground truth, the evaluation MindRecord and its number of images."""

    coco: COCO
    mindrecord: str
    num_images: int


def ground_truth_path(data: DataSettings) -> str:
    """data.anno_path, or for COCO when it is empty the validation json the evaluation set is converted from."""
    if data.is_coco and not data.anno_path:
        anno_path, _ = data.source_files(is_training=False)
        print(f"anno_path not given: using {anno_path}")
        return anno_path
    return data.anno_path


def prepare_evaluation_set(data: DataSettings, coco: COCO, anno_path: str) -> EvaluationSet:
    """The evaluation MindRecord of the validation set (converted on first use), checked against `coco`, the ground
    truth read from `anno_path`, and the ground truth without what the conversion left out (see the module
    docstring)."""
    print("CHECKING MINDRECORD FILES ...", flush=True)
    mindrecord = create_mindrecord(data, MINDRECORD_PREFIX, is_training=False)
    print("CHECKING MINDRECORD FILES DONE!")
    ids = check_evaluation_set(coco, mindrecord, anno_path)
    sidecar = read_sidecar(mindrecord) or {}
    # the dropped boxes are indexed in the annotation file the set was made from: only that file's apply
    same_file = sidecar.get("source", {}).get("annotation_sha256") == file_sha256(anno_path)
    dropped = sidecar.get("dropped_boxes", []) if same_file else []
    coco = evaluation_ground_truth(coco, ids, dropped, anno_path)
    for problem in check_image_order(coco, ids, len(ids)):
        print(f"WARNING: {problem}", flush=True)
    return EvaluationSet(coco, mindrecord, len(ids))


def evaluation_ground_truth(coco: COCO, image_ids: list[int], dropped_boxes: list[list[int]],
                            anno_path: str) -> COCO:
    """`coco` restricted to `image_ids` (the evaluation MindRecord's images; `coco` itself when none is left out),
    with one line for the images left out and one for `dropped_boxes` ([image id, index of the box among the image's
    annotations `coco.getAnnIds(imgIds=[id])`], the boxes the conversion dropped as degenerate), which stay ground
    truth as in the original."""
    kept_ids = set(image_ids)
    skipped = [i for i in coco.getImgIds() if i not in kept_ids]
    dropped_ann_ids = set()
    for image_id, index in dropped_boxes:
        ann_ids = coco.getAnnIds(imgIds=[image_id], iscrowd=None)
        if image_id in kept_ids and index < len(ann_ids):
            dropped_ann_ids.add(ann_ids[index])
    if dropped_ann_ids:
        print(f"note: {len(dropped_ann_ids)} degenerate boxes of {anno_path} (empty once clipped to the image and "
              "truncated to whole pixels) were left out of training but count as ground truth here, as in the "
              "original's evaluation: they can only be missed", flush=True)
    if not skipped:
        return coco
    if skipped:
        names = ", ".join(str(coco.imgs[i].get("file_name", i)) for i in skipped[:5])
        boxes = len(coco.getAnnIds(imgIds=skipped, iscrowd=None))
        print(f"WARNING: {len(skipped)} images of {anno_path} are not in the evaluation MindRecord (skipped as "
              f"missing or unreadable, or not in the file it was made from; first: {names}): they and their "
              f"{boxes} boxes are left out of the evaluation (detections are matched to images by image id)",
              flush=True)
    data = dict(coco.dataset)
    data["images"] = [img for img in coco.dataset["images"] if img["id"] in kept_ids]
    data["annotations"] = [ann for ann in coco.dataset["annotations"]
                           if ann["image_id"] in kept_ids]
    restricted = COCO()
    restricted.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' "creating index..."
        restricted.createIndex()
    return restricted


def source_image(settings: EvaluationSettings, coco: COCO, image_id: int) -> np.ndarray | None:
    """The original image file of `image_id` (BGR) in the frame the MindRecord holds it in (displayed with
    settings.exif_transpose, else stored; the conversion counted and named the images where they differ), or None
    when it cannot be read."""
    info = coco.imgs.get(image_id)
    if info is None:
        return None
    return read_image_bgr(os.path.join(settings.image_folder, info["file_name"]), settings.exif_transpose)


def picture_path(out_dir: str, image_id: int) -> tuple[str, bool]:
    """Where this process draws `image_id` in `out_dir`, and whether it drew there before: `<image id>.png`, or
    `<image id>-2.png`, `-3`, ... when a file it did not write (an earlier run's, the user's) has that name. The
    same path for the life of the process (the evaluations during training redraw their pictures in place)."""
    key = (os.path.abspath(out_dir), int(image_id))
    if key in _PICTURES:
        return _PICTURES[key], True
    path, count = os.path.join(out_dir, f"{image_id}.png"), 1
    while os.path.lexists(path):
        count += 1
        path = os.path.join(out_dir, f"{image_id}-{count}.png")
    if count > 1:
        print(f"{os.path.join(out_dir, f'{image_id}.png')} exists (not written by this run): kept; image "
              f"{image_id} drawn to {path}", flush=True)
    _PICTURES[key] = path
    return path, False


def visualize_image(settings: EvaluationSettings, coco: COCO, out_dir: str, image: np.ndarray, meta: np.ndarray,
                    image_id: int, boxes: np.ndarray, labels: np.ndarray) -> None:
    """Draw one image's detections scoring at least settings.visualize_score_thr on the original image (or, when its
    file cannot be read, on the network input scaled back to the original size), never over a file this process
    did not write (picture_path)."""
    picture = picture_for(source_image(settings, coco, image_id), image, meta)
    keep = boxes[:, 4] >= settings.visualize_score_thr
    picture = draw_detections(picture, boxes[keep], labels[keep], list(settings.classes[1:]))
    path, drawn_before = picture_path(out_dir, image_id)
    save_png(picture, path, replace=drawn_before)


def run_network(settings: EvaluationSettings, net: nn.Cell, dataset, num_images: int, coco: COCO,
                out_dir: str) -> tuple[list, list[int]]:
    """Per-image, per-class detections in evaluation order, and the image ids the data set gave them."""
    batches = dataset.get_dataset_size()
    print("\n========================================\n")
    print("total images num: ", num_images, f"({batches} batches of {settings.batch_size})")
    print("Processing, please wait a moment.", flush=True)
    progress = Progress(batches)
    results, image_ids = [], []
    drawn = 0
    for eval_iter, data in enumerate(dataset.create_dict_iterator(num_epochs=1, output_numpy=False), start=1):
        start = time.time()
        bboxes, labels, masks = net(data["image"], data["image_shape"], data["box"], data["label"],
                                    data["valid_num"])
        bboxes, labels, masks = bboxes.asnumpy(), labels.asnumpy(), masks.asnumpy()
        print(f"Iter {eval_iter} cost time {time.time() - start} ({progress.step()})", flush=True)
        batch_ids = data["image_id"].asnumpy().reshape(-1)
        for j, image_id in enumerate(batch_ids):
            if image_id < 0:  # a repeat that completes the last batch
                continue
            boxes, kept_labels = select_detections(bboxes[j], labels[j], masks[j], settings.max_detections)
            results.append(bbox2result_1image(boxes, kept_labels, settings.num_classes))
            image_ids.append(int(image_id))
            if drawn < settings.visualize:
                visualize_image(settings, coco, os.path.join(out_dir, VISUALIZE_DIR), data["image"].asnumpy()[j],
                                data["image_shape"].asnumpy()[j], int(image_id), boxes, kept_labels)
                drawn += 1
    return results, image_ids


def mindrecord_image_ids(mindrecord: str) -> list[int]:
    """The image ids of an evaluation MindRecord, in its order (read without decoding any image)."""
    ids = de.MindDataset(mindrecord, columns_list=["image_id"], shuffle=False)
    return [int(row["image_id"]) for row in ids.create_dict_iterator(output_numpy=True, num_epochs=1)]


def check_evaluation_set(coco: COCO, mindrecord: str, anno_path: str) -> list[int]:
    """The image ids of the MindRecord, in its order; DataError when it holds images the annotation file does not
    know (no figure could be right)."""
    ids = mindrecord_image_ids(mindrecord)
    unknown = sorted(set(ids) - set(coco.getImgIds()))
    if unknown:
        raise DataError(f"{len(unknown)} images of {mindrecord} have ids that {anno_path} does not list (first: "
                        f"{unknown[:5]}); anno_path must be the annotation file the MindRecord was made from")
    return ids


def fasterrcnn_eval(settings: EvaluationSettings, net: nn.Cell, evaluation_set: EvaluationSet,
                    acclog_path: str) -> dict:
    """Evaluate `net` (inference mode) on `evaluation_set`; writes the results json, `acclog_path` and the
    per-class files beside it (see the module docstring), prints the COCO summary, the per-class table and the
    confusion counts; returns the 12 COCO figures. Detections are matched to images by the ids the MindRecord
    carries."""
    coco = evaluation_set.coco
    dataset = create_fasterrcnn_dataset(settings.pipeline, evaluation_set.mindrecord, batch_size=settings.batch_size,
                                        is_training=False)
    out_dir = os.path.dirname(os.path.abspath(acclog_path))
    results, image_ids = run_network(settings, net, dataset, evaluation_set.num_images, coco, out_dir)
    cat_ids, note = category_map(coco, settings.classes)
    if note:
        print(note, flush=True)
    records = det2json(coco, results, img_ids=image_ids, cat_ids=cat_ids)
    evaluator = evaluate_records(records, coco)
    summary = summary_figures(evaluator)
    per_class = per_class_ap(evaluator, coco, settings.classes, cat_ids)
    per_class_path = os.path.join(out_dir, PER_CLASS_NAME)
    print(f"per class (area all, 100 detections per image; -1: no ground truth), for {per_class_path}:\n"
          f"{per_class_table(per_class)}", flush=True)
    results_path = os.path.join(out_dir, f"{RESULTS_PREFIX}.bbox.json")
    writes = [(results_path, lambda: write_json_atomic(records, results_path)),
              (acclog_path, lambda: write_summary(summary, acclog_path)),
              (per_class_path, lambda: write_per_class(per_class, per_class_path)),
              *error_analysis_writes(settings, coco, records, evaluator, cat_ids, per_class, out_dir)]
    write_evaluation_files(writes, results_path)
    print("eval end", flush=True)
    return summary


def error_analysis_writes(settings: EvaluationSettings, coco: COCO, records: list[dict], evaluator: COCOeval | None,
                          cat_ids: list[int], per_class: list[dict], out_dir: str) -> list[FileWrite]:
    """The confusion matrix (printed as one line now) and the precision-recall curves, as (path, write) pairs for
    `write_evaluation_files`: confusion_matrix.csv, confusion_matrix.png and pr_curves.png in `out_dir`."""
    names = list(settings.classes[1:])
    matrix = confusion_matrix(coco, records, cat_ids, settings.visualize_score_thr)
    print(f"confusion at IoU 0.5, score >= {settings.visualize_score_thr:g}: {summary_line(matrix)}", flush=True)
    at_50, mean = precision_recall_curves(evaluator, cat_ids)
    has_ground_truth = [row["ground_truth"] > 0 for row in per_class]
    csv_path, png_path, curves_path = (os.path.join(out_dir, name) for name in
                                       (CONFUSION_CSV_NAME, CONFUSION_PNG_NAME, PR_CURVES_NAME))
    return [(csv_path, lambda: write_confusion_csv(matrix, names, csv_path)),
            (png_path, lambda: draw_confusion_matrix(matrix, names, png_path, settings.visualize_score_thr)),
            (curves_path, lambda: draw_pr_curves(at_50, mean, names, curves_path, has_ground_truth))]


def write_evaluation_files(writes: Sequence[FileWrite], results_path: str = "") -> None:
    """Run each (path, write) in order (each writes its file atomically): the results json first, then the accuracy
    log and the per-class files; writing `results_path` is announced. WriteError (one line: the file, the system's
    reason, what was written) when one fails; the files written before it stay, complete."""
    written = []
    for path, write in writes:
        try:
            write()
        except WriteError as err:
            kept = f"written before it: {', '.join(written)}" if written else "none of the files was written"
            raise WriteError(f"{err}; the figures are printed above; {kept}") from None
        written.append(os.path.basename(path))
        if path == results_path:
            print(f"detections written to {results_path}", flush=True)
