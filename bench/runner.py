"""Running benchmark scripts as subprocesses, reading their size arguments and describing the machine they ran on
(no MindSpore import)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_size(text: str) -> tuple[int, int]:
    """"768x1280" -> (768, 1280): height x width in pixels."""
    try:
        height, width = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HEIGHTxWIDTH") from None
    return height, width


def run_json(label: str, command: list[str]) -> dict:
    """Run a benchmark script (from the repository root) and return the json object of its last stdout line."""
    print(f"{time.strftime('%H:%M:%S')} {label} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={"GLOG_v": "3", **os.environ})
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        sys.exit(f"{label} failed (exit {proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def machine_line(started: str, load_before: tuple[float, ...]) -> str:
    """`<started> UTC, host H, CPU, N logical CPUs (M for this process), load average ... before, ... after`."""
    before, after = (" ".join(f"{x:.1f}" for x in load) for load in (load_before, os.getloadavg()))
    return (f"{started} UTC, host {platform.node()}, {cpu_model()}, {os.cpu_count()} logical CPUs "
            f"({len(os.sched_getaffinity(0))} for this process), load average {before} before, {after} after")


def busy(load_before: tuple[float, ...]) -> bool:
    """Whether the 1-minute load average before the run was above this process's CPUs (figures not a quiet
    machine's; the 5- and 15-minute averages still carry work that has ended)."""
    return load_before[0] > len(os.sched_getaffinity(0))


def available_memory_gb() -> float:
    """MemAvailable of /proc/meminfo in GB (inf where unknown)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        return kb / 1024 ** 2
    except (OSError, StopIteration, ValueError):
        return float("inf")
