"""Proposal generator against a NumPy reimplementation of the original's: per level top-k (k = min(nms_pre, H*W*A))
by sigmoid score, decode clipped to the canvas, greedy NMS (IoU without "+1", > thr), then the max_num best of all
levels with suppressed rows ranked last at -65500; in PYNATIVE and GRAPH mode."""

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from src.FasterRcnn.anchor_generator import multi_level_anchors
from src.FasterRcnn.proposal_generator import Proposal
from src.FasterRcnn.settings import AnchorSettings, ProposalSettings
from src.model_utils.config import get_config
from src.ops import Kernels
from tests.helpers.box_reference import np_decode, np_nms_keep

BATCH = 2



def np_proposals(cls_maps, reg_maps, anchors, nms_pre, nms_thr, max_num, max_shape, num_anchors=3):
    """Per image: (max_num, 5) proposals and (max_num,) masks."""
    results = []
    for i in range(cls_maps[0].shape[0]):
        dets, keeps = [], []
        for cls_map, reg_map, level_anchors in zip(cls_maps, reg_maps, anchors, strict=True):
            scores = 1.0 / (1.0 + np.exp(-cls_map[i].transpose(1, 2, 0).reshape(-1).astype(np.float64)))
            deltas = reg_map[i].transpose(1, 2, 0).reshape(-1, 4)
            h, w = cls_map.shape[2:]
            k = min(nms_pre, h * w * num_anchors)
            top = np.argsort(-scores, kind="stable")[:k]
            boxes = np_decode(level_anchors[top], deltas[top], max_shape)
            level_dets = np.concatenate([boxes, scores[top, None]], 1).astype(np.float32)
            dets.append(level_dets)
            keeps.append(np_nms_keep(level_dets, nms_thr))
        dets, keep = np.concatenate(dets), np.concatenate(keeps)
        order = np.argsort(-np.where(keep, dets[:, 4], -65500.0), kind="stable")[:max_num]
        results.append((dets[order], keep[order]))
    return results


def random_rpn_outputs(cfg, seed):
    rng = np.random.default_rng(seed)
    cls_maps = [rng.normal(0, 2, (BATCH, 3, h, w)).astype(np.float32) for h, w in cfg.feature_shapes]
    reg_maps = [rng.normal(0, 0.2, (BATCH, 12, h, w)).astype(np.float32) for h, w in cfg.feature_shapes]
    return cls_maps, reg_maps


def run_proposal(generator, cls_maps, reg_maps, anchors):
    proposals, masks = generator(tuple(Tensor(m) for m in cls_maps), tuple(Tensor(m) for m in reg_maps),
                                 tuple(Tensor(a) for a in anchors))
    return [(p.asnumpy(), m.asnumpy()) for p, m in zip(proposals, masks, strict=True)]


def check(ours, reference, max_num):
    assert len(ours) == len(reference) == BATCH
    for (boxes, mask), (ref_boxes, ref_mask) in zip(ours, reference, strict=True):
        assert boxes.shape == (max_num, 5) and mask.shape == (max_num,) and mask.dtype == np.bool_
        np.testing.assert_array_equal(mask, ref_mask)
        np.testing.assert_allclose(boxes[:, :4], ref_boxes[:, :4], rtol=1e-5, atol=2e-3)
        np.testing.assert_allclose(boxes[:, 4], ref_boxes[:, 4], rtol=0, atol=2e-6)
        # NMS suppressed something, and the suppressed rows come last
        assert 0 < mask.sum() < max_num and not mask[mask.sum():].any()


@pytest.fixture(scope="module")
def cfg():
    # level sizes 4608, 1152, 288, 72, 18 anchors: top-k = 300 on the first two, all on the others
    return get_config([], img_height=128, img_width=192, rpn_proposal_nms_pre=300, rpn_proposal_max_num=600,
                      rpn_nms_pre=100, rpn_max_num=390)


def test_training_proposals_match_numpy(cfg):
    anchors = multi_level_anchors(AnchorSettings.from_config(cfg))
    cls_maps, reg_maps = random_rpn_outputs(cfg, 31)
    generator = Proposal(ProposalSettings.from_config(cfg, training=True), BATCH, Kernels.CPU)
    assert generator.level_k == (300, 300, 288, 72, 18)
    reference = np_proposals(cls_maps, reg_maps, anchors, 300, cfg.rpn_proposal_nms_thr, 600, (128, 192))
    check(run_proposal(generator, cls_maps, reg_maps, anchors), reference, 600)


def test_test_proposals_use_the_test_keys_in_graph_mode(cfg):
    anchors = multi_level_anchors(AnchorSettings.from_config(cfg))
    cls_maps, reg_maps = random_rpn_outputs(cfg, 32)
    generator = Proposal(ProposalSettings.from_config(cfg, training=False), BATCH, Kernels.CPU)
    assert generator.level_k == (100, 100, 100, 72, 18)
    reference = np_proposals(cls_maps, reg_maps, anchors, 100, cfg.rpn_nms_thr, 390, (128, 192))
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        ours = run_proposal(generator, cls_maps, reg_maps, anchors)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    check(ours, reference, 390)  # every candidate, suppressed ones last


def test_default_keys_give_the_original_k_per_level():
    generator = Proposal(ProposalSettings.from_config(get_config([]), training=True), BATCH, Kernels.CPU)  # 768x1280
    assert generator.level_k == (2000, 2000, 2000, 2000, 720) and generator.max_num == 2000
    generator = Proposal(ProposalSettings.from_config(get_config([]), training=False), BATCH, Kernels.CPU)
    assert generator.level_k == (1000, 1000, 1000, 1000, 720) and generator.max_num == 1000


def test_too_few_candidates_is_a_config_error():
    cfg = get_config([], img_height=64, img_width=64)  # 1023 anchors < rpn_proposal_max_num 2000
    with pytest.raises(ValueError, match="rpn_proposal_max_num"):
        ProposalSettings.from_config(cfg, training=True)


def test_softmax_objectness_is_rejected():
    with pytest.raises(ValueError, match="use_sigmoid_cls"):
        ProposalSettings.from_config(get_config([], use_sigmoid_cls=False), training=True)
