"""Shared pieces of the network benchmarks: peak RSS, a printed table, the profiler's top operator types."""
from __future__ import annotations

import csv
import glob
import os
import resource
import tempfile
from collections.abc import Callable, Sequence

TOP_OPS = 10  # operator types listed by --profile


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


def profile_top_ops(run_once: Callable[[], object], top: int = TOP_OPS) -> None:
    """Run `run_once` under the MindSpore profiler and print the `top` operator types by total time."""
    import mindspore as ms  # noqa: PLC0415 (only needed with --profile)

    out_dir = tempfile.mkdtemp(prefix="ms_profile_")
    profiler = ms.Profiler(output_path=out_dir)
    run_once()
    profiler.stop()
    profiler.analyse()
    files = glob.glob(os.path.join(out_dir, "**", "cpu_op_type_info_*.csv"), recursive=True)
    if not files:
        print(f"profiler wrote no cpu_op_type_info_*.csv under {out_dir}")
        return
    with open(files[0], newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: -float(r["total_compute_time"]))
    total = sum(float(r["total_compute_time"]) for r in rows)
    table = []
    for row in rows[:top]:
        op_ms = float(row["total_compute_time"])
        share = 100 * op_ms / total
        table.append((row["op_type"], f"{op_ms / 1000:8.3f} s  {share:5.1f} %  x{row['type_occurrences']}"))
    print_table(f"top {top} operator types (profiled run, {total / 1000:.2f} s of operator time; {out_dir})", table)
