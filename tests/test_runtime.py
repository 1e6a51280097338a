"""The entry points' shared runtime: kernels and dtype per device, device set-up, errors as one line."""
import sys

import mindspore as ms
import pytest

from src.infra.errors import CheckpointError, ConfigError, DataError, DeviceError, TrainingError
from src.infra.runtime import CPU_KERNELS_ENV, device_id, network_dtype, network_kernels, run_main, set_up_device
from src.model_utils.config import get_config
from src.ops import Kernels
from src.tools.check_device import main as runtime_main


def test_kernels_follow_the_device_the_switch_and_export(monkeypatch):
    monkeypatch.delenv(CPU_KERNELS_ENV, raising=False)
    assert network_kernels("CPU") is Kernels.CPU
    # a MINDIR never needs the local library, on any device
    assert all(network_kernels(device, for_export=True) is Kernels.GATHER for device in ("CPU", "GPU", "Ascend"))
    assert network_kernels("GPU") is Kernels.MINDSPORE and network_kernels("Ascend") is Kernels.MINDSPORE
    monkeypatch.setenv(CPU_KERNELS_ENV, "0")
    assert network_kernels("CPU") is Kernels.MINDSPORE


def test_float16_only_on_ascend():
    assert network_dtype("Ascend") == ms.float16
    assert network_dtype("GPU") == ms.float32 == network_dtype("CPU")


def test_device_id_from_the_command_line_or_the_launcher(monkeypatch):
    monkeypatch.setenv("DEVICE_ID", "3")
    assert device_id(get_config([])) == 3
    assert device_id(get_config(["--device_id=1"])) == 1


def test_a_device_this_installation_lacks_is_one_clear_error():
    with pytest.raises(DeviceError, match="device_target=Ascend is not available"):
        set_up_device("Ascend")
    with pytest.raises(DeviceError, match="expected one of"):
        set_up_device("TPU")


@pytest.mark.parametrize("error", [ConfigError("--img_width=641: a multiple of 32"), DataError("a.json:3: bad box"),
                                   CheckpointError("x.ckpt: no such file"), DeviceError("no GPU")])
def test_usage_errors_become_one_line_and_status_2(error, capsys, monkeypatch):
    def main():
        raise error

    monkeypatch.setattr(sys, "argv", ["prog.py"])
    assert run_main(main, "prog.py") == 2
    err = capsys.readouterr().err
    assert err == f"prog.py: error: {error}\n"


def test_a_stopped_training_is_status_1_and_debug_keeps_the_traceback(capsys, monkeypatch):
    def main():
        raise TrainingError("training stopped at global step 4")

    monkeypatch.setattr(sys, "argv", ["prog.py"])
    assert run_main(main, "prog.py") == 1
    assert capsys.readouterr().err == "prog.py: error: training stopped at global step 4\n"
    for argv in (["prog.py", "--debug=True"], ["prog.py", "--debug=false", "--debug=1"]):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(TrainingError):
            run_main(main, "prog.py")
    monkeypatch.setattr(sys, "argv", ["prog.py", "--debug=maybe"])
    assert run_main(main, "prog.py") == 1


def test_the_device_check_of_the_launchers(capsys):
    assert runtime_main(["CPU"]) == 0
    assert runtime_main(["Ascend"]) == 2
    assert "device check: error: device_target=Ascend is not available" in capsys.readouterr().err


def test_other_errors_keep_their_traceback():
    def main():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_main(main, "prog.py")
    assert run_main(lambda: None, "prog.py") == 0
