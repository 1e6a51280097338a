"""What the entry points (train.py, eval.py, export.py, infer.py, postprogress.py, src/tools/*.py) share: the
device and execution mode, the kernels and dtype the network runs with on a device, loading a network for
inference, and one line plus an exit status for every error a user can fix.

The launchers' device check is src/tools/check_device.py.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable

import mindspore as ms

from src.checkpoint.detector import load_for_inference
from src.FasterRcnn import build_infer_model, build_model
from src.infra.errors import FAILURE_STATUS, DeviceError, FasterRcnnError
from src.model_utils.config import get_config, parse_bool
from src.model_utils.device_adapter import get_device_id
from src.model_utils.moxing_adapter import run_with_modelarts
from src.ops import Kernels

# Set to 0 to run MindSpore's own operators on the CPU too (A/B comparisons, the graph GPU and Ascend run).
CPU_KERNELS_ENV = "FASTER_RCNN_CPU_KERNELS"
DEVICE_AVAILABLE = {
    "Ascend": ms.device_context.ascend.is_available,
    "GPU": ms.device_context.gpu.is_available,
    "CPU": ms.device_context.cpu.is_available,
}
MODES = {"GRAPH": ms.GRAPH_MODE, "PYNATIVE": ms.PYNATIVE_MODE}
DEBUG_OPTION = "--debug="
# Operating-system errors that a user fixes outside the program (space, permissions, read-only media): one line.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
CPU_MEMORY_OPTIMIZE_LEVEL = "O1"


def check_device(device_target: str) -> None:
    """DeviceError when this MindSpore installation cannot run `device_target`."""
    if device_target not in DEVICE_AVAILABLE:
        raise DeviceError(f"device_target={device_target!r}: expected one of {list(DEVICE_AVAILABLE)}")
    if not DEVICE_AVAILABLE[device_target]():
        raise DeviceError(f"device_target={device_target} is not available in this MindSpore installation "
                          f"({ms.__version__}); use --device_target=CPU (the scripts/*_cpu.sh launchers) or "
                          f"install MindSpore for {device_target}")


def set_up_device(device_target: str, run_mode: str = "GRAPH", device_id: int = 0) -> None:
    """Execution mode and device for the process; DeviceError when this MindSpore cannot run `device_target`."""
    check_device(device_target)
    ms.set_context(mode=MODES[run_mode])
    ms.set_device(device_target, None if device_target == "CPU" else device_id)
    if device_target == "GPU":
        ms.set_context(enable_graph_kernel=False)
    if device_target == "CPU":
        # graph memory reuse (Ascend's default): a lower peak memory in training (bench/RESULTS.md)
        ms.set_context(memory_optimize_level=CPU_MEMORY_OPTIMIZE_LEVEL)


def device_id(cfg) -> int:
    """--device_id when given on the command line, else the launcher's DEVICE_ID (the scripts set both)."""
    return int(cfg.device_id) if "device_id" in cfg.given else get_device_id()


def network_dtype(device_target: str) -> ms.Type:
    """The dtype the network's convolutions and fully connected layers compute in: float16 on Ascend, as the
    original; float32 elsewhere."""
    return ms.float16 if device_target == "Ascend" else ms.float32


def network_kernels(device_target: str, for_export: bool = False) -> Kernels:
    """This project's C++ kernels on the CPU (unless FASTER_RCNN_CPU_KERNELS=0), MindSpore's operators elsewhere;
    exported graphs compute the deformable sampling and RoIAlign as gathers (Kernels.GATHER: standard operators,
    so a MINDIR references no machine-local library and runs on every device, and fast on the CPU)."""
    if for_export:
        return Kernels.GATHER
    if device_target == "CPU" and os.environ.get(CPU_KERNELS_ENV, "1") != "0":
        return Kernels.CPU
    return Kernels.MINDSPORE


def load_inference_network(cfg, ckpt_path: str, *, test_batch_size: int | None = None, for_export: bool = False):
    """The network of `cfg` in inference mode with `ckpt_path` loaded, built for cfg.device_target; for export the
    wrapper that takes (img, img_metas), with MindSpore's operators. CheckpointError when the checkpoint does not
    fit."""
    options = dict(kernels=network_kernels(cfg.device_target, for_export), dtype=network_dtype(cfg.device_target),
                   test_batch_size=test_batch_size)
    net = build_infer_model(cfg, **options) if for_export else build_model(cfg, **options)
    ignored = load_for_inference(net, ckpt_path, key_prefix="network." if for_export else "")
    if ignored:
        print(f"checkpoint {ckpt_path}: {ignored} entries that are not network parameters (optimizer state) "
              "were ignored", flush=True)
    net.set_train(False)
    return net


def debug_requested(argv: list[str]) -> bool:
    """Whether the command line asks for tracebacks (`--debug=True`; the last one counts, unreadable ones do not)."""
    values = [arg[len(DEBUG_OPTION):] for arg in argv if arg.startswith(DEBUG_OPTION)]
    try:
        return bool(values) and parse_bool(values[-1])
    except argparse.ArgumentTypeError:
        return False


def run_main(main: Callable[[], object], program: str, debug: Callable[[], bool] | None = None) -> int:
    """Run an entry point's `main`; a FasterRcnnError (config, data, checkpoint, device, export, inference,
    training, output) becomes `<program>: error: <message>` on stderr and its exit_status (2 for usage errors, 1
    when a run failed on the way), an OSError of the environment (disk full, permission, read-only) the file and
    the system's reason with status 1; no traceback unless `debug()` (default: --debug=True on the command line)."""
    wants_traceback = debug or (lambda: debug_requested(sys.argv[1:]))
    try:
        main()
    except FasterRcnnError as err:
        if wants_traceback():
            raise
        print(f"{program}: error: {err}", file=sys.stderr, flush=True)
        return err.exit_status
    except OSError as err:
        if err.errno not in ENVIRONMENT_ERRNOS or wants_traceback():
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"{program}: error: {where}{err.strerror or err}", file=sys.stderr, flush=True)
        return FAILURE_STATUS
    return 0


def run_job(job: Callable[[object], object], program: str) -> int:
    """An entry point's main: `job(config)` with the command line's config (on ModelArts between copying the data in
    and the results out), through `run_main` (tracebacks when the config's `debug` is set); returns the exit
    status."""
    config = {}

    def run() -> None:
        config["cfg"] = cfg = get_config()
        run_with_modelarts(cfg, lambda: job(cfg))

    def debug() -> bool:
        return bool(config["cfg"].debug) if "cfg" in config else debug_requested(sys.argv[1:])

    return run_main(run, program, debug)
