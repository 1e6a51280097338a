"""The configuration object: a yaml file merged with command-line overrides.

The yaml holds up to three documents (values, help strings, choices), as in the model zoo. Every
top-level key can be overridden on the command line with its own name (`--img_width=640`,
`--anchor_ratios=[0.5,1,2]`); values are checked against the yaml's type and choices. Every key of
this project's yamls is read by the code. Values that follow from others (`DERIVED_KEYS`) are computed
here, and worker counts are capped at the machine's cores. Keys of the original's yamls that have no
effect (`INACTIVE_KEYS`) are accepted from a user's yaml or command line with one warning line.
"""
from __future__ import annotations

import argparse
import ast
import math
import os
import sys
from collections.abc import Iterable
from typing import Any

import yaml

from src.data.sources import category_names
from src.infra.errors import ConfigError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_CONFIGS = {
    "Ascend": "default_config.yaml",
    "GPU": "default_config_gpu.yaml",
    "CPU": "default_config_cpu.yaml",
}
# The network halves the map at every level; both sides must divide by the coarsest RoI stride.
SIZE_MULTIPLE = 32
# Keys of the original's yamls that nothing reads (in the original either, unless said otherwise): why.
INACTIVE_KEYS = {
    "rpn_proposal_nms_across_levels": "proposals are always suppressed per FPN level",
    "rpn_nms_across_levels": "proposals are always suppressed per FPN level",
    "rpn_proposal_nms_post": "the per-level NMS output is not cut; rpn_proposal_max_num bounds the proposals",
    "rpn_nms_post": "the per-level NMS output is not cut; rpn_max_num bounds the proposals",
    "rpn_proposal_min_bbox_size": "no small-box filter on the proposals",
    "rpn_min_bbox_min_size": "no small-box filter on the proposals",
    "rpn_head_use_sigmoid": "the RPN objectness is a sigmoid (use_sigmoid_cls)",
    "rpn_head_weight": "the RPN loss weights are rpn_loss_cls_weight and rpn_loss_reg_weight",
    "rcnn_num_layers": "the R-CNN head has two fully connected layers",
    "num_expected_total_stage2": "the R-CNN sampler takes num_expected_pos_stage2 + num_expected_neg_stage2 RoIs",
    "test_max_per_img": "evaluation keeps eval_max_num detections per image (the original's 128)",
    "sgd_step": "the learning rate follows lr_schedule (warm-up, then cosine)",
    "sgd_momentum": "SGD takes momentum",
    "device_num": "the number of devices is the launcher's (msrun or the rank table)",
}
# Keys computed from others (a user's yaml value that disagrees is replaced, with a warning): how.
DERIVED_KEYS = {
    "feature_shapes": "[ceil(img_height / s), ceil(img_width / s)] for each anchor stride s",
    "num_bboxes": "num_anchors x the positions of all feature_shapes",
    "num_bboxes_stage2": "rpn_proposal_max_num (the proposals per image)",
    "roi_sample_num": "num_expected_pos_stage2 + num_expected_neg_stage2 (the RoIs per image)",
}


class Config:
    """Attribute access to a (nested) dict of configuration values. `given`: the keys set on the command line or
    by keyword (the others hold the yaml's value)."""

    def __init__(self, values: dict, given: Iterable[str] = ()):
        for key, value in values.items():
            setattr(self, key, _wrap(value))
        object.__setattr__(self, "_given", frozenset(given))

    @property
    def given(self) -> frozenset[str]:
        return self._given

    def __repr__(self) -> str:
        return "Config(" + repr(self.to_dict()) + ")"

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__ and key != "_given"

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def to_dict(self) -> dict:
        return {k: _unwrap(v) for k, v in self.__dict__.items() if k != "_given"}

    def replace(self, **changes: Any) -> Config:
        """A copy with `changes` applied (this object is left as it is)."""
        unknown = sorted(changes.keys() - self.__dict__.keys())
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}")
        return Config({**self.to_dict(), **changes}, self.given | changes.keys())


def _wrap(value):
    if isinstance(value, dict):
        return Config(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _unwrap(value):
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def parse_yaml(path: str) -> tuple[dict, dict, dict]:
    """Read `path`: returns (values, help strings, choices)."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f)]
    except yaml.YAMLError as err:
        raise ConfigError(f"failed to parse yaml {path}: {err}") from err
    if not 1 <= len(docs) <= 3 or not isinstance(docs[0], dict):
        raise ConfigError(f"{path}: expected 1 to 3 yaml documents (values, help, choices), got {len(docs)}")
    docs += [{}] * (3 - len(docs))
    return docs[0], docs[1] or {}, docs[2] or {}


def parse_bool(text: str) -> bool:
    """True/False from a command-line word (true, 1, yes / false, 0, no; any case)."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _typed(key: str, default: Any):
    """The argparse `type` converting a command-line string to the yaml default's type."""
    if isinstance(default, bool):
        return parse_bool
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        kind = type(default)
        expected = "an integer" if kind is int else "a number"

        def number(text: str):
            try:
                value = ast.literal_eval(text.strip())
            except (ValueError, SyntaxError):
                raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
            if kind is int and float(value) != int(value):
                raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
            return kind(value)

        return number
    if isinstance(default, (list, dict)):
        kind = type(default)

        def structured(text: str):
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                raise argparse.ArgumentTypeError(f"expected a yaml {kind.__name__}, got {text!r}") from None
            if not isinstance(value, kind):
                raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}")
            return value

        return structured
    return str


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        if "unrecognized arguments" in message:
            message += " (not a key of the config file; see --help)"
        raise ConfigError(message)


def _pre_parse(argv: list[str]) -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config_path", default="")
    pre.add_argument("--device_target", default="")
    known, _ = pre.parse_known_args(argv)
    if known.config_path:
        path = known.config_path
        if not os.path.isabs(path) and not os.path.exists(path):
            path = os.path.join(ROOT, path)
        return path
    target = known.device_target or "CPU"
    if target not in DEFAULT_CONFIGS:
        raise ConfigError(f"device_target must be one of {list(DEFAULT_CONFIGS)}, got {target!r}")
    return os.path.join(ROOT, DEFAULT_CONFIGS[target])


def derive(values: dict) -> dict:
    """Compute DERIVED_KEYS from the other values (in place; a differing value given for one is replaced, with a
    warning) and check the image size and the class list."""
    height, width = values["img_height"], values["img_width"]
    for name, size in (("img_height", height), ("img_width", width)):
        if not isinstance(size, int) or size <= 0 or size % SIZE_MULTIPLE:
            raise ConfigError(f"{name}={size}: the network needs a positive multiple of {SIZE_MULTIPLE}")
    feature_shapes = [[math.ceil(height / s), math.ceil(width / s)] for s in values["anchor_strides"]]
    derived = {
        "feature_shapes": feature_shapes,
        "num_bboxes": values["num_anchors"] * sum(h * w for h, w in feature_shapes),
        "num_bboxes_stage2": values["rpn_proposal_max_num"],
        "roi_sample_num": values["num_expected_pos_stage2"] + values["num_expected_neg_stage2"],
    }
    replaced = [f"{key}={values[key]} -> {value}" for key, value in derived.items()
                if values.get(key) is not None and values[key] != value]
    if replaced:
        warn(f"derived config values replace the given ones: {'; '.join(replaced)}")
    values.update(derived)
    if len(values["coco_classes"]) != values["num_classes"]:
        raise ConfigError(
            f"num_classes={values['num_classes']} but coco_classes lists {len(values['coco_classes'])} names "
            "(background first)")
    values["num_parallel_workers"] = cap_workers(values["num_parallel_workers"])
    return values


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def cap_workers(requested: int) -> int:
    """A worker count between 1 and the machine's cores."""
    return max(1, min(int(requested), os.cpu_count() or 1))


def classes_from_data(cfg: Config, is_training: bool) -> Config:
    """`cfg`, or when the classes of a COCO json named by train_anno_path (training) / val_anno_path (evaluation) are
    not given, `cfg` with the json's classes (background, then its category names by category id) and one warning.

    Not given: neither coco_classes nor num_classes on the command line, and coco_classes still the shipped COCO
    names while the json has a category that is not one of them (a json of COCO names keeps COCO's 81 classes;
    classes given otherwise keep the usual check of the json's categories against them). The coco_root layout is
    COCO's and is not read here (its train json is large)."""
    json_path = cfg.train_anno_path if is_training else cfg.val_anno_path
    if cfg.dataset != "coco" or not json_path or {"coco_classes", "num_classes"} & cfg.given:
        return cfg
    shipped, _, _ = parse_yaml(os.path.join(ROOT, DEFAULT_CONFIGS["Ascend"]))
    if list(cfg.coco_classes) != shipped["coco_classes"] or not os.path.isfile(json_path):
        return cfg  # the conversion names a missing file
    names = category_names(json_path)
    if set(names) <= set(shipped["coco_classes"]):
        return cfg
    warn(f"classes taken from {os.path.basename(json_path)}'s {len(names)} categories (by id): {', '.join(names)}")
    classes = ["background", *names]
    return cfg.replace(coco_classes=classes, num_classes=len(classes))


def get_config(argv: Iterable[str] | None = None, **overrides: Any) -> Config:
    """Build the config from `argv` (default: sys.argv[1:]) and keyword overrides (tests, scripts)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    path = _pre_parse(argv)
    values, helps, choices = parse_yaml(path)
    parser = _Parser(description=f"Faster R-CNN-DCN options (defaults from {path})")
    parser.add_argument("--config_path", default=path, help="yaml file with the default values")
    for key, default in values.items():
        parser.add_argument(f"--{key}", type=_typed(key, default), default=default,
                            choices=choices.get(key), help=helps.get(key, f"see {os.path.basename(path)}"))
    # The original's keys that this yaml leaves out: accepted (the original's command lines), with a warning.
    for key in (INACTIVE_KEYS.keys() | DERIVED_KEYS.keys()) - values.keys():
        parser.add_argument(f"--{key}", type=yaml.safe_load, default=None, help=argparse.SUPPRESS)
    args = vars(parser.parse_args(argv))
    given = {key for key in args if any(a == f"--{key}" or a.startswith(f"--{key}=") for a in argv)}
    for key, value in overrides.items():
        if key not in args:
            raise ConfigError(f"unknown config key {key!r} (not in {path})")
        args[key] = value
    given |= overrides.keys()
    inactive = sorted(key for key in INACTIVE_KEYS if key in given or values.get(key) is not None)
    if inactive:
        warn(f"config keys with no effect (see INACTIVE_KEYS in src/model_utils/config.py): {', '.join(inactive)}")
    for key in INACTIVE_KEYS:
        args.pop(key, None)
    return Config(derive(args), given)


def __getattr__(name: str):
    # `from src.model_utils.config import config` parses sys.argv once, on first use.
    if name == "config":
        globals()["config"] = get_config()
        return globals()["config"]
    raise AttributeError(name)
