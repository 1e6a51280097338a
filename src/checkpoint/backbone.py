"""Load a MindSpore model-zoo (or mindcv) ResNet-50 (ImageNet) checkpoint into the Faster R-CNN-DCN backbone.

Key mapping (checkpoint -> network, network names under `prefix`, `backbone.` by default):
- every key gets the prefix (keys that already carry it, e.g. from a full Faster R-CNN checkpoint, keep it);
- `down_sample_layer.0.*` -> `conv_down_sample.*`, `down_sample_layer.1.*` -> `bn_down_sample.*`, as the original;
  mindcv's `down_sample.0.*` / `down_sample.1.*` alike (its other names are the model zoo's);
- `layerN.M.conv2.weight` -> `layerN.M.defconv.conv.weight` where the block's 3x3 is deformable (layer2-4).
  The original's loader misses these 13 weights (its names differ) and leaves them at their initial values.
Checkpoint keys with no target (classifier `end_point.*` or mindcv's `classifier.*`, optimizer `moments.*`, ...) are
reported as unexpected; backbone parameters the checkpoint lacks (the DCN offset/mask convs) as missing.
"""
from __future__ import annotations

import re
from collections.abc import Collection

import numpy as np
from mindspore import Tensor, nn

from src.checkpoint.detector import BACKBONE_PREFIX, name_listing, read_checkpoint
from src.FasterRcnn.resnet import ResNetFea
from src.FasterRcnn.settings import BackboneSettings
from src.infra.errors import CheckpointError
from src.model_utils.config import get_config
from src.ops import Kernels

_DOWN_SAMPLE = (("down_sample_layer.0.", "conv_down_sample."), ("down_sample_layer.1.", "bn_down_sample."),
                ("down_sample.0.", "conv_down_sample."), ("down_sample.1.", "bn_down_sample."))  # model zoo, mindcv
_CONV2 = re.compile(r"^(.*layer\d+\.\d+\.)conv2\.weight$")
_DCN_OFFSET_MASK = (".defconv.p_conv.", ".defconv.m_conv.")  # DCN offset/mask convs: torchvision has none


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


def check_backbone_coverage(ckpt: dict, ckpt_path: str, shapes: dict[str, tuple[int, ...]],
                            prefix: str = BACKBONE_PREFIX) -> int:
    """CheckpointError unless the checkpoint entries `ckpt` (read from `ckpt_path`, for `--pre_trained`) give every
    parameter of the ResNet-50 backbone, `shapes` (ResNetFea names -> shape, the DCN offset/mask convs left out:
    no ResNet-50 has them), with its shape, under a model-zoo name or a Faster R-CNN one (`prefix` + name).

    Every ResNet-50 parameter is required (265 with the original's [3, 4, 6, 3] blocks): each checkpoint this
    option takes (a model-zoo or converted torchvision ResNet-50, a whole Faster R-CNN-DCN checkpoint) holds all of
    them, and one that holds fewer would silently leave part of the backbone at random values (a checkpoint of
    another network loads nothing at all). Returns the number found."""
    targets = {prefix + name: shape for name, shape in shapes.items()}
    found, mis_shaped = set(), []
    for key, value in ckpt.items():
        name = target_name(key, prefix, targets)
        if name is None:
            continue
        shape = tuple(value.shape)
        if shape == tuple(targets[name]):
            found.add(name)
        else:
            mis_shaped.append(f"{key} {shape} (network {tuple(targets[name])})")
    if len(found) < len(targets):
        missing = [name[len(prefix):] for name in targets if name not in found]
        detail = f"; another shape: {name_listing(mis_shaped)}" if mis_shaped else ""
        raise CheckpointError(
            f"--pre_trained {ckpt_path!r} does not hold this network's ResNet-50 backbone: {len(found)} of its "
            f"{len(targets)} parameters found (the file has {len(ckpt)} entries: {name_listing(sorted(ckpt))}; "
            f"missing: {name_listing(missing)}{detail}); expected a model-zoo ResNet-50 checkpoint (conv1.weight, "
            f"bn1.gamma, layer1.0.conv1.weight, ...) or a Faster R-CNN-DCN one ({prefix}conv1.weight, ...); "
            "'none' trains from scratch")
    return len(found)


def backbone_shapes(cfg=None) -> dict[str, tuple[int, ...]]:
    """Shape of each parameter of the config's ResNet-50 backbone (ResNetFea names; `cfg` default: the default
    config), the DCN offset/mask convs left out."""
    cfg = cfg if cfg is not None else get_config([])
    stages = BackboneSettings.from_config(cfg)
    # the stage sizes only: the training options' initialisation would run a kernel (train.py calls this before it
    # sets the device)
    backbone = ResNetFea(BackboneSettings(stages.layer_nums, stages.in_channels, stages.out_channels),
                         kernels=Kernels.MINDSPORE)
    return {p.name: tuple(p.shape) for p in backbone.get_parameters()
            if not any(part in p.name for part in _DCN_OFFSET_MASK)}
