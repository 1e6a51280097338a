"""One live run per output folder: a run takes `<folder>/.<name>.lock` (an advisory `flock`, which the operating
system drops when the process ends, however it ends) before it writes there; a second run asking for the same lock
while the first is alive is refused with one line naming the first run (program and pid). A lock file left by a
killed run holds no lock and is taken over.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator, Sequence

from src.infra.errors import OutputError

_HELD: dict[str, int] = {}  # lock path -> open descriptor, for the life of the process


def _describe_holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            holder = f.read().strip()
    except OSError:
        holder = ""
    return holder or "another process"


def _release(path: str) -> None:
    fd = _HELD.pop(path, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.remove(path)  # removed while still held: a waiting process that opened it re-checks the inode
    os.close(fd)


def hold_folder(folder: str, name: str, program: str | None = None) -> str:
    """Take the lock `<folder>/.<name>.lock` for the rest of this process (released at exit); OutputError naming
    the live holder when another process has it. Returns the lock file's path. Taking a lock this process already
    holds does nothing."""
    path = os.path.join(os.path.abspath(folder), f".{name}.lock")
    if path in _HELD:
        return path
    os.makedirs(folder, exist_ok=True)
    program = program or os.path.basename(sys.argv[0] or "python")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"{folder!r} is in use by a run that is still going ({_describe_holder(path)}); wait "
                              "for it to end, or give this run another output folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{program}, pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    _HELD[path] = fd
    if len(_HELD) == 1:
        atexit.register(lambda: [_release(p) for p in list(_HELD)])
    return path


def release_folder(path: str) -> None:
    """Give up a lock taken by `hold_folder` (its returned path) before the process ends."""
    _release(path)


def _missing_folders(folder: str) -> list[str]:
    """`folder` and those of its parents that do not exist yet, innermost first."""
    missing, place = [], os.path.abspath(folder)
    while not os.path.exists(place):
        missing.append(place)
        place = os.path.dirname(place)
    return missing


@contextlib.contextmanager
def holding(places: Sequence[tuple[str, str]], program: str) -> Iterator[None]:
    """Hold `<folder>/.<name>.lock` for each (folder, name) of `places` during the block (`hold_folder`: OutputError
    naming a live holder). When the block fails, the locks are released and the folders this created are removed
    again while they are still empty (a run that stops before writing leaves nothing behind)."""
    locks, created = [], []
    try:
        for folder, name in places:
            created += _missing_folders(folder)
            locks.append(hold_folder(folder, name, program))
        yield
    except BaseException:
        for lock in locks:
            release_folder(lock)
        for folder in created:
            with contextlib.suppress(OSError):  # not empty: something was written there
                os.rmdir(folder)
        raise
