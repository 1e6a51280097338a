"""What export.py records about a model in the file it writes, and reading it back: the model facts (class names
background first, num_classes, input size, keep_ratio, batch size) as JSON under MODEL_FACTS_KEY, in a MINDIR's
user_info (MindSpore's loaders, Python and C++, ignore the entry) or an ONNX file's metadata_props; and a MINDIR's
input shapes, read from the file without building its graph.
"""
from __future__ import annotations

import json
import os

from mindspore.train import mind_ir_pb2

from src.infra.errors import InferError

NUM_INPUTS = 2
META_SIZE = 4
# Where export.py records the model facts (model_facts), and their types.
MODEL_FACTS_KEY = "faster_rcnn_dcn"
FACT_TYPES = {"coco_classes": list, "num_classes": int, "img_height": int, "img_width": int, "keep_ratio": bool,
              "batch_size": int}


def read_mindir(path: str) -> tuple[list[tuple[int, ...]], dict | None]:
    """The shapes of the MINDIR graph's inputs and the model facts export.py recorded in it (`model_facts`; None for
    a MINDIR written without them), read from the file (no graph is built). InferError when it is not a MINDIR of
    this network."""
    if not os.path.isfile(path):
        raise InferError(f"MINDIR file not found: {path!r}")
    model = mind_ir_pb2.ModelProto()
    try:
        with open(path, "rb") as f:
            model.ParseFromString(f.read())
    except Exception as err:  # protobuf's DecodeError and friends
        raise InferError(f"{path} is not a MINDIR file ({type(err).__name__})") from None
    shapes = [tuple(int(d) for d in item.tensor[0].dims) for item in model.graph.input if item.tensor]
    if len(shapes) != NUM_INPUTS or len(shapes[0]) != 4 or shapes[1][-1:] != (META_SIZE,):
        raise InferError(f"{path} is not a Faster R-CNN export: expected inputs img (B, 3, H, W) and img_metas "
                         f"(B, {META_SIZE}), found {shapes}")
    user_info = user_info_entries(model)
    return shapes, parse_model_facts(path, user_info.get(MODEL_FACTS_KEY))


def parse_model_facts(path: str, text: str | None) -> dict | None:
    """The model facts export.py recorded in an exported model (`model_facts`, as JSON `text`; None when the model
    has none); InferError naming `path` when they are not export.py's."""
    if text is None:
        return None
    try:
        facts = json.loads(text)
    except ValueError:
        facts = None
    wrong = ["a JSON object"] if not isinstance(facts, dict) else \
        [f"{key} ({kind.__name__})" for key, kind in FACT_TYPES.items()
         if not isinstance(facts.get(key), kind) or (kind is int and isinstance(facts[key], bool))]
    if not wrong and (not all(isinstance(name, str) for name in facts["coco_classes"])
                      or len(facts["coco_classes"]) != facts["num_classes"]):
        wrong = ["num_classes class names (strings)"]
    if wrong:
        raise InferError(f"{path}: its model facts ({MODEL_FACTS_KEY!r}) are not export.py's: expected "
                         f"{', '.join(wrong)}")
    return {key: facts[key] for key in FACT_TYPES}


def user_info_entries(model) -> dict[str, str]:
    """A mind_ir ModelProto's user_info (MindSpore's generated module gives the map as a list of entries)."""
    if hasattr(model.user_info, "add"):
        return {entry.key: entry.value for entry in model.user_info}
    return dict(model.user_info)


def record_model_facts(model, facts: dict) -> None:
    """Put `facts` (model_facts) into a mind_ir ModelProto's user_info (export.py, before the file is written)."""
    text = json.dumps(facts)
    if hasattr(model.user_info, "add"):
        model.user_info.add(key=MODEL_FACTS_KEY, value=text)
    else:
        model.user_info[MODEL_FACTS_KEY] = text


def model_facts(cfg, batch_size: int) -> dict:
    """What a user of an exported model needs besides its graph, as export.py records it in the MINDIR (user_info
    MODEL_FACTS_KEY, JSON): class names (background first), their number, the input size, keep_ratio, batch."""
    return {"coco_classes": list(cfg.coco_classes), "num_classes": int(cfg.num_classes),
            "img_height": int(cfg.img_height), "img_width": int(cfg.img_width), "keep_ratio": bool(cfg.keep_ratio),
            "batch_size": int(batch_size)}
