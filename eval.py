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
import mindspore as ms
import mindspore.dataset as de
import numpy as np
from pycocotools.coco import COCO

from src.data_sources import DataError
from src.dataset import create_fasterrcnn_dataset, create_mindrecord
from src.FasterRcnn import FasterRcnnResnet50
from src.model_utils.config import config
from src.model_utils.device_adapter import get_device_id
from src.model_utils.moxing_adapter import moxing_wrapper
from src.network_checkpoint import CheckpointError, load_for_inference
from src.util import (
    RESULTS_PREFIX,
    Progress,
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


def set_up_context(cfg) -> None:
    ms.set_context(mode=ms.GRAPH_MODE if cfg.run_mode == "GRAPH" else ms.PYNATIVE_MODE)
    ms.set_device(cfg.device_target, None if cfg.device_target == "CPU" else get_device_id())


def build_network(cfg, ckpt_path: str) -> FasterRcnnResnet50:
    """The network in inference mode with the checkpoint loaded (float16 on Ascend, as the original)."""
    net = FasterRcnnResnet50(cfg)
    ignored = load_for_inference(net, ckpt_path)
    if ignored:
        print(f"checkpoint {ckpt_path}: {ignored} entries that are not network parameters (optimizer state) "
              "were ignored", flush=True)
    net.set_train(False)
    if cfg.device_target == "Ascend":
        net.to_float(ms.float16)
    return net


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


def modelarts_pre_process():
    """Paths on ModelArts, as the original."""
    config.coco_root = config.data_path
    config.mindrecord_dir = os.path.join(config.coco_root, "MindRecord_COCO")
    config.checkpoint_path = os.path.join(config.load_path, config.checkpoint_path)
    config.acclog_path = os.path.join(config.output_path, ACCLOG_NAME)


@moxing_wrapper(pre_process=modelarts_pre_process)
def eval_fasterrcnn():
    set_up_context(config)
    if not os.path.isfile(config.checkpoint_path):
        raise CheckpointError(f"checkpoint file not found: {config.checkpoint_path!r} (config key checkpoint_path)")
    anno_path = config.anno_path
    if config.dataset == "coco" and not anno_path:
        anno_path = os.path.join(config.coco_root, config.instance_set.format(config.val_data_type))
        print(f"anno_path not given: using {anno_path}")
    # the ground truth and the checkpoint first: a wrong path or file fails before the long conversion
    coco = load_ground_truth(anno_path, config.dataset, config.coco_classes)
    net = build_network(config, config.checkpoint_path)
    print("CHECKING MINDRECORD FILES ...", flush=True)
    mindrecord = create_mindrecord(config, MINDRECORD_PREFIX, is_training=False)
    print("CHECKING MINDRECORD FILES DONE!")
    num_images = check_evaluation_set(coco, mindrecord, anno_path)
    print("Start Eval!", flush=True)
    fasterrcnn_eval(config, net, coco, mindrecord, num_images, config.acclog_path)


def main() -> int:
    config.acclog_path = os.path.join(".", ACCLOG_NAME)
    try:
        eval_fasterrcnn()
    except (CheckpointError, DataError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
