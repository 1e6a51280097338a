"""Loading a Faster R-CNN-DCN checkpoint into a network for evaluation or export, with clear errors.

A checkpoint saved by the original (or by this port's train.py) holds the network's 321 parameters under the
original names, and possibly optimizer state (`moments.*`, `learning_rate`, `global_step`, ...), which is ignored.
Every network parameter must be present with its shape; anything else is reported by name before any work.
Values are cast to the network's dtype (an Ascend float16 checkpoint loads on CPU/GPU).
"""
from __future__ import annotations

import os

import mindspore as ms
import numpy as np
from mindspore import nn

SHOWN_NAMES = 8  # how many mismatched names an error message lists


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the network; the message names the file and the parameters."""


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f", ... ({len(names) - SHOWN_NAMES} more)" if len(names) > SHOWN_NAMES else "")


def read_checkpoint(path: str) -> dict[str, ms.Parameter]:
    """The parameters of a MindSpore checkpoint file; CheckpointError if missing or unreadable."""
    if not path or not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path!r}")
    try:
        return ms.load_checkpoint(path)
    except Exception as err:  # MindSpore raises ValueError/RuntimeError/TypeError for files it cannot parse
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable MindSpore checkpoint: {first_line}") from None


def match_checkpoint(net: nn.Cell, params: dict, path: str, key_prefix: str = "") -> dict[str, ms.Parameter]:
    """The checkpoint entries for every parameter of `net`, keyed by the network's names and cast to its dtypes.

    `key_prefix` is prepended to the checkpoint's names (export wraps the network as `network.`).
    CheckpointError naming the missing and mis-shaped parameters when the checkpoint does not fit.
    """
    expected = net.parameters_dict()
    renamed = {key_prefix + name: value for name, value in params.items()}
    missing = [name for name in expected if name not in renamed]
    if len(missing) == len(expected):
        sample = _listing(sorted(params)) or "(none)"
        raise CheckpointError(
            f"{path} is not a Faster R-CNN-DCN checkpoint: none of the network's {len(expected)} parameters is in "
            f"it (it holds {len(params)} entries: {sample}; expected names such as "
            f"{_listing([n[len(key_prefix):] for n in list(expected)[:3]])})")
    mis_shaped = [f"{name} {tuple(renamed[name].shape)} (network {tuple(param.shape)})"
                  for name, param in expected.items()
                  if name in renamed and tuple(renamed[name].shape) != tuple(param.shape)]
    if missing or mis_shaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} network parameters are missing: "
                         f"{_listing([n[len(key_prefix):] for n in missing])}")
        if mis_shaped:
            parts.append(f"{len(mis_shaped)} have another shape: {_listing(mis_shaped)}")
        raise CheckpointError(f"{path} does not fit this Faster R-CNN-DCN network (check num_classes and the "
                              f"backbone in the config): " + "; ".join(parts))
    matched = {}
    for name, param in expected.items():
        value = renamed[name]
        data = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
        matched[name] = ms.Parameter(ms.Tensor(data, dtype=param.dtype), name=name)
    return matched


def load_for_inference(net: nn.Cell, path: str, key_prefix: str = "") -> int:
    """Read `path`, check it against `net` and load it; returns the number of checkpoint entries ignored."""
    params = read_checkpoint(path)
    matched = match_checkpoint(net, params, path, key_prefix)
    not_loaded = ms.load_param_into_net(net, matched, strict_load=True)
    if isinstance(not_loaded, tuple):  # MindSpore 2.x returns (params not loaded, checkpoint entries not used)
        not_loaded = not_loaded[0]
    if not_loaded:
        raise CheckpointError(f"{path}: MindSpore did not load {_listing(list(not_loaded))}")
    return len(params) - len(matched)
