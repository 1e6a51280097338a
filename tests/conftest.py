"""Fixtures shared by several test modules."""
import pytest

from tests.reference_ckpt import write_reference_ckpt


@pytest.fixture(scope="session")
def reference_ckpt(tmp_path_factory) -> str:
    """The fidelity fixture's reference checkpoint (salt 0): every parameter of the original network."""
    return write_reference_ckpt(str(tmp_path_factory.mktemp("fidelity") / "reference.ckpt"), salt=0)
