"""Export a Faster R-CNN-DCN checkpoint for inference: MINDIR on every target, ONNX on the CPU, AIR on Ascend only.

    python export.py --ckpt_file=CKPT [--device_target=CPU] [--file_format=MINDIR] [--file_name=Faster_Rcnn_DCN]
        [--batch_size=N] [--config_path=...yaml]

The exported graph takes img (N, 3, img_height, img_width) float32 (the evaluation pipeline's normalised image)
and img_metas (N, 4) float32 [orig_h, orig_w, scale_h, scale_w], and returns what evaluation gets: boxes
(N, rpn_max_num * (num_classes - 1), 5) [x1, y1, x2, y2, score], labels (.., 1) int32, masks (.., 1) bool.
N is test_batch_size, or --batch_size when given (the C++ inference app takes N = 1). An ONNX file has the same
inputs and outputs (named img, img_metas -> boxes, labels, masks; onnxruntime runs it: src/deploy/onnx_infer.py).
A MINDIR and an ONNX file also carry the model's facts (src/deploy/model_facts.py: class names, num_classes,
img_height, img_width, keep_ratio, batch size) as JSON under "faster_rcnn_dcn" (a MINDIR's user_info, an ONNX file's
metadata), so that infer.py names the classes the model was trained with; MindSpore's loaders ignore the entry.
The folder of --file_name is checked (writable, FASTER_RCNN_MIN_FREE_MB free) before the network is built.
"""
from __future__ import annotations

import os
import sys
import time

from src.deploy.export import check_request, export_batch_size, export_network
from src.infra.fileio import check_output_dir
from src.infra.runtime import device_id, run_job, set_up_device
from src.model_utils.config import classes_from_data


def export_fasterrcnn(cfg) -> str:
    cfg = classes_from_data(cfg, is_training=True)  # a training json's categories, when classes are not given
    check_request(cfg)
    check_output_dir(os.path.dirname(os.path.abspath(cfg.file_name)) or ".", "--file_name's folder")
    set_up_device(cfg.device_target, "GRAPH", device_id(cfg))
    batch_size = export_batch_size(cfg)
    start = time.time()
    path = export_network(cfg, batch_size)
    print(f"exported {path}: inputs img ({batch_size}, 3, {cfg.img_height}, {cfg.img_width}) float32, "
          f"img_metas ({batch_size}, 4) float32; {time.time() - start:.1f} s", flush=True)
    return path


def main() -> int:
    return run_job(export_fasterrcnn, "export.py")


if __name__ == "__main__":
    sys.exit(main())
