"""The benches users run for speed figures, run for real at a tiny size: each exits 0 and its last line is its json
record with the figures its table printed (a change of a training function's signature broke two of them once)."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> dict:
    env = {**os.environ, "GLOG_v": "3"}
    proc = subprocess.run([sys.executable, f"bench/{script}", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_optimizer_times_both_sides():
    record = _run("bench_optimizer.py", "--steps", "1", "--compare", "grad_clip_norm=0.0")
    assert record["compare"] == ["grad_clip_norm=0.0"] and record["parameters"] == 182
    assert record["before_ms"] > 0 and record["after_ms"] > 0


def test_bench_train_compares_one_step_of_each_side():
    record = _run("bench_train.py", "--config_path", "demo_config.yaml", "--img_height", "64", "--img_width", "96",
                  "--steps", "1", "--warmup", "0", "--compare", "grad_clip_norm=0.0")
    assert record["before_s"] > 0 and record["after_s"] > 0, record
