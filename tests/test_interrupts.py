"""An interrupted training run's status and line (src/infra/interrupts.py); the run itself:
tests/test_faults_train.py."""
import signal
import subprocess
import sys

import pytest

from src.infra.interrupts import TrainingInterrupted
from src.infra.runtime import run_main
from tests.helpers.processes import ENV, ROOT
from tests.helpers.training import with_sigint_default


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interruption_exits_with_128_plus_the_signal_and_one_line(signum, status, capsys):
    def interrupted():
        raise TrainingInterrupted("interrupted by X after global step 3; last good checkpoint: none", signum)

    assert run_main(interrupted, "train.py", debug=lambda: False) == status
    assert capsys.readouterr().err == ("train.py: error: interrupted by X after global step 3; last good checkpoint: "
                                       "none\n")


# route_sigint, then another thread started (as MindSpore starts its own): SIGINT reaches the main thread's Python
# handler through the routing thread, and the main thread keeps it blocked.
ROUTED = """
import os, signal, sys, threading, time
from src.infra.interrupts import route_sigint
route_sigint()
threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
got = []
signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
os.kill(os.getpid(), signal.SIGINT)
for _ in range(100):
    if got:
        break
    time.sleep(0.05)
blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
print(got, blocked)
"""


def test_sigint_is_routed_to_the_main_threads_python_handler():
    done = subprocess.run(with_sigint_default([sys.executable, "-c", ROUTED]), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[2] True", done.stderr
