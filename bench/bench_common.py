"""Shared pieces of the benchmarks: the whole-network benchmarks' options, the kernel choice, timing and reference
weights, peak RSS, a printed table, the profiler's top operator types."""
from __future__ import annotations

import argparse
import csv
import glob
import os
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn

from src.infra.runtime import set_up_device
from src.model_utils.config import get_config
from src.ops import Kernels
from tests.helpers.reference_ckpt import reference_params

TOP_OPS = 10  # operator types listed by --profile
NETWORK_IMG_HEIGHT, NETWORK_IMG_WIDTH = 768, 1280  # default image size of the whole-network benchmarks


def add_kernels_option(parser: argparse.ArgumentParser) -> None:
    """--kernels: what computes ROIAlign, the deformable convolutions and NMS; read it with `Kernels(args.kernels)`."""
    parser.add_argument("--kernels", choices=[k.value for k in Kernels], default=Kernels.CPU.value,
                        help="this project's CPU kernels, MindSpore's own operators or the exported graph's gathers "
                             "(default: %(default)s)")


def network_bench_parser(description: str, batch_size: int, unit: str) -> argparse.ArgumentParser:
    """Options of the whole-network benchmarks (image size, batch, timed/untimed `unit`s such as "call" or "step",
    mode, kernels, --profile); parse them with `parse_network_bench_args`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img_height", type=int, default=NETWORK_IMG_HEIGHT)
    parser.add_argument("--img_width", type=int, default=NETWORK_IMG_WIDTH)
    parser.add_argument("--batch_size", type=int, default=batch_size)
    parser.add_argument("--steps", type=int, default=3, help=f"timed {unit}s (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help=f"untimed {unit}s after the first (compiling) one")
    parser.add_argument("--mode", choices=("GRAPH", "PYNATIVE"), default="GRAPH")
    add_kernels_option(parser)
    parser.add_argument("--profile", action="store_true", help=f"print the {TOP_OPS} most expensive operator types")
    parser.add_argument("--config_path", default=None,
                        help="yaml config (default: the CPU config); weights: the reference checkpoint when the "
                             "config has its 81 classes, else the network's own initialisation")
    return parser


def parse_network_bench_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line, check --steps and set the MindSpore context as train.py and eval.py do (CPU, --mode)."""
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    set_up_device("CPU", args.mode)
    return args


def bench_config(args: argparse.Namespace, argv: Sequence[str] = (), **overrides):
    """The config of a network benchmark: --config_path (or the default) with the command line's sizes, then `argv`
    (`--key=value` items, parsed and checked as train.py's command line)."""
    return get_config(([] if args.config_path is None else [f"--config_path={args.config_path}"]) + list(argv),
                      img_height=args.img_height, img_width=args.img_width, **overrides)


def load_reference_weights(net: nn.Cell, prefix: str = "") -> None:
    """Load the fidelity fixture's reference weights (tests/helpers/reference_ckpt.py) strictly, names prefixed; a
    network of other shapes (a --config_path with another head size) keeps its own initialisation."""
    reference = reference_params()
    shapes = {p.name: tuple(p.shape) for p in net.get_parameters()}
    if any(shapes.get(prefix + k, v.shape) != v.shape for k, v in reference.items()):
        print("weights: the network's own initialisation (its shapes are not the reference checkpoint's)", flush=True)
        return
    params = {prefix + k: Parameter(Tensor(v), name=prefix + k) for k, v in reference.items()}
    not_loaded, _ = ms.load_param_into_net(net, params, strict_load=True)
    if not_loaded:
        raise RuntimeError(f"reference weights missing for {not_loaded[:5]}")


@dataclass
class Timing:
    """Seconds of the first (compiling) call and of each timed call."""

    first_s: float
    times: list[float]

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def compile_s(self) -> float:
        """Compile time estimate: the first call minus the median call (not below 0)."""
        return max(self.first_s - self.median, 0.0)

    def rows(self, unit: str) -> list[tuple[str, str]]:
        """Table rows: compile time, median and every timed `unit` ("call", "step")."""
        return [(f"compile (first {unit} - median)", f"{self.compile_s:.1f} s"),
                (f"{unit} (median of {len(self.times)})", f"{self.median:.2f} s"),
                (f"{unit}s (all)", " ".join(f"{t:.2f}" for t in self.times))]


def time_calls(run_once: Callable[[], object], warmup: int, steps: int) -> Timing:
    """Time one first call, then `warmup` untimed calls, then `steps` timed calls (run_once must synchronise)."""
    start = time.perf_counter()
    run_once()
    first_s = time.perf_counter() - start
    for _ in range(warmup):
        run_once()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run_once()
        times.append(time.perf_counter() - start)
    return Timing(first_s, times)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 20))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 20))


def profile_top_ops(run_once: Callable[[], object], top: int = TOP_OPS) -> list[dict]:
    """Run `run_once` under the MindSpore profiler, print the `top` operator types by total time and return them:
    [{"op": type, "s": seconds, "share": fraction of all operator time, "calls": count}, ...]."""
    out_dir = tempfile.mkdtemp(prefix="ms_profile_")
    profiler = ms.Profiler(output_path=out_dir)
    run_once()
    profiler.stop()
    profiler.analyse()
    files = glob.glob(os.path.join(out_dir, "**", "cpu_op_type_info_*.csv"), recursive=True)
    if not files:
        print(f"profiler wrote no cpu_op_type_info_*.csv under {out_dir}")
        return []
    with open(files[0], newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: -float(r["total_compute_time"]))
    total = sum(float(r["total_compute_time"]) for r in rows)
    found = [{"op": row["op_type"], "s": float(row["total_compute_time"]) / 1000,
              "share": float(row["total_compute_time"]) / total, "calls": int(row["type_occurrences"])}
             for row in rows[:top]]
    print_table(f"top {top} operator types (profiled run, {total / 1000:.2f} s of operator time; {out_dir})",
                [(op["op"], f"{op['s']:8.3f} s  {100 * op['share']:5.1f} %  x{op['calls']}") for op in found])
    return found
