"""Exporting the network: which formats each device target writes, the batch of the export and the export itself
(MINDIR with the model's facts in its user_info, ONNX through src/deploy/onnx_export.py, AIR on Ascend), written
atomically. export.py is the command line over this.
"""
from __future__ import annotations

import json
import os

import mindspore as ms
import numpy as np

from src.deploy.model_facts import MODEL_FACTS_KEY, model_facts, record_model_facts
from src.deploy.onnx_export import export_onnx, require_onnx
from src.infra.errors import CheckpointError, ExportError
from src.infra.fileio import atomic_path
from src.infra.runtime import load_inference_network

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
