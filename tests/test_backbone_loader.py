"""load_backbone_pretrained on a synthetic checkpoint laid out as the model zoo's ResNet-50 saves it (and mindcv's).

Model-zoo names (mindspore-ai/models official/cv/ResNet/src/resnet.py): conv1, bn1, layerN.M.conv1..3 / bn1..3,
the projection shortcut as layerN.0.down_sample_layer.0 (conv) and .1 (BatchNorm), the classifier end_point;
checkpoints saved during training also hold optimizer state (moments.*, learning_rate, global_step).
"""
import shlex
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.checkpoint.backbone import check_backbone_coverage, load_backbone_pretrained
from src.FasterRcnn.resnet import ResNetFea
from src.FasterRcnn.settings import BackboneSettings
from src.infra.errors import CheckpointError
from src.model_utils.config import get_config
from src.ops import Kernels
from src.tools.convert_backbone import build_parser

LAYERS, IN_CH, OUT_CH = [2, 2, 2, 1], [8, 16, 32, 64], [16, 32, 64, 128]
TINY = BackboneSettings(tuple(LAYERS), tuple(IN_CH), tuple(OUT_CH))
NUM_CLASSES = 10
BN = ("moving_mean", "moving_variance", "gamma", "beta")


class _Net(nn.Cell):
    def __init__(self):
        super().__init__()
        self.backbone = ResNetFea(TINY, kernels=Kernels.CPU)
        self.head = nn.Dense(4, 2)  # a non-backbone parameter the loader must leave alone


def _model_zoo_resnet_shapes():
    shapes = {"conv1.weight": (IN_CH[0], 3, 7, 7)}
    shapes.update({f"bn1.{k}": (IN_CH[0],) for k in BN})
    for stage, num_blocks in enumerate(LAYERS):
        out_ch = OUT_CH[stage]
        mid = out_ch // 4
        for block in range(num_blocks):
            in_ch = IN_CH[stage] if block == 0 else out_ch
            pre = f"layer{stage + 1}.{block}."
            shapes[pre + "conv1.weight"] = (mid, in_ch, 1, 1)
            shapes[pre + "conv2.weight"] = (mid, mid, 3, 3)
            shapes[pre + "conv3.weight"] = (out_ch, mid, 1, 1)
            for bn, ch in (("bn1", mid), ("bn2", mid), ("bn3", out_ch)):
                shapes.update({f"{pre}{bn}.{k}": (ch,) for k in BN})
            if block == 0:
                shapes[pre + "down_sample_layer.0.weight"] = (out_ch, in_ch, 1, 1)
                shapes.update({f"{pre}down_sample_layer.1.{k}": (out_ch,) for k in BN})
    shapes["end_point.weight"] = (NUM_CLASSES, OUT_CH[-1])
    shapes["end_point.bias"] = (NUM_CLASSES,)
    return shapes


def _expected_target(key):
    """Where a model-zoo key must land (written out per rule, independent of the loader)."""
    if key.startswith("end_point."):
        return None
    parts = key.split(".")
    if parts[0].startswith("layer") and parts[2] == "down_sample_layer":
        parts[2:4] = ["conv_down_sample" if parts[3] == "0" else "bn_down_sample"]
    if parts[0] in ("layer2", "layer3", "layer4") and parts[2] == "conv2":
        parts[2:3] = ["defconv", "conv"]
    return "backbone." + ".".join(parts)


def _write_ckpt(path, shapes, seed=0, with_optimizer=True):
    rng = np.random.default_rng(seed)
    values = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    entries = [{"name": k, "data": Tensor(v)} for k, v in values.items()]
    if with_optimizer:
        entries.append({"name": "moments.conv1.weight", "data": Tensor(np.zeros(shapes["conv1.weight"], np.float32))})
        entries.append({"name": "learning_rate", "data": Tensor(np.array([0.1], np.float32))})
        entries.append({"name": "global_step", "data": Tensor(np.array([100], np.int32))})
    ms.save_checkpoint(entries, str(path))
    return values


def test_loads_model_zoo_names_including_dcn_main_weights(tmp_path):
    shapes = _model_zoo_resnet_shapes()
    values = _write_ckpt(tmp_path / "resnet50.ckpt", shapes)
    net = _Net()
    head_before = net.head.weight.asnumpy().copy()
    report = load_backbone_pretrained(net, str(tmp_path / "resnet50.ckpt"))

    params = {p.name: p for p in net.get_parameters()}
    expected_loaded = sorted(t for t in map(_expected_target, shapes) if t is not None)
    assert report["loaded"] == expected_loaded
    for key, value in values.items():
        target = _expected_target(key)
        if target is not None:
            np.testing.assert_array_equal(params[target].asnumpy(), value, err_msg=f"{key} -> {target}")
    dcn_main = [t for t in expected_loaded if t.endswith("defconv.conv.weight")]
    assert len(dcn_main) == sum(LAYERS[1:])  # the weights the original's loader drops
    offset_convs = sorted(n for n in params if n.endswith(("p_conv.weight", "m_conv.weight")))
    assert report["missing"] == offset_convs
    for name in offset_convs:
        assert not params[name].asnumpy().any()  # untouched: zero-initialised
    assert report["unexpected"] == sorted(["end_point.weight", "end_point.bias", "moments.conv1.weight",
                                           "learning_rate", "global_step"])
    np.testing.assert_array_equal(net.head.weight.asnumpy(), head_before)


def test_bare_backbone_with_empty_prefix(tmp_path):
    shapes = _model_zoo_resnet_shapes()
    values = _write_ckpt(tmp_path / "r.ckpt", shapes, seed=1, with_optimizer=False)
    backbone = ResNetFea(TINY, kernels=Kernels.CPU)
    report = load_backbone_pretrained(backbone, str(tmp_path / "r.ckpt"), prefix="")
    np.testing.assert_array_equal(backbone.layer4[0].conv1.weight.asnumpy(), values["layer4.0.conv1.weight"])
    assert report["unexpected"] == ["end_point.bias", "end_point.weight"]


def test_shape_mismatch_names_the_key(tmp_path):
    shapes = _model_zoo_resnet_shapes()
    shapes["layer3.1.conv2.weight"] = (8, 8, 3, 3)
    _write_ckpt(tmp_path / "bad.ckpt", shapes)
    with pytest.raises(ValueError, match=r"layer3\.1\.conv2\.weight.*\(8, 8, 3, 3\).*defconv\.conv\.weight"):
        load_backbone_pretrained(_Net(), str(tmp_path / "bad.ckpt"))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="nope.ckpt"):
        load_backbone_pretrained(_Net(), str(tmp_path / "nope.ckpt"))
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match="garbage.ckpt"):
        load_backbone_pretrained(_Net(), str(garbage))


def _backbone_shapes_without_offset_convs():
    backbone = ResNetFea(TINY, kernels=Kernels.CPU)
    return {p.name: tuple(p.shape) for p in backbone.get_parameters()
            if ".p_conv." not in p.name and ".m_conv." not in p.name}


def test_coverage_every_resnet_parameter_under_model_zoo_or_network_names():
    shapes = _backbone_shapes_without_offset_convs()
    zoo = {k: np.zeros(s, np.float32) for k, s in _model_zoo_resnet_shapes().items()}
    assert check_backbone_coverage(zoo, "zoo.ckpt", shapes) == len(shapes)
    # a whole detector checkpoint: the network's names, a head beside them
    detector = {"backbone." + k: np.zeros(s, np.float32) for k, s in shapes.items()}
    detector["rcnn.cls_scores.weight"] = np.zeros((3, 4), np.float32)
    assert check_backbone_coverage(detector, "det.ckpt", shapes) == len(shapes)


def test_coverage_refuses_another_network_and_a_partial_backbone():
    shapes = _backbone_shapes_without_offset_convs()
    with pytest.raises(CheckpointError) as err:
        check_backbone_coverage({"weight": np.zeros((3, 4)), "bias": np.zeros(3)}, "dense.ckpt", shapes)
    message = str(err.value)
    assert message.startswith(f"--pre_trained 'dense.ckpt' does not hold this network's ResNet-50 backbone: 0 of its "
                              f"{len(shapes)} parameters found (the file has 2 entries: bias, weight; missing: "
                              "conv1.weight, ")
    # one parameter short, and one of another shape: both named
    zoo = {k: np.zeros(s, np.float32) for k, s in _model_zoo_resnet_shapes().items()}
    del zoo["layer4.0.bn3.gamma"]
    zoo["layer2.1.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(CheckpointError, match=rf"{len(shapes) - 2} of its {len(shapes)} parameters found .*missing: "
                       r"layer2\.1\.conv1\.weight, layer4\.0\.bn3\.gamma; another shape: layer2\.1\.conv1\.weight "
                       r"\(1, 1, 1, 1\) \(network \(8, 32, 1, 1\)\)\)"):
        check_backbone_coverage(zoo, "part.ckpt", shapes)


def _mindcv_name(key):
    """mindcv's name for a model-zoo key (mindspore-lab/mindcv mindcv/models/resnet.py): the projection shortcut is
    `layerN.0.down_sample.0/1`, the classifier `classifier`; every other name is the model zoo's."""
    return key.replace(".down_sample_layer.", ".down_sample.").replace("end_point.", "classifier.")


def test_loads_mindcv_names_into_the_same_places(tmp_path):
    zoo_shapes = _model_zoo_resnet_shapes()
    shapes = {_mindcv_name(k): s for k, s in zoo_shapes.items()}
    assert any(".down_sample.0." in k for k in shapes)
    values = _write_ckpt(tmp_path / "resnet50-mindcv.ckpt", shapes, seed=2, with_optimizer=False)
    backbone = _backbone_shapes_without_offset_convs()
    assert check_backbone_coverage(values, "resnet50-mindcv.ckpt", backbone) == len(backbone)  # --pre_trained takes it
    net = _Net()
    report = load_backbone_pretrained(net, str(tmp_path / "resnet50-mindcv.ckpt"))
    params = {p.name: p for p in net.get_parameters()}
    for key in zoo_shapes:
        target = _expected_target(key)
        if target is not None:
            np.testing.assert_array_equal(params[target].asnumpy(), values[_mindcv_name(key)], err_msg=target)
    assert report["unexpected"] == ["classifier.bias", "classifier.weight"]


def readme_backbone_commands():
    """The command lines of the README's "Where a backbone comes from" (its bash block), split into words."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Where a backbone comes from", 1)[1].split("\n#", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_the_readmes_backbone_commands_are_accepted_as_written():
    commands = readme_backbone_commands()
    assert [c[:3] for c in commands] == [["bash", "scripts/run_standalone_train_cpu.sh",
                                          "resnet50_ascend_v130_imagenet2012_official_cv_bs256_top1acc76.97__top5acc_93"
                                          ".44.ckpt"], ["python", "train.py", "--config_path=default_config_cpu.yaml"],
                                         ["python", "-m", "src.tools.convert_backbone"],
                                         ["python", "train.py", "--config_path=default_config_cpu.yaml"]]
    root = Path(__file__).resolve().parents[1]
    # the script's first argument is the backbone it checks and passes on as --pre_trained
    script = (root / commands[0][1]).read_text()
    assert 'check_pretrained "${ARGS[0]}"' in script and '--pre_trained="$PRETRAINED"' in script
    converted = build_parser().parse_args(commands[2][3:])
    assert (converted.pth, converted.out) == ("resnet50-0676ba61.pth", "resnet50_torchvision.ckpt")
    for words, backbone in ((commands[1], "resnet50-e0733ab8.ckpt"), (commands[3], converted.out)):
        argv = [w.replace("=default_config_cpu.yaml", f"={root / 'default_config_cpu.yaml'}") for w in words[2:]]
        assert get_config(argv).pre_trained == backbone
