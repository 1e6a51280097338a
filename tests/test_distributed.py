"""Data-parallel training on the CPU: scripts/run_distribute_train_cpu.sh with 2 msrun workers, on one node and as
two nodes.

Each rank reads its half of a 4-image synthetic set, gradients are averaged across the ranks, so after each step
both ranks hold the same parameters although they computed different losses.
"""
import os
import re
import signal
import socket
import subprocess

import mindspore as ms
import numpy as np
import pytest

from tests.helpers.training import TINY

pytestmark = pytest.mark.slow  # msrun workers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "run_distribute_train_cpu.sh")
ENV = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT, FOREGROUND="1")
LOG_LINE = re.compile(r"^\d+ epoch: 1 step: (\d) total_loss: (\S+)$")
TIMEOUT = 900  # seconds; a run takes about a minute


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _synthetic_data(synthetic_data, tmp_path):
    data = synthetic_data(tmp_path / "data", num_train=4, num_val=1, seed=5)
    (data / "mindrecord").mkdir()
    return data


def _launch(cwd, env, device_num: int, data, *options) -> subprocess.Popen:
    os.makedirs(cwd, exist_ok=True)
    return subprocess.Popen(
        ["bash", SCRIPT, str(device_num), "none", str(data), str(data / "mindrecord"), "--save_on_master=False",
         *TINY, *options], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def _wait(runs: list[subprocess.Popen]) -> list[str]:
    """Each run's output, once all have ended; a run still going after TIMEOUT is killed with its workers."""
    try:
        return [run.communicate(timeout=TIMEOUT)[0] for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)


def _check_run(work, output: str, returncode: int) -> None:
    logs = "".join(p.read_text()[-3000:] for p in sorted((work / "msrun_log").glob("*.log")))
    assert returncode == 0, output[-3000:] + logs


def _losses(log_path, steps: int) -> list[float]:
    lines = log_path.read_text().splitlines()
    matches = [LOG_LINE.match(line) for line in lines]
    assert len(lines) == steps and all(matches), lines
    assert [int(m.group(1)) for m in matches] == list(range(1, steps + 1))
    return [float(m.group(2)) for m in matches]


def _assert_identical_state(paths) -> None:
    params = [ms.load_checkpoint(str(path)) for path in paths]
    assert set(params[0]) == set(params[1])
    # The steps changed the network (the momentum accumulators hold the averaged gradient) ...
    assert any(np.any(params[0][k].asnumpy() != 0) for k in params[0] if k.startswith("accum."))
    # ... identically on both ranks.
    for key in params[0]:
        np.testing.assert_array_equal(params[0][key].asnumpy(), params[1][key].asnumpy(), err_msg=key)


def test_two_cpu_workers_end_with_identical_parameters(synthetic_data, tmp_path):
    data = _synthetic_data(synthetic_data, tmp_path)
    run = _launch(tmp_path, dict(ENV, MASTER_PORT=str(_free_port())), 2, data, "--epoch_size=1")
    work = tmp_path / "train_parallel"
    _check_run(work, _wait([run])[0], run.returncode)

    losses = [_losses(work / f"loss_{rank}.log", steps=1)[0] for rank in (0, 1)]
    assert all(np.isfinite(losses))
    assert losses[0] != losses[1]  # each rank trained on its own shard
    _assert_identical_state([work / "save_ckpt" / f"ckpt_{rank}" / "faster_rcnn-1_1.ckpt" for rank in (0, 1)])


def test_two_nodes_of_one_worker_end_with_identical_parameters(synthetic_data, tmp_path):
    """Node 0 and node 1 (NODE_NUM=2, NODE_RANK, MASTER_ADDR=127.0.0.1, DEVICE_NUM=1 each), each in its own folder;
    2 steps of batch 1. msrun starts the scheduler on the node that finds MASTER_ADDR among its addresses (`ip -j
    addr`): node 1 gets an `ip` that lists none, as a second machine would, so that only node 0 starts one."""
    data = _synthetic_data(synthetic_data, tmp_path)
    shim = tmp_path / "other_machine"
    shim.mkdir()
    (shim / "ip").write_text("#!/bin/sh\necho '[]'\n")
    (shim / "ip").chmod(0o755)
    env = dict(ENV, NODE_NUM="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    runs = [_launch(nodes[0], dict(env, NODE_RANK="0"), 1, data, "--epoch_size=1", "--batch_size=1"),
            _launch(nodes[1], dict(env, NODE_RANK="1", PATH=f"{shim}:{env['PATH']}"), 1, data, "--epoch_size=1",
                    "--batch_size=1")]
    outputs = _wait(runs)
    for rank, (node, run, output) in enumerate(zip(nodes, runs, outputs, strict=True)):
        _check_run(node / "train_parallel", output, run.returncode)
        assert f"on 1 CPU workers of node {rank} of 2 (2 in all)" in output

    losses = [_losses(node / "train_parallel" / f"loss_{rank}.log", steps=2) for rank, node in enumerate(nodes)]
    assert np.all(np.isfinite(losses))
    assert losses[0] != losses[1]  # each rank trained on its own shard
    _assert_identical_state([node / "train_parallel" / "save_ckpt" / f"ckpt_{rank}" / "faster_rcnn-1_2.ckpt"
                             for rank, node in enumerate(nodes)])
