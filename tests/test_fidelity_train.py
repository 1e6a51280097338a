"""Fidelity in training: one training step of the port computes what the original's computes.

The network of default_config_gpu.yaml with the training golden's overrides (256x384, batch 2, both samplers taking
every candidate; tests/helpers/fidelity.py TRAIN_OVERRIDES) gets the reference checkpoint (salt 0) strictly, then one
step of this project's train-step cell (`TrainOneStepCell(WithLossCell(net, LossNet()))`, backward seeded with the
static loss scale) with `nn.SGD` as the original's step was run (tests/data/golden_train_256x384.npz: lr 0.02 constant,
momentum 0.91, weight decay 1e-5, loss scale 256) on the golden batch. Checked against what the original computed:
- the trainable parameters are the original's (`trainable_names`);
- the six training outputs within 1e-5 relative of `losses`, the step's loss of `step_loss`;
- every trainable parameter's update (after - before): L2 norm within 2e-3 relative, the sampled values within 5e-3
  of the parameter's largest sampled |update| (the offset convs of layer2 are the loosest: a bilinear sample's
  derivative jumps where its position crosses an integer; tests/data/FIDELITY.md).

Each check runs with this project's CPU kernels and with MindSpore's own operators (Kernels.MINDSPORE: the
graph GPU and Ascend run), in GRAPH_MODE (what train.py runs) and in PYNATIVE_MODE. The largest deviations per
parameter group are printed (run with -s to see them).
"""

import numpy as np
import pytest

from src.model_utils.config import get_config
from src.network_define import LOSS_TERMS
from tests.helpers.fidelity import (
    CONFIG_GPU,
    GOLDEN_TRAIN,
    TRAIN_OVERRIDES,
    kernels_and_mode,
    one_training_step,
    parameter_group,
    reference_network,
)

pytestmark = pytest.mark.slow  # four training steps of the full network

LOSS_RTOL = 1e-5
NORM_RTOL = 2e-3
VALUE_TOL = 5e-3  # times the parameter's largest sampled |update|
RUNS = [("cpu", "graph"), ("cpu", "pynative"), ("mindspore", "graph"),
        ("mindspore", "pynative")]


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN_TRAIN))


@pytest.fixture(scope="module", params=RUNS, ids=["-".join(run) for run in RUNS])
def step(request, golden, reference_ckpt):
    """(StepRecord of one training step of the port on the golden batch, the run's name)."""
    with kernels_and_mode(*request.param) as kernels:
        cfg = get_config([f"--config_path={CONFIG_GPU}"], **TRAIN_OVERRIDES)
        net = reference_network(cfg, reference_ckpt, kernels)
        net.set_train(True)
        return one_training_step(net, golden), "-".join(request.param)


def test_trainable_parameters_are_the_originals(step, golden):
    record, _ = step
    assert sorted(record.trainable_names) == sorted(golden["trainable_names"].tolist())


def test_losses_match_original(step, golden):
    record, name = step
    want = golden["losses"]
    deviation = np.abs(record.terms - want) / np.abs(want)
    print(f"\n{name} losses: " + ", ".join(f"{term} {value:.6f} (rel. dev. {dev:.1e})"
                                          for term, value, dev in zip(LOSS_TERMS, record.terms, deviation,
                                                                      strict=True)))
    assert np.all(deviation <= LOSS_RTOL), dict(zip(LOSS_TERMS, deviation, strict=True))
    assert abs(record.loss - float(golden["step_loss"])) <= LOSS_RTOL * abs(float(golden["step_loss"]))


def update_deviations(record, golden) -> dict[str, tuple[float, float]]:
    """name -> (relative deviation of the update norm, largest sampled deviation / largest sampled |update|)."""
    deviations = {}
    for name in golden["trainable_names"].tolist():
        want_norm = float(golden[f"upd/{name}/norm"])
        want = golden[f"upd/{name}/val"].astype(np.float64)
        norm_dev = abs(record.update_norms[name] - want_norm) / want_norm
        value_dev = float(np.abs(record.update_samples[name] - want).max() / np.abs(want).max())
        deviations[name] = (norm_dev, value_dev)
    return deviations


def test_parameter_updates_match_original(step, golden):
    record, name = step
    assert not record.nonfinite
    deviations = update_deviations(record, golden)
    groups: dict[str, list[float]] = {}
    for param, (norm_dev, value_dev) in deviations.items():
        worst = groups.setdefault(parameter_group(param), [0.0, 0.0])
        worst[0], worst[1] = max(worst[0], norm_dev), max(worst[1], value_dev)
    print(f"\n{name} updates, largest deviation per group (norm rel., sampled values / largest |update|):")
    for group, (norm_dev, value_dev) in sorted(groups.items()):
        print(f"  {group:28s} {norm_dev:.1e} {value_dev:.1e}")
    too_far = {param: devs for param, devs in deviations.items() if devs[0] > NORM_RTOL or devs[1] > VALUE_TOL}
    assert not too_far
