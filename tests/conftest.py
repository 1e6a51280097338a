"""The test harness: MindSpore's logging quieted once, every test in PyNative mode unless it asks for more and the
context restored after it, shared fixtures, and the `slow` marker (`make test-fast` leaves those tests out)."""
import os
import subprocess
import sys

os.environ.setdefault("GLOG_v", "3")  # before any test module imports MindSpore

import mindspore as ms  # noqa: E402
import pytest  # noqa: E402

from tests.reference_ckpt import write_reference_ckpt  # noqa: E402

MODES = {"PYNATIVE": ms.PYNATIVE_MODE, "GRAPH": ms.GRAPH_MODE}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_MINDIR_SIZE = (128, 192)  # the small canvas of the end-to-end tests (height, width)


@pytest.fixture(autouse=True)
def _execution_mode():
    """Each test starts in PyNative mode on the CPU; whatever it changes in the context is undone after it."""
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    yield
    ms.set_context(mode=previous)


@pytest.fixture
def graph():
    """The test runs in GRAPH_MODE."""
    ms.set_context(mode=ms.GRAPH_MODE)


@pytest.fixture(params=list(MODES))
def mode(request) -> str:
    """The test runs twice: in PYNATIVE and in GRAPH mode (the mode's name)."""
    ms.set_context(mode=MODES[request.param])
    return request.param


@pytest.fixture(scope="session")
def reference_ckpt(tmp_path_factory) -> str:
    """The fidelity fixture's reference checkpoint (salt 0): every parameter of the original network."""
    return write_reference_ckpt(str(tmp_path_factory.mktemp("fidelity") / "reference.ckpt"), salt=0)


def _export_reference(reference_ckpt: str, folder, file_format: str) -> str:
    """`reference_ckpt` exported by export.py (a subprocess) in `file_format`, batch 1, input
    REFERENCE_MINDIR_SIZE; the written file's path."""
    height, width = REFERENCE_MINDIR_SIZE
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "export.py"), "--device_target=CPU", f"--ckpt_file={reference_ckpt}",
         f"--file_name={folder / 'faster_rcnn_dcn'}", "--batch_size=1", f"--img_height={height}",
         f"--img_width={width}", f"--file_format={file_format}"], cwd=folder, env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "exported" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    return str(folder / f"faster_rcnn_dcn.{file_format.lower()}")


@pytest.fixture(scope="session")
def reference_mindir(reference_ckpt, tmp_path_factory) -> str:
    """`reference_ckpt` exported to MINDIR (for slow tests), batch 1, input REFERENCE_MINDIR_SIZE; shared by the
    tests of export, the inference script and infer.py."""
    return _export_reference(reference_ckpt, tmp_path_factory.mktemp("reference_mindir"), "MINDIR")


@pytest.fixture(scope="session")
def reference_onnx(reference_ckpt, tmp_path_factory) -> str:
    """`reference_ckpt` exported to ONNX as `reference_mindir` is to MINDIR."""
    return _export_reference(reference_ckpt, tmp_path_factory.mktemp("reference_onnx"), "ONNX")
