"""Every program starts libgomp with idle threads sleeping (src/__init__.py: OMP_WAIT_POLICY=PASSIVE, which libgomp
reads when MindSpore loads it), unless the user's environment sets the policy. libgomp itself reports what it read
(OMP_DISPLAY_ENV=VERBOSE prints its GOMP_SPINCOUNT: 0 when passive, 300000 by default)."""
import re

import pytest

from tests.helpers.processes import ENV, run_script

pytestmark = pytest.mark.slow  # subprocesses

PROGRAMS = ["train.py", "eval.py", "export.py", "infer.py", "postprogress.py", "-m src.tools.mindir_infer",
            "bench/bench_train.py", "bench/bench_infer.py", "bench/bench_kernels.py"]


def spin_count(script: str, args=(), **env) -> int:
    """libgomp's GOMP_SPINCOUNT in a run of `script` with OMP_WAIT_POLICY unset unless given in `env`."""
    child = {k: v for k, v in ENV.items() if k != "OMP_WAIT_POLICY"}
    done = run_script(script, args, env=dict(child, OMP_DISPLAY_ENV="VERBOSE", **env), timeout=120)
    found = re.findall(r"GOMP_SPINCOUNT = '(\d+)'", done.stderr)
    assert found, f"{script}: libgomp printed no GOMP_SPINCOUNT (exit {done.returncode}):\n{done.stderr[-2000:]}"
    return int(found[0])


def test_libgomp_spins_by_default_without_the_package():
    """The control: MindSpore alone starts libgomp spinning, so the check below can tell the difference."""
    assert spin_count("-c import mindspore") == 300000


@pytest.mark.parametrize("program", PROGRAMS)
def test_program_starts_libgomp_passive(program):
    assert spin_count(program, ["--help"]) == 0


def test_users_policy_is_kept():
    assert spin_count("train.py", ["--help"], OMP_WAIT_POLICY="ACTIVE") > 300000
