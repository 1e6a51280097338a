"""Export a Faster R-CNN-DCN checkpoint for inference: MINDIR on every target, AIR on Ascend only.

    python export.py --ckpt_file=CKPT [--device_target=CPU] [--file_format=MINDIR] [--file_name=Faster_Rcnn_DCN]
        [--batch_size=N] [--config_path=...yaml]

The exported graph takes img (N, 3, img_height, img_width) float32 (the evaluation pipeline's normalised image)
and img_metas (N, 4) float32 [orig_h, orig_w, scale_h, scale_w], and returns what evaluation gets: boxes
(N, rpn_max_num * (num_classes - 1), 5) [x1, y1, x2, y2, score], labels (.., 1) int32, masks (.., 1) bool.
N is test_batch_size, or --batch_size when given (the C++ inference app takes N = 1).
"""
from __future__ import annotations

import os
import sys
import time

import mindspore as ms
import numpy as np

from src.custom_ops import DISABLE_ENV as CPU_KERNELS_ENV
from src.FasterRcnn import FasterRcnnInfer
from src.model_utils.config import config
from src.model_utils.device_adapter import get_device_id
from src.model_utils.moxing_adapter import moxing_wrapper
from src.network_checkpoint import CheckpointError, load_for_inference

EXTENSIONS = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
# ONNX stays in the choices as the original's, but MindSpore 2.7.2's ONNX exporter fails on this network
# (measured: "Need to set value None attribute for Constant node"), so it is refused up front.
SUPPORTED = {"MINDIR": ("Ascend", "GPU", "CPU"), "AIR": ("Ascend",), "ONNX": ()}


class ExportError(ValueError):
    """An export request that cannot be honoured; raised before any work."""


def export_batch_size(cfg, argv: list[str]) -> int:
    """test_batch_size, unless --batch_size is on the command line (there it means the exported batch)."""
    given = any(arg == "--batch_size" or arg.startswith("--batch_size=") for arg in argv)
    return int(cfg.batch_size if given else cfg.test_batch_size)


def check_request(cfg) -> None:
    """ExportError for a format the target cannot produce or a missing checkpoint, before anything is built."""
    targets = SUPPORTED[cfg.file_format]
    if not targets:
        raise ExportError(f"--file_format={cfg.file_format} cannot be produced for this network (MindSpore's "
                          f"{cfg.file_format} exporter fails on it); use --file_format=MINDIR")
    if cfg.device_target not in targets:
        raise ExportError(f"--file_format={cfg.file_format} is supported only with --device_target={targets[0]}, "
                          f"not on {cfg.device_target}; use --file_format=MINDIR")
    if not os.path.isfile(cfg.ckpt_file):
        raise CheckpointError(f"checkpoint file not found: {cfg.ckpt_file!r} (config key ckpt_file)")


def export_network(cfg, batch_size: int) -> str:
    """Build the inference network, load cfg.ckpt_file and export it; returns the written file's path."""
    cfg.test_batch_size = batch_size
    # The exported graph must not reference the CPU kernels' machine-local library (build/custom_ops/*.so):
    # build it with MindSpore's own ops, which compute the same numbers (tests/test_custom_ops.py).
    os.environ[CPU_KERNELS_ENV] = "0"
    net = FasterRcnnInfer(cfg)
    load_for_inference(net, cfg.ckpt_file, key_prefix="network.")
    net.set_train(False)
    if cfg.device_target == "Ascend":
        net.to_float(ms.float16)
    img = ms.Tensor(np.zeros((batch_size, 3, cfg.img_height, cfg.img_width), np.float32))
    img_metas = ms.Tensor(np.tile(np.float32([cfg.img_height, cfg.img_width, 1.0, 1.0]), (batch_size, 1)))

    target = cfg.file_name
    extension = EXTENSIONS[cfg.file_format]
    if target.endswith(extension):
        target = target[:-len(extension)]
    partial = f"{target}.partial-{os.getpid()}"
    ms.export(net, img, img_metas, file_name=partial, file_format=cfg.file_format)
    os.replace(partial + extension, target + extension)
    return target + extension


@moxing_wrapper()
def export_fasterrcnn() -> str:
    check_request(config)
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device(config.device_target, get_device_id() if config.device_target == "Ascend" else None)
    batch_size = export_batch_size(config, sys.argv[1:])
    start = time.time()
    path = export_network(config, batch_size)
    print(f"exported {path}: inputs img ({batch_size}, 3, {config.img_height}, {config.img_width}) float32, "
          f"img_metas ({batch_size}, 4) float32; {time.time() - start:.1f} s", flush=True)
    return path


def main() -> int:
    try:
        export_fasterrcnn()
    except (ExportError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
