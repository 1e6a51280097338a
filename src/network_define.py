"""Training wrappers: the loss, one training step with static loss scaling, and the training callbacks.

Cells (parameter names unchanged: the wrappers have no prefix of their own):
- `LossNet`: total loss = RPN loss + R-CNN loss (each already the configured weighted sum of cls + reg).
- `WithLossCell`: network + loss; returns (total_loss, the six loss terms without gradient) so that progress can
  show every term from the same forward pass.
- `TrainOneStepCell`: backward seeded with `sens` (the original's static loss scale; the optimizer is built with the
  same `loss_scale` and divides it back out), gradients averaged across devices when distributed, then the update.
  No overflow check, as the original; optional clipping of the gradients' global norm (added by this port for
  training from scratch; off by default, as the original).

`DivergenceGuard` decides whether a step's loss says the run has diverged (NaN/Inf, or a spike above a multiple of
the running median); `LossCallBack`: per-step progress on stdout and the original's `loss_<rank>.log` lines; stops
training at the first step the guard rejects, naming it; `StopOnSignal`: stops training after the current step on
SIGINT/SIGTERM. (Saving checkpoints during training, only from states the
guard accepted: src/network_checkpoint.py.)
"""
from __future__ import annotations

import math
import os
import signal
import statistics
import sys
import time
from collections import deque
from typing import NamedTuple

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.nn.wrap.grad_reducer import DistributedGradReducer
from mindspore.train.callback import Callback

from src.progress import format_duration


class LossTerms(NamedTuple):
    """The six outputs of FasterRcnnResnet50 in training mode, in its order."""
    rpn_loss: float  # rpn_loss_cls_weight * rpn_cls_loss + rpn_loss_reg_weight * rpn_reg_loss
    rcnn_loss: float  # rcnn_loss_cls_weight * rcnn_cls_loss + rcnn_loss_reg_weight * rcnn_reg_loss
    rpn_cls_loss: float
    rpn_reg_loss: float
    rcnn_cls_loss: float
    rcnn_reg_loss: float


LOSS_TERMS = LossTerms._fields


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


def split_outputs(net_outputs) -> tuple[float, LossTerms | None]:
    """(total loss, the six terms or None) from a training cell's outputs (a Tensor, or a (loss, terms) tuple)."""
    if isinstance(net_outputs, (tuple, list)):
        loss, terms = net_outputs[0], (net_outputs[1] if len(net_outputs) > 1 else None)
    else:
        loss, terms = net_outputs, None
    loss = float(np.asarray(loss.asnumpy() if isinstance(loss, Tensor) else loss).reshape(-1)[0])
    if terms is not None:
        values = np.asarray(terms.asnumpy() if isinstance(terms, Tensor) else terms, np.float64).reshape(-1)
        terms = LossTerms(*(float(v) for v in values)) if len(values) == len(LOSS_TERMS) else None
    return loss, terms


def outputs_are_finite(loss: float, terms: LossTerms | None) -> bool:
    """Whether the total loss and every loss term are finite (not NaN/Inf)."""
    return math.isfinite(loss) and (terms is None or all(math.isfinite(term) for term in terms))


LOSS_MEDIAN_WINDOW = 50  # accepted losses the spike bound's median is taken over


class DivergenceGuard:
    """Whether each training step's loss is acceptable: finite (total and every term) and, with spike_factor > 0,
    at most spike_factor times the median of the last `window` accepted total losses (the first step has no bound).

    Checked in step order through `check`; after the first rejection `failed_step` (global step) and `reason` are
    set and every later step is rejected too. `accepted_step` is the newest global step that passed. The loss of
    step s is computed from the weights after step s - 1, so those weights are known good once step s passed.
    """

    def __init__(self, spike_factor: float, window: int = LOSS_MEDIAN_WINDOW):
        if not spike_factor >= 0:
            raise ValueError(f"spike_factor must be >= 0 (0: NaN/Inf only), got {spike_factor!r}")
        self.spike_factor = float(spike_factor)
        self._recent: deque[float] = deque(maxlen=window)
        self.failed_step: int | None = None
        self.accepted_step: int | None = None
        self.reason = ""

    @property
    def failed(self) -> bool:
        return self.failed_step is not None

    def check(self, global_step: int, loss: float, terms: LossTerms | None = None) -> bool:
        """Record step `global_step`'s total loss (and terms); False (and failed_step, reason) when rejected."""
        if self.failed:
            return False
        if not outputs_are_finite(loss, terms):
            self.reason = f"non-finite loss (total_loss={loss})"
        elif self.spike_factor and self._recent and loss > self.spike_factor * statistics.median(self._recent) > 0:
            self.reason = (f"loss spike: total_loss={loss:.6g} > {self.spike_factor:g} x the median "
                           f"{statistics.median(self._recent):.6g} of the last {len(self._recent)} steps "
                           "(loss_spike_factor)")
        else:
            self._recent.append(loss)
            self.accepted_step = global_step
            return True
        self.failed_step = global_step
        return False

    def reject(self, global_step: int, reason: str) -> None:
        """Fail the run at `global_step` for a reason found outside the loss (a non-finite parameter)."""
        if not self.failed:
            self.failed_step, self.reason = global_step, reason


class LossCallBack(Callback):
    """Progress and loss log; stops training at the first step `guard` rejects (NaN/Inf, loss spike).

    Every step appends `<whole seconds since start> epoch: <e> step: <s> total_loss: <%.5f>` to
    `<log_dir>/loss_<rank_id>.log` (the original's format; `step` counts within the epoch). Every `per_print_times`
    steps (0: never) prints epoch, step, the loss terms, seconds per step and the remaining time to stdout.

    `initial_step`: global step the run starts from (resume), for messages only; `last_epoch`: the epoch the whole
    run ends with, when this `Model.train` call is only a part of it (shown as the epoch total, ETA to its end).
    `guard`: the DivergenceGuard every step is checked with (default: NaN/Inf only); after training its
    `failed_step` is the step that stopped it (None if none did).
    """

    def __init__(self, per_print_times: int = 1, rank_id: int = 0, log_dir: str = ".", initial_step: int = 0,
                 last_epoch: int | None = None, guard: DivergenceGuard | None = None):
        super().__init__()
        if not isinstance(per_print_times, int) or per_print_times < 0:
            raise ValueError(f"per_print_times must be an int >= 0, got {per_print_times!r}")
        self._per_print_times = per_print_times
        self.rank_id = rank_id
        self.log_path = os.path.join(log_dir, f"loss_{rank_id}.log")
        self.initial_step = initial_step
        self.last_epoch = last_epoch
        self.guard = guard if guard is not None else DivergenceGuard(spike_factor=0)
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
            if terms is not None:
                parts.append(" ".join(f"{name}: {value:.5f}" for name, value in list(terms._asdict().items())[2:]))
            per_step = self.seconds_per_step()
            remaining = (last_epoch * steps_per_epoch - global_step if self.last_epoch
                         else run_steps - cb_params.cur_step_num)
            parts.append(f"{per_step:.2f} s/step ETA {format_duration(per_step * remaining)}")
            print(" | ".join(parts), flush=True)

        if not self.guard.check(global_step, loss, terms):
            print(f"ERROR: {self.guard.reason} at global step {global_step} (epoch {epoch}, step {step_in_epoch}); "
                  "stopping training. The weights this loss was computed from and every later state are not "
                  "saved.", file=sys.stderr, flush=True)
            run_context.request_stop()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal(Callback):
    """While installed (`with stop:` around Model.train), SIGINT and SIGTERM ask training to stop at the end of the
    current step (`signum` records the first one); a second signal ends the process at once (status 128 + signal).
    Put it last among the callbacks: the others finish the step (its checkpoint written) before training stops."""

    def __init__(self):
        super().__init__()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            os._exit(128 + signum)  # the user insists: leave now (pending checkpoints are hidden files)
        self.signum = signum

    def __enter__(self) -> StopOnSignal:
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) != signal.SIG_IGN:  # a run started to ignore it (nohup, `&`) keeps doing so
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def on_train_step_end(self, run_context):
        if self.requested:
            run_context.request_stop()

    @staticmethod
    def name(signum: int) -> str:
        return signal.Signals(signum).name
