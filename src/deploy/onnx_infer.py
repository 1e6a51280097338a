"""Running export.py's ONNX model with onnxruntime on the CPU: what infer.py's `mindir_detector` gives for a MINDIR.

    detect, batch, (height, width) = onnx_detector("Faster_Rcnn_DCN.onnx")
    boxes, labels, masks = detect(images, metas)

images (batch, 3, height, width) float32 normalised and metas (batch, 4) float32 [orig_h, orig_w, scale_h,
scale_w] as the evaluation pipeline makes them -> boxes (batch, K, 5) float32 [x1, y1, x2, y2, score] in
original-image pixels, labels (batch, K, 1) int32, masks (batch, K, 1) bool; K = rpn_max_num * (num_classes - 1).
Every problem (no onnxruntime, no such file, not a readable model, not this network's inputs, another image size or
class count than requested, arrays of the wrong shape) is an InferError with one line naming the file.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType

import numpy as np

from src.deploy.model_facts import MODEL_FACTS_KEY, parse_model_facts
from src.infra.errors import InferError

ONNXRUNTIME_REQUIREMENT = "onnxruntime==1.32.0"  # as requirements.txt
INPUT_NAMES = ("img", "img_metas")  # src/deploy/onnx_export.py
OUTPUT_NAMES = ("boxes", "labels", "masks")
META_VALUES = 4

DetectBatch = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def require_onnxruntime() -> ModuleType:
    """The onnxruntime package, or InferError saying how to install it."""
    try:
        return importlib.import_module("onnxruntime")
    except ImportError:
        raise InferError(f"running an ONNX model needs onnxruntime: pip install {ONNXRUNTIME_REQUIREMENT}") from None


def _session(path: str, threads: int):
    ort = require_onnxruntime()
    if not os.path.isfile(path):
        raise InferError(f"ONNX model not found: {path!r}")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InferError(f"{path} is not a readable ONNX model: {reason}") from None


def _input_shape(path: str, session) -> tuple[int, int, int]:
    """(batch, height, width) of the model's inputs; InferError unless they are export.py's."""
    inputs = {item.name: item.shape for item in session.get_inputs()}
    img, metas = inputs.get(INPUT_NAMES[0]), inputs.get(INPUT_NAMES[1])
    fixed = img is not None and metas is not None and all(isinstance(d, int) for d in (*img, *metas))
    if not fixed or len(img) != 4 or img[1] != 3 or tuple(metas) != (img[0], META_VALUES):
        shapes = ", ".join(f"{name} {tuple(shape)}" for name, shape in inputs.items())
        raise InferError(f"{path} is not a Faster R-CNN-DCN export: its inputs are {shapes}, expected img (N, 3, H, W) "
                         f"and img_metas (N, {META_VALUES}) (export.py --file_format=ONNX)")
    return img[0], img[2], img[3]


def onnx_detector(path: str, *, image_size: tuple[int, int] | None = None, num_classes: int | None = None,
                  threads: int = 0) -> tuple[DetectBatch, int, tuple[int, int]]:
    """export.py's ONNX model at `path` in an onnxruntime CPU session (`threads` intra-op threads, 0: onnxruntime's
    default, one per core) -> (detect, its batch size, its input (height, width)).

    `image_size` (height, width) and `num_classes` (with background), when given, are what the caller expects the
    model to take and give: a model exported for other ones is refused with one line.
    """
    session = _session(path, threads)
    batch, height, width = _input_shape(path, session)
    metadata = session.get_modelmeta().custom_metadata_map
    if image_size is not None and tuple(int(v) for v in image_size) != (height, width):
        raise InferError(f"{path} takes {height}x{width} images, not the requested {image_size[0]}x{image_size[1]} "
                         f"(img_height x img_width): export the checkpoint again at that size or ask for "
                         f"{height}x{width}")
    if num_classes is not None and "num_classes" in metadata and int(metadata["num_classes"]) != int(num_classes):
        raise InferError(f"{path} was exported for num_classes={metadata['num_classes']}, not the requested "
                         f"{num_classes}: use that model's class list or export the checkpoint of this one")
    outputs = [item.name for item in session.get_outputs()]
    if outputs != list(OUTPUT_NAMES):
        raise InferError(f"{path} is not a Faster R-CNN-DCN export: its outputs are {outputs}, expected "
                         f"{list(OUTPUT_NAMES)} (export.py --file_format=ONNX)")
    want = {INPUT_NAMES[0]: (batch, 3, height, width), INPUT_NAMES[1]: (batch, META_VALUES)}

    def detect(images: np.ndarray, metas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feed = {INPUT_NAMES[0]: np.ascontiguousarray(images, np.float32),
                INPUT_NAMES[1]: np.ascontiguousarray(metas, np.float32)}
        for name, array in feed.items():
            if array.shape != want[name]:
                raise InferError(f"{path}: {name} has shape {array.shape}, the model takes {want[name]}")
        boxes, labels, masks = session.run(list(OUTPUT_NAMES), feed)
        return boxes, labels, masks

    return detect, batch, (height, width)


def read_onnx(path: str) -> tuple[list[tuple[int, ...]], dict | None]:
    """The input shapes of export.py's ONNX model at `path` and the model facts it records (metadata
    MODEL_FACTS_KEY; None for a file written without them), read from the file without a session. InferError when
    it is not readable."""
    if not os.path.isfile(path):
        raise InferError(f"ONNX model not found: {path!r}")
    try:
        onnx = importlib.import_module("onnx")
    except ImportError:
        raise InferError("reading an ONNX model needs the onnx package: pip install onnx==1.23.2") from None
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and onnx's own
        raise InferError(f"{path} is not a readable ONNX model ({type(err).__name__})") from None
    shapes = [tuple(int(d.dim_value) for d in item.type.tensor_type.shape.dim) for item in model.graph.input]
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    return shapes, parse_model_facts(path, metadata.get(MODEL_FACTS_KEY))
