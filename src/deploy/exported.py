"""export.py's models as detectors, whatever their format: a MINDIR through MindSpore's runtime (`mindspore.load` +
`nn.GraphCell`), an ONNX file through onnxruntime. infer.py (--mindir, --onnx) and src/deploy/mindir_app.py
(run_infer_310.sh on the CPU/GPU) run them alike.

    shapes, facts = read_exported(path)           # input shapes [(B, 3, H, W), (B, 4)], model facts or None
    detect, batch, (height, width) = exported_detector(path)
    boxes, labels, masks = detect(images, metas)  # (B, 3, H, W) float32, (B, 4) float32 -> (B, K, 5), (B, K, 1) x2
"""
from __future__ import annotations

from collections.abc import Callable

import mindspore as ms
import numpy as np
from mindspore import nn

from src.deploy.model_facts import read_mindir
from src.deploy.onnx_infer import onnx_detector, read_onnx

DetectBatch = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def is_onnx(path: str) -> bool:
    """Whether `path` names an ONNX file (by its extension; everything else is taken for a MINDIR)."""
    return path.lower().endswith(".onnx")


def read_exported(path: str) -> tuple[list[tuple[int, ...]], dict | None]:
    """The model's input shapes and the model facts export.py recorded in it (None for an older export), read from
    the file; InferError when it is not export.py's."""
    return read_onnx(path) if is_onnx(path) else read_mindir(path)


def exported_detector(path: str, threads: int = 0) -> tuple[DetectBatch, int, tuple[int, int]]:
    """(detect, batch size, input (height, width)) of export.py's model at `path`; `threads`: onnxruntime's intra-op
    threads (0: its default, one per core)."""
    if is_onnx(path):
        return onnx_detector(path, threads=threads)
    (batch, _, height, width), _ = read_mindir(path)[0]
    graph = nn.GraphCell(ms.load(path))

    def detect(images: np.ndarray, metas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(o.asnumpy() for o in graph(ms.Tensor(images), ms.Tensor(metas)))

    return detect, batch, (height, width)
