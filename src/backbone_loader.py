"""Load a MindSpore model-zoo ResNet-50 (ImageNet) checkpoint into the Faster R-CNN-DCN backbone.

Key mapping (checkpoint -> network, network names under `prefix`, `backbone.` by default):
- every key gets the prefix (keys that already carry it, e.g. from a full Faster R-CNN checkpoint, keep it);
- `down_sample_layer.0.*` -> `conv_down_sample.*`, `down_sample_layer.1.*` -> `bn_down_sample.*`, as the original;
- `layerN.M.conv2.weight` -> `layerN.M.defconv.conv.weight` where the block's 3x3 is deformable (layer2-4).
  The original's loader misses these 13 weights (its names differ) and leaves them at their initial values.
Checkpoint keys with no target (classifier `end_point.*`, optimizer `moments.*`, `learning_rate`, ...) are
reported as unexpected; backbone parameters the checkpoint lacks (the DCN offset/mask convs) as missing.
"""
from __future__ import annotations

import re
from collections.abc import Collection

import numpy as np
from mindspore import Tensor, nn

from src.errors import CheckpointError
from src.network_checkpoint import BACKBONE_PREFIX, read_checkpoint

_DOWN_SAMPLE = (("down_sample_layer.0.", "conv_down_sample."), ("down_sample_layer.1.", "bn_down_sample."))
_CONV2 = re.compile(r"^(.*layer\d+\.\d+\.)conv2\.weight$")


def target_name(key: str, prefix: str, targets: Collection[str]) -> str | None:
    """The name in `targets` (network parameter names) that model-zoo checkpoint `key` loads into, or None."""
    name = key if key.startswith(prefix) else prefix + key
    for old, new in _DOWN_SAMPLE:
        name = name.replace(old, new)
    if name not in targets:
        match = _CONV2.match(name)
        if match and match.group(1) + "defconv.conv.weight" in targets:
            name = match.group(1) + "defconv.conv.weight"
    return name if name in targets else None


def load_backbone_pretrained(net: nn.Cell, ckpt_path: str, prefix: str = BACKBONE_PREFIX) -> dict[str, list[str]]:
    """Copy the backbone weights of the model-zoo ResNet-50 checkpoint file `ckpt_path` into `net` (in place).

    net: the network (its backbone parameters named `prefix` + ResNet name; prefix "" for a bare ResNetFea).
    Returns {"loaded": network names set, "missing": backbone parameters not in the checkpoint,
    "unexpected": checkpoint keys with no target}. CheckpointError naming the file (missing, unreadable) or the key
    (another shape).
    """
    return load_backbone_params(net, read_checkpoint(ckpt_path), ckpt_path, prefix)


def load_backbone_params(net: nn.Cell, ckpt: dict, ckpt_path: str,
                         prefix: str = BACKBONE_PREFIX) -> dict[str, list[str]]:
    """As load_backbone_pretrained, from the entries `ckpt` already read from `ckpt_path`."""
    targets = {p.name: p for p in net.get_parameters() if p.name.startswith(prefix)}
    if not targets:
        raise ValueError(f"the network has no parameters under prefix {prefix!r} to load {ckpt_path} into")

    values, unexpected = {}, []
    for key, param in ckpt.items():
        name = target_name(key, prefix, targets)
        if name is None:
            unexpected.append(key)
            continue
        value = param.asnumpy() if hasattr(param, "asnumpy") else np.asarray(param)
        if tuple(value.shape) != tuple(targets[name].shape):
            raise CheckpointError(f"{ckpt_path}: checkpoint key {key!r} has shape {tuple(value.shape)}, but the "
                                  f"network's {name!r} has shape {tuple(targets[name].shape)}")
        values[name] = value
    for name, value in values.items():
        targets[name].set_data(Tensor(value, targets[name].dtype))
    loaded = sorted(values)
    missing = sorted(set(targets) - set(values))
    return {"loaded": loaded, "missing": missing, "unexpected": sorted(unexpected)}
