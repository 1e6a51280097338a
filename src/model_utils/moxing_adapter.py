"""ModelArts support: copy data/checkpoints from OBS before a run and results back after it.

Needs Huawei's `moxing` package, which exists only on ModelArts; elsewhere `enable_modelarts=True`
fails at start-up with a clear message.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from src.model_utils.local_adapter import get_device_id, get_device_num

_SYNC_COUNT = 0
Result = TypeVar("Result")


def _moxing():
    try:
        import moxing  # noqa: PLC0415  (only installed on ModelArts)
    except ImportError:
        raise SystemExit("enable_modelarts=True needs the 'moxing' package, which only ModelArts provides; "
                         "run locally with --enable_modelarts=False") from None
    return moxing


def sync_data(from_path: str, to_path: str) -> None:
    """Copy from_path to to_path once per server; the other processes wait for a lock file."""
    global _SYNC_COUNT
    _SYNC_COUNT += 1
    lock = f"/tmp/copy_sync.lock{_SYNC_COUNT}"
    if get_device_id() % min(get_device_num(), 8) == 0 and not os.path.exists(lock):
        print(f"from path: {from_path}\nto path: {to_path}")
        _moxing().file.copy_parallel(from_path, to_path)
        open(lock, "w").close()
    while not os.path.exists(lock):
        time.sleep(1)


def run_with_modelarts(cfg, run: Callable[[], Result]) -> Result:
    """`run()`, preceded on ModelArts (cfg.enable_modelarts) by copying data_url, checkpoint_url and train_url to
    their local paths and followed by copying output_path back to train_url; profiled with enable_profiling."""
    if cfg.enable_modelarts:
        for url, path in ((cfg.data_url, cfg.data_path), (cfg.checkpoint_url, cfg.load_path),
                          (cfg.train_url, cfg.output_path)):
            if url:
                sync_data(url, path)
        os.makedirs(cfg.output_path, exist_ok=True)
    profiler = None
    if cfg.enable_profiling:
        from mindspore import Profiler  # noqa: PLC0415
        profiler = Profiler()
    result = run()
    if profiler is not None:
        profiler.analyse()
    if cfg.enable_modelarts and cfg.train_url:
        sync_data(cfg.output_path, cfg.train_url)
    return result
