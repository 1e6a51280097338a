"""COCO bbox evaluation of a Faster R-CNN-DCN checkpoint (COCO val2017, or a TXT-labelled set).

    python eval.py --checkpoint_path=CKPT --anno_path=instances_val2017.json --coco_root=COCO_ROOT \
        [--mindrecord_dir=DIR] [--visualize=N] [--config_path=...yaml]

Writes, next to the accuracy log (`./mAP.log`, the original's): `results.pkl.bbox.json` (COCO detection
records) and, with --visualize N, `visualize/<image id>.png` for the first N images. Prints the standard
12-line COCO summary; mAP.log gets one `<figure> = <value>` line per figure.
"""
from __future__ import annotations

import os
import sys
import time

import cv2
import mindspore.dataset as de
import numpy as np
from pycocotools.coco import COCO

from src.dataset import create_fasterrcnn_dataset
from src.errors import CheckpointError, DataError
from src.mindrecord import create_mindrecord
from src.progress import Progress
from src.runtime import device_id, load_inference_network, run_job, set_up_device
from src.util import (
    RESULTS_PREFIX,
    bbox2result_1image,
    category_map,
    check_image_order,
    coco_eval,
    load_ground_truth,
    results2json,
    select_detections,
    write_summary,
)
from src.visualize import draw_detections, network_input_to_bgr, save_png

MINDRECORD_PREFIX = "FasterRcnn_eval.mindrecord"
ACCLOG_NAME = "mAP.log"
VISUALIZE_DIR = "visualize"


def source_image(cfg, coco: COCO, image_id: int) -> np.ndarray | None:
    """The original image file of `image_id` (BGR), or None when it cannot be read."""
    info = coco.imgs.get(image_id)
    if info is None:
        return None
    folder = os.path.join(cfg.coco_root, cfg.val_data_type) if cfg.dataset == "coco" else cfg.image_dir
    return cv2.imread(os.path.join(folder, info["file_name"]), cv2.IMREAD_COLOR)


def visualize_image(cfg, coco: COCO, out_dir: str, image: np.ndarray, meta: np.ndarray, image_id: int,
                    boxes: np.ndarray, labels: np.ndarray) -> None:
    """Draw one image's detections scoring at least cfg.visualize_score_thr on the original image (or, when its
    file cannot be read, on the network input scaled back to the original size)."""
    height, width, scale_h, scale_w = (float(v) for v in meta)
    picture = source_image(cfg, coco, image_id)
    if picture is None or picture.shape[:2] != (int(height), int(width)):
        content_h = min(int(round(height * scale_h)), image.shape[1])
        content_w = min(int(round(width * scale_w)), image.shape[2])
        picture = cv2.resize(network_input_to_bgr(image, content_h, content_w), (int(width), int(height)),
                             interpolation=cv2.INTER_LINEAR)
    keep = boxes[:, 4] >= cfg.visualize_score_thr
    picture = draw_detections(picture, boxes[keep], labels[keep], cfg.coco_classes[1:])
    save_png(picture, os.path.join(out_dir, f"{image_id}.png"))


def run_network(cfg, net, dataset, num_images: int, coco: COCO, out_dir: str) -> tuple[list, list[int]]:
    """Per-image, per-class detections in evaluation order, and the image ids the data set gave them."""
    batches = dataset.get_dataset_size()
    print("\n========================================\n")
    print("total images num: ", num_images, f"({batches} batches of {cfg.test_batch_size})")
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
            boxes, kept_labels = select_detections(bboxes[j], labels[j], masks[j], cfg.eval_max_num)
            results.append(bbox2result_1image(boxes, kept_labels, cfg.num_classes))
            image_ids.append(int(image_id))
            if drawn < cfg.visualize:
                visualize_image(cfg, coco, os.path.join(out_dir, VISUALIZE_DIR), data["image"].asnumpy()[j],
                                data["image_shape"].asnumpy()[j], int(image_id), boxes, kept_labels)
                drawn += 1
    return results, image_ids


def mindrecord_image_ids(mindrecord: str) -> list[int]:
    """The image ids of an evaluation MindRecord, in its order (read without decoding any image)."""
    ids = de.MindDataset(mindrecord, columns_list=["image_id"], shuffle=False)
    return [int(row["image_id"]) for row in ids.create_dict_iterator(output_numpy=True, num_epochs=1)]


def check_evaluation_set(coco: COCO, mindrecord: str, anno_path: str) -> int:
    """Warn when the MindRecord and the annotation file list different images or another order; DataError when
    the MindRecord holds images the annotation file does not know (no figure could be right). Returns the
    number of images of the MindRecord."""
    ids = mindrecord_image_ids(mindrecord)
    for problem in check_image_order(coco, ids, len(ids)):
        print(f"WARNING: {problem}", flush=True)
    unknown = sorted(set(ids) - set(coco.getImgIds()))
    if unknown:
        raise DataError(f"{len(unknown)} images of {mindrecord} have ids that {anno_path} does not list (first: "
                        f"{unknown[:5]}); anno_path must be the annotation file the MindRecord was made from")
    return len(ids)


def fasterrcnn_eval(cfg, net, coco: COCO, mindrecord: str, num_images: int, acclog_path: str) -> dict:
    """Evaluate `net` on the MindRecord set against `coco`; writes the results json and `acclog_path`, returns
    the 12 COCO figures. Detections are matched to images by the ids the MindRecord carries."""
    dataset = create_fasterrcnn_dataset(cfg, mindrecord, batch_size=cfg.test_batch_size, is_training=False)
    out_dir = os.path.dirname(os.path.abspath(acclog_path))
    results, image_ids = run_network(cfg, net, dataset, num_images, coco, out_dir)
    cat_ids, note = category_map(coco, cfg.coco_classes)
    if note:
        print(note, flush=True)
    result_files = results2json(coco, results, os.path.join(out_dir, RESULTS_PREFIX), img_ids=image_ids,
                                cat_ids=cat_ids)
    print(f"detections written to {result_files['bbox']}", flush=True)
    summary = coco_eval(result_files["bbox"], coco)
    write_summary(summary, acclog_path)
    print("eval end", flush=True)
    return summary


def evaluation_paths(cfg) -> tuple[str, str, str, str]:
    """(coco_root, mindrecord_dir, checkpoint_path, accuracy log path) of this run: the config's, or on ModelArts
    under data_path, load_path and output_path (as the original)."""
    if cfg.enable_modelarts:
        return (cfg.data_path, os.path.join(cfg.data_path, "MindRecord_COCO"),
                os.path.join(cfg.load_path, cfg.checkpoint_path), os.path.join(cfg.output_path, ACCLOG_NAME))
    return cfg.coco_root, cfg.mindrecord_dir, cfg.checkpoint_path, os.path.join(".", ACCLOG_NAME)


def eval_fasterrcnn(cfg) -> None:
    coco_root, mindrecord_dir, checkpoint_path, acclog_path = evaluation_paths(cfg)
    cfg = cfg.replace(coco_root=coco_root, mindrecord_dir=mindrecord_dir)
    set_up_device(cfg.device_target, cfg.run_mode, device_id(cfg))
    if not os.path.isfile(checkpoint_path):
        raise CheckpointError(f"checkpoint file not found: {checkpoint_path!r} (config key checkpoint_path)")
    anno_path = cfg.anno_path
    if cfg.dataset == "coco" and not anno_path:
        anno_path = os.path.join(cfg.coco_root, cfg.instance_set.format(cfg.val_data_type))
        print(f"anno_path not given: using {anno_path}")
    # the ground truth and the checkpoint first: a wrong path or file fails before the long conversion
    coco = load_ground_truth(anno_path, cfg.dataset, cfg.coco_classes)
    net = load_inference_network(cfg, checkpoint_path)
    print("CHECKING MINDRECORD FILES ...", flush=True)
    mindrecord = create_mindrecord(cfg, MINDRECORD_PREFIX, is_training=False)
    print("CHECKING MINDRECORD FILES DONE!")
    num_images = check_evaluation_set(coco, mindrecord, anno_path)
    print("Start Eval!", flush=True)
    fasterrcnn_eval(cfg, net, coco, mindrecord, num_images, acclog_path)


def main() -> int:
    return run_job(eval_fasterrcnn, "eval.py")


if __name__ == "__main__":
    sys.exit(main())
