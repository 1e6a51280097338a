"""Stopping training cleanly on Ctrl-C (SIGINT) or SIGTERM: after the current step, keeping every checkpoint already
written, with one line naming the last good one and exit status 128 + the signal (130, 143).

MindSpore turns a SIGINT that arrives while a graph runs (most of a training step) into a SIGTERM to its own process
(its graph scheduler's SIGINT handler), so a Ctrl-C would look like a kill. `route_sigint`, called before MindSpore
starts any thread, blocks SIGINT in the main thread (every thread started later inherits that) and receives it in a
thread of its own with sigwait, which hands it to the main thread as a Python signal: MindSpore's handler is never
reached. SIGTERM is left to the usual handlers. (`StopOnSignal`, the callback that stops training:
src/network_define.py.) This module imports nothing of MindSpore.
"""
from __future__ import annotations

import _thread
import signal
import threading

from src.infra.errors import TrainingError


def _forward_sigint() -> None:
    while True:
        signum = signal.sigwait({signal.SIGINT})
        _thread.interrupt_main(signum)  # the main thread's Python handler (KeyboardInterrupt by default)


def route_sigint() -> None:
    """Receive SIGINT in a thread of this module and raise it in the main thread as a Python signal. Call it before
    MindSpore is imported (its threads must inherit the blocked signal); processes started later inherit it blocked
    (MindSpore's data workers ignore SIGINT anyway)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    threading.Thread(target=_forward_sigint, name="sigint", daemon=True).start()


class TrainingInterrupted(TrainingError):
    """Training stopped by a signal; exit status 128 + the signal's number, as a shell reports a process it killed."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_status = 128 + signum
