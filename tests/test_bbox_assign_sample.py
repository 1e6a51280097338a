"""Both assigner/samplers against a NumPy transcription of the original's rule (its per-gt loop, literally) and on
crafted boxes: exact-match gt positive, far box negative, ignore band, crowd/padding gts dropped, low-quality
matches with ties, "later gt wins", the sample counts, and the stage-2 output layout (gts first as proposals)."""

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from src.FasterRcnn.anchor_generator import multi_level_anchors
from src.FasterRcnn.bbox_assign_sample import BboxAssignSample, MaxIoUAssignRandomSample
from src.FasterRcnn.bbox_assign_sample_stage2 import BboxAssignSampleForRcnn
from src.FasterRcnn.settings import AnchorSettings, AssignerSettings
from src.model_utils.config import get_config
from tests.helpers.box_reference import np_encode, np_inside, np_iou, ref_assign

RPN_THRESHOLDS = dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3)



@pytest.fixture(scope="module")
def cfg():
    return get_config([], img_height=128, img_width=192)


def core_assign(core, gts, gt_valids, boxes, valid):
    gts_m, boxes_m = core.mask_invalid(Tensor(gts), Tensor(gt_valids), Tensor(boxes), Tensor(valid))
    return core.assign(gts_m, boxes_m, Tensor(valid)).asnumpy()


# ---------------------------------------------------------------- the assignment rule
def test_assign_crafted_boxes():
    gts = np.array([[10, 10, 49, 49],       # gt 0
                    [100, 100, 139, 129],   # gt 1 (40 x 30): no box reaches 0.7
                    [300, 0, 359, 59],      # crowd (invalid)
                    [0, 0, 0, 0]], np.float32)  # padding (invalid)
    gt_valids = np.array([True, True, False, False])
    boxes = np.array([[10, 10, 49, 49],     # exact copy of gt 0 -> 1
                      [200, 200, 239, 239],  # far from everything -> 0
                      [20, 10, 59, 49],      # IoU 0.6 with gt 0, and gt 0 has a better match -> ignored
                      [300, 0, 359, 59],     # exactly the crowd box -> negative (crowd dropped, not an ignore area)
                      [110, 100, 149, 129],  # IoU 0.6 with gt 1 = gt 1's best -> low-quality positive 2
                      [90, 100, 129, 129],   # the same IoU (a tie) -> also 2
                      [10, 10, 49, 49]], np.float32)  # copy of gt 0, but an invalid anchor -> ignored
    valid = np.array([True] * 6 + [False])
    core = MaxIoUAssignRandomSample(4, 7, num_expected_pos=4, num_expected_neg=8, **RPN_THRESHOLDS)
    expected = [1, 0, -1, 0, 2, 2, -1]
    assert ref_assign(gts, gt_valids, boxes, valid, **RPN_THRESHOLDS).tolist() == expected
    assert core_assign(core, gts, gt_valids, boxes, valid).tolist() == expected


def test_assign_later_gt_wins_a_shared_best_box():
    # Box X is the best box of both gts: IoU 0.75 with gt 0 (its argmax, >= 0.7) and 0.667 with gt 1.
    # The low-quality step visits gt 1 after gt 0, so X ends with gt 1.
    gts = np.array([[0, 0, 9, 19], [0, 0, 9, 9]], np.float32)
    boxes = np.array([[0, 0, 9, 14], [100, 100, 120, 120]], np.float32)
    valid = np.array([True, True])
    core = MaxIoUAssignRandomSample(2, 2, num_expected_pos=2, num_expected_neg=2, **RPN_THRESHOLDS)
    assert core_assign(core, gts, np.array([True, True]), boxes, valid).tolist() == [2, 0]
    assert ref_assign(gts, np.array([True, True]), boxes, valid, **RPN_THRESHOLDS).tolist() == [2, 0]


@pytest.mark.parametrize("thresholds", [RPN_THRESHOLDS, dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5)])
def test_assign_matches_the_original_loop_on_random_boxes_with_ties(thresholds):
    rng = np.random.default_rng(11)
    # boxes on a coarse integer grid: many exact IoU ties
    for _ in range(3):
        n, g = 600, 12
        boxes = (rng.integers(0, 12, (n, 2)) * 8).astype(np.float32)
        boxes = np.concatenate([boxes, boxes + rng.integers(1, 5, (n, 2)) * 8 - 1], 1).astype(np.float32)
        gts = (rng.integers(0, 12, (g, 2)) * 8).astype(np.float32)
        gts = np.concatenate([gts, gts + rng.integers(1, 5, (g, 2)) * 8 - 1], 1).astype(np.float32)
        gt_valids = rng.uniform(size=g) < 0.7
        valid = rng.uniform(size=n) < 0.9
        core = MaxIoUAssignRandomSample(g, n, num_expected_pos=16, num_expected_neg=32, **thresholds)
        expected = ref_assign(gts, gt_valids, boxes, valid, **thresholds)
        assert (expected > 0).sum() >= 5 and (expected == 0).sum() > 10 and (expected == -1).sum() > 10
        np.testing.assert_array_equal(core_assign(core, gts, gt_valids, boxes, valid), expected)


# ---------------------------------------------------------------- RPN: dense targets
def rpn_case(cfg, gts_list, crowd=()):
    anchors = np.concatenate(multi_level_anchors(AnchorSettings.from_config(cfg)))
    valid = np_inside(anchors, cfg.img_height, cfg.img_width)
    gts = np.zeros((cfg.num_gts, 4), np.float32)
    gt_valids = np.zeros(cfg.num_gts, bool)
    rows = list(gts_list) + list(crowd)
    gts[:len(rows)] = rows
    gt_valids[:len(gts_list)] = True
    return anchors, valid, gts, gt_valids


def run_rpn_sampler(cfg, anchors, valid, gts, gt_valids, labels):
    sampler = BboxAssignSample(AssignerSettings.from_config(cfg, "rpn"))
    out = sampler(Tensor(gts), Tensor(labels), Tensor(valid), Tensor(anchors), Tensor(gt_valids))
    return [o.asnumpy() for o in out]


def check_rpn_targets(cfg, anchors, valid, gts, gt_valids, labels):
    ref = ref_assign(gts, gt_valids, anchors, valid, cfg.pos_iou_thr, cfg.neg_iou_thr, cfg.min_pos_iou)
    targets, target_weights, out_labels, label_weights = run_rpn_sampler(cfg, anchors, valid, gts, gt_valids, labels)
    n = cfg.num_bboxes
    assert targets.shape == (n, 4) and target_weights.shape == label_weights.shape == out_labels.shape == (n,)
    num_pos, num_neg = (ref > 0).sum(), (ref == 0).sum()
    kept_pos = min(num_pos, cfg.num_expected_pos)
    pos = np.flatnonzero(target_weights)
    assert len(pos) == kept_pos and (ref[pos] > 0).all()
    neg = np.flatnonzero(label_weights & ~target_weights)
    assert len(neg) == min(num_neg, cfg.num_expected_neg - kept_pos) and (ref[neg] == 0).all()
    assert label_weights[pos].all()
    matched = ref[pos] - 1
    np.testing.assert_allclose(targets[pos], np_encode(anchors[pos], gts[matched]), rtol=1e-4, atol=1e-5)
    unsampled = np.ones(n, bool)
    unsampled[pos] = False
    assert (targets[unsampled] == 0).all() and (out_labels[unsampled] == 0).all()
    np.testing.assert_array_equal(out_labels[pos], labels[matched])
    return num_pos, len(pos), len(neg)


def test_rpn_targets_few_positives_all_kept(cfg):
    anchors, valid, gts, gt_valids = rpn_case(cfg, [[40, 30, 87, 61], [120, 64, 170, 120], [10, 90, 25, 110]],
                                              crowd=[[0, 0, 100, 100]])
    labels = np.ones(cfg.num_gts, np.int32)
    for _ in range(2):  # the sampling is random; the invariants are not
        num_pos, kept, negs = check_rpn_targets(cfg, anchors, valid, gts, gt_valids, labels)
        assert 3 <= num_pos < cfg.num_expected_pos and kept == num_pos
        assert kept + negs == cfg.num_expected_neg


def test_rpn_targets_many_positives_capped(cfg):
    # 100 gts copying inside-canvas stride-4 anchors: hundreds of anchors reach IoU >= 0.7.
    anchors = np.concatenate(multi_level_anchors(AnchorSettings.from_config(cfg)))
    inside = np.flatnonzero(np_inside(anchors, cfg.img_height, cfg.img_width))
    rng = np.random.default_rng(12)
    picked = anchors[rng.choice(inside[inside < 3 * 32 * 48], 100, replace=False)]
    anchors, valid, gts, gt_valids = rpn_case(cfg, picked)
    labels = np.ones(cfg.num_gts, np.int32)
    num_pos, kept, negs = check_rpn_targets(cfg, anchors, valid, gts, gt_valids, labels)
    assert num_pos > cfg.num_expected_pos
    assert kept == cfg.num_expected_pos and negs == cfg.num_expected_neg - cfg.num_expected_pos


def test_rpn_targets_without_gts_are_all_negative(cfg):
    anchors, valid, gts, gt_valids = rpn_case(cfg, [], crowd=[[20, 20, 60, 60]])
    targets, target_weights, labels, label_weights = run_rpn_sampler(
        cfg, anchors, valid, gts, gt_valids, np.ones(cfg.num_gts, np.int32))
    assert not target_weights.any() and (targets == 0).all() and (labels == 0).all()
    sampled = np.flatnonzero(label_weights)
    assert len(sampled) == cfg.num_expected_neg and valid[sampled].all()


# ---------------------------------------------------------------- R-CNN stage: gts first, compact output
def stage2_case(cfg, proposals, proposal_valid):
    gts = np.zeros((cfg.num_gts, 4), np.float32)
    gts[:3] = [[10, 10, 49, 49], [100, 60, 159, 99], [0, 0, 180, 120]]  # gt 2 is a crowd box
    gt_valids = np.zeros(cfg.num_gts, bool)
    gt_valids[:2] = True
    labels = np.full(cfg.num_gts, -1, np.int32)
    labels[:3] = [7, 3, 5]
    boxes = np.zeros((cfg.num_bboxes_stage2, 4), np.float32)
    boxes[:len(proposals)] = proposals
    mask = np.zeros(cfg.num_bboxes_stage2, bool)
    mask[:len(proposals)] = proposal_valid
    return gts, labels, mask, boxes, gt_valids


def run_stage2(cfg, case):
    sampler = BboxAssignSampleForRcnn(AssignerSettings.from_config(cfg, "rcnn"), add_gt_as_proposals=True)
    gts, labels, mask, boxes, gt_valids = case
    return [o.asnumpy() for o in sampler(Tensor(gts), Tensor(labels), Tensor(mask), Tensor(boxes),
                                         Tensor(gt_valids))]


def check_stage2_crafted(cfg, rois, deltas, labels, mask):
    num_pos, num_neg = cfg.num_expected_pos_stage2, cfg.num_expected_neg_stage2
    assert rois.shape == (num_pos + num_neg, 4) and deltas.shape == rois.shape
    assert labels.shape == (num_pos + num_neg,) and mask.shape == (num_pos + num_neg, 1)
    mask = mask[:, 0].astype(bool)
    # positives: gt 0, gt 1 (as proposals), the copy of gt 0, the IoU-0.6 box of gt 1; in random order
    assert mask[:num_pos].sum() == 4 and mask[:4].all()
    assert sorted(map(tuple, rois[:4].tolist())) == sorted([(10, 10, 49, 49), (10, 10, 49, 49), (100, 60, 159, 99),
                                                           (112, 60, 171, 99)])
    pos = {tuple(r): (tuple(d), lab) for r, d, lab in zip(rois[:4].tolist(), deltas[:4], labels[:4], strict=True)}
    stds = cfg.rcnn_target_stds
    shifted_delta = tuple(np_encode(np.array([[112, 60, 171, 99]]), np.array([[100, 60, 159, 99]]), (0,) * 4,
                                    stds)[0].astype(np.float32))
    assert pos[(100, 60, 159, 99)][1] == 3 and pos[(10, 10, 49, 49)][1] == 7 and pos[(112, 60, 171, 99)][1] == 3
    np.testing.assert_allclose(pos[(112, 60, 171, 99)][0], shifted_delta, rtol=1e-5)
    np.testing.assert_array_equal([pos[(10, 10, 49, 49)][0], pos[(100, 60, 159, 99)][0]], 0)
    # the only negative: the far proposal (masked proposals, the crowd gt row and padding rows are not candidates)
    assert mask[num_pos:].sum() == 1 and mask[num_pos]
    np.testing.assert_array_equal(rois[num_pos], [150, 110, 170, 119])
    assert labels[num_pos] == 0 and (deltas[num_pos:] == 0).all() and (labels[num_pos:] == 0).all()
    # unused slots point at candidate 0 = gt 0 with zero deltas
    np.testing.assert_array_equal(rois[4:num_pos], np.tile([[10, 10, 49, 49]], (num_pos - 4, 1)))
    assert (deltas[4:num_pos] == 0).all()


STAGE2_PROPOSALS = ([[10, 10, 49, 49],       # copy of gt 0
                     [150, 110, 170, 119],   # far: negative
                     [112, 60, 171, 99],     # IoU 48/72 = 0.67 with gt 1: positive
                     [10, 10, 49, 49]],      # copy of gt 0, but masked out
                    [True, True, True, False])


def test_stage2_crafted(cfg):
    check_stage2_crafted(cfg, *run_stage2(cfg, stage2_case(cfg, *STAGE2_PROPOSALS)))


def test_stage2_crafted_in_graph_mode(cfg):
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        outputs = run_stage2(cfg, stage2_case(cfg, *STAGE2_PROPOSALS))
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    check_stage2_crafted(cfg, *outputs)


def test_stage2_counts_and_targets_on_many_proposals(cfg):
    rng = np.random.default_rng(13)
    n = cfg.num_bboxes_stage2
    near = np.array([[10, 10, 49, 49]], np.float32) + rng.integers(-4, 5, (300, 4))  # IoU >= 0.5 with gt 0
    far = np.array([[100, 0, 139, 39]], np.float32) + rng.integers(0, 60, (n - 300, 1))
    proposals = np.concatenate([near, far]).astype(np.float32)
    case = stage2_case(cfg, proposals, np.ones(n, bool))
    gts, gt_labels, mask_in, boxes, gt_valids = case
    ref = ref_assign(gts, gt_valids, boxes, mask_in, cfg.pos_iou_thr_stage2, cfg.neg_iou_thr_stage2,
                     cfg.min_pos_iou_stage2)
    num_pos_ref = (ref > 0).sum() + gt_valids.sum()
    assert num_pos_ref > cfg.num_expected_pos_stage2
    rois, deltas, labels, mask = run_stage2(cfg, case)
    p = cfg.num_expected_pos_stage2
    assert mask[:, 0].sum() == cfg.num_expected_neg_stage2 and mask[:p, 0].all()
    # each positive RoI is a gt or a proposal assigned to a gt; its delta/label are those of that gt
    candidates = np.concatenate([np.where(gt_valids[:, None], gts, -1), boxes])
    cand_ref = np.concatenate([np.where(gt_valids, np.arange(1, cfg.num_gts + 1), -1), ref])
    for roi, delta, label in zip(rois[:p], deltas[:p], labels[:p], strict=True):
        rows = np.flatnonzero((candidates == roi).all(1) & (cand_ref > 0))
        assert len(rows) > 0
        gt = cand_ref[rows[0]] - 1
        assert label == gt_labels[gt]
        np.testing.assert_allclose(delta, np_encode(roi[None], gts[gt][None], (0,) * 4, cfg.rcnn_target_stds)[0],
                                   rtol=1e-4, atol=1e-5)
    negatives = rois[p:][mask[p:, 0] == 1]
    neg_ious = np_iou(negatives, gts[gt_valids]).max(0)
    assert (neg_ious < cfg.neg_iou_thr_stage2).all() and (labels[p:] == 0).all()
