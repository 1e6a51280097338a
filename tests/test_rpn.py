"""RPN: checkpoint names of the single shared head, the head against a NumPy convolution, and the training loss
against a NumPy computation of the original's (targets from the NumPy assignment rule, anchor order (image, y, x,
anchor), SigmoidCE + SmoothL1(1/9) over num_expected_neg * batch), in PYNATIVE and GRAPH mode."""
import csv
import os
from dataclasses import replace

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from src.FasterRcnn.anchor_generator import multi_level_anchors
from src.FasterRcnn.rpn import RPN
from src.FasterRcnn.settings import AnchorSettings, RpnSettings
from src.model_utils.config import get_config
from src.ops import Kernels
from tests.helpers.box_reference import np_encode, np_inside, ref_assign

PARAMS_TSV = os.path.join(os.path.dirname(__file__), "data", "original_params.tsv")
BATCH = 2
CHANNELS = 8  # small head for the numeric tests



def test_one_shared_head_with_the_original_checkpoint_names():
    cfg = get_config([], img_height=128, img_width=192)
    rpn = RPN(RpnSettings.from_config(cfg), BATCH, kernels=Kernels.CPU)
    with open(PARAMS_TSV, encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["name"].startswith("rpn_with_loss.")]
    expected = {r["name"][len("rpn_with_loss."):]: tuple(int(d) for d in r["shape"].split("x")) for r in rows}
    ours = {p.name: tuple(p.shape) for p in rpn.get_parameters()}
    assert ours == expected and len(ours) == 6
    weights = rpn.rpn_convs_list[0].rpn_conv.weight.asnumpy()
    assert abs(weights.std() - 0.01) < 1e-3 and (rpn.rpn_convs_list[0].rpn_conv.bias.asnumpy() == 0).all()


# ---------------------------------------------------------------- NumPy reference
def np_conv(x, w, b):
    """x (C, H, W), w (O, C, k, k), zero 'same' padding, stride 1."""
    k = w.shape[-1]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h, wd = x.shape[1:]
    cols = np.stack([xp[:, i:i + h, j:j + wd] for i in range(k) for j in range(k)], 1)  # (C, k*k, H, W)
    return np.einsum("ckhw,ock->ohw", cols, w.reshape(w.shape[0], w.shape[1], k * k)) + b[:, None, None]


def np_head(rpn, x):
    head = rpn.rpn_convs_list[0]
    hidden = np.maximum(np_conv(x, head.rpn_conv.weight.asnumpy(), head.rpn_conv.bias.asnumpy()), 0)
    return (np_conv(hidden, head.rpn_cls.weight.asnumpy(), head.rpn_cls.bias.asnumpy()),
            np_conv(hidden, head.rpn_reg.weight.asnumpy(), head.rpn_reg.bias.asnumpy()))


def np_rpn_loss(cfg, cls_maps, reg_maps, anchors, metas, gts, gt_valids):
    """The original's RPN loss when every valid anchor is sampled (few anchors: no randomness)."""
    logits = np.concatenate([m.transpose(0, 2, 3, 1).reshape(BATCH, -1) for m in cls_maps], 1)
    deltas = np.concatenate([m.transpose(0, 2, 3, 1).reshape(BATCH, -1, 4) for m in reg_maps], 1)
    cls_loss = reg_loss = 0.0
    for i in range(BATCH):
        valid = np_inside(anchors, metas[i, 0] * metas[i, 2], metas[i, 1] * metas[i, 2])
        assigned = ref_assign(gts[i], gt_valids[i], anchors, valid, cfg.pos_iou_thr, cfg.neg_iou_thr,
                              cfg.min_pos_iou)
        pos, neg = assigned > 0, assigned == 0
        assert pos.sum() <= cfg.num_expected_pos and pos.sum() + neg.sum() <= cfg.num_expected_neg
        x, y = logits[i].astype(np.float64), pos.astype(np.float64)
        bce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
        cls_loss += bce[pos | neg].sum()
        target = np_encode(anchors[pos], gts[i][assigned[pos] - 1])
        diff = np.abs(deltas[i][pos] - target)
        beta = 1.0 / 9.0
        reg_loss += np.where(diff < beta, 0.5 * diff ** 2 / beta, diff - 0.5 * beta).sum()
    norm = cfg.num_expected_neg * BATCH
    return cls_loss / norm, reg_loss / norm


@pytest.fixture(scope="module")
def small_case():
    """64x64 images: about 150 valid anchors, so every valid anchor is sampled and the loss is deterministic."""
    cfg = get_config([], img_height=64, img_width=64)
    rng = np.random.default_rng(21)
    feats = [rng.normal(0, 1, (BATCH, CHANNELS, h, w)).astype(np.float32) for h, w in cfg.feature_shapes]
    anchors = multi_level_anchors(AnchorSettings.from_config(cfg))
    gts = np.zeros((BATCH, cfg.num_gts, 4), np.float32)
    gt_valids = np.zeros((BATCH, cfg.num_gts), bool)
    gts[0, :3] = [[8, 10, 40, 37], [30, 30, 62, 50], [0, 0, 63, 63]]
    gt_valids[0, :2] = True  # gts[0, 2] is a crowd box
    gts[1, :1] = [[20, 4, 50, 60]]
    gt_valids[1, :1] = True
    metas = np.array([[64, 64, 1.0], [64, 64, 1.0]], np.float32)
    return cfg, feats, anchors, metas, gts, gt_valids


def make_rpn(cfg):
    ms.set_seed(3)
    rpn = RPN(replace(RpnSettings.from_config(cfg), in_channels=CHANNELS, feat_channels=CHANNELS), BATCH,
              kernels=Kernels.MINDSPORE)
    rng = np.random.default_rng(22)
    for p in rpn.get_parameters():  # larger than the 0.01 init, so that the loss is far from trivial
        p.set_data(Tensor(rng.normal(0, 0.3, p.shape).astype(np.float32)))
    rpn.set_train(True)
    return rpn


def run_rpn(rpn, case):
    cfg, feats, anchors, metas, gts, gt_valids = case
    labels = np.ones(gts.shape[:2], np.uint8)
    out = rpn(tuple(Tensor(f) for f in feats), Tensor(metas), tuple(Tensor(a) for a in anchors), Tensor(gts),
              Tensor(labels), Tensor(gt_valids))
    loss, cls_maps, reg_maps, cls_loss, reg_loss = out
    return (loss.asnumpy(), [m.asnumpy() for m in cls_maps], [m.asnumpy() for m in reg_maps], cls_loss.asnumpy(),
            reg_loss.asnumpy())


def check_against_numpy(case, outputs):
    cfg, feats, anchors, metas, gts, gt_valids = case
    loss, cls_maps, reg_maps, cls_loss, reg_loss = outputs
    assert loss.shape == cls_loss.shape == reg_loss.shape == (1,)
    ref_cls, ref_reg = np_rpn_loss(cfg, cls_maps, reg_maps, np.concatenate(anchors), metas, gts, gt_valids)
    assert ref_cls > 0.01 and ref_reg > 0.001
    np.testing.assert_allclose(cls_loss[0], ref_cls, rtol=1e-5)
    np.testing.assert_allclose(reg_loss[0], ref_reg, rtol=1e-5)
    np.testing.assert_allclose(loss[0], ref_cls + ref_reg, rtol=1e-5)


def test_head_is_shared_and_matches_numpy(small_case):
    cfg, feats = small_case[0], small_case[1]
    rpn = make_rpn(cfg)
    _, cls_maps, reg_maps, _, _ = run_rpn(rpn, small_case)
    for level, (h, w) in enumerate(cfg.feature_shapes):
        assert cls_maps[level].shape == (BATCH, 3, h, w) and reg_maps[level].shape == (BATCH, 12, h, w)
        for i in range(BATCH):
            ref_cls, ref_reg = np_head(rpn, feats[level][i])
            np.testing.assert_allclose(cls_maps[level][i], ref_cls, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(reg_maps[level][i], ref_reg, rtol=1e-4, atol=1e-4)


def test_loss_matches_numpy(small_case):
    check_against_numpy(small_case, run_rpn(make_rpn(small_case[0]), small_case))


def test_loss_matches_numpy_in_graph_mode(small_case):
    rpn = make_rpn(small_case[0])
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        outputs = run_rpn(rpn, small_case)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    check_against_numpy(small_case, outputs)


def test_canvas_meta_decides_valid_anchors(small_case):
    # A meta of a 64x48 canvas drops the anchors reaching x > 47: different targets, so a different loss.
    cfg, feats, anchors, metas, gts, gt_valids = small_case
    narrow = metas.copy()
    narrow[:, 1] = 48
    case = (cfg, feats, anchors, narrow, gts, gt_valids)
    outputs = run_rpn(make_rpn(cfg), case)
    check_against_numpy(case, outputs)
    full = run_rpn(make_rpn(cfg), small_case)
    assert abs(outputs[3][0] - full[3][0]) > 1e-3


def test_eval_mode_returns_placeholders_without_gts(small_case):
    cfg, feats, anchors = small_case[:3]
    rpn = make_rpn(cfg)
    rpn.set_train(False)
    loss, cls_maps, reg_maps, cls_loss, reg_loss = rpn(tuple(Tensor(f) for f in feats), None,
                                                       tuple(Tensor(a) for a in anchors), None, None, None)
    assert [x.asnumpy().tolist() for x in (loss, cls_loss, reg_loss)] == [[1.0]] * 3
    assert len(cls_maps) == len(reg_maps) == len(cfg.feature_shapes)
