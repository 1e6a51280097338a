"""Checkpoint files of the network: reading them (one reader, clear errors), loading one for evaluation or export,
loading the matching parameters of one (fine-tuning) and resuming training from one. Writing them during training
(atomically, only accepted states) is src/engine/hooks.py's `AtomicCheckpoint`.

A checkpoint saved by the original (or by this port's train.py) holds the network's 321 parameters under the
original names, and possibly optimizer state (`moments.*`/`accum.*`, `learning_rate`, `global_step`, ...).
For inference every network parameter must be present with its shape (anything else is reported by name before any
work) and the optimizer state is ignored; values are cast to the network's dtype (an Ascend float16 checkpoint loads
on CPU/GPU). As `--pre_trained` (fine-tuning), every network parameter whose name and shape match is loaded, the
optimizer state never; only `--resume` restores it.
"""
from __future__ import annotations

import os
import sys

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from src.infra.errors import CheckpointError

SHOWN_NAMES = 8  # how many mismatched names an error message lists
CHECKPOINT_PREFIX = "faster_rcnn"
BACKBONE_PREFIX = "backbone."  # the ResNet-50's parameters in the network
# Checkpoint entries that describe the run rather than the model; the schedule is rebuilt from the config.
RUN_STATE_KEYS = ("epoch_num", "step_num", "learning_rate")


def name_listing(names: list[str]) -> str:
    """The first SHOWN_NAMES of `names`, comma-separated, and how many more."""
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f", ... ({len(names) - SHOWN_NAMES} more)" if len(names) > SHOWN_NAMES else "")


def read_checkpoint(path: str, option: str | None = None) -> dict[str, ms.Parameter]:
    """The parameters of a MindSpore checkpoint file; CheckpointError if it is missing or unreadable.
    `option` (e.g. "--resume"): the command-line option that named the file, for the message."""
    if not path or not os.path.isfile(path):
        raise CheckpointError(f"{option} {path!r}: no such file" if option else f"checkpoint file not found: {path!r}")
    try:
        return ms.load_checkpoint(path)
    except Exception as err:  # MindSpore raises ValueError/RuntimeError/TypeError for files it cannot parse
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{option} {path!r}: not a readable MindSpore checkpoint ({detail})" if option
                              else f"{path} is not a readable MindSpore checkpoint: {detail}") from None


def match_checkpoint(net: nn.Cell, params: dict, path: str, key_prefix: str = "") -> dict[str, ms.Parameter]:
    """The checkpoint entries for every parameter of `net`, keyed by the network's names and cast to its dtypes.

    `key_prefix` is prepended to the checkpoint's names (export wraps the network as `network.`).
    CheckpointError naming the missing and mis-shaped parameters when the checkpoint does not fit.
    """
    expected = net.parameters_dict()
    renamed = {key_prefix + name: value for name, value in params.items()}
    missing = [name for name in expected if name not in renamed]
    if len(missing) == len(expected):
        sample = name_listing(sorted(params)) or "(none)"
        raise CheckpointError(
            f"{path} is not a Faster R-CNN-DCN checkpoint: none of the network's {len(expected)} parameters is in "
            f"it (it holds {len(params)} entries: {sample}; expected names such as "
            f"{name_listing([n[len(key_prefix):] for n in list(expected)[:3]])})")
    mis_shaped = [f"{name} {tuple(renamed[name].shape)} (network {tuple(param.shape)})"
                  for name, param in expected.items()
                  if name in renamed and tuple(renamed[name].shape) != tuple(param.shape)]
    if missing or mis_shaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} network parameters are missing: "
                         f"{name_listing([n[len(key_prefix):] for n in missing])}")
        if mis_shaped:
            parts.append(f"{len(mis_shaped)} have another shape: {name_listing(mis_shaped)}")
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
        raise CheckpointError(f"{path}: MindSpore did not load {name_listing(list(not_loaded))}")
    return len(params) - len(matched)


def is_detector_checkpoint(net: nn.Cell, params: dict) -> bool:
    """Whether `params` is a whole Faster R-CNN checkpoint (it names a parameter of `net` outside the backbone, as
    the original's and train.py's checkpoints do) rather than a ResNet-50 backbone checkpoint."""
    head_names = {p.name for p in net.get_parameters() if not p.name.startswith(BACKBONE_PREFIX)}
    return not head_names.isdisjoint(params)


def load_matching_parameters(net: nn.Cell, params: dict, path: str) -> dict[str, list[str]]:
    """Copy every entry of `params` (read from `path`) whose name and shape are those of a parameter of `net` into
    it (in place, cast to the parameter's dtype). Nothing else is loaded: the optimizer and run state of a train.py
    checkpoint (`accum.*`, `stat.*`, `global_step`, ...) are no network parameters.

    Returns {"loaded": network names, "skipped": "<name> checkpoint <shape>, network <shape>" for each name whose
    shape differs (the R-CNN's class-dependent cls_scores/reg_scores when num_classes differs), "missing": network
    parameters the checkpoint lacks, "unexpected": checkpoint entries that are no network parameter}.
    CheckpointError naming `path` when no parameter matches.
    """
    targets = {p.name: p for p in net.get_parameters()}
    loaded, skipped = [], []
    for name, param in targets.items():
        if name not in params:
            continue
        value = params[name]
        data = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
        if tuple(data.shape) != tuple(param.shape):
            skipped.append(f"{name} checkpoint {tuple(data.shape)}, network {tuple(param.shape)}")
            continue
        param.set_data(Tensor(data, param.dtype))
        loaded.append(name)
    if not loaded:
        raise CheckpointError(f"{path}: no parameter of this network has its name and shape in the checkpoint "
                              f"({name_listing(skipped)})")
    return {"loaded": loaded, "skipped": skipped, "missing": [name for name in targets if name not in params],
            "unexpected": [key for key in params if key not in targets]}


def restore_training_state(train_cell: nn.Cell, optimizer: nn.Optimizer, path: str, steps_per_epoch: int) -> int:
    """Load a full training checkpoint written by train.py (network + optimizer state) into `train_cell`; returns
    the global step to continue from (the start of the epoch it was saved in). CheckpointError if it does not fit."""
    params = read_checkpoint(path, "--resume")
    saved_step = params.get("global_step", params.get("step_num"))
    for key in RUN_STATE_KEYS:
        params.pop(key, None)
    network_names = {p.name for p in train_cell.network.get_parameters()}
    missing_network = sorted(network_names - set(params))
    if missing_network:
        raise CheckpointError(f"--resume {path!r} is not a full Faster R-CNN checkpoint of this configuration: "
                              f"{len(missing_network)} network parameters missing "
                              f"(e.g. {name_listing(missing_network)}); "
                              "use --pre_trained for a backbone checkpoint")
    try:
        not_loaded, _ = ms.load_param_into_net(train_cell, params)
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(f"--resume {path!r} does not fit this network/configuration: {err}") from None
    not_loaded = [name for name in not_loaded if name not in RUN_STATE_KEYS]
    if not_loaded:
        print(f"WARNING: {path} has no optimizer state for {len(not_loaded)} entries (e.g. "
              f"{', '.join(not_loaded[:5])}); they restart from their initial values", file=sys.stderr, flush=True)
    if saved_step is None:
        print(f"WARNING: {path} records no global step; continuing from step 0 of the schedule",
              file=sys.stderr, flush=True)
        return 0
    step = int(np.asarray(saved_step.asnumpy()).reshape(-1)[0])
    start = step - step % steps_per_epoch
    if start != step:
        print(f"WARNING: {path} was saved at step {step}, inside an epoch of {steps_per_epoch} steps; "
              f"continuing from the start of that epoch (step {start})", file=sys.stderr, flush=True)
    optimizer.global_step.set_data(Tensor(np.array([start], np.int32)))
    print(f"Resumed from {path}: global step {start} (epoch {start // steps_per_epoch} done)", flush=True)
    return start
