"""The test harness: MindSpore's logging quieted once, every test in PyNative mode unless it asks for more and the
context restored after it, shared fixtures (kernel choices, the synthetic data set, the reference checkpoint and its
MINDIR), and the `slow` marker (`make test-fast` leaves those tests out). What test modules share besides fixtures is
in tests/helpers/ (references, processes, training runs); test modules never import each other."""
import os
import pathlib
import shutil

import src  # noqa: F401  (before MindSpore: src/__init__.py sets OpenMP's wait policy, read when libgomp loads)

os.environ.setdefault("GLOG_v", "3")  # before any test module imports MindSpore

import mindspore as ms  # noqa: E402
import pytest  # noqa: E402

from src.ops import Kernels  # noqa: E402
from tests.helpers.processes import run_script  # noqa: E402
from tests.helpers.reference_ckpt import write_reference_ckpt  # noqa: E402

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


@pytest.fixture(params=list(Kernels), ids=[kernels.value for kernels in Kernels])
def kernels(request) -> Kernels:
    """The test runs once per kernel choice, ids `cpu` (this project's C++ kernels), `mindspore` (MindSpore's
    operators: GPU, Ascend) and `gather` (the exported graph's gathers)."""
    return request.param


@pytest.fixture(scope="session")
def reference_ckpt(tmp_path_factory) -> str:
    """The fidelity fixture's reference checkpoint (salt 0): every parameter of the original network."""
    return write_reference_ckpt(str(tmp_path_factory.mktemp("fidelity") / "reference.ckpt"), salt=0)


def _export_reference(reference_ckpt: str, folder, file_format: str) -> str:
    """`reference_ckpt` exported by export.py (a subprocess) in `file_format`, batch 1, input
    REFERENCE_MINDIR_SIZE; the written file's path."""
    height, width = REFERENCE_MINDIR_SIZE
    result = run_script("export.py", ["--device_target=CPU", f"--ckpt_file={reference_ckpt}",
                                      f"--file_name={folder / 'faster_rcnn_dcn'}", "--batch_size=1",
                                      f"--img_height={height}", f"--img_width={width}",
                                      f"--file_format={file_format}"], cwd=folder, timeout=None)
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


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """`synthetic_data(folder, num_train=4, num_val=2, seed=3)` puts the synthetic data set (src/data/synthetic.py:
    COCO layout, TXT label files) into `folder` and returns it as a Path: a copy (file times kept) of the set this
    session generated once for these counts and seed. The same seed gives the same files, and image i of a split
    depends only on (seed, split, i)."""
    from src.data.synthetic import generate  # noqa: PLC0415  (OpenCV; only tests that need the data import it)
    from src.model_utils.config import get_config  # noqa: PLC0415

    generated = {}

    def make(folder, num_train: int = 4, num_val: int = 2, seed: int = 3):
        key = (num_train, num_val, seed)
        if key not in generated:
            generated[key] = tmp_path_factory.mktemp("synthetic_{}_{}_{}".format(*key)) / "set"
            generate(str(generated[key]), num_train, num_val, seed, get_config([]).coco_classes)
        shutil.copytree(generated[key], folder, dirs_exist_ok=True)
        return pathlib.Path(folder)

    return make


@pytest.fixture(scope="module")
def data_root(synthetic_data, tmp_path_factory):
    """The tiny training set of the end-to-end tests (tests/helpers/training.py): 4 training images (2 steps of
    batch 2 per epoch), 2 validation images, and an empty `mindrecord/` folder for their MindRecord."""
    root = synthetic_data(tmp_path_factory.mktemp("synthetic"))
    (root / "mindrecord").mkdir()
    return root
