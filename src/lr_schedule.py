"""The learning-rate schedule of the original: linear warm-up, then a half cosine.

One value per training step (index = global step, counted from 0 over all epochs):

- step i < warmup_step: linear from base_lr * warmup_ratio (at i = 0) towards base_lr (reached at i = warmup_step);
- step i >= warmup_step: base_lr * (1 + cos(pi * (i - warmup_step) / total)) / 2.

total = steps_per_epoch * (epoch_size + 1): the original divides by the whole (one epoch too long) step count, not by
the steps left after the warm-up, so the rate never reaches zero during training; the list itself is also one epoch
longer than the run. With `lr_cosine_to_zero` (a key of this port, for short from-scratch runs such as the demo) the
cosine spans the steps of the run after the warm-up instead and reaches 0 after the last step (0 beyond it); a run too
short for its warm-up (a smoke test) gets the warm-up clipped to its first half, with a warning. The rate
is not scaled by the number of devices (steps_per_epoch is the per-rank batch count): the original uses the same
base_lr for 1 and 8 devices. With `auto_scale_lr` (this port's) the whole schedule is multiplied by the global batch
(batch_size x devices) over `base_batch_size`, the batch base_lr is set for (the linear scaling rule).
"""
from __future__ import annotations

import math

from src.infra.errors import ConfigError, DataError
from src.model_utils.config import Config, warn


def warmup_lr(base_lr: float, warmup_ratio: float, warmup_steps: int, step: int) -> float:
    """Learning rate at `step` of the linear warm-up (0 <= step < warmup_steps)."""
    start = base_lr * warmup_ratio
    return start + (base_lr - start) * step / warmup_steps


def cosine_lr(base_lr: float, warmup_steps: int, total_steps: int, step: int) -> float:
    """Learning rate at `step` (>= warmup_steps) of the half cosine that follows the warm-up."""
    return base_lr * (1.0 + math.cos(math.pi * (step - warmup_steps) / total_steps)) / 2.0


def global_batch_lr(config: Config, device_num: int) -> tuple[float, str | None]:
    """(the base learning rate of a run on `device_num` devices, a warning or None).

    Global batch = batch_size x device_num. With auto_scale_lr: base_lr x global batch / base_batch_size; without:
    base_lr, and a warning naming auto_scale_lr when the global batch differs from base_batch_size.
    """
    base_batch = config.base_batch_size
    if isinstance(base_batch, bool) or not isinstance(base_batch, int) or base_batch < 1:
        raise ConfigError(f"base_batch_size={base_batch!r}: expected a positive integer (the global batch base_lr "
                          "is set for)")
    batch = int(config.batch_size) * device_num
    base_lr = float(config.base_lr)
    scaled = base_lr * batch / base_batch
    if config.auto_scale_lr or batch == base_batch:
        return scaled, None
    devices = f"{device_num} device{'s' if device_num > 1 else ''}"
    return base_lr, (f"base_lr {base_lr:g} is set for a global batch of {base_batch} (base_batch_size); this run's "
                     f"is {batch} (batch_size {config.batch_size} x {devices}): --auto_scale_lr=True would use "
                     f"{scaled:g}")


def describe_lr(config: Config, device_num: int) -> str:
    """The base learning rate a run uses, for its start line: `base lr 0.04`, or with auto_scale_lr
    `base lr 0.005 (base_lr 0.04 x global batch 2 / base_batch_size 16)`."""
    lr, _ = global_batch_lr(config, device_num)
    if not config.auto_scale_lr:
        return f"base lr {lr:g}"
    return (f"base lr {lr:g} (base_lr {float(config.base_lr):g} x global batch {int(config.batch_size) * device_num}"
            f" / base_batch_size {config.base_batch_size})")


def dynamic_lr(config: Config, steps_per_epoch: int, device_num: int = 1) -> list[float]:
    """Per-step learning rates for a run of `config.epoch_size` epochs of `steps_per_epoch` steps on `device_num`
    devices.

    Reads config.base_lr, warmup_step, warmup_ratio, epoch_size, lr_cosine_to_zero, auto_scale_lr, base_batch_size,
    batch_size (`global_batch_lr`). Returns a list of steps_per_epoch * (epoch_size + 1) floats (the original's
    length; the last epoch is never used).
    """
    if steps_per_epoch <= 0:
        raise DataError(f"steps_per_epoch must be positive, got {steps_per_epoch} (is the data set empty?)")
    if config.epoch_size <= 0:
        raise ConfigError(f"epoch_size must be positive, got {config.epoch_size}")
    warmup_steps = int(config.warmup_step)
    if warmup_steps < 0:
        raise ConfigError(f"warmup_step must be >= 0, got {config.warmup_step}")
    base_lr, _ = global_batch_lr(config, device_num)
    total_steps = steps_per_epoch * (config.epoch_size + 1)
    run_steps = steps_per_epoch * config.epoch_size
    to_zero = bool(config.lr_cosine_to_zero)
    if to_zero and warmup_steps >= run_steps:
        clipped = run_steps // 2
        warn(f"warmup_step={warmup_steps} is not shorter than this run ({config.epoch_size} epoch(s) of "
             f"{steps_per_epoch} steps); the warm-up is clipped to {clipped} steps, the cosine takes the rest")
        warmup_steps = clipped
    # The original: cos(pi * (i - warmup) / total); to zero: cos(pi * (i - warmup) / (run - warmup)), pi at i = run.
    cosine_steps = run_steps - warmup_steps if to_zero else total_steps
    return [
        warmup_lr(base_lr, float(config.warmup_ratio), warmup_steps, i) if i < warmup_steps
        else 0.0 if to_zero and i >= run_steps
        else cosine_lr(base_lr, warmup_steps, cosine_steps, i)
        for i in range(total_steps)
    ]
