"""The learning-rate schedule against values worked out by hand from the original's formula."""
import math

import pytest

from src.engine.trainer import warn_lr_batch
from src.infra.errors import ConfigError
from src.lr_schedule import describe_lr, dynamic_lr, global_batch_lr
from src.model_utils.config import get_config


def _cfg(**overrides):
    values = {"base_lr": 0.04, "warmup_step": 500, "warmup_ratio": 0.0625, "epoch_size": 9}
    values.update(overrides)
    return get_config([], **values)


def test_length_is_one_epoch_longer_than_the_run():
    assert len(dynamic_lr(_cfg(), steps_per_epoch=100)) == 100 * (9 + 1)


def test_warmup_boundaries():
    lr = dynamic_lr(_cfg(), steps_per_epoch=100)
    # Start: base_lr * warmup_ratio = 0.04 * 0.0625.
    assert lr[0] == pytest.approx(0.0025, abs=1e-12)
    # Half-way: 0.0025 + (0.04 - 0.0025) / 2.
    assert lr[250] == pytest.approx(0.02125, abs=1e-12)
    # Last warm-up step stops one increment short of base_lr: 0.0025 + 0.0375 * 499 / 500.
    assert lr[499] == pytest.approx(0.039925, abs=1e-12)
    # First cosine step: exactly base_lr.
    assert lr[500] == pytest.approx(0.04, abs=1e-12)


def test_cosine_divides_by_the_whole_step_count():
    lr = dynamic_lr(_cfg(), steps_per_epoch=100)
    # total = 100 * (9 + 1) = 1000; at the last step cos(pi * 499 / 1000) = sin(pi / 1000) = 0.0031415874858795.
    assert lr[999] == pytest.approx(0.04 * (1 + 0.0031415874858795) / 2, rel=1e-12)
    # Had the original divided by (total - warm-up) = 500, the rate at step 750 would be 0.02; it is not.
    assert lr[750] == pytest.approx(0.04 * (1 + math.cos(math.pi / 4)) / 2, rel=1e-12)
    assert lr[750] != pytest.approx(0.02, rel=1e-3)


def test_shape_rises_then_falls_and_stays_positive():
    lr = dynamic_lr(_cfg(), steps_per_epoch=100)
    assert all(a < b for a, b in zip(lr[:500], lr[1:501], strict=True))
    assert all(a > b for a, b in zip(lr[500:-1], lr[501:], strict=True))
    assert min(lr) > 0


def test_no_warmup_starts_at_base_lr():
    lr = dynamic_lr(_cfg(warmup_step=0, epoch_size=1), steps_per_epoch=4)
    assert lr[0] == pytest.approx(0.04)
    # total = 4 * 2 = 8; step 4: 0.04 * (1 + cos(pi / 2)) / 2 = 0.02.
    assert lr[4] == pytest.approx(0.02, abs=1e-12)


def test_not_scaled_by_device_count():
    # steps_per_epoch is the per-rank batch count; the rate itself does not depend on device_num.
    one = dynamic_lr(_cfg(device_num=1), steps_per_epoch=50)
    eight = dynamic_lr(_cfg(device_num=8), steps_per_epoch=50)
    assert one == eight


@pytest.mark.parametrize("steps", [0, -3])
def test_empty_data_set_is_a_clear_error(steps):
    with pytest.raises(ValueError, match="steps_per_epoch"):
        dynamic_lr(_cfg(), steps_per_epoch=steps)


def test_cosine_to_zero_spans_the_run_after_the_warmup():
    lr = dynamic_lr(_cfg(lr_cosine_to_zero=True), steps_per_epoch=100)
    assert len(lr) == 100 * (9 + 1)
    assert lr[:500] == dynamic_lr(_cfg(), steps_per_epoch=100)[:500]  # the warm-up is unchanged
    # Run = 900 steps, cosine over the 400 after the warm-up: half-way (step 700) is base_lr / 2.
    assert lr[700] == pytest.approx(0.02, abs=1e-12)
    # Last step of the run: 0.04 * (1 + cos(pi * 399 / 400)) / 2 = 0.02 * (1 - cos(pi / 400)).
    assert lr[899] == pytest.approx(0.02 * (1 - math.cos(math.pi / 400)), rel=1e-12)
    assert lr[899] > 0
    assert lr[900:] == [0.0] * 100


def test_a_run_shorter_than_its_warmup_gets_it_clipped_to_half_with_a_warning(capsys):
    # 2 epochs of 10 steps with warmup_step 50: the warm-up becomes 10 steps, the cosine spans the other 10.
    lr = dynamic_lr(_cfg(lr_cosine_to_zero=True, warmup_step=50, epoch_size=2), steps_per_epoch=10)
    assert "warmup_step=50 is not shorter than this run (2 epoch(s) of 10 steps)" in capsys.readouterr().err
    assert lr[0] == pytest.approx(0.0025, abs=1e-12)
    assert lr[5] == pytest.approx(0.0025 + 0.0375 * 5 / 10, abs=1e-12)  # the warm-up of 10 steps
    assert lr[10] == pytest.approx(0.04, abs=1e-12)
    assert lr[15] == pytest.approx(0.02, abs=1e-12)  # half-way through the 10 cosine steps
    assert lr[20:] == [0.0] * 10


# ---------------------------------------------------------------------------------------------------------------
# auto_scale_lr: the schedule for the run's global batch
def test_auto_scale_lr_scales_the_whole_schedule():
    # Global batch 2 x 1 over base_batch_size 16: every value x 1/8, base lr 0.005.
    lr = dynamic_lr(_cfg(auto_scale_lr=True, batch_size=2, base_batch_size=16), steps_per_epoch=100, device_num=1)
    assert lr[0] == pytest.approx(0.0003125, abs=1e-15)           # 0.005 x 0.0625
    assert lr[250] == pytest.approx(0.00265625, abs=1e-15)        # 0.0003125 + (0.005 - 0.0003125) / 2
    assert lr[500] == pytest.approx(0.005, abs=1e-15)
    assert lr[750] == pytest.approx(0.005 * (1 + math.cos(math.pi / 4)) / 2, rel=1e-12)  # total 1000 steps
    # 4 devices x batch 2 = 8: x 1/2; the step count per epoch is per rank, as before.
    four = dynamic_lr(_cfg(auto_scale_lr=True, batch_size=2, base_batch_size=16), steps_per_epoch=100, device_num=4)
    assert four[0] == pytest.approx(0.00125, abs=1e-15) and four[500] == pytest.approx(0.02, abs=1e-15)
    # 8 x 2 = 16, the original's: unchanged.
    assert dynamic_lr(_cfg(auto_scale_lr=True), steps_per_epoch=100, device_num=8) == dynamic_lr(_cfg(), 100)


def test_without_auto_scale_lr_the_rate_is_base_lr_with_one_warning_line():
    cfg = _cfg(batch_size=2, base_batch_size=16)
    assert dynamic_lr(cfg, steps_per_epoch=100, device_num=1) == dynamic_lr(_cfg(), steps_per_epoch=100)
    lr, warning = global_batch_lr(cfg, device_num=1)
    assert lr == 0.04
    assert warning == ("base_lr 0.04 is set for a global batch of 16 (base_batch_size); this run's is 2 (batch_size "
                       "2 x 1 device): --auto_scale_lr=True would use 0.005")
    assert "(batch_size 2 x 4 devices): --auto_scale_lr=True would use 0.02" in global_batch_lr(cfg, 4)[1]


@pytest.mark.parametrize("overrides, device_num, expected", [
    ({"batch_size": 2, "base_batch_size": 16}, 1, True),
    ({"batch_size": 2, "base_batch_size": 16}, 8, False),             # the original's 8 x 2
    ({"batch_size": 2, "base_batch_size": 2}, 1, False),              # the demo
    ({"batch_size": 2, "base_batch_size": 16, "auto_scale_lr": True}, 1, False),
])
def test_warning_line_presence(capsys, overrides, device_num, expected):
    warn_lr_batch(_cfg(**overrides), device_num)
    err = capsys.readouterr().err
    assert err.count("\n") == int(expected)
    assert ("WARNING: base_lr 0.04 is set for a global batch of 16" in err and "auto_scale_lr" in err) == expected


def test_start_line_names_the_rate():
    assert describe_lr(_cfg(), 1) == "base lr 0.04"
    assert describe_lr(_cfg(auto_scale_lr=True, batch_size=2, base_batch_size=16), 1) == \
        "base lr 0.005 (base_lr 0.04 x global batch 2 / base_batch_size 16)"


@pytest.mark.parametrize("value", [0, -16, 2.5])
def test_bad_base_batch_size_names_the_key(value):
    with pytest.raises(ConfigError, match="base_batch_size"):
        global_batch_lr(_cfg(base_batch_size=value), 1)
