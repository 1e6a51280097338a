"""Data-parallel training on the CPU: scripts/run_distribute_train_cpu.sh with 2 msrun workers.

Each rank reads its half of a 4-image synthetic set (one batch of 2), gradients are averaged across the ranks, so
after the step both ranks hold the same parameters although they computed different losses.
"""
import os
import re
import socket
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from tests.test_train import TINY

pytestmark = pytest.mark.slow  # two msrun workers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT, FOREGROUND="1")
LOG_LINE = re.compile(r"^\d+ epoch: 1 step: 1 total_loss: (\S+)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_workers_end_with_identical_parameters(tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "src.synthetic_data", "--out", str(data), "--num_train", "4",
                    "--num_val", "1", "--seed", "5"], cwd=ROOT, env=ENV, check=True, capture_output=True)
    (data / "mindrecord").mkdir()
    env = dict(ENV, MASTER_PORT=str(_free_port()))
    done = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "run_distribute_train_cpu.sh"), "2", "none", str(data),
         str(data / "mindrecord"), "--epoch_size=1", "--save_on_master=False", *TINY],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    work = tmp_path / "train_parallel"
    logs = "".join(p.read_text()[-3000:] for p in sorted((work / "msrun_log").glob("*.log")))
    assert done.returncode == 0, done.stdout + done.stderr + logs

    losses = []
    for rank in (0, 1):
        lines = (work / f"loss_{rank}.log").read_text().splitlines()
        assert len(lines) == 1 and LOG_LINE.match(lines[0]), lines
        losses.append(float(LOG_LINE.match(lines[0]).group(1)))
    assert all(np.isfinite(losses))
    assert losses[0] != losses[1]  # each rank trained on its own shard

    params = [ms.load_checkpoint(str(work / "save_ckpt" / f"ckpt_{rank}" / "faster_rcnn-1_1.ckpt"))
              for rank in (0, 1)]
    assert set(params[0]) == set(params[1])
    # The step changed the network (the momentum accumulators hold the averaged gradient) ...
    assert any(np.any(params[0][k].asnumpy() != 0) for k in params[0] if k.startswith("accum."))
    # ... identically on both ranks.
    for key in params[0]:
        np.testing.assert_array_equal(params[0][key].asnumpy(), params[1][key].asnumpy(), err_msg=key)
