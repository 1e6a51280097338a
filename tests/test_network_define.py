"""Training wrappers and callbacks on a tiny network whose gradient is worked out by hand in NumPy."""
import errno
import glob
import os
import re
import signal

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dataset as ds
from mindspore.train import Model

import src.engine.hooks as hooks
from src.engine.hooks import AtomicCheckpoint, DivergenceGuard, LossCallBack
from src.infra.errors import WriteError
from src.infra.fileio import partial_files
from src.network_define import (
    LOSS_TERMS,
    LossNet,
    TrainOneStepCell,
    WithLossCell,
    clip_by_global_norm,
)

BATCH, GTS, H, W = 2, 3, 4, 5
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.91, 1e-3


class TinyDetector(nn.Cell):
    """Same inputs/outputs as FasterRcnnResnet50 in training; a linear model of the mean pixel per channel.

    pred = x @ w + bias with x (B, 3) the image's channel means and target y = first gt box's x1:
    rpn_cls = mean((pred - y)^2), rpn_reg = mean(w^2), rcnn_cls = 0.5 * mean((x @ w)^2), rcnn_reg = 0.1 * bias^2.
    """

    def __init__(self):
        super().__init__()
        self.w = Parameter(Tensor(np.array([0.3, -0.2, 0.1], np.float32)), name="w")
        self.bias = Parameter(Tensor(np.array([0.05], np.float32)), name="bias")

    def construct(self, img, img_shape, gt_bboxes, gt_labels, gt_valids):
        x = img.mean(axis=(2, 3))
        y = gt_bboxes[:, 0, 0]
        xw = ops.matmul(x, self.w)
        rpn_cls = ((xw + self.bias - y) ** 2).mean()
        rpn_reg = (self.w ** 2).mean()
        rcnn_cls = 0.5 * (xw ** 2).mean()
        rcnn_reg = 0.1 * (self.bias ** 2).sum()
        return rpn_cls + rpn_reg, rcnn_cls + rcnn_reg, rpn_cls, rpn_reg, rcnn_cls, rcnn_reg


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(BATCH, 3, H, W)).astype(np.float32)
    metas = np.tile(np.array([H, W, 1.0], np.float32), (BATCH, 1))
    boxes = rng.uniform(0, 4, size=(BATCH, GTS, 4)).astype(np.float32)
    labels = np.ones((BATCH, GTS), np.int32)
    valids = np.ones((BATCH, GTS), bool)
    return img, metas, boxes, labels, valids


def _numpy_losses_and_grads(w, b, img, boxes):
    """The TinyDetector's loss terms and the total loss's gradient, by hand."""
    x = img.mean(axis=(2, 3)).astype(np.float64)
    y = boxes[:, 0, 0].astype(np.float64)
    xw = x @ w
    r = xw + b[0] - y
    terms = [np.mean(r ** 2), np.mean(w ** 2), 0.5 * np.mean(xw ** 2), 0.1 * b[0] ** 2]
    grad_w = 2 / BATCH * x.T @ r + 2 * w / 3 + x.T @ xw / BATCH
    grad_b = np.array([2 / BATCH * r.sum() + 0.2 * b[0]])
    return terms, grad_w, grad_b


def _train_cell(sens):
    net = TinyDetector()
    opt = nn.SGD(net.trainable_params(), learning_rate=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                 loss_scale=sens)
    return net, TrainOneStepCell(WithLossCell(net, LossNet()), opt, sens=sens)


def test_loss_net_is_rpn_plus_rcnn():
    outs = [Tensor(np.float32(v)) for v in (1.5, 2.25, 7.0, 8.0, 9.0, 10.0)]
    assert float(LossNet()(*outs).asnumpy()) == pytest.approx(3.75)


def test_two_steps_match_hand_computed_sgd_with_loss_scale(mode):
    """SGD(momentum, weight decay) on sens-seeded gradients divided by loss_scale, against NumPy."""
    net, step = _train_cell(sens=256.0)
    w = net.w.asnumpy().astype(np.float64)
    b = net.bias.asnumpy().astype(np.float64)
    accum_w, accum_b = np.zeros_like(w), np.zeros_like(b)
    for i in range(2):
        batch = _batch(i)
        loss, terms = step(*[Tensor(a) for a in batch])
        ref_terms, grad_w, grad_b = _numpy_losses_and_grads(w, b, batch[0], batch[2])
        # The reported loss and terms are those of the parameters before the update.
        assert float(loss.asnumpy()) == pytest.approx(sum(ref_terms), rel=1e-5)
        ref_all = [ref_terms[0] + ref_terms[1], ref_terms[2] + ref_terms[3], *ref_terms]
        np.testing.assert_allclose(terms.asnumpy(), ref_all, rtol=1e-5, atol=1e-7)
        # Weight decay on every parameter (no beta/gamma here), then momentum.
        grad_w, grad_b = grad_w + WEIGHT_DECAY * w, grad_b + WEIGHT_DECAY * b
        accum_w, accum_b = MOMENTUM * accum_w + grad_w, MOMENTUM * accum_b + grad_b
        w, b = w - LR * accum_w, b - LR * accum_b
        np.testing.assert_allclose(net.w.asnumpy(), w, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(net.bias.asnumpy(), b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("clip", [0.05, 100.0])
def test_clipping_bounds_the_global_norm_of_the_unscaled_gradient(mode, clip):
    net = TinyDetector()
    opt = nn.SGD(net.trainable_params(), learning_rate=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                 loss_scale=256.0)
    step = TrainOneStepCell(WithLossCell(net, LossNet()), opt, sens=256.0, clip_norm=clip)
    w, b = net.w.asnumpy().astype(np.float64), net.bias.asnumpy().astype(np.float64)
    batch = _batch(4)
    step(*[Tensor(a) for a in batch])
    _, grad_w, grad_b = _numpy_losses_and_grads(w, b, batch[0], batch[2])
    norm = np.sqrt((grad_w ** 2).sum() + (grad_b ** 2).sum())
    assert (norm > 2 * clip) == (clip < 1)  # 0.05 clips, 100 leaves the gradient as it is
    scale = min(1.0, clip / norm)
    grad_w, grad_b = grad_w * scale, grad_b * scale
    # Weight decay is the optimizer's, after clipping.
    np.testing.assert_allclose(net.w.asnumpy(), w - LR * (grad_w + WEIGHT_DECAY * w), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net.bias.asnumpy(), b - LR * (grad_b + WEIGHT_DECAY * b), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("clip", [3.0, 1e4])
def test_clip_by_global_norm_of_conv_shaped_gradients_matches_numpy_and_mindspore(mode, clip):
    rng = np.random.default_rng(7)
    shapes = [(8, 4, 3, 3), (8,), (16, 8), (2, 3, 1, 1)]
    grads = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    assert (norm > clip) == (clip < 100)
    out = clip_by_global_norm(tuple(Tensor(g) for g in grads), clip)
    library = ops.clip_by_global_norm(tuple(Tensor(g) for g in grads), clip)
    for g, mine, theirs in zip(grads, out, library, strict=True):
        np.testing.assert_allclose(mine.asnumpy(), g * min(1.0, clip / norm), rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(mine.asnumpy(), theirs.asnumpy(), rtol=1e-6, atol=1e-7)


def test_clipping_rejects_a_negative_norm():
    net = TinyDetector()
    with pytest.raises(ValueError, match="clip_norm"):
        TrainOneStepCell(WithLossCell(net, LossNet()), nn.SGD(net.trainable_params()), clip_norm=-1.0)


def test_loss_scale_cancels_out():
    batch = [Tensor(a) for a in _batch(3)]
    net_1, step_1 = _train_cell(sens=1.0)
    net_256, step_256 = _train_cell(sens=256.0)
    step_1(*batch)
    step_256(*batch)
    # Powers of two: scaling the seed and dividing it back out is exact in float32.
    np.testing.assert_array_equal(net_1.w.asnumpy(), net_256.w.asnumpy())
    np.testing.assert_array_equal(net_1.bias.asnumpy(), net_256.bias.asnumpy())


class _Ctx:
    """Minimal stand-in for MindSpore's RunContext for driving callbacks by hand."""

    def __init__(self, **params):
        self.params = type("CbParams", (), params)()
        self.stop = False

    def original_args(self):
        return self.params

    def request_stop(self):
        self.stop = True


def _outputs(loss, terms=None):
    terms = np.arange(6, dtype=np.float32) if terms is None else terms
    return Tensor(np.float32(loss)), Tensor(terms)


def test_loss_callback_log_format_and_progress(tmp_path, capsys):
    cb = LossCallBack(per_print_times=2, rank_id=3, log_dir=str(tmp_path))
    cb.on_train_begin(None)
    losses = [1.093672, 0.5, 0.25, 0.125, 2.0]
    for i, loss in enumerate(losses):
        ctx = _Ctx(net_outputs=_outputs(loss), cur_step_num=i + 1, cur_epoch_num=i // 2 + 1, batch_num=2,
                   epoch_num=3)
        cb.on_train_step_end(ctx)
        assert not ctx.stop
    lines = (tmp_path / "loss_3.log").read_text().splitlines()
    assert len(lines) == 5
    pattern = re.compile(r"^(\d+) epoch: (\d+) step: (\d+) total_loss: (\d+\.\d{5})$")
    parsed = [pattern.match(line).groups() for line in lines]
    assert [(e, s, v) for _, e, s, v in parsed] == [
        ("1", "1", "1.09367"), ("1", "2", "0.50000"), ("2", "1", "0.25000"), ("2", "2", "0.12500"),
        ("3", "1", "2.00000")]
    out = capsys.readouterr().out.splitlines()
    # Printed every per_print_times (2) steps: steps 2 and 4; step 5 is neither such a step nor the last (6).
    assert len(out) == 2
    assert "epoch: 1/3 step: 2/2" in out[0] and "total_loss: 0.50000" in out[0]
    for name, value in zip(LOSS_TERMS[2:], (2, 3, 4, 5), strict=True):
        assert f"{name}: {value:.5f}" in out[0]
    assert re.search(r"\d+\.\d\d s/step ETA \d+:\d\d:\d\d", out[0])


def test_loss_callback_eta_counts_remaining_steps(tmp_path, capsys, monkeypatch):
    clock = iter([100.0, 110.0, 112.0, 114.0])  # begin, then steps of 10 s (compile), 2 s, 2 s
    monkeypatch.setattr(hooks.time, "monotonic", lambda: next(clock))
    cb = LossCallBack(rank_id=0, log_dir=str(tmp_path))
    cb.on_train_begin(None)
    for i in range(3):
        cb.on_train_step_end(_Ctx(net_outputs=_outputs(1.0), cur_step_num=i + 1, cur_epoch_num=1, batch_num=100,
                                  epoch_num=1))
    out = capsys.readouterr().out.splitlines()
    # First step includes compilation: its 10 s are left out once later steps exist; 97 steps left x 2 s.
    assert "10.00 s/step ETA 0:16:30" in out[0]
    assert "2.00 s/step ETA 0:03:14" in out[2]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_loss_callback_stops_on_non_finite_loss(tmp_path, capsys, bad):
    cb = LossCallBack(rank_id=0, log_dir=str(tmp_path), initial_step=40)
    cb.on_train_begin(None)
    ctx = _Ctx(net_outputs=_outputs(1.0), cur_step_num=1, cur_epoch_num=5, batch_num=10, epoch_num=2)
    cb.on_train_step_end(ctx)
    assert not ctx.stop and not cb.guard.failed
    ctx = _Ctx(net_outputs=_outputs(bad), cur_step_num=2, cur_epoch_num=5, batch_num=10, epoch_num=2)
    cb.on_train_step_end(ctx)
    assert ctx.stop
    assert cb.guard.failed_step == 42
    assert "global step 42" in capsys.readouterr().err


def test_loss_callback_stops_on_non_finite_term(tmp_path):
    cb = LossCallBack(rank_id=0, log_dir=str(tmp_path))
    cb.on_train_begin(None)
    terms = np.array([1, 1, 1, np.nan, 1, 1], np.float32)
    ctx = _Ctx(net_outputs=_outputs(1.0, terms), cur_step_num=1, cur_epoch_num=1, batch_num=10, epoch_num=1)
    cb.on_train_step_end(ctx)
    assert ctx.stop and cb.guard.failed_step == 1


def test_loss_callback_rejects_bad_print_interval():
    with pytest.raises(ValueError, match="per_print_times"):
        LossCallBack(per_print_times=-1)


def _ckpt_ctx(net_cell, step, loss=1.0, batch_num=2):
    return _Ctx(net_outputs=_outputs(loss), cur_step_num=step, cur_epoch_num=(step - 1) // batch_num + 1,
                batch_num=batch_num, train_network=net_cell)


def test_atomic_checkpoint_saves_keeps_max_and_reloads(tmp_path):
    net, cell = _train_cell(sens=1.0)
    cb = AtomicCheckpoint(str(tmp_path), save_checkpoint_steps=2, keep_checkpoint_max=2)
    for step in range(1, 8):
        net.w.set_data(Tensor(np.full(3, step, np.float32)))
        cb.on_train_step_end(_ckpt_ctx(cell, step))
    cb.on_train_end(_ckpt_ctx(cell, 7))
    names = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "*.ckpt")))
    # Saved after steps 2, 4, 6 and at the end (7); the two newest are kept.
    assert names == ["faster_rcnn-3_2.ckpt", "faster_rcnn-4_1.ckpt"]
    assert partial_files(str(tmp_path)) == []
    params = ms.load_checkpoint(str(tmp_path / "faster_rcnn-3_2.ckpt"))
    np.testing.assert_array_equal(params["w"].asnumpy(), np.full(3, 6, np.float32))
    assert params["step_num"].asnumpy().item() == 6 and params["epoch_num"].asnumpy().item() == 3
    # The optimizer's state travels with the network.
    assert {"accum.w", "stat.w", "global_step", "learning_rate", "momentum"} <= set(params)


def test_atomic_checkpoint_counts_global_steps_after_resume(tmp_path):
    net, cell = _train_cell(sens=1.0)
    cb = AtomicCheckpoint(str(tmp_path), save_checkpoint_steps=4, keep_checkpoint_max=5, initial_step=2)
    for step in range(1, 5):
        cb.on_train_step_end(_ckpt_ctx(cell, step))
    # Global steps 3..6: only global step 4 is a multiple of 4.
    assert [os.path.basename(p) for p in glob.glob(str(tmp_path / "*.ckpt"))] == ["faster_rcnn-1_2.ckpt"]


def test_atomic_checkpoint_keeps_only_states_whose_next_loss_passed(tmp_path):
    net, cell = _train_cell(sens=1.0)
    cb = AtomicCheckpoint(str(tmp_path), save_checkpoint_steps=1, keep_checkpoint_max=10)
    cb.on_train_step_end(_ckpt_ctx(cell, 1))
    assert glob.glob(str(tmp_path / "*.ckpt")) == []  # the state after step 1 waits for step 2's loss
    cb.on_train_step_end(_ckpt_ctx(cell, 2))
    # Step 3's loss, computed from the state after step 2, is NaN: that state is never saved, nor any later one.
    cb.on_train_step_end(_ckpt_ctx(cell, 3, loss=float("nan")))
    cb.on_train_step_end(_ckpt_ctx(cell, 4))
    cb.on_train_end(_ckpt_ctx(cell, 4))
    assert sorted(os.listdir(tmp_path)) == ["faster_rcnn-1_1.ckpt"]
    assert cb.latest.endswith("faster_rcnn-1_1.ckpt") and cb.guard.failed_step == 3


def test_divergence_guard_bounds_the_loss_by_the_running_median():
    guard = DivergenceGuard(spike_factor=100, window=3)
    assert guard.check(1, 1e6)  # the first step has nothing to compare with
    assert all(guard.check(step, loss) for step, loss in [(2, 4.0), (3, 2.0)])
    # median of the window (1e6, 4, 2) = 4: bound 400
    assert guard.check(4, 399.0)
    # window now (4, 2, 399): median 4 again; 401 > 400
    assert not guard.check(5, 401.0)
    assert guard.failed_step == 5 and guard.accepted_step == 4
    assert "total_loss=401 > 100 x the median 4 of the last 3 steps (loss_spike_factor)" in guard.reason
    assert not guard.check(6, 1.0)  # once failed, the run is not trusted any more
    assert guard.failed_step == 5


@pytest.mark.parametrize("factor, loss, accepted", [(0, 1e30, True), (0, float("nan"), False),
                                                     (100, float("inf"), False), (100, 99.0, True)])
def test_divergence_guard_without_spike_factor_only_rejects_non_finite(factor, loss, accepted):
    guard = DivergenceGuard(spike_factor=factor)
    assert guard.check(1, 1.0)
    assert guard.check(2, loss) is accepted


def test_divergence_guard_rejects_a_negative_factor():
    with pytest.raises(ValueError, match="spike_factor"):
        DivergenceGuard(spike_factor=-1)


def test_atomic_checkpoint_discards_the_state_a_spike_was_computed_from(tmp_path):
    net, cell = _train_cell(sens=1.0)
    guard = DivergenceGuard(spike_factor=10)
    loss_cb = LossCallBack(log_dir=str(tmp_path), guard=guard, per_print_times=0)
    ckpt_cb = AtomicCheckpoint(str(tmp_path / "ckpt"), save_checkpoint_steps=2, keep_checkpoint_max=10, guard=guard)
    loss_cb.on_train_begin(None)
    for step, loss in enumerate([3.0, 2.0, 1.5, 1.0, 1.2, 30.0, 1.0], start=1):
        ctx = _ckpt_ctx(cell, step, loss=loss)
        ctx.params.epoch_num = 4
        for cb in (loss_cb, ckpt_cb):
            cb.on_train_step_end(ctx)
        if ctx.stop:
            break
    ckpt_cb.on_train_end(ctx)
    # Step 6: 30 > 10 x median(3, 2, 1.5, 1, 1.2) = 15: stop. The state after step 4 passed (step 5's loss 1.2);
    # the one after step 6 was never written (not a saving step) and nothing after the stop is saved.
    assert step == 6 and guard.failed_step == 6 and "loss_spike_factor" in guard.reason
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["faster_rcnn-1_2.ckpt", "faster_rcnn-2_2.ckpt"]
    assert ckpt_cb.latest.endswith("faster_rcnn-2_2.ckpt")


def test_a_killed_runs_pending_checkpoint_is_removed_and_never_taken_for_one(tmp_path):
    net, cell = _train_cell(sens=1.0)
    cb = AtomicCheckpoint(str(tmp_path), save_checkpoint_steps=1, keep_checkpoint_max=10)
    cb.on_train_step_end(_ckpt_ctx(cell, 1))
    assert sorted(os.listdir(tmp_path)) == [".faster_rcnn-1_1.pending.ckpt"]  # the process dies here
    assert glob.glob(str(tmp_path / "faster_rcnn-*.ckpt")) == []
    AtomicCheckpoint(str(tmp_path), save_checkpoint_steps=1, keep_checkpoint_max=10)  # the next run
    assert os.listdir(tmp_path) == []


def test_atomic_checkpoint_never_saves_non_finite_parameters(tmp_path, capsys):
    # The loss is computed before the update, so it can be finite while the updated weights are not.
    net, cell = _train_cell(sens=1.0)
    cb = AtomicCheckpoint(str(tmp_path), save_checkpoint_steps=1, keep_checkpoint_max=10)
    cb.on_train_step_end(_ckpt_ctx(cell, 1))
    net.w.set_data(Tensor(np.array([1.0, np.inf, 0.0], np.float32)))
    ctx = _ckpt_ctx(cell, 2)
    cb.on_train_step_end(ctx)
    assert ctx.stop and cb.guard.failed_step == 2
    net.w.set_data(Tensor(np.zeros(3, np.float32)))  # whatever happens next, the run is not trusted any more
    cb.on_train_step_end(_ckpt_ctx(cell, 3))
    cb.on_train_end(_ckpt_ctx(cell, 3))
    assert sorted(os.listdir(tmp_path)) == ["faster_rcnn-1_1.ckpt"]
    assert "parameter w is not finite after global step 2" in capsys.readouterr().err


def test_interrupted_save_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    net, cell = _train_cell(sens=1.0)
    cb = AtomicCheckpoint(str(tmp_path), save_checkpoint_steps=1, keep_checkpoint_max=10)
    cb.on_train_step_end(_ckpt_ctx(cell, 1))
    cb.on_train_step_end(_ckpt_ctx(cell, 2))
    good = (tmp_path / "faster_rcnn-1_1.ckpt").read_bytes()

    def dies_half_way(network, path, append_dict=None):
        with open(path, "wb") as f:
            f.write(good[: len(good) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(hooks, "save_checkpoint", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        cb.on_train_step_end(_ckpt_ctx(cell, 3))  # promotes step 2's state, then dies writing step 3's
    assert sorted(os.listdir(tmp_path)) == ["faster_rcnn-1_1.ckpt", "faster_rcnn-1_2.ckpt"]
    assert (tmp_path / "faster_rcnn-1_1.ckpt").read_bytes() == good


def test_model_train_drives_the_cells_and_callbacks(tmp_path, mode):
    """Model.train (no sink) with the wrappers: one log line per step, checkpoints per epoch, loss decreases."""
    batches = [_batch(i) for i in range(3)]
    columns = ["image", "image_shape", "box", "label", "valid_num"]
    data = ds.NumpySlicesDataset({c: np.concatenate([b[i] for b in batches]) for i, c in enumerate(columns)},
                                 column_names=columns, shuffle=False).batch(BATCH, drop_remainder=True)
    net, cell = _train_cell(sens=256.0)
    loss_cb = LossCallBack(rank_id=0, log_dir=str(tmp_path))
    ckpt_cb = AtomicCheckpoint(str(tmp_path / "ckpt_0"), save_checkpoint_steps=3, keep_checkpoint_max=10)
    Model(cell).train(4, data, callbacks=[loss_cb, ckpt_cb], dataset_sink_mode=False)
    lines = (tmp_path / "loss_0.log").read_text().splitlines()
    assert len(lines) == 12
    losses = [float(line.rsplit(" ", 1)[1]) for line in lines]
    assert losses[-1] < losses[0]
    assert sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "ckpt_0" / "*.ckpt"))) == [
        f"faster_rcnn-{e}_3.ckpt" for e in range(1, 5)]
    last = ms.load_checkpoint(str(tmp_path / "ckpt_0" / "faster_rcnn-4_3.ckpt"))
    assert last["global_step"].asnumpy().item() == 12


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_on_signal_stops_after_the_step_and_restores_the_handlers(signum):
    if signal.getsignal(signum) == signal.SIG_IGN:
        pytest.skip(f"{signal.Signals(signum).name} is ignored in this process (started in the background by a shell "
                    "without job control): StopOnSignal leaves an ignored signal ignored, as it should")
    before = {s: signal.getsignal(s) for s in hooks.STOP_SIGNALS}
    stop = hooks.StopOnSignal()
    ctx = _Ctx()
    with stop:
        stop.on_train_step_end(ctx)
        assert not ctx.stop
        os.kill(os.getpid(), signum)  # the Python handler runs in this (main) thread before kill returns to us
        assert stop.signum == signum and stop.requested
        stop.on_train_step_end(ctx)
    assert ctx.stop
    assert {s: signal.getsignal(s) for s in hooks.STOP_SIGNALS} == before
    assert stop.name(signum) == signal.Signals(signum).name


def test_atomic_checkpoint_writes_nothing_new_on_the_way_out_of_an_interruption(tmp_path):
    net, cell = _train_cell(sens=1.0)
    stop = hooks.StopOnSignal()
    cb = AtomicCheckpoint(str(tmp_path), save_checkpoint_steps=2, keep_checkpoint_max=5, stop=stop)
    for step in (1, 2, 3):
        cb.on_train_step_end(_ckpt_ctx(cell, step))
    stop.signum = signal.SIGINT  # as the handler sets it
    cb.on_train_end(_ckpt_ctx(cell, 3))
    # The state after step 2 (its next loss passed) is kept; the state after step 3 is not written.
    assert sorted(os.listdir(tmp_path)) == ["faster_rcnn-1_2.ckpt"]
    assert cb.latest.endswith("faster_rcnn-1_2.ckpt")


def test_a_checkpoint_that_does_not_fit_names_it_and_leaves_nothing(tmp_path, monkeypatch):
    net, cell = _train_cell(sens=1.0)
    cb = AtomicCheckpoint(str(tmp_path), save_checkpoint_steps=1, keep_checkpoint_max=5)

    def full_disk(cell, path, append_dict=None):  # writes part of MindSpore's temporary, then the disk is full
        with open(os.path.splitext(path)[0] + ".tmp", "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hooks, "save_checkpoint", full_disk)
    with pytest.raises(WriteError) as err:
        cb.on_train_step_end(_ckpt_ctx(cell, 1))
    assert str(err.value) == f"could not write checkpoint {tmp_path / 'faster_rcnn-1_1.ckpt'}: No space left on device"
    assert os.listdir(tmp_path) == []
