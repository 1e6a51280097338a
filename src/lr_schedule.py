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
base_lr for 1 and 8 devices.
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


def dynamic_lr(config: Config, steps_per_epoch: int) -> list[float]:
    """Per-step learning rates for a run of `config.epoch_size` epochs of `steps_per_epoch` steps.

    Reads config.base_lr, warmup_step, warmup_ratio, epoch_size, lr_cosine_to_zero. Returns a list of
    steps_per_epoch * (epoch_size + 1) floats (the original's length; the last epoch is never used).
    """
    if steps_per_epoch <= 0:
        raise DataError(f"steps_per_epoch must be positive, got {steps_per_epoch} (is the data set empty?)")
    if config.epoch_size <= 0:
        raise ConfigError(f"epoch_size must be positive, got {config.epoch_size}")
    warmup_steps = int(config.warmup_step)
    if warmup_steps < 0:
        raise ConfigError(f"warmup_step must be >= 0, got {config.warmup_step}")
    base_lr = float(config.base_lr)
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
