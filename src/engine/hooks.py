"""Every callback of a training run (train.py), in the order they are given to `Model.train`.

- `DivergenceGuard` (not a callback: the verdict they share) decides whether a step's loss says the run has
  diverged (NaN/Inf, or a spike above a multiple of the running median of the accepted losses).
- `LossCallBack`: per-step progress on stdout and the original's `loss_<rank>.log` lines; stops training at the
  first step the guard rejects, naming it.
- `AtomicCheckpoint` (through `PendingCheckpoint`): the training cell saved every `save_checkpoint_steps` steps and
  at the end, atomically, and only states whose weights the guard accepted.
- `EvalCallback` (train.py --run_eval=True --eval_interval=N): every N epochs, on rank 0, the current weights are
  evaluated on the validation set with eval.py's evaluation (src/evaluation/evaluator.py), AP and AP50 are logged,
  and the best weights so far (by AP) are kept as `best.ckpt` in the checkpoint folder. Files: `eval_<rank>.log`
  (beside `loss_<rank>.log`) gets one line per evaluation,
  `<seconds since start> epoch: <e> global_step: <g> AP: <%.5f> AP50: <%.5f>` (src/tools/plot_log.py reads it);
  `eval_<rank>/` holds the last evaluation's files (as eval.py's: mAP.log, per_class.csv, confusion matrix, PR
  curves, results json); `best.ckpt` is written as every checkpoint of train.py (the training cell: network,
  optimizer state, `epoch_num`, `step_num`), atomically,
  plus `eval_ap`, its AP, and like them takes its name only once the next step's loss, computed from its weights,
  passed the divergence guard. A resumed run starts from the AP of the best.ckpt it finds; a new run replaces it.
- `StopOnSignal`: stops training after the current step on SIGINT/SIGTERM (last, so that the others finish the
  step first).
"""
from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import re
import signal
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable

import mindspore as ms
import numpy as np
from mindspore import nn, save_checkpoint
from mindspore.train.callback import Callback

from src.checkpoint.detector import CHECKPOINT_PREFIX, match_checkpoint, read_checkpoint
from src.data.settings import DataSettings
from src.evaluation.evaluator import (
    ACCLOG_NAME,
    EvaluationSettings,
    fasterrcnn_eval,
    ground_truth_path,
    prepare_evaluation_set,
)
from src.FasterRcnn import build_model
from src.infra.errors import ConfigError, WriteError
from src.infra.fileio import atomic_path, os_reason
from src.infra.progress import format_duration
from src.infra.runtime import network_dtype, network_kernels
from src.network_define import LossTerms, split_outputs
from src.util import SUMMARY_NAMES, load_ground_truth


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
            # save_checkpoint writes `<tmp without .ckpt>.tmp` first: atomic_path removes it on failure
            with atomic_path(pending_path(final)) as tmp, _quiet_mindspore_log():
                save_checkpoint(cell, tmp, append_dict=append_dict)
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


class GuardedCallback(Callback):
    """A callback whose checkpoint waits in a `PendingCheckpoint` until `guard` (LossCallBack's DivergenceGuard;
    default: a NaN/Inf guard of the callback's own) accepts the next step; `initial_step`: the global step this
    Model.train call starts from (resume)."""

    def __init__(self, initial_step: int = 0, guard: DivergenceGuard | None = None):
        super().__init__()
        self.initial_step = initial_step
        self._pending = PendingCheckpoint(guard)
        self.guard = self._pending.guard


class AtomicCheckpoint(GuardedCallback):
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
        if save_checkpoint_steps <= 0:
            raise ValueError(f"save_checkpoint_steps must be positive, got {save_checkpoint_steps}")
        if keep_checkpoint_max <= 0:
            raise ValueError(f"keep_checkpoint_max must be positive, got {keep_checkpoint_max}")
        super().__init__(initial_step, guard)
        self.directory, self.prefix, self.stop = directory, prefix, stop
        self.save_checkpoint_steps, self.keep_checkpoint_max = save_checkpoint_steps, keep_checkpoint_max
        self.latest: str | None = None  # the newest checkpoint that took its name
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


BEST_NAME = "best.ckpt"
BEST_AP_KEY = "eval_ap"  # best.ckpt's entry holding its AP

# (the training cell) -> the 12 COCO figures of its network's current weights
Evaluate = Callable[[nn.Cell], dict]


def best_ap_of(path: str) -> float:
    """The AP recorded in a best.ckpt (-inf when the file does not exist or records none)."""
    if not os.path.isfile(path):
        return -math.inf
    entry = read_checkpoint(path).get(BEST_AP_KEY)
    return float(entry.asnumpy().reshape(-1)[0]) if entry is not None else -math.inf


class EvalCallback(GuardedCallback):
    """Every `interval` epochs (epoch numbers of the whole run, so a resumed run keeps the rhythm): figures =
    `evaluate(training cell)`, a line in `log_path`, and `best_path` rewritten when the AP beats `best_ap`
    (ties keep the earlier epoch), through a PendingCheckpoint promoted when `guard` accepts the next step (or at
    the end of training). An epoch whose last step the guard rejected is not evaluated (training stops).
    `initial_step`: the global step this Model.train call starts from (resume); `guard`: LossCallBack's
    DivergenceGuard (default: a NaN/Inf guard of this callback's own)."""

    def __init__(self, evaluate: Evaluate, interval: int, log_path: str, best_path: str,
                 best_ap: float = -math.inf, initial_step: int = 0, guard: DivergenceGuard | None = None):
        if interval <= 0:
            raise ValueError(f"interval must be a positive number of epochs, got {interval}")
        super().__init__(initial_step, guard)
        self.evaluate = evaluate
        self.interval = interval
        self.log_path = log_path
        self.best_path = best_path
        self.best_ap = best_ap
        self._pending_ap = -math.inf
        self._start = time.time()

    def on_train_step_end(self, run_context):
        cb_params = run_context.original_args()
        self._promoted(self._pending.after_step(self.initial_step + cb_params.cur_step_num, cb_params.net_outputs))

    def on_train_end(self, run_context):
        self._promoted(self._pending.at_end())

    def _promoted(self, final: str | None) -> None:
        if final is not None:
            self.best_ap = self._pending_ap
            print(f"{self.best_path}: the weights of AP {self.best_ap:.4f} passed the next step's check", flush=True)

    def on_train_epoch_end(self, run_context):
        cb_params = run_context.original_args()
        epoch = cb_params.cur_epoch_num
        if epoch % self.interval or self.guard.failed:
            return
        global_step = self.initial_step + cb_params.cur_step_num
        print(f"Evaluating the weights of epoch {epoch} (global step {global_step}) ...", flush=True)
        figures = self.evaluate(cb_params.train_network)
        ap, ap50 = figures[SUMMARY_NAMES[0]], figures[SUMMARY_NAMES[1]]
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"{int(time.time() - self._start)} epoch: {epoch} global_step: {global_step} "
                      f"AP: {ap:.5f} AP50: {ap50:.5f}\n")
        note = f"best so far: AP {self.best_ap:.4f}" if self.best_ap > -math.inf else "first evaluation"
        if ap > self.best_ap:
            self._pending.write(cb_params.train_network, self.best_path,
                                {"epoch_num": epoch, "step_num": global_step, BEST_AP_KEY: ap})
            self._pending_ap = ap
            note = f"new best ({note}), to be saved as {self.best_path} once the next step passes"
        print(f"epoch {epoch} evaluation: AP {ap:.4f} AP50 {ap50:.4f}; {note}", flush=True)


def copy_network_weights(train_cell: nn.Cell, net: nn.Cell) -> None:
    """Load the current values of the training cell's network parameters into `net` (same names, `net`'s dtypes)."""
    matched = match_checkpoint(net, train_cell.parameters_dict(), "the training network")
    ms.load_param_into_net(net, matched, strict_load=True)


def training_evaluator(cfg, out_dir: str) -> Evaluate:
    """eval.py's evaluation of cfg's validation set (eval_anno_path; for COCO by default val_anno_path, or coco_root's
    val split) into `out_dir`, on an inference network of its own that gets the training cell's current weights.
    Reads the ground truth and prepares the evaluation MindRecord now, so that a wrong path fails before training."""
    if cfg.dataset != "coco" and not cfg.eval_anno_path:
        raise ConfigError("--run_eval=True with TXT data (dataset != coco) needs --eval_anno_path: the validation "
                          "set's TXT label file (its images under image_dir)")
    eval_cfg = cfg.replace(anno_path=cfg.eval_anno_path)
    data = DataSettings.from_config(eval_cfg)
    anno_path = ground_truth_path(data)
    coco = load_ground_truth(anno_path, data.dataset, data.classes)
    evaluation_set = prepare_evaluation_set(data, coco, anno_path)
    settings = EvaluationSettings.from_config(eval_cfg)
    net = build_model(eval_cfg, kernels=network_kernels(cfg.device_target), dtype=network_dtype(cfg.device_target),
                      bn_training=False)
    net.set_train(False)

    def evaluate(train_cell: nn.Cell) -> dict:
        copy_network_weights(train_cell, net)
        return fasterrcnn_eval(settings, net, evaluation_set, os.path.join(out_dir, ACCLOG_NAME))

    return evaluate


def evaluation_callback(cfg, rank: int, checkpoint_dir: str, initial_step: int, resuming: bool,
                        guard: DivergenceGuard | None = None) -> EvalCallback:
    """The EvalCallback of train.py --run_eval: log `./eval_<rank>.log`, outputs in `./eval_<rank>/`, best.ckpt in
    `checkpoint_dir`; a resumed run continues from the AP of the best.ckpt there."""
    if cfg.eval_interval <= 0:
        raise ConfigError(f"eval_interval must be a positive number of epochs, got {cfg.eval_interval}")
    best_path = os.path.join(checkpoint_dir, BEST_NAME)
    best_ap = best_ap_of(best_path) if resuming else -math.inf
    if resuming and best_ap > -math.inf:
        print(f"--run_eval: {best_path} has AP {best_ap:.4f}; it is replaced only by a better epoch", flush=True)
    elif os.path.isfile(best_path):
        print(f"WARNING: {best_path} of an earlier run will be replaced by this run's best", file=sys.stderr,
              flush=True)
    return EvalCallback(training_evaluator(cfg, f"eval_{rank}"), cfg.eval_interval, f"eval_{rank}.log",
                        best_path, best_ap, initial_step, guard)
