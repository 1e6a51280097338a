"""ModelArts support: copy data/checkpoints from OBS before a run and results back after it.

Needs Huawei's `moxing` package, which exists only on ModelArts; elsewhere `enable_modelarts=True`
fails at start-up with a clear message.
"""
import functools
import os
import time

from src.model_utils.config import config

_SYNC_COUNT = 0


def get_device_id() -> int:
    return int(os.getenv("DEVICE_ID", "0"))


def get_device_num() -> int:
    return int(os.getenv("RANK_SIZE", "1"))


def get_rank_id() -> int:
    return int(os.getenv("RANK_ID", "0"))


def get_job_id() -> str:
    return os.getenv("JOB_ID") or "default"


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


def moxing_wrapper(pre_process=None, post_process=None):
    """Decorator: on ModelArts, sync inputs before and outputs after the wrapped function."""
    def wrapper(run_func):
        @functools.wraps(run_func)
        def wrapped(*args, **kwargs):
            if config.enable_modelarts:
                for url, path in ((config.data_url, config.data_path),
                                  (config.checkpoint_url, config.load_path),
                                  (config.train_url, config.output_path)):
                    if url:
                        sync_data(url, path)
                config.device_num = get_device_num()
                config.device_id = get_device_id()
                os.makedirs(config.output_path, exist_ok=True)
                if pre_process:
                    pre_process()
            profiler = None
            if config.enable_profiling:
                from mindspore import Profiler  # noqa: PLC0415
                profiler = Profiler()
            result = run_func(*args, **kwargs)
            if profiler is not None:
                profiler.analyse()
            if config.enable_modelarts:
                if post_process:
                    post_process()
                if config.train_url:
                    sync_data(config.output_path, config.train_url)
            return result
        return wrapped
    return wrapper
