"""The Makefile's set-up: `make demo` installs requirements.txt only, `make test` / `lint` requirements-dev.txt (the
dev tools), each through one stamp per requirements file (`make -n`: the commands are printed, not run)."""
import shutil
import subprocess

import pytest

from tests.helpers.processes import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def planned_installs(target: str, venv) -> list[str]:
    """The requirements files `make -n <target>` would install into the (absent) venv `venv`."""
    done = subprocess.run(["make", "-n", "-C", ROOT, target, f"VENV={venv}"], capture_output=True, text=True,
                          check=True)
    return [line.split(" -r ")[1].strip() for line in done.stdout.splitlines()
            if "pip install" in line and " -r " in line]


@pytest.mark.parametrize(("target", "expected"), [
    ("demo", ["requirements.txt"]),
    ("setup", ["requirements.txt"]),
    ("test", ["requirements-dev.txt"]),
    ("test-fast", ["requirements-dev.txt"]),
    ("lint", ["requirements-dev.txt"]),
])
def test_each_target_installs_only_what_it_runs(tmp_path, target, expected):
    assert planned_installs(target, tmp_path / "venv") == expected


def test_a_stamp_newer_than_its_requirements_file_skips_the_install(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed-requirements.txt").touch()  # made now: newer than the checkout's requirements.txt
    assert planned_installs("demo", venv) == []
    assert planned_installs("lint", venv) == ["requirements-dev.txt"]
