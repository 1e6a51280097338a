"""train.py end to end on a tiny synthetic data set: losses, parameter updates, checkpoints, resume, divergence guard.

Each run is a real `train.py` process (GRAPH mode, 128x192 images, 4 training images = 2 steps per epoch).
The tiny configuration samples *every* anchor and every proposal (sampler counts >= candidates), so the random
samplers have nothing to choose and a resumed run can be compared with an uninterrupted one; with the usual counts
the sampling kernels restart their random streams in a new process and the runs agree only statistically.
Augmentation is off (flip_ratio = expand_ratio = 0) for the same reason.
"""
import os
import re

import mindspore as ms
import numpy as np
import pytest
import yaml

from src.model_utils.config import get_config
from tests.helpers.processes import ENV, ROOT, run_script
from tests.helpers.training import HEIGHT, TINY, WIDTH, read_params, run_train

pytestmark = pytest.mark.slow  # train.py end to end in subprocesses

LOG_LINE = re.compile(r"^\d+ epoch: (\d+) step: (\d+) total_loss: (\S+)$")


def _losses(log_path):
    lines = open(log_path, encoding="utf-8").read().splitlines()
    parsed = [LOG_LINE.match(line) for line in lines]
    assert all(parsed), lines
    return [(int(m.group(1)), int(m.group(2)), float(m.group(3))) for m in parsed]


def _model_zoo_resnet50(path):
    """A backbone checkpoint named as the model zoo's ImageNet ResNet-50 (classifier head included, 3x3 convs named
    conv2, down-sampling as down_sample_layer.0/1, no DCN offset/mask convs); random values."""
    from src.FasterRcnn.resnet import ResNetFea  # noqa: PLC0415
    from src.FasterRcnn.settings import BackboneSettings  # noqa: PLC0415
    from src.ops import Kernels  # noqa: PLC0415  (heavy; only this fixture builds it)

    cfg = get_config([])
    ms.set_seed(11)
    backbone = ResNetFea(BackboneSettings.from_config(cfg), kernels=Kernels.CPU)
    entries = []
    for param in backbone.get_parameters():
        name = param.name
        if ".defconv.p_conv." in name or ".defconv.m_conv." in name:
            continue
        name = name.replace("defconv.conv.weight", "conv2.weight")
        name = name.replace("conv_down_sample.", "down_sample_layer.0.")
        name = name.replace("bn_down_sample.", "down_sample_layer.1.")
        entries.append({"name": name, "data": ms.Tensor(param.asnumpy() * np.float32(1.01))})
    entries.append({"name": "end_point.weight", "data": ms.Tensor(np.ones((10, 2048), np.float32))})
    ms.save_checkpoint(entries, str(path))
    return {e["name"]: e["data"].asnumpy() for e in entries}


@pytest.fixture(scope="module")
def backbone_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("backbone") / "resnet50_imagenet.ckpt"
    return path, _model_zoo_resnet50(path)


@pytest.fixture(scope="module")
def uninterrupted(data_root, backbone_ckpt, tmp_path_factory):
    """2 epochs x 2 steps from a model-zoo backbone checkpoint, through the CPU launcher script (foreground)."""
    work = tmp_path_factory.mktemp("run_a")
    done = run_script("scripts/run_standalone_train_cpu.sh",
                      [backbone_ckpt[0], data_root, data_root / "mindrecord", "--epoch_size=2", *TINY],
                      cwd=work, env=dict(ENV, FOREGROUND="1"), timeout=1200)
    log = (work / "train" / "log").read_text() if (work / "train" / "log").exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + log[-3000:]
    return work / "train"


def test_losses_are_finite_and_logged_per_step(uninterrupted):
    losses = _losses(uninterrupted / "loss_0.log")
    assert [(e, s) for e, s, _ in losses] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(np.isfinite(v) and v > 0 for _, _, v in losses)
    stdout = (uninterrupted / "log").read_text()
    assert re.search(r"epoch: 2/2 step: 2/2 \| global step: 4 \| total_loss: \S+ \| rpn_cls_loss: ", stdout)


def test_start_lines_name_the_lr_and_warn_once_about_the_batch(uninterrupted):
    log = (uninterrupted / "log").read_text()
    assert re.search(r"Start training: epochs 1\.\.2 of 2, .*, base lr 0\.01$", log, re.MULTILINE), log[-3000:]
    # TINY's base_lr 0.01 for the cpu config's base_batch_size 16, run with batch 2 on 1 device: x 1/8.
    warnings = [line for line in log.splitlines() if "auto_scale_lr" in line]
    assert warnings == ["WARNING: base_lr 0.01 is set for a global batch of 16 (base_batch_size); this run's is 2 "
                        "(batch_size 2 x 1 device): --auto_scale_lr=True would use 0.00125"]
def test_checkpoints_hold_network_and_optimizer_and_parameters_change(uninterrupted):
    ckpt_dir = uninterrupted / "save_ckpt" / "ckpt_0"
    assert sorted(os.listdir(ckpt_dir)) == ["faster_rcnn-1_2.ckpt", "faster_rcnn-2_2.ckpt"]  # no partial file
    first, last = read_params(ckpt_dir / "faster_rcnn-1_2.ckpt"), read_params(ckpt_dir / "faster_rcnn-2_2.ckpt")
    assert first["global_step"].item() == 2 and last["global_step"].item() == 4
    trainable = [k[len("accum."):] for k in last if k.startswith("accum.")]
    assert len(trainable) > 100
    changed = [k for k in trainable if not np.array_equal(first[k], last[k])]
    assert len(changed) >= 0.9 * len(trainable), sorted(set(trainable) - set(changed))
    for part in ("backbone.layer4.", "fpn_ncek.", "rpn_with_loss.", "rcnn."):
        assert any(k.startswith(part) for k in changed), part
    # The original freezes the stem and layer1 (resnet_weights_update False): no optimizer state, no change.
    assert "accum.backbone.conv1.weight" not in last
    np.testing.assert_array_equal(first["backbone.conv1.weight"], last["backbone.conv1.weight"])
    assert all(np.all(np.isfinite(v)) for v in last.values() if v.dtype.kind == "f")


def test_pretrained_backbone_is_loaded_and_reported(uninterrupted, backbone_ckpt):
    path, values = backbone_ckpt
    log = (uninterrupted / "log").read_text()
    loaded = int(re.search(rf"Pre-trained backbone {re.escape(str(path))}: (\d+) parameters loaded", log).group(1))
    assert loaded == len(values) - 1  # all but the classifier
    assert re.search(r"missing \(left at their initial values\): .*backbone\.layer2\.0\.defconv\.p_conv\.weight", log)
    assert "unexpected (ignored): end_point.weight" in log
    # The stem and layer1 are frozen (the original): after training they still hold the checkpoint's values.
    trained = read_params(uninterrupted / "save_ckpt" / "ckpt_0" / "faster_rcnn-2_2.ckpt")
    for name in ("conv1.weight", "layer1.0.conv1.weight", "layer1.0.down_sample_layer.0.weight"):
        target = "backbone." + name.replace("down_sample_layer.0.", "conv_down_sample.")
        np.testing.assert_array_equal(trained[target], values[name], err_msg=name)
    # A DCN block's 3x3 (model zoo `conv2`) was loaded and then trained a little.
    start, end = values["layer2.0.conv2.weight"], trained["backbone.layer2.0.defconv.conv.weight"]
    assert not np.array_equal(start, end)
    assert np.abs(end - start).max() < 0.1 * np.abs(start).max()


def test_resume_continues_like_the_uninterrupted_run(uninterrupted, data_root, tmp_path):
    """Resume from the epoch-1 checkpoint (what a run killed during epoch 2 leaves) and train epoch 2.

    Epoch 2 must see the batches of the uninterrupted run's epoch 2 (the shuffle order is restored), and end
    in the same state.
    """
    reference = uninterrupted / "save_ckpt" / "ckpt_0"
    done = run_train(tmp_path, data_root, "--epoch_size=2", f"--resume={reference / 'faster_rcnn-1_2.ckpt'}")
    assert "Resumed from" in done.stdout and "global step 2" in done.stdout
    resumed = tmp_path / "save_ckpt" / "ckpt_0"
    assert sorted(p for p in os.listdir(resumed) if p.endswith(".ckpt")) == ["faster_rcnn-2_2.ckpt"]
    # Same losses at steps 3 and 4 ...
    ref_losses = _losses(uninterrupted / "loss_0.log")[2:]
    new_losses = _losses(tmp_path / "loss_0.log")
    assert [(e, s) for e, s, _ in new_losses] == [(2, 1), (2, 2)]
    np.testing.assert_allclose([v for *_, v in new_losses], [v for *_, v in ref_losses], rtol=1e-3)
    # ... and the same final state: weights, momentum accumulators, global step.
    ref, new = read_params(reference / "faster_rcnn-2_2.ckpt"), read_params(resumed / "faster_rcnn-2_2.ckpt")
    assert set(ref) == set(new)
    assert new["global_step"].item() == 4
    # The two steps of epoch 2 changed every tensor as they did in the uninterrupted run: the difference of the
    # updates (state - epoch-1 state) within 1 % of the update's norm. Not bitwise: the samplers return the same
    # sets in another random order, CPU reductions are not bit-reproducible, and a rounding-level change can move a
    # proposal across an NMS or IoU threshold, changing a few RoIs' contributions (measured up to 1.2e-4). A lost
    # momentum state or a learning rate from the wrong step changes the updates by tens of percent.
    start = read_params(reference / "faster_rcnn-1_2.ckpt")
    for key in ref:
        if ref[key].dtype.kind != "f" or key not in start:
            continue
        ref_update = ref[key].astype(np.float64) - start[key]
        new_update = new[key].astype(np.float64) - start[key]
        assert np.linalg.norm(new_update - ref_update) <= 1e-2 * np.linalg.norm(ref_update), key


def test_checkpoint_reload_gives_the_same_outputs(uninterrupted):
    """Two networks built from different random initialisations compute the same detections once loaded."""
    from src.FasterRcnn import build_model  # noqa: PLC0415  (heavy; only this test builds the network)
    from src.ops import Kernels  # noqa: PLC0415

    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = get_config([a for a in TINY if not a.startswith("--python_multiprocessing")])
    ckpt = ms.load_checkpoint(str(uninterrupted / "save_ckpt" / "ckpt_0" / "faster_rcnn-2_2.ckpt"))
    rng = np.random.default_rng(0)
    img = ms.Tensor(rng.normal(size=(1, 3, HEIGHT, WIDTH)).astype(np.float32))
    metas = ms.Tensor(np.array([[HEIGHT, WIDTH, 1.0, 1.0]], np.float32))
    outputs = []
    for seed in (5, 6):
        ms.set_seed(seed)
        net = build_model(cfg, kernels=Kernels.CPU)
        net.set_train(False)
        not_loaded, _ = ms.load_param_into_net(net, ckpt, strict_load=True)
        assert not_loaded == []
        outputs.append([o.asnumpy() for o in net(img, metas, None, None, None)])
    for a, b in zip(*outputs, strict=True):
        np.testing.assert_array_equal(a, b)


# --base_lr=1000 with a long warm-up from 1e-5 of it: lr = 0.01 + 0.1 * i at step i (0-based), a sane first step
# and then larger and larger ones until the weights explode. loss_spike_factor 1000 leaves a wide margin on both
# sides of the bound (measured: 6.2, 4.1, 462, 1.8e12); the default 100 would stop one step earlier.
DIVERGING = ["--base_lr=1000", "--warmup_step=10000", "--warmup_ratio=1e-5", "--loss_spike_factor=1000"]


def test_divergence_stops_at_the_spike_and_names_the_last_accepted_checkpoint(data_root, tmp_path):
    done = run_train(tmp_path / "diverging", data_root, "--epoch_size=6", *DIVERGING, check=False)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "training from scratch" in done.stderr  # the warning for --pre_trained none
    losses = [loss for _, _, loss in _losses(tmp_path / "diverging" / "loss_0.log")]
    # The bound, worked out from the logged losses: the first step above 1000 x the median of the ones before it.
    spike = next(i for i in range(1, len(losses)) if losses[i] > 1000 * np.median(losses[:i]))
    assert spike == len(losses) - 1  # training stopped at it
    bad_step = spike + 1  # global steps count from 1
    assert f"training stopped at global step {bad_step}: loss spike: total_loss=" in done.stderr
    # A checkpoint (every epoch = 2 steps) holds the weights after its step; it is kept only when the next step's
    # loss, computed from them, passed: the states after steps 2, 4, ... below bad_step - 1.
    kept_steps = [s for s in range(2, bad_step - 1, 2)]
    folder = tmp_path / "diverging" / "save_ckpt" / "ckpt_0"
    assert sorted(os.listdir(folder)) == [f"faster_rcnn-{s // 2}_2.ckpt" for s in kept_steps]
    assert kept_steps, "the measured run had an accepted checkpoint; the settings no longer reach one"
    last = f"faster_rcnn-{kept_steps[-1] // 2}_2.ckpt"
    assert f"last good checkpoint: save_ckpt/ckpt_0/{last}" in done.stderr
    # Its weights are the ones before the explosion: those of the same schedule stopped after that epoch.
    reference = run_train(tmp_path / "reference", data_root, f"--epoch_size={kept_steps[-1] // 2}", *DIVERGING)
    assert "Training done" in reference.stdout
    kept, expected = read_params(folder / last), read_params(tmp_path / "reference" / "save_ckpt" / "ckpt_0" / last)
    assert int(kept["step_num"]) == kept_steps[-1]
    for name, value in expected.items():
        if value.dtype.kind == "f" and value.size > 1 and name != "learning_rate":  # the schedule is per run
            assert np.all(np.isfinite(kept[name])), name
            # rounding-level differences grow with the large learning rates: compare against the tensor's scale
            np.testing.assert_allclose(kept[name], value, atol=1e-2 * np.abs(value).max() + 1e-6, err_msg=name)


@pytest.mark.parametrize("extra, message", [
    (["--pre_trained=/no/such/backbone.ckpt"], "--pre_trained '/no/such/backbone.ckpt': no such file"),
    (["--resume=/no/such/run.ckpt"], "--resume '/no/such/run.ckpt': no such file"),
    (["--device_target=Ascend"], "device_target=Ascend is not available"),
])
def test_bad_arguments_fail_early_with_a_message(data_root, tmp_path, extra, message):
    done = run_train(tmp_path, data_root, *extra, check=False)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_resume_from_something_else_is_a_clear_error(data_root, tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    done = run_train(tmp_path, data_root, f"--resume={junk}", check=False)
    assert done.returncode == 2
    assert f"--resume '{junk}': not a readable MindSpore checkpoint" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_config_has_every_key_of_the_cpu_config():
    def keys(name):
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            return set(next(yaml.safe_load_all(f)))

    assert keys("demo_config.yaml") == keys("default_config_cpu.yaml")
    cfg = get_config([f"--config_path={ROOT}/demo_config.yaml"])
    assert cfg.device_target == "CPU"
    assert cfg.num_classes == len(cfg.coco_classes)


def test_batch_norm_statistics_frozen_after_resnet_bn_training_epochs(data_root, tmp_path):
    """Batch statistics in epoch 1 (moving statistics tracked), then frozen: epoch 2 leaves them as epoch 1 did,
    while the weights keep training; one log and one lr schedule across both phases."""
    done = run_train(tmp_path, data_root, "--epoch_size=2", "--resnet_bn_training=True",
                  "--resnet_bn_training_epochs=1", "--resnet_weights_update=True")
    assert "epochs 1..1 of 2" in done.stdout and "BatchNorm on batch statistics" in done.stdout
    assert "epochs 2..2 of 2" in done.stdout and "BatchNorm on moving statistics" in done.stdout
    assert re.search(r"epoch: 1/2 step: 2/2 \| global step: 2 \|", done.stdout)  # the run's epochs, not the phase's
    assert [(e, s) for e, s, _ in _losses(tmp_path / "loss_0.log")] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    ckpts = tmp_path / "save_ckpt" / "ckpt_0"
    first, second = read_params(ckpts / "faster_rcnn-1_2.ckpt"), read_params(ckpts / "faster_rcnn-2_2.ckpt")
    stat = "backbone.layer2.0.bn1.moving_mean"
    assert np.any(first[stat] != 0)  # tracked in epoch 1 (initial value 0)
    np.testing.assert_array_equal(second[stat], first[stat])
    weight = "backbone.layer2.0.conv1.weight"
    assert not np.array_equal(second[weight], first[weight])
    assert int(second["global_step"][0]) == 4


def test_batch_norm_phases_without_checkpoints_fail_before_training(data_root, tmp_path):
    done = run_train(tmp_path, data_root, "--epoch_size=2", "--resnet_bn_training=True",
                     "--resnet_bn_training_epochs=1", "--save_checkpoint=False", check=False)
    assert done.returncode == 2
    assert "resnet_bn_training_epochs=1 needs checkpoints on every rank" in done.stderr
    assert "Start training" not in done.stdout
