"""The evaluation callback of train.py --run_eval (src/engine/hooks.py) driven by hand: which epochs it evaluates,
what it logs, and that best.ckpt holds the weights of the best epoch (a small cell stands in for the training cell,
scripted figures for the evaluation)."""
import math
from types import SimpleNamespace

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from src.engine.hooks import BEST_AP_KEY, EvalCallback, best_ap_of, evaluation_callback
from src.infra.errors import ConfigError
from src.model_utils.config import get_config
from src.tools.plot_log import parse_eval_log
from src.util import SUMMARY_NAMES

STEPS_PER_EPOCH = 5


class Run:
    """A training run's callback arguments: a Dense cell whose weight is set to the epoch number at each epoch."""

    def __init__(self):
        self.cell = nn.Dense(2, 3)
        self.evaluated = []

    def end_epoch(self, callback, epoch, loss=1.0):
        """The last step of `epoch` (its loss, computed from the previous epoch's weights) and the epoch's end."""
        params = SimpleNamespace(cur_epoch_num=epoch, cur_step_num=epoch * STEPS_PER_EPOCH, train_network=self.cell,
                                 net_outputs=ms.Tensor(np.float32(loss)))
        callback.on_train_step_end(SimpleNamespace(original_args=lambda: params))
        self.cell.weight.set_data(ms.Tensor(np.full((3, 2), float(epoch), np.float32)))
        callback.on_train_epoch_end(SimpleNamespace(original_args=lambda: params))

    def next_step(self, callback, step, loss=1.0):
        params = SimpleNamespace(cur_step_num=step, net_outputs=ms.Tensor(np.float32(loss)))
        callback.on_train_step_end(SimpleNamespace(original_args=lambda: params))

    @staticmethod
    def finish(callback):
        callback.on_train_end(SimpleNamespace(original_args=lambda: None))


def scripted(aps):
    """An evaluation returning AP aps[epoch] and AP50 = 2 AP, recording the weight it saw."""
    def evaluate(cell):
        epoch = int(cell.weight.asnumpy()[0, 0])
        return {SUMMARY_NAMES[0]: aps[epoch], SUMMARY_NAMES[1]: 2 * aps[epoch]}
    return evaluate


def test_every_interval_logged_and_the_best_kept(tmp_path):
    aps = {2: 0.1, 4: 0.3, 6: 0.3, 8: 0.2}
    run = Run()
    log, best = tmp_path / "eval_0.log", tmp_path / "ckpt_0" / "best.ckpt"
    callback = EvalCallback(scripted(aps), interval=2, log_path=str(log), best_path=str(best))
    for epoch in range(1, 9):
        run.end_epoch(callback, epoch)
    run.finish(callback)
    parsed = parse_eval_log(str(log))
    assert parsed["AP"][0].tolist() == [10, 20, 30, 40]  # global steps of epochs 2, 4, 6, 8
    assert parsed["AP"][1].tolist() == [0.1, 0.3, 0.3, 0.2]
    assert parsed["AP50"][1].tolist() == [0.2, 0.6, 0.6, 0.4]
    saved = ms.load_checkpoint(str(best))
    # epoch 4: the first of the two with AP 0.3 (a tie keeps the earlier epoch)
    np.testing.assert_array_equal(saved["weight"].asnumpy(), np.full((3, 2), 4.0, np.float32))
    assert int(saved["epoch_num"].asnumpy()) == 4 and int(saved["step_num"].asnumpy()) == 20
    assert best_ap_of(str(best)) == pytest.approx(0.3)
    assert sorted(p.name for p in best.parent.iterdir()) == ["best.ckpt"]  # written atomically


def test_a_resumed_run_keeps_a_better_earlier_best(tmp_path):
    best = tmp_path / "best.ckpt"
    first = EvalCallback(scripted({1: 0.5}), interval=1, log_path=str(tmp_path / "eval_0.log"), best_path=str(best))
    Run().end_epoch(first, 1)
    Run.finish(first)
    resumed = EvalCallback(scripted({2: 0.4, 3: 0.6}), interval=1, log_path=str(tmp_path / "eval_0.log"),
                           best_path=str(best), best_ap=best_ap_of(str(best)), initial_step=STEPS_PER_EPOCH)
    run = Run()
    run.end_epoch(resumed, 2)
    assert int(ms.load_checkpoint(str(best))["epoch_num"].asnumpy()) == 1
    run.end_epoch(resumed, 3)
    run.next_step(resumed, 3 * STEPS_PER_EPOCH + 1)  # its loss is computed from epoch 3's weights: they pass
    saved = ms.load_checkpoint(str(best))
    assert int(saved["epoch_num"].asnumpy()) == 3
    assert float(saved[BEST_AP_KEY].asnumpy()) == pytest.approx(0.6)


def test_no_evaluation_after_a_non_finite_loss_and_no_file_without_evaluation(tmp_path):
    best = tmp_path / "best.ckpt"
    callback = EvalCallback(scripted({1: 0.5}), interval=1, log_path=str(tmp_path / "eval_0.log"),
                            best_path=str(best))
    Run().end_epoch(callback, 1, loss=math.nan)
    assert not best.exists() and not (tmp_path / "eval_0.log").exists()
    assert best_ap_of(str(best)) == -math.inf


def test_the_best_waits_for_the_next_step_and_a_rejected_one_is_never_saved(tmp_path):
    best = tmp_path / "best.ckpt"
    callback = EvalCallback(scripted({1: 0.5}), interval=1, log_path=str(tmp_path / "eval_0.log"),
                            best_path=str(best))
    run = Run()
    run.end_epoch(callback, 1)
    assert not best.exists()  # the epoch's weights are not checked yet: they wait under a hidden name
    run.next_step(callback, STEPS_PER_EPOCH + 1, loss=math.inf)  # ... and the loss computed from them is Inf
    Run.finish(callback)
    assert list(tmp_path.iterdir()) == [tmp_path / "eval_0.log"]
    assert best_ap_of(str(best)) == -math.inf


def test_a_bad_interval_or_a_txt_set_without_validation_labels_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="eval_interval must be a positive number of epochs, got 0"):
        evaluation_callback(get_config(["--eval_interval=0"]), 0, str(tmp_path), 0, resuming=False)
    with pytest.raises(ConfigError, match="TXT data .* needs --eval_anno_path"):
        evaluation_callback(get_config(["--dataset=other"]), 0, str(tmp_path), 0, resuming=False)
    assert list(tmp_path.iterdir()) == []
