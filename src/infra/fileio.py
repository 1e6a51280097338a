"""Writing files so that an interruption never leaves a partial file under its final name, and checking that an
output folder can be written before the long work starts.

Every file the project writes that another step later takes for complete (checkpoints, MindRecord json, exports,
results, pictures, compiled kernels, inference outputs) goes through `atomic_path`: it is written to a hidden
temporary file in the same folder and renamed into place only when the writing succeeded; on any failure the
temporary (and whatever a library wrote beside it under the temporary's name) is removed, and an operating-system
error becomes a WriteError that names the file and the reason.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

from src.infra.errors import OutputError, WriteError

# Free space an output folder needs before a run starts (MB; the environment variable overrides it, 0 turns the
# check off): enough for the files of an inference or evaluation run; a checkpoint with its optimizer state is ~0.5 GB.
MIN_FREE_MB_ENV = "FASTER_RCNN_MIN_FREE_MB"
MIN_FREE_MB = 64


def min_free_bytes() -> int:
    """The free space `check_output_dir` asks for by default: MIN_FREE_MB, or $FASTER_RCNN_MIN_FREE_MB."""
    return int(float(os.environ.get(MIN_FREE_MB_ENV, MIN_FREE_MB)) * 2**20)


def os_reason(err: OSError) -> str:
    """The operating system's words for `err` ('No space left on device', 'Permission denied', ...)."""
    return err.strerror or (os.strerror(err.errno) if err.errno else str(err))


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside `path` (same folder, same extension, hidden) to write to; renamed to `path` when the
    block succeeds, removed (with any `<temporary>*` a library wrote beside it) when it fails. The folder is created
    if needed; the file gets the usual permissions. An OSError of the block or the rename becomes a WriteError
    naming `path`."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, extension = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.partial-{os.getpid()}{extension}")
    try:
        os.makedirs(folder, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise WriteError(f"could not write {path}: {os_reason(err)}") from err
    finally:
        # a library may write `<tmp>.tmp` or `<tmp without its extension>.tmp` first (MindSpore's checkpoints)
        for leftover in [tmp, *glob.glob(glob.escape(os.path.splitext(tmp)[0]) + "*")]:
            with contextlib.suppress(OSError):
                os.remove(leftover)


def write_text_atomic(path: str, text: str) -> None:
    """`text` (UTF-8) to `path`, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json_atomic(obj, path: str, indent: int | None = None) -> None:
    """`obj` as json to `path`, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent))


def partial_files(folder: str) -> list[str]:
    """Temporary files that `atomic_path` left in `folder` when its process was killed."""
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.startswith(".") and ".partial-" in name)


def check_output_dir(folder: str, what: str, min_free: int | None = None) -> None:
    """OutputError (one line naming `what`, e.g. '--detections_dir', and the folder) unless files can be created
    in `folder` (or, when it does not exist yet, in its nearest existing parent, where it will be created) and
    that place has `min_free` bytes free (default: `min_free_bytes()`). Creates nothing that outlives the call."""
    min_free = min_free_bytes() if min_free is None else min_free
    place = os.path.abspath(folder)
    while not os.path.exists(place):
        place = os.path.dirname(place)
    if not os.path.isdir(place):
        raise OutputError(f"{what}: {folder!r} cannot be a folder: {place!r} is a file")
    try:
        with tempfile.NamedTemporaryFile(dir=place, prefix=".write-check-"):
            pass
    except OSError as err:
        where = "" if place == os.path.abspath(folder) else f" (in {place!r}, where it would be created)"
        raise OutputError(f"{what}: cannot write into {folder!r}{where}: {os_reason(err)}") from None
    free = shutil.disk_usage(place).free
    if free < min_free:
        raise OutputError(f"{what}: {folder!r} has {free / 2**20:.1f} MB free, at least {min_free / 2**20:.0f} MB "
                          f"needed ({MIN_FREE_MB_ENV} sets the minimum): {os.strerror(errno.ENOSPC)}")
