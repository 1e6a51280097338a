"""bench/bench_scaling.py without running the benchmarks: the measurements it asks for, the memory guard, the
fixed + per-megapixel fit (hand-computed lines) and the table it prints."""
import json
import sys

import pytest

from bench import bench_scaling as bench


def test_predicted_rss_least_slope_then_a_line():
    slope = bench.RSS_GB_PER_MEGAPIXEL_IMAGE
    assert bench.predicted_rss_gb([], 5.0) == 0.0
    # one point: through it with the least slope
    assert bench.predicted_rss_gb([(0.1, 2.0)], 0.6) == pytest.approx(2.0 + slope * 0.5)
    # rss = 1 + 4 x work through (1, 5) and (2, 9): 17 at work 4; never below the largest measured
    assert bench.predicted_rss_gb([(1.0, 5.0), (2.0, 9.0)], 4.0) == pytest.approx(17.0)
    assert bench.predicted_rss_gb([(1.0, 5.0), (2.0, 9.0)], 0.5) == pytest.approx(9.0)
    # a flatter line than the least slope: the least slope through the largest point
    assert bench.predicted_rss_gb([(1.0, 5.0), (2.0, 5.5)], 4.0) == pytest.approx(5.5 + slope * 2.0)


def test_fixed_and_per_megapixel_is_the_line_through_the_points():
    assert bench.fixed_and_per_megapixel([(0.1, 1.0)]) is None
    fixed, per_mp = bench.fixed_and_per_megapixel([(0.1, 1.2), (0.4, 2.1), (1.0, 3.9)])
    assert (fixed, per_mp) == (pytest.approx(0.9), pytest.approx(3.0))


def test_runs_sizes_then_batches_skips_what_would_not_fit_and_prints_the_table(monkeypatch, capsys):
    commands = []

    def fake_run_json(label, command):
        commands.append(command)
        height, width = (int(command[command.index(k) + 1]) for k in ("--img_height", "--img_width"))
        batch = int(command[command.index("--batch_size") + 1])
        megapixels = height * width / 1e6
        if command[1] == "bench/bench_infer.py":
            return {"s_per_image_median": 0.1 + 2.0 * megapixels, "peak_rss_mb": 1024 * (1 + megapixels)}
        record = {"step_s_median": batch * (0.5 + 10.0 * megapixels),
                  "peak_rss_mb": 1024 * (1 + 8 * megapixels * batch)}
        if "--profile" in command:
            record["top_ops"] = [{"op": "Conv2D", "s": 1.0, "share": 0.4, "calls": 9}]
        return record

    monkeypatch.setattr(bench, "run_json", fake_run_json)
    monkeypatch.setattr(bench, "available_memory_gb", lambda: 20.0)  # 16 GB allowed at 0.8
    monkeypatch.setattr(sys, "argv", ["bench_scaling.py", "--sizes", "512x768", "256x384", "--batches", "4", "1",
                                      "--profile", "--config_path", "demo_config.yaml"])
    bench.main()
    labels = [(c[1], c[c.index("--img_height") + 1], c[c.index("--batch_size") + 1]) for c in commands]
    # smallest size first, batches ascending; 512x768 batch 4 (12.6 + 1 GB by the line) is under 16 GB
    assert labels == [("bench/bench_train.py", "256", "1"), ("bench/bench_train.py", "256", "4"),
                      ("bench/bench_infer.py", "256", "1"), ("bench/bench_train.py", "512", "1"),
                      ("bench/bench_train.py", "512", "4"), ("bench/bench_infer.py", "512", "1")]
    assert all(c[-2:] != ["--profile"] or c[c.index("--batch_size") + 1] == "4" for c in commands)
    assert sum("--profile" in c for c in commands) == 2  # batch 2 not measured: the largest batch is profiled
    assert all(c[c.index("--config_path") + 1] == "demo_config.yaml" for c in commands)
    out = capsys.readouterr().out.splitlines()
    assert "| 256x384 | 0.10 | 1.48 | 5.93 | 1.48 | 1.48 | 0.297 | 1.8/4.1; 1.1 |" in out
    assert "training, batch 1: 0.50 s fixed + 10.00 s per megapixel of the canvas (x 1 images), least squares " \
           "over 2 sizes" in out
    assert "inference: 0.100 s fixed + 2.000 s per megapixel, least squares over 2 sizes" in out
    assert "- 512x768, batch 4: Conv2D 40 %" in out
    record = json.loads(out[-1])
    assert record["fits"]["4"] == [pytest.approx(2.0), pytest.approx(40.0)]


def test_a_measurement_predicted_over_the_memory_is_not_run(monkeypatch, capsys):
    commands = []

    def fake_run_json(label, command):
        commands.append(command)
        batch = int(command[command.index("--batch_size") + 1])
        return {"step_s_median": 1.0, "s_per_image_median": 0.5, "peak_rss_mb": 1024 * (4 + 3 * batch)}

    monkeypatch.setattr(bench, "run_json", fake_run_json)
    monkeypatch.setattr(sys, "argv", ["bench_scaling.py", "--sizes", "512x768", "--batches", "1", "2", "4"])
    # 512x768 is 0.393 megapixels: batch 1 takes 7 GB; batch 2 predicted at 7 + 2 x 0.393 = 7.8 GB, takes 10 GB;
    # batch 4 by the line through both (7 + 7.6 x 0.393 x 3 = 16.0 GB): run with 20.1 GB allowed, not with 15.9
    monkeypatch.setattr(bench, "available_memory_gb", lambda: 25.1)
    bench.main()
    assert [c[c.index("--batch_size") + 1] for c in commands if c[1] == "bench/bench_train.py"] == ["1", "2", "4"]
    monkeypatch.setattr(bench, "available_memory_gb", lambda: 19.9)
    commands.clear()
    bench.main()
    assert [c[c.index("--batch_size") + 1] for c in commands if c[1] == "bench/bench_train.py"] == ["1", "2"]
    out = capsys.readouterr().out
    assert "not run: 16.0 GB predicted, 15.9 GB allowed" in out
    # inference is predicted from training's line until one inference is measured (7.0 GB at batch 1's work): run
    assert [c[1] for c in commands][-1] == "bench/bench_infer.py"


@pytest.mark.parametrize("args, message", [
    (["--sizes", "100x100"], "batches must be >= 1 and sizes multiples of 32"),
    (["--batches", "0"], "batches must be >= 1 and sizes multiples of 32"),
    (["--memory_fraction", "2"], "--memory_fraction 2.0: expected a share of the memory, in (0, 1]"),
])
def test_bad_arguments_are_one_line(monkeypatch, capsys, args, message):
    monkeypatch.setattr(bench, "run_json", lambda *a: pytest.fail("nothing should run"))
    monkeypatch.setattr(sys, "argv", ["bench_scaling.py", *args])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"bench_scaling.py: error: {message}"
