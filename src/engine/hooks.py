"""Evaluation during training (train.py --run_eval=True --eval_interval=N): every N epochs, on rank 0, the current
weights are evaluated on the validation set with eval.py's evaluation (src/evaluation.py), AP and AP50 are logged,
and the best weights so far (by AP) are kept as `best.ckpt` in the checkpoint folder.

Files: `eval_<rank>.log` (beside `loss_<rank>.log`) gets one line per evaluation,
`<seconds since start> epoch: <e> global_step: <g> AP: <%.5f> AP50: <%.5f>` (src/plot_log.py reads it);
`eval_<rank>/` holds the last evaluation's mAP.log, per_class.csv and results json; `best.ckpt` is written as every
checkpoint of train.py (the training cell: network, optimizer state, `epoch_num`, `step_num`), atomically, plus
`eval_ap`, its AP, and like them takes its name only once the next step's loss, computed from its weights, passed the
divergence guard. A resumed run starts from the AP of the best.ckpt it finds; a new run replaces it.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable

import mindspore as ms
from mindspore import nn
from mindspore.train.callback import Callback

from src.errors import ConfigError
from src.evaluation import ACCLOG_NAME, fasterrcnn_eval, ground_truth_path, prepare_evaluation_set
from src.FasterRcnn import build_model
from src.network_checkpoint import PendingCheckpoint, match_checkpoint, read_checkpoint
from src.network_define import DivergenceGuard
from src.runtime import network_dtype, network_kernels
from src.util import SUMMARY_NAMES, load_ground_truth

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


class EvalCallback(Callback):
    """Every `interval` epochs (epoch numbers of the whole run, so a resumed run keeps the rhythm): figures =
    `evaluate(training cell)`, a line in `log_path`, and `best_path` rewritten when the AP beats `best_ap`
    (ties keep the earlier epoch), through a PendingCheckpoint promoted when `guard` accepts the next step (or at
    the end of training). An epoch whose last step the guard rejected is not evaluated (training stops).
    `initial_step`: the global step this Model.train call starts from (resume); `guard`: LossCallBack's
    DivergenceGuard (default: a NaN/Inf guard of this callback's own)."""

    def __init__(self, evaluate: Evaluate, interval: int, log_path: str, best_path: str,
                 best_ap: float = -math.inf, initial_step: int = 0, guard: DivergenceGuard | None = None):
        super().__init__()
        if interval <= 0:
            raise ValueError(f"interval must be a positive number of epochs, got {interval}")
        self.evaluate = evaluate
        self.interval = interval
        self.log_path = log_path
        self.best_path = best_path
        self.best_ap = best_ap
        self.initial_step = initial_step
        self._pending = PendingCheckpoint(guard)
        self.guard = self._pending.guard
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
    """eval.py's evaluation of cfg's validation set (eval_anno_path; for COCO by default coco_root's val split) into
    `out_dir`, on an inference network of its own that gets the training cell's current weights. Reads the ground
    truth and prepares the evaluation MindRecord now, so that a wrong path fails before training."""
    if cfg.dataset != "coco" and not cfg.eval_anno_path:
        raise ConfigError("--run_eval=True with TXT data (dataset != coco) needs --eval_anno_path: the validation "
                          "set's TXT label file (its images under image_dir)")
    eval_cfg = cfg.replace(anno_path=cfg.eval_anno_path)
    eval_cfg = eval_cfg.replace(anno_path=ground_truth_path(eval_cfg))
    coco = load_ground_truth(eval_cfg.anno_path, eval_cfg.dataset, eval_cfg.coco_classes)
    evaluation_set = prepare_evaluation_set(eval_cfg, coco)
    net = build_model(eval_cfg, kernels=network_kernels(cfg.device_target), dtype=network_dtype(cfg.device_target),
                      bn_training=False)
    net.set_train(False)

    def evaluate(train_cell: nn.Cell) -> dict:
        copy_network_weights(train_cell, net)
        return fasterrcnn_eval(eval_cfg, net, evaluation_set, os.path.join(out_dir, ACCLOG_NAME))

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
