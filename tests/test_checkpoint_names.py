"""Checkpoint compatibility with the original: the network's parameters are exactly the original's (names,
shapes, trainability, tests/data/original_params.tsv), and save / load / strict load / the inference wrapper
all use the original's names."""

import mindspore as ms
import numpy as np
import pytest

from src.FasterRcnn import build_infer_model, build_model
from src.model_utils.config import get_config
from src.ops import Kernels
from tests.helpers.reference_ckpt import read_param_table, reference_params, write_reference_ckpt

ORIGINAL_NUM_PARAMS = 321
ORIGINAL_NUM_VALUES = 42_681_188
ORIGINAL_NUM_TRAINABLE_VALUES = 42_402_724
ORIGINAL_CELL_NAMES = {"fpn_neck": "fpn_ncek"}  # attribute -> the cell's name in the original's checkpoints


@pytest.fixture(scope="module")
def cfg():
    # Parameter shapes do not depend on the image size; a small one keeps construction cheap.
    return get_config([], img_height=256, img_width=384)


@pytest.fixture(scope="module")
def table():
    return {name: (shape, grad) for name, shape, _, grad in read_param_table()}


@pytest.fixture(scope="module")
def net(cfg):
    return build_model(cfg, kernels=Kernels.CPU)


@pytest.fixture(scope="module")
def reference_ckpt(tmp_path_factory):
    return write_reference_ckpt(str(tmp_path_factory.mktemp("ckpt") / "reference.ckpt"))


def test_table_is_the_original_network():
    rows = read_param_table()
    assert len(rows) == ORIGINAL_NUM_PARAMS
    assert sum(int(np.prod(shape)) for _, shape, _, _ in rows) == ORIGINAL_NUM_VALUES
    assert sum(int(np.prod(shape)) for _, shape, _, grad in rows if grad) == ORIGINAL_NUM_TRAINABLE_VALUES


def test_parameters_are_the_originals(net, table):
    params = list(net.get_parameters())
    ours = {p.name: (tuple(p.shape), p.requires_grad) for p in params}
    assert len(params) == len(ours), "duplicate parameter names"
    missing = sorted(set(table) - set(ours))
    unexpected = sorted(set(ours) - set(table))
    assert not missing and not unexpected, f"missing {missing[:10]}, unexpected {unexpected[:10]}"
    wrong = {name: (ours[name], table[name]) for name in table if ours[name] != table[name]}
    assert not wrong, f"(shape, requires_grad) ours vs original: {dict(list(wrong.items())[:10])}"
    assert all(p.dtype == ms.float32 for p in params)
    assert sum(p.size for p in params) == ORIGINAL_NUM_VALUES
    assert sum(p.size for p in params if p.requires_grad) == ORIGINAL_NUM_TRAINABLE_VALUES


def test_renamed_cells_keep_the_original_names(net):
    for attribute, original in ORIGINAL_CELL_NAMES.items():
        cell = getattr(net, attribute)
        names = [p.name for p in cell.get_parameters()]
        assert names and all(name.startswith(original + ".") for name in names)
    assert not any(p.name.startswith("fpn_neck.") for p in net.get_parameters())


def test_original_checkpoint_loads_strictly(cfg, reference_ckpt, table):
    net = build_model(cfg, kernels=Kernels.CPU)
    param_dict = ms.load_checkpoint(reference_ckpt)
    assert set(param_dict) == set(table)
    not_loaded, unused = ms.load_param_into_net(net, param_dict, strict_load=True)
    assert not_loaded == [] and unused == []
    expected = reference_params()
    for p in net.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), expected[p.name], err_msg=p.name)


def test_saved_checkpoint_has_original_names_and_round_trips(net, table, tmp_path):
    path = str(tmp_path / "port.ckpt")
    ms.save_checkpoint(net, path)
    saved = ms.load_checkpoint(path)
    assert set(saved) == set(table)
    assert all(tuple(saved[name].shape) == table[name][0] for name in table)
    fresh = build_model(get_config([], img_height=256, img_width=384), kernels=Kernels.CPU)
    assert ms.load_param_into_net(fresh, saved, strict_load=True) == ([], [])
    for name in ("fpn_ncek.lateral_convs_list.0.weight", "rcnn.shared_fc_0.weight", "backbone.conv1.weight"):
        np.testing.assert_array_equal(fresh.parameters_dict()[name].asnumpy(), net.parameters_dict()[name].asnumpy())


def test_inference_wrapper_uses_network_prefix(cfg, reference_ckpt, table, tmp_path):
    infer = build_infer_model(cfg, kernels=Kernels.CPU)
    names = {p.name for p in infer.get_parameters()}
    assert names == {"network." + name for name in table}
    # As the original's export.py: a training checkpoint's keys, prefixed with "network.".
    param_dict = {"network." + k: v for k, v in ms.load_checkpoint(reference_ckpt).items()}
    assert ms.load_param_into_net(infer, param_dict, strict_load=True) == ([], [])
    path = str(tmp_path / "infer.ckpt")
    ms.save_checkpoint(infer, path)
    assert set(ms.load_checkpoint(path)) == {"network." + name for name in table}
