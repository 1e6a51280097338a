"""The inference network as an ONNX model, written by MindSpore's own ONNX exporter from export.py's graph.

The graph is the MINDIR's (Kernels.GATHER: the deformable sampling and RoIAlign as gathers and matmuls,
src/ops/gathered.py), so the ONNX model computes the network's numbers; MindSpore converts NMSWithMask to
TopK + NonMaxSuppression + ScatterElements. What this module adds to the exporter's file: the outputs named
`boxes`, `labels`, `masks`, and the sizes the model was exported for as metadata (METADATA_KEYS), which
src/deploy/onnx_infer.py checks a request against. Batch and image size are fixed at export: the graph loops over
the images of the batch and its reshapes carry the sizes.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import mindspore as ms
from mindspore import Tensor, nn

from src.infra.errors import ExportError
from src.infra.fileio import atomic_path

INPUT_NAMES = ("img", "img_metas")
OUTPUT_NAMES = ("boxes", "labels", "masks")
# metadata_props of the written model: the sizes it was exported for (decimal strings)
METADATA_KEYS = ("batch_size", "img_height", "img_width", "num_classes", "rpn_max_num")
FILE_MODE = 0o644  # the exporter writes its file read-only for its owner
ONNX_REQUIREMENT = "onnx==1.23.2"  # as requirements.txt


def require_onnx() -> ModuleType:
    """The onnx package, or ExportError saying how to install it. (Imported after MindSpore, whose generated protobuf
    modules load only when MindSpore is the first to import protobuf.)"""
    try:
        return importlib.import_module("onnx")
    except ImportError:
        raise ExportError(f"--file_format=ONNX needs the onnx package: pip install {ONNX_REQUIREMENT}") from None


def export_onnx(net: nn.Cell, img: Tensor, img_metas: Tensor, target: str, metadata: dict[str, int],
                facts: dict[str, str] | None = None) -> None:
    """`net` (construct(img (N, 3, H, W), img_metas (N, 4)) -> (boxes (N, K, 5) float32, labels (N, K, 1) int32,
    masks (N, K, 1) bool)) traced on the example inputs and written to `target` (a `.onnx` path) atomically, with
    `metadata` ({METADATA_KEYS key: value}) and `facts` (key: text, e.g. the model facts' JSON) in the model's
    metadata_props."""
    onnx = require_onnx()
    with atomic_path(target) as tmp:
        ms.export(net, img, img_metas, file_name=tmp[:-len(".onnx")], file_format="ONNX")
        os.chmod(tmp, FILE_MODE & ~_umask())
        model = onnx.load(tmp)
        _name_outputs(model.graph, OUTPUT_NAMES)
        for key in METADATA_KEYS:
            model.metadata_props.add(key=key, value=str(int(metadata[key])))
        for key, text in (facts or {}).items():
            model.metadata_props.add(key=key, value=text)
        model.producer_name = "faster_rcnn_dcn export.py"
        onnx.save(model, tmp)


def _name_outputs(graph, names: tuple[str, ...]) -> None:
    """The graph's outputs renamed to `names` (the exporter names them after internal nodes), through Identity nodes
    so that no other consumer of the old names changes."""
    if len(graph.output) != len(names):
        raise ValueError(f"the exported graph has {len(graph.output)} outputs, expected {len(names)}")
    for output, name in zip(graph.output, names, strict=True):
        graph.node.add(op_type="Identity", input=[output.name], output=[name])
        output.name = name


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
