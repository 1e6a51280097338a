"""src/checkpoint/from_torchvision.py: a torchvision ResNet-50 state dict, converted and loaded through train.py's
--pre_trained path, computes torchvision's C2 (stem + layer1) in this port's backbone.

The reference is torchvision's ResNet-50 (models/resnet.py of torchvision 0.28, the release for torch 2.13) written
out below with torch.nn under torchvision's module names: torchvision itself does not import here, its wheels in the
local package mirror are CUDA builds (their _C.so needs libtorch_cuda.so) and torch is the CPU build. Its weights
are random, the BatchNorm statistics and affine parameters too, in eval mode.

Only C2 is compared: layer2-4's deformable convolutions sample with the original's +1 pixel shift and edge clamping,
not as a plain 3x3 (by design). The stem max-pool pads TF "SAME" here (output ceil(H / 2), padding at the bottom/right
only when needed) and 1 on each side in torchvision: the windows are the same where the stem's output has odd sides
(input sides 4k+1), one pixel apart at even ones (every size this network runs, multiples of 32).
"""
import contextlib
import io
import os
import re

import mindspore as ms
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (torch's convention)
from torch import nn as tnn

from src.checkpoint.backbone import backbone_shapes
from src.checkpoint.from_torchvision import convert_file, convert_state_dict, read_torch_state_dict
from src.engine.trainer import load_pretrained
from src.FasterRcnn import build_model
from src.infra.errors import CheckpointError
from src.model_utils.config import get_config
from src.ops import Kernels
from tests.helpers.processes import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKS, WIDTHS = (3, 4, 6, 3), (64, 128, 256, 512)
RELATIVE_TOLERANCE = 1e-4  # of the reference's standard deviation


class _Bottleneck(tnn.Module):
    def __init__(self, in_ch: int, width: int, stride: int, down_sample: bool):
        super().__init__()
        self.conv1 = tnn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(width)
        self.conv2 = tnn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(width)
        self.conv3 = tnn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(width * 4)
        self.downsample = (tnn.Sequential(tnn.Conv2d(in_ch, width * 4, 1, stride=stride, bias=False),
                                          tnn.BatchNorm2d(width * 4)) if down_sample else None)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class _TorchvisionResNet50(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.maxpool = tnn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = 64
        for stage, (num_blocks, width) in enumerate(zip(BLOCKS, WIDTHS, strict=True)):
            stride = 1 if stage == 0 else 2
            blocks = [_Bottleneck(in_ch, width, stride, True)]
            blocks += [_Bottleneck(width * 4, width, 1, False) for _ in range(1, num_blocks)]
            setattr(self, f"layer{stage + 1}", tnn.Sequential(*blocks))
            in_ch = width * 4
        self.fc = tnn.Linear(2048, 1000)

    def stem(self, x):
        return F.relu(self.bn1(self.conv1(x)))


def _random_resnet50(seed: int) -> _TorchvisionResNet50:
    torch.manual_seed(seed)
    model = _TorchvisionResNet50()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, tnn.Conv2d):
                tnn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")  # torchvision's
            elif isinstance(module, tnn.BatchNorm2d):
                module.weight.normal_(1.0, 0.3)  # some negative scales
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(1000)
    return model.eval()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(torch model, this port's network with the converted checkpoint loaded by train.py's load_pretrained, the
    converter's report, what load_pretrained printed)."""
    folder = tmp_path_factory.mktemp("convert")
    model = _random_resnet50(seed=0)
    torch.save(model.state_dict(), folder / "resnet50.pth")
    report = convert_file(str(folder / "resnet50.pth"), str(folder / "resnet50.ckpt"))
    ms.set_seed(3)
    net = build_model(get_config([]), kernels=Kernels.CPU)
    net.set_train(False)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        load_pretrained(net, str(folder / "resnet50.ckpt"))
    return model, net, report, printed.getvalue()


def _c2(net, x: np.ndarray) -> np.ndarray:
    ms.set_context(mode=ms.PYNATIVE_MODE)
    return net.backbone(ms.Tensor(x))[0].asnumpy()


def _assert_close(actual: np.ndarray, reference: np.ndarray) -> None:
    deviation = np.abs(actual - reference).max() / reference.std()
    assert deviation <= RELATIVE_TOLERANCE, f"max |port - torch| = {deviation:.2e} x the reference's std"


def test_train_reports_it_as_a_backbone(converted):
    model, net, report, out = converted
    assert re.search(r"Pre-trained backbone \S+resnet50\.ckpt: 265 parameters loaded", out), out
    offset_mask = sorted(p.name for p in net.get_parameters() if ".p_conv." in p.name or ".m_conv." in p.name)
    assert len(offset_mask) == 2 * 13  # the offset and the mask conv of each of the 13 deformable blocks
    missing = re.search(r"missing \(left at their initial values\): (.*)", out).group(1).split(", ")
    assert sorted(missing) == offset_mask
    assert "unexpected" not in out
    # The converter's report: every torchvision entry but the classifier and the BatchNorm counters.
    num_bn = sum(isinstance(m, tnn.BatchNorm2d) for m in model.modules())
    assert len(report["converted"]) == 265 == len(model.state_dict()) - 2 - num_bn
    assert sorted(report["ignored"]) == sorted(["fc.weight", "fc.bias"] + [
        k for k in model.state_dict() if k.endswith("num_batches_tracked")])


def test_every_weight_lands_in_its_counterpart(converted):
    """Module by module (not by name): torchvision's conv / BatchNorm (weight, bias, running stats) -> this port's
    conv / BatchNorm (gamma, beta, moving stats); each deformable block's 3x3 in defconv.conv.weight."""
    model, net, _, _ = converted
    backbone = net.backbone

    def same_bn(port_bn, torch_bn):
        for ours, theirs in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                             ("moving_variance", "running_var")):
            np.testing.assert_array_equal(getattr(port_bn, ours).asnumpy(), getattr(torch_bn, theirs).detach().numpy())

    np.testing.assert_array_equal(backbone.conv1.weight.asnumpy(), model.conv1.weight.detach().numpy())
    same_bn(backbone.bn1, model.bn1)  # the stem's BatchNorm: affine=False only freezes gamma/beta
    deformable = 0
    for stage in range(1, 5):
        for ours, theirs in zip(getattr(backbone, f"layer{stage}"), getattr(model, f"layer{stage}"), strict=True):
            spatial = ours.defconv.conv if stage > 1 else ours.conv2
            deformable += stage > 1
            for port_conv, torch_conv in ((ours.conv1, theirs.conv1), (spatial, theirs.conv2),
                                          (ours.conv3, theirs.conv3)):
                np.testing.assert_array_equal(port_conv.weight.asnumpy(), torch_conv.weight.detach().numpy())
            for index in (1, 2, 3):
                same_bn(getattr(ours, f"bn{index}"), getattr(theirs, f"bn{index}"))
            if theirs.downsample is not None:
                np.testing.assert_array_equal(ours.conv_down_sample.weight.asnumpy(),
                                              theirs.downsample[0].weight.detach().numpy())
                same_bn(ours.bn_down_sample, theirs.downsample[1])
    assert deformable == 13


def test_c2_matches_torchvision_where_both_max_pools_agree(converted):
    """Input 65x97: the stem's output is 33x49 (odd), both max-pools pad one pixel on every side."""
    model, net, _, _ = converted
    x = np.random.default_rng(1).standard_normal((1, 3, 65, 97)).astype(np.float32)
    with torch.no_grad():
        reference = model.layer1(model.maxpool(model.stem(torch.from_numpy(x)))).numpy()
    ours = _c2(net, x)
    assert ours.shape == reference.shape == (1, 256, 17, 25)
    _assert_close(ours, reference)


def test_c2_at_even_sizes_is_layer1_of_the_same_padded_max_pool(converted):
    """Input 64x96: this port pools windows starting at rows/columns 0, 2, ... (pad one at the bottom/right),
    torchvision at -1, 1, ...; with that padding torch's layers give this port's C2, with torchvision's they do not."""
    model, net, _, _ = converted
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 96)).astype(np.float32)
    with torch.no_grad():
        stem = model.stem(torch.from_numpy(x))
        same_padded = F.max_pool2d(F.pad(stem, (0, 1, 0, 1), value=float("-inf")), kernel_size=3, stride=2)
        reference = model.layer1(same_padded).numpy()
        torchvision_c2 = model.layer1(model.maxpool(stem)).numpy()
    ours = _c2(net, x)
    assert ours.shape == reference.shape == torchvision_c2.shape == (1, 256, 16, 24)
    _assert_close(ours, reference)
    assert np.abs(ours - torchvision_c2).max() > 0.1 * torchvision_c2.std()


def test_a_state_dict_of_another_network_is_refused_with_its_keys(converted):
    model = converted[0]
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    shapes = backbone_shapes()
    wrong = dict(state, **{"layer3.1.conv2.weight": np.zeros((256, 256, 1, 1), np.float32),
                           "layer3.6.conv1.weight": np.zeros((256, 1024, 1, 1), np.float32)})
    del wrong["layer4.2.bn3.running_var"]
    with pytest.raises(CheckpointError) as err:
        convert_state_dict(wrong, shapes, "r101.pth")
    message = str(err.value)
    assert message.startswith("r101.pth is not a torchvision ResNet-50 state dict")
    assert "keys of no ResNet-50 backbone parameter: layer3.6.conv1.weight" in message
    assert "another shape: layer3.1.conv2.weight (256, 256, 1, 1) (backbone layer3.1.defconv.conv.weight " \
           "(256, 256, 3, 3))" in message
    assert "backbone parameters it lacks: layer4.2.bn3.moving_variance" in message


def test_unreadable_files_are_one_line_errors(tmp_path, capsys):
    from src.tools.convert_backbone import main  # noqa: PLC0415

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, tmp_path / "wrapped.pth")
    with pytest.raises(CheckpointError, match="wrapped.pth: expected a state dict"):
        read_torch_state_dict(str(tmp_path / "wrapped.pth"))
    assert main([str(junk), str(tmp_path / "out.ckpt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"convert_backbone: error: {junk}: not a PyTorch state dict file")
    assert not (tmp_path / "out.ckpt").exists()


@pytest.mark.slow  # a subprocess
def test_importing_the_converter_does_not_import_torch():
    code = "import sys, src.checkpoint.from_torchvision; sys.exit('torch' in sys.modules)"
    done = run_script(f"-c {code}", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
