"""bench/bench_vs_torchvision.py without running the benchmarks: its sizes, the line for a missing torchvision venv,
the measurements it asks for and the table and targets it prints from them."""
import json
import subprocess
import sys

import pytest

from bench import bench_vs_torchvision as bench
from tests.conftest import ROOT


def test_parse_size():
    assert bench.parse_size("768x1280") == (768, 1280)
    with pytest.raises(Exception, match="HEIGHTxWIDTH"):
        bench.parse_size("768")


def test_missing_torchvision_venv_says_how_to_make_it():
    proc = subprocess.run([sys.executable, "bench/bench_vs_torchvision.py", "--torchvision_python", "/nonexistent"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "no torchvision venv at /nonexistent: run `make bench-torchvision-venv`"]


def test_table_and_targets(monkeypatch, capsys):
    """Each measurement runs its script at the size with its batch; the table holds both sides and the ratios."""
    commands = []
    figures = {"bench_train.py": {"step_s_median": 1.5, "peak_rss_mb": 6144},
               "bench_infer.py": {"s_per_image_median": 0.3, "peak_rss_mb": 2048},
               "train": {"train_s_per_step": 10.0, "peak_rss_gb": 9.0},
               "infer": {"infer_s_per_image": 1.0, "peak_rss_gb": 3.0}}

    def fake_run_json(label, command):
        commands.append(command)
        key = command[command.index("--only") + 1] if "--only" in command else command[1].split("/")[-1]
        return {**figures[key], "threads": 2, "torch": "t", "torchvision": "tv"}

    monkeypatch.setattr(bench, "run_json", fake_run_json)
    monkeypatch.setattr(sys, "argv", ["bench_vs_torchvision.py", "--sizes", "128x192", "--steps", "1",
                                      "--torchvision_python", sys.executable])
    bench.main()
    assert [c[1] for c in commands] == ["bench/bench_train.py", "bench/torchvision_reference.py",
                                        "bench/bench_infer.py", "bench/torchvision_reference.py"]
    assert all(c[c.index("--img_height") + 1] == "128" and c[c.index("--img_width") + 1] == "192" for c in commands)
    assert commands[0][-2:] == ["--batch_size", "2"] and commands[1][-2:] == ["--train_batch", "2"]
    assert "--no_mindir" in commands[2] and commands[3][-2:] == ["--infer_batch", "1"]
    out = capsys.readouterr().out.splitlines()
    assert "| 128x192 | 1.50 | 10.00 | 0.15 | 0.300 | 1.000 | 0.30 | 6.0 / 9.0 | 2.0 / 3.0 |" in out
    assert ("targets at 128x192: training 0.15x (target <= 0.15: met); inference 0.30x (target <= 0.35: met); "
            "peak RSS 6.0 GB (target <= 7 GB: met)") in out
    assert json.loads(out[-1])["rows"][0]["train_ratio"] == 0.15
