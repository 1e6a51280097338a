"""The configuration object: a yaml file merged with command-line overrides.

The yaml holds up to three documents (values, help strings, choices), as in the model zoo. Every
top-level key can be overridden on the command line with its own name (`--img_width=640`,
`--anchor_ratios=[0.5,1,2]`); values are checked against the yaml's type and choices. Values that
the original hard-codes for 768x1280 (`feature_shapes`, `num_bboxes`) are derived here from
`img_height`/`img_width`, and worker counts are capped at the machine's cores.
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

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_CONFIGS = {
    "Ascend": "default_config.yaml",
    "GPU": "default_config_gpu.yaml",
    "CPU": "default_config_cpu.yaml",
}
# The network halves the map at every level; both sides must divide by the coarsest RoI stride.
SIZE_MULTIPLE = 32


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the key."""


class Config:
    """Attribute access to a (nested) dict of configuration values."""

    def __init__(self, values: dict):
        for key, value in values.items():
            setattr(self, key, _wrap(value))

    def __repr__(self) -> str:
        return "Config(" + repr(self.to_dict()) + ")"

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def to_dict(self) -> dict:
        return {k: _unwrap(v) for k, v in self.__dict__.items()}


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


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _typed(key: str, default: Any):
    """The argparse `type` converting a command-line string to the yaml default's type."""
    if isinstance(default, bool):
        return _bool
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        kind = type(default)

        def number(text: str):
            try:
                value = ast.literal_eval(text.strip())
            except (ValueError, SyntaxError):
                raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
            if kind is int and float(value) != int(value):
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
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
    """Fill in the values that follow from others (in place) and check the image size."""
    height, width = values["img_height"], values["img_width"]
    for name, size in (("img_height", height), ("img_width", width)):
        if not isinstance(size, int) or size <= 0 or size % SIZE_MULTIPLE:
            raise ConfigError(f"{name}={size}: the network needs a positive multiple of {SIZE_MULTIPLE}")
    strides = values["anchor_strides"]
    values["feature_shapes"] = [[math.ceil(height / s), math.ceil(width / s)] for s in strides]
    values["num_bboxes"] = values["num_anchors"] * sum(h * w for h, w in values["feature_shapes"])
    if len(values["coco_classes"]) != values["num_classes"]:
        raise ConfigError(
            f"num_classes={values['num_classes']} but coco_classes lists {len(values['coco_classes'])} names "
            "(background first)")
    cores = os.cpu_count() or 1
    values["num_parallel_workers"] = max(1, min(values["num_parallel_workers"], cores))
    return values


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
    args = vars(parser.parse_args(argv))
    for key, value in overrides.items():
        if key not in values:
            raise ConfigError(f"unknown config key {key!r} (not in {path})")
        args[key] = value
    return Config(derive(args))


def __getattr__(name: str):
    # `from src.model_utils.config import config` parses sys.argv once, on first use.
    if name == "config":
        globals()["config"] = get_config()
        return globals()["config"]
    raise AttributeError(name)
