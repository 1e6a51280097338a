"""Training wrappers: the loss, one training step with static loss scaling, and the training callbacks.

Cells (parameter names unchanged: the wrappers have no prefix of their own):
- `LossNet`: total loss = RPN loss + R-CNN loss (each already the configured weighted sum of cls + reg).
- `WithLossCell`: network + loss; returns (total_loss, the six loss terms without gradient) so that progress can
  show every term from the same forward pass.
- `TrainOneStepCell`: backward seeded with `sens` (the original's static loss scale; the optimizer is built with the
  same `loss_scale` and divides it back out), gradients averaged across devices when distributed, then the update.
  No overflow check, as the original; optional clipping of the gradients' global norm (added by this port for
  training from scratch; off by default, as the original).

Callbacks:
- `LossCallBack`: per-step progress on stdout and the original's `loss_<rank>.log` lines; stops training on a
  NaN/Inf loss, naming the step.
- `AtomicCheckpoint`: saves the whole training cell (network, optimizer state, global step) every N steps, writing
  to a temporary file and renaming it, keeping at most `keep_checkpoint_max` files; never saves a non-finite state.
"""
from __future__ import annotations

import glob
import math
import os
import re
import sys
import time

import numpy as np
from mindspore import Tensor, nn, ops, save_checkpoint
from mindspore import dtype as mstype
from mindspore.nn.wrap.grad_reducer import DistributedGradReducer
from mindspore.train.callback import Callback

# Names of the six outputs of FasterRcnnResnet50 in training mode, in order.
LOSS_TERMS = ("rpn_loss", "rcnn_loss", "rpn_cls_loss", "rpn_reg_loss", "rcnn_cls_loss", "rcnn_reg_loss")
CHECKPOINT_PREFIX = "faster_rcnn"
# Sub-directory of the checkpoint directory where a checkpoint is written before it is renamed into place.
PARTIAL_DIR = ".partial"


class LossNet(nn.Cell):
    """Total loss from the network's six training outputs: rpn_loss + rcnn_loss (the others are their parts)."""

    def construct(self, rpn_loss, rcnn_loss, rpn_cls_loss, rpn_reg_loss, rcnn_cls_loss, rcnn_reg_loss):
        return rpn_loss + rcnn_loss


class WithLossCell(nn.Cell):
    """Network + loss. Returns (total_loss () float32, terms (6,) float32 in LOSS_TERMS order, no gradient)."""

    def __init__(self, network: nn.Cell, loss_fn: nn.Cell):
        super().__init__(auto_prefix=False)
        self._backbone = network
        self._loss_fn = loss_fn

    def construct(self, img, img_shape, gt_bboxes, gt_labels, gt_valids):
        outputs = self._backbone(img, img_shape, gt_bboxes, gt_labels, gt_valids)
        # float32 and shape (): the loss-scale seed is a float32 scalar whatever precision the network runs in.
        loss = ops.cast(self._loss_fn(*outputs), mstype.float32).reshape(())
        terms = ops.stack([ops.cast(term, mstype.float32).reshape(()) for term in outputs])
        return loss, ops.stop_gradient(terms)

    @property
    def backbone_network(self) -> nn.Cell:
        return self._backbone


class TrainOneStepCell(nn.Cell):
    """One step: forward, backward seeded with `sens`, optional all-reduce (mean) of gradients, optimizer update.

    Args:
        network: a WithLossCell (outputs (loss, terms)).
        optimizer: built over network.trainable_params() with loss_scale == sens.
        sens: static loss scale (the original passes config.loss_scale = 256).
        reduce_flag: average gradients over `degree` devices (data parallel).
        clip_norm: if > 0, scale the (averaged) gradients down so that their global L2 norm, in loss units (i.e.
            before the loss scale), is at most clip_norm. 0: no clipping (the original).
    Returns (loss () float32, terms (6,) float32).
    """

    def __init__(self, network: nn.Cell, optimizer: nn.Optimizer, sens: float = 1.0, reduce_flag: bool = False,
                 mean: bool = True, degree: int | None = None, clip_norm: float = 0.0):
        super().__init__(auto_prefix=False)
        if clip_norm < 0:
            raise ValueError(f"clip_norm must be >= 0 (0: no clipping), got {clip_norm}")
        self.clip = clip_norm > 0
        # The gradients still carry the loss scale here: clip them at the scaled norm.
        self.scaled_clip_norm = float(clip_norm) * float(sens)
        self.network = network
        self.network.set_grad()
        self.weights = optimizer.parameters
        self.optimizer = optimizer
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        # One seed per output: `sens` for the loss, zeros for the (gradient-free) terms.
        self.sens = (Tensor(sens, mstype.float32), Tensor(np.zeros(len(LOSS_TERMS), np.float32)))
        self.reduce_flag = reduce_flag
        if reduce_flag:
            self.grad_reducer = DistributedGradReducer(optimizer.parameters, mean, degree)

    def construct(self, img, img_shape, gt_bboxes, gt_labels, gt_valids):
        loss, terms = self.network(img, img_shape, gt_bboxes, gt_labels, gt_valids)
        grads = self.grad(self.network, self.weights)(img, img_shape, gt_bboxes, gt_labels, gt_valids, self.sens)
        if self.reduce_flag:
            grads = self.grad_reducer(grads)
        if self.clip:
            grads = ops.clip_by_global_norm(grads, self.scaled_clip_norm)
        return ops.depend(loss, self.optimizer(grads)), terms


def split_outputs(net_outputs) -> tuple[float, np.ndarray | None]:
    """(total loss, terms or None) from a training cell's outputs (a Tensor, or a (loss, terms) tuple)."""
    if isinstance(net_outputs, (tuple, list)):
        loss, terms = net_outputs[0], (net_outputs[1] if len(net_outputs) > 1 else None)
    else:
        loss, terms = net_outputs, None
    loss = float(np.asarray(loss.asnumpy() if isinstance(loss, Tensor) else loss).reshape(-1)[0])
    if terms is not None:
        terms = np.asarray(terms.asnumpy() if isinstance(terms, Tensor) else terms, np.float64).reshape(-1)
    return loss, terms


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class LossCallBack(Callback):
    """Progress and loss log; stops training on a NaN/Inf loss.

    Every step appends `<whole seconds since start> epoch: <e> step: <s> total_loss: <%.5f>` to
    `<log_dir>/loss_<rank_id>.log` (the original's format; `step` counts within the epoch). Every `per_print_times`
    steps (0: never) prints epoch, step, the loss terms, seconds per step and the remaining time to stdout.

    `initial_step`: global step the run starts from (resume), for messages only; `last_epoch`: the epoch the whole
    run ends with, when this `Model.train` call is only a part of it (shown as the epoch total, ETA to its end).
    After training, `nonfinite_step` is the global step whose loss was NaN/Inf (None if none was).
    """

    def __init__(self, per_print_times: int = 1, rank_id: int = 0, log_dir: str = ".", initial_step: int = 0,
                 last_epoch: int | None = None):
        super().__init__()
        if not isinstance(per_print_times, int) or per_print_times < 0:
            raise ValueError(f"per_print_times must be an int >= 0, got {per_print_times!r}")
        self._per_print_times = per_print_times
        self.rank_id = rank_id
        self.log_path = os.path.join(log_dir, f"loss_{rank_id}.log")
        self.initial_step = initial_step
        self.last_epoch = last_epoch
        self.nonfinite_step: int | None = None
        self._start = time.time()
        self._last_step_end: float | None = None
        self._first_step_seconds: float | None = None
        self._steady_seconds: list[float] = []

    def on_train_begin(self, run_context):
        self._last_step_end = time.monotonic()

    def seconds_per_step(self) -> float | None:
        """Mean step time after the first step (which includes graph compilation); None before any step."""
        if self._steady_seconds:
            return sum(self._steady_seconds) / len(self._steady_seconds)
        return self._first_step_seconds

    def on_train_step_end(self, run_context):
        cb_params = run_context.original_args()
        now = time.monotonic()
        if self._last_step_end is not None:
            if self._first_step_seconds is None:
                self._first_step_seconds = now - self._last_step_end
            else:
                self._steady_seconds.append(now - self._last_step_end)
        self._last_step_end = now

        loss, terms = split_outputs(cb_params.net_outputs)
        steps_per_epoch = cb_params.batch_num
        step_in_epoch = (cb_params.cur_step_num - 1) % steps_per_epoch + 1
        epoch = cb_params.cur_epoch_num
        global_step = self.initial_step + cb_params.cur_step_num
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"{int(time.time() - self._start)} epoch: {epoch} step: {step_in_epoch} "
                      f"total_loss: {loss:.5f}\n")

        run_steps = cb_params.epoch_num * steps_per_epoch
        if self._per_print_times and (cb_params.cur_step_num % self._per_print_times == 0
                                      or cb_params.cur_step_num == run_steps):
            last_epoch = self.last_epoch or self.initial_step // steps_per_epoch + cb_params.epoch_num
            parts = [f"epoch: {epoch}/{last_epoch} step: {step_in_epoch}/{steps_per_epoch}",
                     f"global step: {global_step}", f"total_loss: {loss:.5f}"]
            if terms is not None and len(terms) == len(LOSS_TERMS):
                parts.append(" ".join(f"{name}: {value:.5f}" for name, value in zip(LOSS_TERMS[2:], terms[2:],
                                                                                      strict=True)))
            per_step = self.seconds_per_step()
            remaining = (last_epoch * steps_per_epoch - global_step if self.last_epoch
                         else run_steps - cb_params.cur_step_num)
            parts.append(f"{per_step:.2f} s/step ETA {_format_duration(per_step * remaining)}")
            print(" | ".join(parts), flush=True)

        if not math.isfinite(loss) or (terms is not None and not np.all(np.isfinite(terms))):
            self.nonfinite_step = global_step
            print(f"ERROR: non-finite loss (total_loss={loss}) at global step {global_step} "
                  f"(epoch {epoch}, step {step_in_epoch}); stopping training. The parameters after this step are "
                  "not saved; resume from the last checkpoint written before it.", file=sys.stderr, flush=True)
            run_context.request_stop()


def _checkpoint_order(path: str) -> tuple[int, int]:
    """(epoch, step in epoch) from a name `<prefix>-<epoch>_<step in epoch>.ckpt`, for ordering."""
    match = re.search(r"-(\d+)_(\d+)", os.path.basename(path))
    return (int(match.group(1)), int(match.group(2))) if match else (-1, -1)


class AtomicCheckpoint(Callback):
    """Save the training cell every `save_checkpoint_steps` steps and at the end, atomically.

    File `<directory>/<prefix>-<epoch>_<step in epoch>.ckpt` (the original's ModelCheckpoint naming) holds every
    parameter of the training cell: the network under its original names, the optimizer state (`accum.*`,
    `stat.*`, `global_step`, `learning_rate`, `momentum`) plus `epoch_num` and `step_num` (global step).
    It is written under `<directory>/.partial/` and renamed into place, so an interrupted save never leaves a
    truncated `.ckpt` under a final name. At most `keep_checkpoint_max` files with the prefix are kept in the
    directory (oldest removed). A step whose loss is NaN/Inf is never saved, nor anything after it.
    """

    def __init__(self, directory: str, save_checkpoint_steps: int, keep_checkpoint_max: int,
                 prefix: str = CHECKPOINT_PREFIX, initial_step: int = 0):
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
        self.latest: str | None = None
        self._last_saved_step: int | None = None
        self._state_is_finite = True
        os.makedirs(os.path.join(directory, PARTIAL_DIR), exist_ok=True)

    def on_train_step_end(self, run_context):
        cb_params = run_context.original_args()
        loss, terms = split_outputs(cb_params.net_outputs)
        if not math.isfinite(loss) or (terms is not None and not np.all(np.isfinite(terms))):
            self._state_is_finite = False
        if self._state_is_finite and (self.initial_step + cb_params.cur_step_num) % self.save_checkpoint_steps == 0:
            self.save(cb_params)

    def on_train_end(self, run_context):
        cb_params = run_context.original_args()
        if self._state_is_finite and cb_params.cur_step_num and self._last_saved_step != cb_params.cur_step_num:
            self.save(cb_params)

    def save(self, cb_params) -> str | None:
        """Write the checkpoint of the current step; returns its path, or None if a parameter is not finite."""
        global_step = self.initial_step + cb_params.cur_step_num
        # A finite loss can come with parameters the update has just made non-finite (the loss is computed
        # before the update): check them, so that a saved checkpoint is always usable.
        for param in cb_params.train_network.get_parameters():
            value = param.asnumpy()
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                self._state_is_finite = False
                print(f"ERROR: parameter {param.name} is not finite after global step {global_step}; "
                      "checkpoint not saved", file=sys.stderr, flush=True)
                return None
        step_in_epoch = (cb_params.cur_step_num - 1) % cb_params.batch_num + 1
        name = f"{self.prefix}-{cb_params.cur_epoch_num}_{step_in_epoch}.ckpt"
        partial = os.path.join(self.directory, PARTIAL_DIR, name)
        final = os.path.join(self.directory, name)
        save_checkpoint(cb_params.train_network, partial,
                        append_dict={"epoch_num": cb_params.cur_epoch_num, "step_num": global_step})
        os.replace(partial, final)
        self.latest = final
        self._last_saved_step = cb_params.cur_step_num
        self._remove_old()
        return final

    def _remove_old(self) -> None:
        saved = sorted(glob.glob(os.path.join(self.directory, f"{self.prefix}-*.ckpt")), key=_checkpoint_order)
        for path in saved[:-self.keep_checkpoint_max]:
            os.remove(path)
