"""The trainer train.py runs: checks before any work, the output folders a run holds, data parallelism, the
training data set, the network with --pre_trained loaded, the optimizer and training cell, the callbacks of a phase
(src/engine/hooks.py) and the fit, with one line naming the last good checkpoint when training stops early.

A run is one or two phases (`bn_phases`: with resnet_bn_training_epochs, BatchNorm on batch statistics first, then
on the moving statistics); each phase builds its network and continues from the previous phase's last checkpoint.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import NamedTuple

import mindspore as ms
from mindspore import Tensor
from mindspore import dtype as mstype
from mindspore.communication import get_group_size, get_rank, init
from mindspore.nn import SGD
from mindspore.train import Model
from mindspore.train.callback import TimeMonitor

from src.checkpoint.backbone import backbone_shapes, check_backbone_coverage, load_backbone_params
from src.checkpoint.detector import (
    CHECKPOINT_PREFIX,
    SHOWN_NAMES,
    is_detector_checkpoint,
    load_matching_parameters,
    read_checkpoint,
)
from src.data.anchor_fit import FitSettings
from src.data.settings import DataSettings
from src.data.training_boxes import training_mindrecord
from src.data.transforms import PreprocessSettings
from src.dataset import PipelineSettings, create_fasterrcnn_dataset
from src.engine.hooks import AtomicCheckpoint, DivergenceGuard, LossCallBack, StopOnSignal, evaluation_callback
from src.FasterRcnn import build_model
from src.infra.errors import CheckpointError, ConfigError, DataError, TrainingError, WriteError
from src.infra.fileio import MIN_FREE_MB_ENV, check_output_dir, min_free_bytes
from src.infra.interrupts import TrainingInterrupted
from src.infra.run_lock import holding
from src.infra.runtime import network_dtype, network_kernels
from src.lr_schedule import describe_lr, dynamic_lr, global_batch_lr
from src.model_utils.config import warn
from src.network_define import LossNet, TrainOneStepCell, WithLossCell

MINDRECORD_PREFIX = "FasterRcnn.mindrecord"
NO_WEIGHTS = ("", "none")
PROGRAM = "train.py"
# Parameters of the network with the original's layer sizes: 42,266,063 + 5,125 per class (the R-CNN's cls_scores,
# 1024 + 1 per class, and reg_scores, 4 x (1024 + 1)); COCO's 81 classes: 42,681,188 (checked against the built
# network in tests/test_faults_train.py).
NETWORK_PARAMETERS_BASE, NETWORK_PARAMETERS_PER_CLASS = 42_266_063, 5_125


def checkpoint_bytes(num_classes: int) -> int:
    """Upper bound of a checkpoint's size: every parameter (float32) plus SGD's two states (accum, stat) of each
    trainable one, 3 x 4 bytes per parameter (COCO: 488 MB)."""
    return (NETWORK_PARAMETERS_BASE + NETWORK_PARAMETERS_PER_CLASS * num_classes) * 3 * 4


def checkpoint_min_free(cfg) -> int:
    """Free space the checkpoint folder needs at start: one checkpoint, or $FASTER_RCNN_MIN_FREE_MB when set."""
    return min_free_bytes() if MIN_FREE_MB_ENV in os.environ else checkpoint_bytes(int(cfg.num_classes))


def pretrained_path(cfg) -> str:
    """The backbone checkpoint to start from ('' for none); on ModelArts under load_path."""
    path = cfg.pre_trained.strip()
    if path.lower() in NO_WEIGHTS:
        return ""
    return os.path.join(cfg.load_path, path) if cfg.enable_modelarts else path


def checkpoint_root(cfg) -> str:
    """Where `ckpt_<rank>/` folders go: save_checkpoint_path, or output_path on ModelArts."""
    return cfg.output_path if cfg.enable_modelarts else cfg.save_checkpoint_path


def check_request(cfg) -> None:
    """Fail before the slow work on a checkpoint path that does not exist or does not fit, an output folder that
    cannot be written or lacks space, or a value training cannot use."""
    if not cfg.loss_spike_factor >= 0:
        raise ConfigError(f"loss_spike_factor={cfg.loss_spike_factor}: expected a number >= 0 (0: stop on NaN/Inf "
                          "only)")
    pretrained = pretrained_path(cfg)
    if pretrained and not os.path.isfile(pretrained):
        raise CheckpointError(f"--pre_trained {pretrained!r}: no such file (use 'none' to train from scratch)")
    PreprocessSettings.from_config(cfg)  # the augmentation values
    check_output_dir(os.getcwd(), "train.py's working folder (loss_<rank>.log)")
    if writes_checkpoint_folder(cfg):
        check_output_dir(checkpoint_root(cfg), "save_checkpoint_path", min_free=checkpoint_min_free(cfg))
    # an unreadable file fails here, before the MindRecord is built (they are read again when training starts)
    if pretrained and not cfg.resume.strip():
        check_backbone_coverage(read_checkpoint(pretrained, "--pre_trained"), pretrained, backbone_shapes(cfg))
    elif pretrained:
        read_checkpoint(pretrained, "--pre_trained")
    if cfg.resume.strip():
        read_checkpoint(cfg.resume, "--resume")


def writes_checkpoint_folder(cfg, rank: int = 0) -> bool:
    """Whether this rank writes into `ckpt_<rank>/` (checkpoints, or best.ckpt of the evaluation on rank 0)."""
    return saves_checkpoints(cfg, rank) or (bool(cfg.run_eval) and rank == 0)


def checkpoint_folder(cfg, rank: int) -> str:
    return os.path.join(checkpoint_root(cfg), f"ckpt_{rank}")


def held_outputs(cfg, rank: int) -> contextlib.AbstractContextManager[None]:
    """Hold this rank's output places for a block (src/infra/run_lock.py `holding`): the working folder (lock
    `train-rank<rank>`: msrun's ranks share it) and the checkpoint folder; OutputError naming the live run (its pid)
    that holds one."""
    places = [(os.getcwd(), f"train-rank{rank}")]
    if writes_checkpoint_folder(cfg, rank):
        places.append((checkpoint_folder(cfg, rank), "train"))
    return holding(places, PROGRAM)


def set_up_parallel(cfg) -> tuple[int, int]:
    """(rank, device_num); data parallel with averaged gradients when cfg.run_distribute."""
    if not cfg.run_distribute:
        return 0, 1
    try:
        init()  # HCCL on Ascend, NCCL on GPU, MindSpore's own collectives on the CPU
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"run_distribute=True but the collective communication did not start ({err}); launch "
                          "through scripts/run_distribute_train_*.sh (msrun, or the Ascend rank table)") from None
    rank, device_num = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(device_num=device_num, parallel_mode=ms.ParallelMode.DATA_PARALLEL,
                                 gradients_mean=True)
    return rank, device_num


def build_dataset(cfg, rank: int, device_num: int):
    print("Start create dataset!", flush=True)
    print("CHECKING MINDRECORD FILES ...", flush=True)
    # the anchor fit report follows a conversion
    mindrecord = training_mindrecord(DataSettings.from_config(cfg), FitSettings.from_config(cfg), MINDRECORD_PREFIX,
                                     rank)
    print("CHECKING MINDRECORD FILES DONE!", flush=True)
    dataset = create_fasterrcnn_dataset(PipelineSettings.from_config(cfg), mindrecord, batch_size=cfg.batch_size,
                                        device_num=device_num, rank_id=rank, is_training=True)
    steps_per_epoch = dataset.get_dataset_size()
    if steps_per_epoch == 0:
        raise DataError(f"{mindrecord}: fewer than batch_size={cfg.batch_size} images per rank ({device_num} "
                        "rank(s)); nothing to train on")
    print(f"Create dataset done! {steps_per_epoch} steps per epoch", flush=True)
    return dataset, steps_per_epoch


def _grouped(names: list[str]) -> str:
    """`names` comma-separated; more than SHOWN_NAMES sharing a first part (`accum.*`, `moments.*`: optimizer state)
    as `<part>.* (<count>)`."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split(".")[0], []).append(name)
    return ", ".join(f"{part}.* ({len(group)})" if len(group) > SHOWN_NAMES else ", ".join(group)
                     for part, group in groups.items())


def load_pretrained(net, path: str) -> None:
    """--pre_trained: a whole Faster R-CNN checkpoint (the original's or train.py's: every network parameter whose
    name and shape match, never the optimizer state) or a model-zoo ResNet-50 (`src.checkpoint.backbone`); prints one
    line for what was loaded and one each for what was skipped (another shape), missing and unexpected."""
    if not path:
        print("WARNING: no pre-trained backbone (--pre_trained is empty or 'none'): training from scratch",
              file=sys.stderr, flush=True)
        return
    params = read_checkpoint(path, "--pre_trained")
    if is_detector_checkpoint(net, params):
        kind, report = "Faster R-CNN checkpoint", load_matching_parameters(net, params, path)
    else:
        kind, report = "backbone", load_backbone_params(net, params, path)
    print(f"Pre-trained {kind} {path}: {len(report['loaded'])} parameters loaded", flush=True)
    if report.get("skipped"):
        print(f"  skipped, another shape (left at their initial values): {', '.join(report['skipped'])}", flush=True)
    if report["missing"]:
        print(f"  missing (left at their initial values): {', '.join(report['missing'])}", flush=True)
    if report["unexpected"]:
        print(f"  unexpected (ignored): {_grouped(report['unexpected'])}", flush=True)


def saves_checkpoints(cfg, rank: int) -> bool:
    """Whether this rank writes checkpoints (rank 0 only when save_on_master)."""
    return bool(cfg.save_checkpoint) and (rank == 0 or not cfg.save_on_master)


def bn_phases(cfg) -> list[tuple[int, bool]]:
    """(last epoch, BatchNorm on batch statistics) of each training phase: one phase, or with
    resnet_bn_training and 0 < resnet_bn_training_epochs < epoch_size, batch statistics up to that epoch and
    then the moving statistics, frozen, so that the last epochs train the network that evaluation runs."""
    switch = int(cfg.resnet_bn_training_epochs)
    if switch < 0:
        raise ConfigError(f"resnet_bn_training_epochs must be >= 0 (0: every epoch), got {switch}")
    if cfg.resnet_bn_training and 0 < switch < cfg.epoch_size:
        return [(switch, True), (cfg.epoch_size, False)]
    return [(cfg.epoch_size, bool(cfg.resnet_bn_training))]


class Hooks(NamedTuple):
    """A training phase's callbacks (in their order) and the ones the trainer asks afterwards."""
    callbacks: list
    guard: DivergenceGuard
    loss: LossCallBack
    checkpoint: AtomicCheckpoint | None
    stop: StopOnSignal


def build_network(cfg, bn_training: bool, pretrained: str | None):
    """The training network for cfg.device_target (BatchNorm on batch statistics when `bn_training`), with the
    `pretrained` checkpoint loaded (`load_pretrained`; '' trains from scratch, None loads nothing: a resumed run
    gets every weight from its checkpoint)."""
    net = build_model(cfg, kernels=network_kernels(cfg.device_target), dtype=network_dtype(cfg.device_target),
                      bn_training=bn_training)
    net.set_train(True)
    if pretrained is not None:
        load_pretrained(net, pretrained)
    return net


def warn_lr_batch(cfg, device_num: int) -> None:
    """One warning line when base_lr was set for another global batch and auto_scale_lr is off."""
    _, warning = global_batch_lr(cfg, device_num)
    if warning:
        warn(warning)


def build_optimizer(cfg, net, steps_per_epoch: int, device_num: int) -> SGD:
    """SGD over the trainable parameters with the whole run's learning-rate schedule (src/lr_schedule.py) for a
    global batch of cfg.batch_size x `device_num`."""
    lr = Tensor(dynamic_lr(cfg, steps_per_epoch, device_num), mstype.float32)
    return SGD(params=net.trainable_params(), learning_rate=lr, momentum=cfg.momentum,
               weight_decay=cfg.weight_decay, loss_scale=cfg.loss_scale)


def build_train_cell(cfg, net, optimizer: SGD, device_num: int) -> TrainOneStepCell:
    """Network + loss + one step of `optimizer` (static loss scale, gradients averaged over `device_num`)."""
    net_with_loss = WithLossCell(net, LossNet())
    return TrainOneStepCell(net_with_loss, optimizer, sens=cfg.loss_scale, reduce_flag=device_num > 1,
                            mean=True, degree=device_num, clip_norm=cfg.grad_clip_norm)


def training_hooks(cfg, rank: int, steps_per_epoch: int, initial_step: int, resume: str | None) -> Hooks:
    """The callbacks of a phase starting at `initial_step`: time, loss (with the divergence guard they share),
    checkpoints (when this rank saves them), the evaluation (--run_eval, rank 0), the signal stop last."""
    guard = DivergenceGuard(cfg.loss_spike_factor)
    loss_cb = LossCallBack(rank_id=rank, initial_step=initial_step, last_epoch=cfg.epoch_size, guard=guard)
    callbacks = [TimeMonitor(data_size=steps_per_epoch), loss_cb]
    stop = StopOnSignal()
    checkpoint_cb = None
    if saves_checkpoints(cfg, rank):
        checkpoint_cb = AtomicCheckpoint(checkpoint_folder(cfg, rank),
                                         save_checkpoint_steps=cfg.save_checkpoint_epochs * steps_per_epoch,
                                         keep_checkpoint_max=cfg.keep_checkpoint_max, prefix=CHECKPOINT_PREFIX,
                                         initial_step=initial_step, guard=guard, stop=stop)
        callbacks.append(checkpoint_cb)
    if cfg.run_eval and rank == 0:  # after the checkpoint callback: an epoch's checkpoint exists when it is evaluated
        callbacks.append(evaluation_callback(cfg, rank, checkpoint_folder(cfg, rank), initial_step,
                                             resuming=bool(resume), guard=guard))
    callbacks.append(stop)  # last: a signal stops training once the step's checkpoint is written
    return Hooks(callbacks, guard, loss_cb, checkpoint_cb, stop)


def fit(cfg, train_cell, dataset, hooks: Hooks, *, steps_per_epoch: int, initial_step: int, last_epoch: int,
        resume: str | None, device_num: int, bn_training: bool) -> str | None:
    """Train `train_cell` from `initial_step` up to epoch `last_epoch`; returns the last checkpoint written (None if
    none). TrainingError when the guard stopped training, TrainingInterrupted on a signal, WriteError when a
    checkpoint did not fit; each names the last good checkpoint (of this run, else `resume`)."""
    initial_epoch = initial_step // steps_per_epoch
    guard, checkpoint_cb, stop = hooks.guard, hooks.checkpoint, hooks.stop
    bn_mode = "batch" if bn_training else "moving"
    print(f"Start training: epochs {initial_epoch + 1}..{last_epoch} of {cfg.epoch_size}, {steps_per_epoch} steps "
          f"each, {device_num} device(s), {cfg.device_target}, BatchNorm on {bn_mode} statistics, "
          f"{describe_lr(cfg, device_num)}", flush=True)
    start = time.time()
    try:
        with stop:
            Model(train_cell).train(last_epoch, dataset, callbacks=hooks.callbacks,
                                    dataset_sink_mode=cfg.device_target != "CPU", initial_epoch=initial_epoch)
    except WriteError as err:  # a checkpoint that did not fit (disk full): its temporaries are gone
        latest = (checkpoint_cb.latest if checkpoint_cb else None) or resume
        raise WriteError(f"{err}; training stopped after global step {guard.accepted_step}; last good checkpoint: "
                         f"{latest or 'none'}") from None
    latest = checkpoint_cb.latest if checkpoint_cb else None
    if guard.failed:
        # The resumed checkpoint is good when the first step's loss, computed from its weights, passed.
        latest = latest or (resume if resume and guard.accepted_step is not None else None)
        raise TrainingError(f"training stopped at global step {guard.failed_step}: {guard.reason}; last good "
                            f"checkpoint: {latest or 'none'}")
    if stop.requested:
        raise TrainingInterrupted(f"interrupted by {stop.name(stop.signum)} after global step "
                                  f"{guard.accepted_step}; last good checkpoint: {latest or resume or 'none'}",
                                  stop.signum)
    per_step = hooks.loss.seconds_per_step()
    print(f"Training done in {time.time() - start:.0f} s"
          + (f" ({per_step:.2f} s/step after the first step)" if per_step else "")
          + (f"; last checkpoint {latest}" if latest else ""), flush=True)
    return latest

