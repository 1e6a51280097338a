"""Train Faster R-CNN-DCN: standalone, or data parallel under msrun (`--run_distribute=True`).

    python train.py [--config_path=default_config_cpu.yaml] --coco_root=DIR [--mindrecord_dir=DIR]
                    [--pre_trained=resnet50.ckpt|none] [--resume=faster_rcnn-12_7329.ckpt] [--key=value ...]

As the original: the MindRecord is built on the first run (rank 0; the other ranks wait), the learning rate is
`src.lr_schedule.dynamic_lr` (not scaled by the device count), the loss is RPN + R-CNN, SGD with the configured
momentum / weight decay / static loss scale, gradients averaged over the devices, the network in float16 on Ascend
(float32 elsewhere), checkpoints `<save_checkpoint_path>/ckpt_<rank>/faster_rcnn-<epoch>_<step>.ckpt` every
`save_checkpoint_epochs` epochs (rank 0 only when `save_on_master`), `./loss_<rank>.log` one line per step.

Added by this port:
- `--pre_trained none` (or empty) trains from scratch, with a warning; a model-zoo ResNet-50 checkpoint is loaded
  into the backbone (`src.checkpoint.backbone`); a whole Faster R-CNN checkpoint (the original's or this script's) loads
  every network parameter whose name and shape match (with another num_classes all but the R-CNN's cls_scores /
  reg_scores), never its optimizer state. What was loaded, skipped, missing and unexpected is reported.
- `--resume PATH` loads a checkpoint written by this script (network + optimizer state + global step) and
  continues from its step; the learning-rate schedule is rebuilt from the config.
- A diverging run stops (exit status 1, a message naming the step and the last good checkpoint) at the first step
  whose loss is NaN/Inf or above `loss_spike_factor` times the running median, or after which a parameter is not
  finite; a checkpoint takes its name only once the next step's loss, computed from its weights, passed that check
  (src/engine/hooks.py DivergenceGuard). Checkpoints are written atomically (never truncated under their name).
- `--run_eval=True --eval_interval=N` evaluates the current weights on the validation set every N epochs (rank 0,
  eval.py's evaluation), logs AP/AP50 to `./eval_<rank>.log` and keeps the best as `best.ckpt` beside the
  checkpoints (src/engine/hooks.py). Off by default, as the original.
- `grad_clip_norm` > 0 clips the gradients' global norm (for training from scratch; 0, the default, is the original).
- One live run per output folder: the working folder (per rank) and `ckpt_<rank>/` are locked (src/infra/run_lock.py); a
  second run there is refused naming the first's pid. Both folders are checked for write access and free space (one
  checkpoint for `ckpt_<rank>/`) before anything is built; a checkpoint that does not fit later stops training with
  one line (exit status 1) and no temporary left. `--pre_trained` must hold the whole ResNet-50 backbone.
- SIGINT/SIGTERM stop training after the current step with one line naming the last good checkpoint, exit status
  130/143 (src/infra/interrupts.py: MindSpore would turn a SIGINT into a SIGTERM).
- Dataset sink: on Ascend/GPU the original's sink mode (one sink per epoch, so the callbacks and the loss log
  report once per epoch); on the CPU MindSpore does not sink, so every step is reported (and checked for NaN).
"""
# ruff: noqa: E402  (SIGINT is routed before MindSpore is imported, below)
from __future__ import annotations

import sys

if __name__ == "__main__":
    # MindSpore's threads must inherit SIGINT blocked (src/infra/interrupts.py): route it before MindSpore starts them
    from src.infra.interrupts import route_sigint

    route_sigint()

import mindspore as ms

from src.checkpoint.detector import restore_training_state
from src.engine.trainer import (
    PROGRAM,
    bn_phases,
    build_dataset,
    build_network,
    build_optimizer,
    build_train_cell,
    check_request,
    fit,
    held_outputs,
    pretrained_path,
    saves_checkpoints,
    set_up_parallel,
    training_hooks,
    warn_lr_batch,
)
from src.infra.errors import ConfigError
from src.infra.runtime import device_id, run_job, set_up_device
from src.model_utils.config import classes_from_data

SEED = 1
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as a shell reports it


def train_fasterrcnn(cfg) -> None:
    cfg = classes_from_data(cfg, is_training=True)
    check_request(cfg)  # the config: every path and value checked before the slow work
    set_up_device(cfg.device_target, cfg.run_mode, device_id(cfg))
    ms.set_seed(SEED)
    phases = bn_phases(cfg)
    rank, device_num = set_up_parallel(cfg)
    warn_lr_batch(cfg, device_num)
    if len(phases) > 1 and not saves_checkpoints(cfg, rank):
        # The second phase continues from the first one's last checkpoint.
        raise ConfigError(f"resnet_bn_training_epochs={cfg.resnet_bn_training_epochs} needs checkpoints on every "
                          "rank (save_checkpoint=True, and save_on_master=False when training on several devices)")
    resume = cfg.resume.strip()
    with held_outputs(cfg, rank):
        for last_epoch, bn_training in phases:
            dataset, steps_per_epoch = build_dataset(cfg, rank, device_num)  # a Model takes a dataset only once
            net = build_network(cfg, bn_training, None if resume else pretrained_path(cfg))
            optimizer = build_optimizer(cfg, net, steps_per_epoch, device_num)
            train_cell = build_train_cell(cfg, net, optimizer, device_num)
            initial_step = restore_training_state(train_cell, optimizer, resume, steps_per_epoch) if resume else 0
            if initial_step // steps_per_epoch >= last_epoch:
                print(f"Nothing to do: the checkpoint is at epoch {initial_step // steps_per_epoch}, training ends "
                      f"at epoch {last_epoch}", flush=True)
                resume = resume or None
                continue
            # Deterministic pipelines then deliver the batches the uninterrupted run would have seen.
            dataset.set_init_step(initial_step)
            hooks = training_hooks(cfg, rank, steps_per_epoch, initial_step, resume)
            resume = fit(cfg, train_cell, dataset, hooks, steps_per_epoch=steps_per_epoch, initial_step=initial_step,
                         last_epoch=last_epoch, resume=resume, device_num=device_num, bn_training=bn_training)


def main() -> int:
    try:
        return run_job(train_fasterrcnn, PROGRAM)
    except KeyboardInterrupt:  # SIGINT before training started (during training it stops after the step)
        print(f"{PROGRAM}: error: interrupted by SIGINT while preparing training (outside a training step)",
              file=sys.stderr, flush=True)
        return INTERRUPTED_STATUS


if __name__ == "__main__":
    sys.exit(main())
