"""Writing files so that an interruption never leaves a partial file under its final name.

Every file the project writes that another step later takes for complete (checkpoints, MindRecord json, exports,
results, pictures, compiled kernels, inference outputs) goes through `atomic_path`: it is written to a hidden
temporary file in the same folder and renamed into place only when the writing succeeded.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside `path` (same folder, same extension, hidden) to write to; renamed to `path` when the
    block succeeds, removed when it fails. The folder is created if needed; the file gets the usual permissions."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, extension = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.partial-{os.getpid()}{extension}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


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
