"""This project against torchvision in one run: training step and inference at each size, their ratios, peak RSS.

    GLOG_v=3 .venv/bin/python bench/bench_vs_torchvision.py [--sizes 768x1280 256x384] [--steps 3] [--warmup 1]
                                                            [--only train|infer] [--torchvision_python PATH]

For each size, one after the other: this project's training step (bench/bench_train.py, batch 2), torchvision's
(bench/torchvision_reference.py in the venv of `make bench-torchvision-venv`, batch 2), this project's inference
of the network (bench/bench_infer.py --no_mindir, batch 1) and torchvision's (batch 1); each measurement in a fresh
process, so that each peak RSS is its own and no compiled graph or allocator state carries over. Both sides use
their default threads (MindSpore's; torch: one per CPU of the process) and the same random-box, noise-image
inputs; torchvision's network is the same architecture (R50-FPN, modulated DCN in layer2-4, stem and layer1 frozen,
frozen BatchNorms, 81 classes; see torchvision_reference.py). Printed: date, host, CPU, cores, load average, then
a markdown table (seconds per step of 2 images, seconds per image, ratios project / torchvision, peak RSS in GB)
and the issue's targets (training ≤ 0.15x, inference ≤ 0.35x, this project's peak RSS ≤ 7 GB); the last line is
one json object.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from importlib.metadata import version

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.runner import ROOT, busy, cpu_model, machine_line, parse_size, run_json  # noqa: E402

TORCHVISION_PYTHON = os.path.join(ROOT, ".venv-torchvision", "bin", "python")
TRAIN_BATCH, INFER_BATCH = 2, 1
TARGET_TRAIN_RATIO, TARGET_INFER_RATIO, TARGET_PEAK_RSS_GB = 0.15, 0.35, 7.0


def measure(size: tuple[int, int], args: argparse.Namespace) -> dict:
    """Both sides' figures at one size: s/step (batch 2), s/image (batch 1), peak RSS in GB of each process."""
    height, width = size
    common = ["--img_height", str(height), "--img_width", str(width), "--steps", str(args.steps),
              "--warmup", str(args.warmup)]
    reference = [args.torchvision_python, "bench/torchvision_reference.py", *common]
    row: dict = {"size": f"{height}x{width}"}
    if args.only != "infer":
        project = run_json(f"{row['size']} this project, training",
                           [sys.executable, "bench/bench_train.py", *common, "--batch_size", str(TRAIN_BATCH)])
        torchvision = run_json(f"{row['size']} torchvision, training",
                               [*reference, "--only", "train", "--train_batch", str(TRAIN_BATCH)])
        row.update(train_s=project["step_s_median"], train_rss_gb=project["peak_rss_mb"] / 1024,
                   tv_train_s=torchvision["train_s_per_step"], tv_train_rss_gb=torchvision["peak_rss_gb"])
        row["train_ratio"] = row["train_s"] / row["tv_train_s"]
    if args.only != "train":
        project = run_json(f"{row['size']} this project, inference", [
            sys.executable, "bench/bench_infer.py", *common, "--batch_size", str(INFER_BATCH), "--no_mindir"])
        torchvision = run_json(f"{row['size']} torchvision, inference",
                               [*reference, "--only", "infer", "--infer_batch", str(INFER_BATCH)])
        row.update(infer_s=project["s_per_image_median"], infer_rss_gb=project["peak_rss_mb"] / 1024,
                   tv_infer_s=torchvision["infer_s_per_image"], tv_infer_rss_gb=torchvision["peak_rss_gb"])
        row["infer_ratio"] = row["infer_s"] / row["tv_infer_s"]
    row.update(threads=torchvision["threads"], torch=torchvision["torch"], torchvision=torchvision["torchvision"])
    return row


def print_report(rows: list[dict], started: str, load_before: tuple[float, ...], args: argparse.Namespace) -> None:
    """The run's header lines, the markdown table of `rows` and the targets."""
    def cell(row: dict, key: str, fmt: str) -> str:
        return format(row[key], fmt) if key in row else "-"

    print(f"\nthis project against torchvision, same run: {machine_line(started, load_before)}")
    print(f"mindspore {version('mindspore')} (its default threads); torch {rows[0]['torch']}, torchvision "
          f"{rows[0]['torchvision']} ({rows[0]['threads']} threads); medians of {args.steps} after "
          f"{args.warmup} + 1 untimed; training batch {TRAIN_BATCH}, inference batch {INFER_BATCH}")
    if busy(load_before):
        print("the machine was busy (load average above its CPUs): these figures are not a quiet machine's")
    print()
    print("| size | project train s/step | torchvision s/step | ratio | project infer s/image | torchvision s/image "
          "| ratio | peak RSS GB train (project / torchvision) | peak RSS GB infer (project / torchvision) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']} | {cell(row, 'train_s', '.2f')} | {cell(row, 'tv_train_s', '.2f')} "
              f"| {cell(row, 'train_ratio', '.2f')} | {cell(row, 'infer_s', '.3f')} | {cell(row, 'tv_infer_s', '.3f')} "
              f"| {cell(row, 'infer_ratio', '.2f')} | {cell(row, 'train_rss_gb', '.1f')} / "
              f"{cell(row, 'tv_train_rss_gb', '.1f')} | {cell(row, 'infer_rss_gb', '.1f')} / "
              f"{cell(row, 'tv_infer_rss_gb', '.1f')} |")
    for row in rows:
        checks = []
        if "train_ratio" in row:
            checks.append(f"training {row['train_ratio']:.2f}x (target <= {TARGET_TRAIN_RATIO}: "
                          f"{'met' if row['train_ratio'] <= TARGET_TRAIN_RATIO else 'NOT met'})")
        if "infer_ratio" in row:
            checks.append(f"inference {row['infer_ratio']:.2f}x (target <= {TARGET_INFER_RATIO}: "
                          f"{'met' if row['infer_ratio'] <= TARGET_INFER_RATIO else 'NOT met'})")
        rss = max(row.get("train_rss_gb", 0.0), row.get("infer_rss_gb", 0.0))
        checks.append(f"peak RSS {rss:.1f} GB (target <= {TARGET_PEAK_RSS_GB:.0f} GB: "
                      f"{'met' if rss <= TARGET_PEAK_RSS_GB else 'NOT met'})")
        print(f"targets at {row['size']}: " + "; ".join(checks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(768, 1280), (256, 384)],
                        help="HEIGHTxWIDTH, multiples of 32 (default: 768x1280 256x384, the demo's)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps/calls of each measurement (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps/calls after the first one")
    parser.add_argument("--only", choices=("train", "infer"), default=None)
    parser.add_argument("--torchvision_python", default=TORCHVISION_PYTHON,
                        help="python of the torchvision venv (default: .venv-torchvision/bin/python)")
    args = parser.parse_args()
    if not os.access(args.torchvision_python, os.X_OK):
        sys.exit(f"no torchvision venv at {args.torchvision_python}: run `make bench-torchvision-venv`")
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    rows = [measure(size, args) for size in args.sizes]
    print_report(rows, started, load_before, args)
    print(json.dumps({"bench": "vs_torchvision", "date": started, "host": platform.node(), "cpu": cpu_model(),
                      "rows": [{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
                               for row in rows]}))


if __name__ == "__main__":
    main()
