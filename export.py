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

import json
import os
import sys
import time

import mindspore as ms
import numpy as np

from src.deploy.model_facts import MODEL_FACTS_KEY, model_facts, record_model_facts
from src.deploy.onnx_export import export_onnx, require_onnx
from src.errors import CheckpointError, ExportError
from src.fileio import atomic_path, check_output_dir
from src.runtime import device_id, load_inference_network, run_job, set_up_device

EXTENSIONS = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
# ONNX from the float32 graph of the CPU (on Ascend the network computes in float16)
SUPPORTED = {"MINDIR": ("Ascend", "GPU", "CPU"), "AIR": ("Ascend",), "ONNX": ("CPU",)}


def export_batch_size(cfg) -> int:
    """test_batch_size, unless --batch_size is given (there it means the exported batch)."""
    return int(cfg.batch_size if "batch_size" in cfg.given else cfg.test_batch_size)


def check_request(cfg) -> None:
    """ExportError for a format the target cannot produce or a missing checkpoint, before anything is built."""
    targets = SUPPORTED[cfg.file_format]
    if cfg.device_target not in targets:
        raise ExportError(f"--file_format={cfg.file_format} is supported only with --device_target={targets[0]}, "
                          f"not on {cfg.device_target}; use --file_format=MINDIR")
    if not os.path.isfile(cfg.ckpt_file):
        raise CheckpointError(f"checkpoint file not found: {cfg.ckpt_file!r} (config key ckpt_file)")
    if cfg.file_format == "ONNX":
        require_onnx()


def export_network(cfg, batch_size: int) -> str:
    """Build the inference network with MindSpore's own operators (a MINDIR must not reference the CPU kernels'
    machine-local library), load cfg.ckpt_file and export it (a MINDIR with the model's facts), atomically; returns
    the written file's path."""
    net = load_inference_network(cfg, cfg.ckpt_file, test_batch_size=batch_size, for_export=True)
    img = ms.Tensor(np.zeros((batch_size, 3, cfg.img_height, cfg.img_width), np.float32))
    img_metas = ms.Tensor(np.tile(np.float32([cfg.img_height, cfg.img_width, 1.0, 1.0]), (batch_size, 1)))
    extension = EXTENSIONS[cfg.file_format]
    target = cfg.file_name if cfg.file_name.endswith(extension) else cfg.file_name + extension
    facts = model_facts(cfg, batch_size)
    if cfg.file_format == "ONNX":
        export_onnx(net, img, img_metas, target, dict(batch_size=batch_size, img_height=cfg.img_height,
                                                      img_width=cfg.img_width, num_classes=cfg.num_classes,
                                                      rpn_max_num=cfg.rpn_max_num),
                    facts={MODEL_FACTS_KEY: json.dumps(facts)})
        return target
    # the model's facts into the MINDIR's user_info (MindSpore takes custom_func for MINDIR only)
    options = {"custom_func": lambda model: record_model_facts(model, facts)} if cfg.file_format == "MINDIR" else {}
    with atomic_path(target) as tmp:
        ms.export(net, img, img_metas, file_name=tmp[:-len(extension)], file_format=cfg.file_format, **options)
    return target


def export_fasterrcnn(cfg) -> str:
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
