"""Checkpoint files of the network: reading them (one reader, clear errors), loading one for evaluation or export,
writing them during training (atomically) and resuming training from one.

A checkpoint saved by the original (or by this port's train.py) holds the network's 321 parameters under the
original names, and possibly optimizer state (`moments.*`/`accum.*`, `learning_rate`, `global_step`, ...).
For inference every network parameter must be present with its shape (anything else is reported by name before any
work) and the optimizer state is ignored; values are cast to the network's dtype (an Ascend float16 checkpoint loads
on CPU/GPU). As `--pre_trained` (fine-tuning), every network parameter whose name and shape match is loaded, the
optimizer state never; only `--resume` restores it.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import sys

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, save_checkpoint
from mindspore.train.callback import Callback

from src.errors import CheckpointError, WriteError
from src.fileio import atomic_path, os_reason
from src.network_define import DivergenceGuard, StopOnSignal, split_outputs

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


def _checkpoint_order(path: str) -> tuple[int, int]:
    """(epoch, step in epoch) from a name `<prefix>-<epoch>_<step in epoch>.ckpt`, for ordering."""
    match = re.search(r"-(\d+)_(\d+)", os.path.basename(path))
    return (int(match.group(1)), int(match.group(2))) if match else (-1, -1)


PENDING_SUFFIX = ".pending.ckpt"


@contextlib.contextmanager
def _quiet_mindspore_log():
    """MindSpore's log silenced for the block: its CRITICAL line for a checkpoint it could not write says less than
    the one-line WriteError that follows."""
    from mindspore import log  # noqa: PLC0415  (its logger is created on first use)

    logger = log._get_logger()  # noqa: SLF001  (MindSpore offers no public handle on its logger)

    def quiet(record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def pending_path(final: str) -> str:
    """The hidden name a checkpoint waits under until its weights are accepted (`.<stem>.pending.ckpt`)."""
    folder, name = os.path.split(final)
    return os.path.join(folder, f".{os.path.splitext(name)[0]}{PENDING_SUFFIX}")


def non_finite_parameter(cell: nn.Cell) -> str | None:
    """The name of the first floating-point parameter of `cell` holding a NaN/Inf, None when all are finite."""
    for param in cell.get_parameters():
        value = param.asnumpy()
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            return param.name
    return None


class PendingCheckpoint:
    """One checkpoint of a training cell that waits for its weights to be accepted by `guard`: `write` saves it
    (atomically) under the hidden `pending_path` of its final name; `after_step` gives it its final name when the
    next step passed the guard and removes it when the guard rejected that step; `at_end` settles it when training
    ends. A killed run leaves at most a hidden `.pending.ckpt`, never a file that is taken for a checkpoint.

    `guard`: the DivergenceGuard that LossCallBack checks every step with; None: a NaN/Inf guard of this object's
    own, which `after_step` checks itself.
    """

    def __init__(self, guard: DivergenceGuard | None = None):
        self._owns_guard = guard is None
        self.guard = DivergenceGuard(spike_factor=0) if guard is None else guard
        self.final: str | None = None

    def write(self, cell: nn.Cell, final: str, append_dict: dict) -> None:
        """Save `cell` under the pending name of `final`; WriteError naming `final` and the operating system's
        reason when it cannot be written (disk full), nothing left behind."""
        self._discard()
        try:
            with atomic_path(pending_path(final)) as tmp, _quiet_mindspore_log():
                # save_checkpoint writes `<tmp without .ckpt>.tmp` first and renames it to `tmp`
                library_tmp = os.path.splitext(tmp)[0] + ".tmp"
                try:
                    save_checkpoint(cell, tmp, append_dict=append_dict)
                finally:
                    with contextlib.suppress(OSError):
                        os.remove(library_tmp)
        except WriteError as err:
            cause = err.__cause__
            reason = os_reason(cause) if isinstance(cause, OSError) else str(err)
            raise WriteError(f"could not write checkpoint {final}: {reason}") from cause
        self.final = final

    def after_step(self, global_step: int, net_outputs) -> str | None:
        """Settle the waiting checkpoint by the guard's verdict on step `global_step` (whose loss was computed from
        its weights); returns its final path when it was promoted, else None."""
        if self._owns_guard:
            self.guard.check(global_step, *split_outputs(net_outputs))
        return self.at_end()

    def at_end(self) -> str | None:
        """Promote the waiting checkpoint unless the guard has failed (then remove it); its final path or None."""
        final, self.final = self.final, None
        if final is None:
            return None
        if self.guard.failed:
            with contextlib.suppress(OSError):
                os.remove(pending_path(final))
            return None
        os.replace(pending_path(final), final)
        return final

    def _discard(self) -> None:
        if self.final is not None:
            with contextlib.suppress(OSError):
                os.remove(pending_path(self.final))
        self.final = None


class AtomicCheckpoint(Callback):
    """Save the training cell every `save_checkpoint_steps` steps and at the end, atomically, and only states whose
    weights `guard` accepted.

    File `<directory>/<prefix>-<epoch>_<step in epoch>.ckpt` (the original's ModelCheckpoint naming) holds every
    parameter of the training cell: the network under its original names, the optimizer state (`accum.*`,
    `stat.*`, `global_step`, `learning_rate`, `momentum`) plus `epoch_num` and `step_num` (global step).
    The state after step s is written under a hidden pending name (`PendingCheckpoint`) and gets its final name when
    the loss of step s + 1, which is computed from it, passes `guard` (the DivergenceGuard that LossCallBack checks
    every step with; by default a NaN/Inf guard of this callback's own); after the last step, when no loss follows,
    when its parameters are finite. A state with a NaN/Inf parameter is never saved and stops training. At most
    `keep_checkpoint_max` files with the prefix are kept in the directory (oldest removed); `latest` is the newest.
    When `stop` (a StopOnSignal) ended training, no state is written on the way out (a waiting one is still settled).
    """

    def __init__(self, directory: str, save_checkpoint_steps: int, keep_checkpoint_max: int,
                 prefix: str = CHECKPOINT_PREFIX, initial_step: int = 0, guard: DivergenceGuard | None = None,
                 stop: StopOnSignal | None = None):
        super().__init__()
        if save_checkpoint_steps <= 0:
            raise ValueError(f"save_checkpoint_steps must be positive, got {save_checkpoint_steps}")
        if keep_checkpoint_max <= 0:
            raise ValueError(f"keep_checkpoint_max must be positive, got {keep_checkpoint_max}")
        self.directory = directory
        self.save_checkpoint_steps = save_checkpoint_steps
        self.keep_checkpoint_max = keep_checkpoint_max
        self.prefix = prefix
        self.initial_step = initial_step
        self._pending = PendingCheckpoint(guard)
        self.guard = self._pending.guard
        self.latest: str | None = None
        self.stop = stop
        self._last_written_step: int | None = None
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, f".{prefix}-*{PENDING_SUFFIX}")):
            os.remove(stale)  # a killed run's state that was never accepted

    def on_train_step_end(self, run_context):
        cb_params = run_context.original_args()
        global_step = self.initial_step + cb_params.cur_step_num
        self._promoted(self._pending.after_step(global_step, cb_params.net_outputs))
        if not self.guard.failed and global_step % self.save_checkpoint_steps == 0:
            self._write(run_context)

    def on_train_end(self, run_context):
        cb_params = run_context.original_args()
        interrupted = self.stop is not None and self.stop.requested  # no new checkpoint on the way out
        if (not self.guard.failed and not interrupted and cb_params.cur_step_num
                and self._last_written_step != cb_params.cur_step_num):
            self._write(run_context)
        self._promoted(self._pending.at_end())  # the last state: no loss follows; its parameters were checked

    def _write(self, run_context) -> None:
        """Write the current state as pending; a non-finite parameter instead fails the guard and stops training."""
        cb_params = run_context.original_args()
        global_step = self.initial_step + cb_params.cur_step_num
        # The loss is computed before the update: the updated weights can be non-finite while it is finite.
        bad = non_finite_parameter(cb_params.train_network)
        if bad is not None:
            self.guard.reject(global_step, f"parameter {bad} is not finite after the update")
            print(f"ERROR: parameter {bad} is not finite after global step {global_step}; checkpoint not saved, "
                  "stopping training", file=sys.stderr, flush=True)
            run_context.request_stop()
            return
        step_in_epoch = (cb_params.cur_step_num - 1) % cb_params.batch_num + 1
        final = os.path.join(self.directory, f"{self.prefix}-{cb_params.cur_epoch_num}_{step_in_epoch}.ckpt")
        self._pending.write(cb_params.train_network, final,
                            {"epoch_num": cb_params.cur_epoch_num, "step_num": global_step})
        self._last_written_step = cb_params.cur_step_num

    def _promoted(self, final: str | None) -> None:
        if final is not None:
            self.latest = final
            self._remove_old()

    def _remove_old(self) -> None:
        saved = sorted(glob.glob(os.path.join(self.directory, f"{self.prefix}-*.ckpt")), key=_checkpoint_order)
        for path in saved[:-self.keep_checkpoint_max]:
            os.remove(path)
