"""Running the project's programs as a user does, and what a folder holds before and after."""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT)


def run_script(script: str, args: Sequence = (), cwd=ROOT, timeout: float | None = 600, env: dict | None = None,
               check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run a program as a user does, in `cwd`, output captured as text: `python <ROOT>/<script> args...`,
    `bash <ROOT>/<script> args...` for a `.sh` script, `python -m <module> args...` for '-m <module>' and
    `python -c <code> args...` for '-c <code>'. Environment ENV (the project on PYTHONPATH, MindSpore quiet) unless
    `env` is given. With `check`, AssertionError with the ends of both outputs when the exit status is not 0."""
    if script.startswith(("-m ", "-c ")):
        command = [sys.executable, *script.split(" ", 1)]
    elif script.endswith(".sh"):
        command = ["bash", os.path.join(ROOT, script)]
    else:
        command = [sys.executable, os.path.join(ROOT, script)]
    done = subprocess.run(command + [str(a) for a in args], cwd=cwd, env=env or ENV, capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def error_lines(stderr: str) -> list[str]:
    """The `<program>: error: ...` lines of a run's stderr."""
    return [line for line in stderr.splitlines() if ": error: " in line]


def snapshot(folder) -> dict:
    """Path -> (size, mtime, sha256) of every file under `folder`."""
    files = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                files[path] = (os.path.getsize(path), os.stat(path).st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return files


@contextlib.contextmanager
def small_filesystem(folder, size_kb: int, read_only: bool = False) -> Iterator[str]:
    """A tmpfs of `size_kb` KiB mounted on `folder` (read-only when asked) for the block; needs root and mount
    rights: the caller skips when this raises PermissionError."""
    os.makedirs(folder, exist_ok=True)
    options = f"size={size_kb}k" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise PermissionError(f"cannot mount a tmpfs on {folder}: {done.stderr.strip()}")
    try:
        yield str(folder)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)
