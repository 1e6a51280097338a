"""How the cost grows with image size and batch, to plan a run: training s/step at batch 1, 2 and 4 and inference
s/image (batch 1) at each size, each measured in a fresh process (bench/bench_train.py: train.py's own training
cell; bench/bench_infer.py --no_mindir), as a markdown table; then, for each batch, the least-squares split of the
step time into a fixed part and a part per megapixel; with --profile, each size's top operator types of the
batch-2 training step (the size's largest batch when 2 is not measured).

    GLOG_v=3 .venv/bin/python bench/bench_scaling.py [--sizes 256x384 512x768 768x1280 1024x1600]
        [--batches 1 2 4] [--steps 2] [--warmup 0] [--config_path YAML] [--profile] [--memory_fraction 0.8]

Sizes run smallest first, batches smallest first. A measurement whose peak RSS, predicted from the ones before it
(a straight line in pixels x batch through them; proportional to it after the first), would exceed memory_fraction
of the memory available is not run and says so in its cell: the out-of-memory killer would end more than this
process. The last line is one json object.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.runner import available_memory_gb, busy, machine_line, parse_size, run_json  # noqa: E402

PROFILED_BATCH = 2
# The least growth of peak RSS assumed per megapixel-image (training at 256x384 -> 768x1280, batch 2, grew by about
# 1.6 GB per megapixel-image; most of a small size's RSS is fixed: weights, the compiled graph, the runtime).
RSS_GB_PER_MEGAPIXEL_IMAGE = 2.0
TOP_OPS_SHOWN = 5


def predicted_rss_gb(done: list[tuple[float, float]], work: float) -> float:
    """Peak RSS (GB) of a measurement of `work` (megapixels x batch) from `done` [(work, rss_gb), ...] of the same
    kind: the least-squares line through them, its slope at least RSS_GB_PER_MEGAPIXEL_IMAGE, never below the
    largest measured; through the one point with that slope while one work is known; 0 when none is."""
    if not done:
        return 0.0
    works, rss = np.array(done, dtype=np.float64).T
    if len(set(works)) < 2:
        slope, intercept = RSS_GB_PER_MEGAPIXEL_IMAGE, rss.max() - RSS_GB_PER_MEGAPIXEL_IMAGE * works[rss.argmax()]
    else:
        slope, intercept = np.polyfit(works, rss, 1)
        if slope < RSS_GB_PER_MEGAPIXEL_IMAGE:  # through the largest point with the least slope
            slope = RSS_GB_PER_MEGAPIXEL_IMAGE
            intercept = rss.max() - slope * works[rss.argmax()]
    return float(max(intercept + slope * work, rss.max()))


def size_name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def megapixels(size: tuple[int, int]) -> float:
    return size[0] * size[1] / 1e6


def fixed_and_per_megapixel(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(fixed s, s per megapixel) of the least-squares line through [(megapixels, s), ...]; None below 2 sizes."""
    if len(points) < 2:
        return None
    slope, intercept = np.polyfit(*np.array(points, dtype=np.float64).T, 1)
    return float(intercept), float(slope)


class Scaling:
    """Runs the measurements in order, keeping what each one found (or why it was not run)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.common = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
        if args.config_path:
            self.common += ["--config_path", args.config_path]
        # (megapixels x batch, peak RSS GB) of the training / inference processes run
        self.done: dict[str, list[tuple[float, float]]] = {"train": [], "infer": []}
        self.train: dict[tuple[str, int], dict | str] = {}  # (size, batch) -> bench_train.py's record, or why not
        self.infer: dict[str, dict | str] = {}

    def affordable(self, kind: str, work: float) -> str | None:
        """None when a process of `work` should fit in memory, else why it is not run (inference predicted from
        training's figures until one inference is measured)."""
        predicted = predicted_rss_gb(self.done[kind] or self.done["train"], work)
        limit = self.args.memory_fraction * available_memory_gb()
        if predicted > limit:
            return f"not run: {predicted:.1f} GB predicted, {limit:.1f} GB allowed"
        return None

    def run(self, kind: str, label: str, work: float, command: list[str]) -> dict | str:
        reason = self.affordable(kind, work)
        if reason:
            return reason
        record = run_json(label, command)
        self.done[kind].append((work, record["peak_rss_mb"] / 1024))
        return record

    def measure(self, size: tuple[int, int]) -> None:
        name, pixels = size_name(size), megapixels(size)
        dims = ["--img_height", str(size[0]), "--img_width", str(size[1])]
        profiled = PROFILED_BATCH if PROFILED_BATCH in self.args.batches else max(self.args.batches)
        for batch in sorted(self.args.batches):
            profile = ["--profile"] if self.args.profile and batch == profiled else []
            self.train[name, batch] = self.run(
                "train", f"{name} training, batch {batch}", pixels * batch,
                [sys.executable, "bench/bench_train.py", *dims, "--batch_size", str(batch), *self.common, *profile])
        self.infer[name] = self.run("infer", f"{name} inference", pixels, [
            sys.executable, "bench/bench_infer.py", *dims, "--batch_size", "1", "--no_mindir", *self.common])


def print_report(scaling: Scaling, started: str, load_before: tuple[float, ...]) -> dict:
    """The tables; returns the fits {batch: [fixed s, s per megapixel]}."""
    args = scaling.args
    batches = sorted(args.batches)
    print(f"\nhow the cost grows, {machine_line(started, load_before)}")
    print(f"config {args.config_path or 'the benches default'}; medians of {args.steps} after {args.warmup} + 1 "
          f"untimed; each cell its own process")
    if busy(load_before):
        print("the machine was busy (load average above its CPUs): these figures are not a quiet machine's")

    def cell(record: dict | str, key: str, per: int = 1, fmt: str = ".2f") -> str:
        return format(record[key] / per, fmt) if isinstance(record, dict) else record

    print()
    print("| size | megapixels | " + " | ".join(f"train s/step, batch {b}" for b in batches) + " | "
          + " | ".join(f"train s/image, batch {b}" for b in batches) + " | infer s/image | peak RSS GB (train "
          + "/".join(f"b{b}" for b in batches) + "; infer) |")
    print("|---|---|" + "---|" * (2 * len(batches) + 2))
    for size in args.sizes:
        name = size_name(size)
        train = [scaling.train[name, b] for b in batches]
        rss = "/".join(cell(t, "peak_rss_mb", 1024, ".1f") if isinstance(t, dict) else "-" for t in train)
        infer = scaling.infer[name]
        print(f"| {name} | {megapixels(size):.2f} | "
              + " | ".join(cell(t, "step_s_median") for t in train) + " | "
              + " | ".join(cell(t, "step_s_median", b) for t, b in zip(train, batches, strict=True)) + " | "
              + f"{cell(infer, 's_per_image_median', fmt='.3f')} | "
              + f"{rss}; {cell(infer, 'peak_rss_mb', 1024, '.1f') if isinstance(infer, dict) else '-'} |")
    def fitted(records: dict[str, dict | str], key: str) -> tuple[tuple[float, float] | None, int]:
        """The fit of `key` over the sizes measured in `records` (size name -> record), and their count."""
        points = [(megapixels(s), records[size_name(s)][key]) for s in args.sizes
                  if isinstance(records[size_name(s)], dict)]
        return fixed_and_per_megapixel(points), len(points)

    fits = {}
    print()
    for batch in batches:
        fit, count = fitted({name: record for (name, b), record in scaling.train.items() if b == batch},
                            "step_s_median")
        if fit:
            fits[batch] = fit
            print(f"training, batch {batch}: {fit[0]:.2f} s fixed + {fit[1]:.2f} s per megapixel of the canvas "
                  f"(x {batch} images), least squares over {count} sizes")
    fit, count = fitted(scaling.infer, "s_per_image_median")
    if fit:
        fits["infer"] = fit
        print(f"inference: {fit[0]:.3f} s fixed + {fit[1]:.3f} s per megapixel, least squares over {count} sizes")
    if args.profile:
        print(f"\ntop {TOP_OPS_SHOWN} operator types of one profiled training step (share of the operator time):")
        profiled = [(key, r) for key, r in scaling.train.items() if isinstance(r, dict) and r.get("top_ops")]
        for (name, batch), record in profiled:
            ops = ", ".join(f"{op['op']} {100 * op['share']:.0f} %" for op in record["top_ops"][:TOP_OPS_SHOWN])
            print(f"- {name}, batch {batch}: {ops}")
        if not profiled:
            print("- none: no profiled step was run")
    return fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=parse_size,
                        default=[(256, 384), (512, 768), (768, 1280), (1024, 1600)],
                        help="HEIGHTxWIDTH, multiples of 32 (default: the demo's 256x384 up to 1024x1600)")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4], help="training batch sizes")
    parser.add_argument("--steps", type=int, default=2, help="timed steps/calls of each measurement (median)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed steps/calls after the first (compiling) one")
    parser.add_argument("--config_path", default=None, help="the config whose network is timed")
    parser.add_argument("--profile", action="store_true", help="profile the batch-2 training step at each size")
    parser.add_argument("--memory_fraction", type=float, default=0.8,
                        help="run a measurement only if its predicted peak RSS is below this share of MemAvailable")
    args = parser.parse_args()
    if any(b < 1 for b in args.batches) or any(h % 32 or w % 32 for h, w in args.sizes):
        parser.error("batches must be >= 1 and sizes multiples of 32")
    if not 0 < args.memory_fraction <= 1:
        parser.error(f"--memory_fraction {args.memory_fraction}: expected a share of the memory, in (0, 1]")
    args.sizes = sorted(args.sizes, key=lambda s: s[0] * s[1])
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    scaling = Scaling(args)
    for size in args.sizes:
        scaling.measure(size)
    fits = print_report(scaling, started, load_before)

    def brief(record: dict | str):
        return {k: v for k, v in record.items() if k != "top_ops"} if isinstance(record, dict) else record

    print(json.dumps({"bench": "scaling", "date": started,
                      "train": {f"{name} b{batch}": brief(r) for (name, batch), r in scaling.train.items()},
                      "infer": {name: brief(r) for name, r in scaling.infer.items()},
                      "fits": {str(k): [round(v, 4) for v in fit] for k, fit in fits.items()}}))


if __name__ == "__main__":
    main()
