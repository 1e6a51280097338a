"""Progress of long work: `done/total`, elapsed time and the estimated time left."""
from __future__ import annotations

import time


def format_duration(seconds: float) -> str:
    """`H:MM:SS` of a duration in seconds (rounded to whole seconds)."""
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts finished items and formats `done/total`, elapsed time and the estimated time left."""

    def __init__(self, total: int, clock=time.monotonic):
        self.total = max(int(total), 0)
        self.done = 0
        self._clock = clock
        self._start = clock()

    def step(self, count: int = 1) -> str:
        self.done += count
        return self.status()

    def status(self) -> str:
        elapsed = self._clock() - self._start
        if self.done and self.total:
            eta = format_duration(elapsed / self.done * max(self.total - self.done, 0))
        else:
            eta = "?"
        return f"{self.done}/{self.total or '?'}, elapsed {format_duration(elapsed)}, ETA {eta}"
