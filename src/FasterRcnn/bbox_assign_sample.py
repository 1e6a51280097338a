"""Max-IoU assignment and random positive/negative sampling, written once for both stages.

`MaxIoUAssignRandomSample` holds the logic of the original's two assigner/samplers, parameterised by the stage's
thresholds and counts (`AssignerSettings`); `BboxAssignSample` (the RPN's, here) turns its result into dense
per-anchor targets and `BboxAssignSampleForRcnn` (bbox_assign_sample_stage2.py) into a compact list of sampled RoIs.

Assignment of one image (candidates = anchors or proposals), as the original:
1. invalid gts become the box (-1, -1, -1, -1) and invalid candidates (-2, -2, -2, -2), so their IoU with any real
   box is 0 (crowd boxes are invalid gts: dropped, not used as ignore regions);
2. IoU ("+1") of every gt with every candidate; per candidate the best gt (first on ties) and its IoU;
3. label -1 (ignored); best IoU < neg_iou_thr -> 0 (negative); best IoU >= pos_iou_thr -> best gt + 1;
4. every gt j whose best IoU over the candidates is >= min_pos_iou also claims every candidate reaching exactly that
   IoU (ties all taken); if several gts claim a candidate the highest j wins (the original's loop order);
5. invalid candidates -> -1.
Sampling: up to num_expected_pos positives drawn at random (RandomChoiceWithMask), then up to
num_expected_neg - (positives kept) negatives.
"""
from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from .box_ops import box_iou, encode_boxes
from .settings import AssignerSettings

# Fill values of masked boxes (the original's): IoU of either with any box of non-negative coordinates is 0.
INVALID_GT_COORD = -1.0
INVALID_CANDIDATE_COORD = -2.0
# Stand-in target IoU for gts that claim nothing in step 4: no IoU reaches it.
UNREACHABLE_IOU = 2.0


class MaxIoUAssignRandomSample(nn.Cell):
    """Assign + sample core for one image.

    Args:
        num_gts: G, padded gt count.
        num_bboxes: N, candidate count.
        pos_iou_thr, neg_iou_thr, min_pos_iou: the assignment thresholds.
        num_expected_pos: P, positive slots; num_expected_neg: Q, negative slots (at most Q - #positives used).
        gts_as_candidates: the candidate list becomes [G gts, N boxes] (gts first) with every valid gt a positive
            matched to itself (the R-CNN stage's add_gt_as_proposals).
    """

    def __init__(self, num_gts: int, num_bboxes: int, pos_iou_thr: float, neg_iou_thr: float, min_pos_iou: float,
                 num_expected_pos: int, num_expected_neg: int, gts_as_candidates: bool = False):
        super().__init__()
        self.num_gts = num_gts
        self.num_bboxes = num_bboxes
        self.pos_iou_thr = float(pos_iou_thr)
        self.neg_iou_thr = float(neg_iou_thr)
        self.min_pos_iou = float(min_pos_iou)
        self.num_expected_pos = num_expected_pos
        self.num_expected_neg = num_expected_neg
        self.gts_as_candidates = gts_as_candidates
        self.invalid_gt = Tensor(np.full((num_gts, 4), INVALID_GT_COORD, np.float32))
        self.invalid_candidate = Tensor(np.full((num_bboxes, 4), INVALID_CANDIDATE_COORD, np.float32))
        self.gt_numbers = Tensor(np.arange(1, num_gts + 1, dtype=np.int32))  # j + 1
        self.gt_numbers_column = Tensor(np.arange(1, num_gts + 1, dtype=np.float32)[:, None])
        self.pos_slots = Tensor(np.arange(num_expected_pos, dtype=np.float32))
        self.neg_slots = Tensor(np.arange(num_expected_neg, dtype=np.float32))
        self.choose_pos = ops.RandomChoiceWithMask(num_expected_pos)
        self.choose_neg = ops.RandomChoiceWithMask(num_expected_neg)

    @classmethod
    def from_settings(cls, settings: AssignerSettings, gts_as_candidates: bool) -> MaxIoUAssignRandomSample:
        """The core of one stage's assigner/sampler."""
        return cls(settings.num_gts, settings.num_candidates, settings.pos_iou_thr, settings.neg_iou_thr,
                   settings.min_pos_iou, settings.num_expected_pos, settings.num_expected_neg,
                   gts_as_candidates=gts_as_candidates)

    def mask_invalid(self, gt_bboxes: Tensor, gt_valids: Tensor, bboxes: Tensor, valid_mask: Tensor):
        """Invalid gts -> -1 boxes, invalid candidates -> -2 boxes: ((G, 4), (N, 4))."""
        gt_keep = ops.tile(ops.reshape(gt_valids, (-1, 1)), (1, 4))
        box_keep = ops.tile(ops.reshape(valid_mask, (-1, 1)), (1, 4))
        return ops.select(gt_keep, gt_bboxes, self.invalid_gt), ops.select(box_keep, bboxes, self.invalid_candidate)

    def assign(self, gt_bboxes: Tensor, bboxes: Tensor, valid_mask: Tensor) -> Tensor:
        """Labels (N,) int32 of the masked candidates: -1 ignored, 0 negative, j + 1 matched to gt j."""
        overlaps = box_iou(bboxes, gt_bboxes)  # (G, N)
        best_gt, best_iou = ops.ArgMaxWithValue(axis=0)(overlaps)
        _, gt_max_iou = ops.ArgMaxWithValue(axis=1)(overlaps)

        minus_one = ops.full_like(best_gt, -1, dtype=mstype.int32)
        assigned = ops.select(best_iou < self.neg_iou_thr, ops.zeros_like(minus_one), minus_one)
        assigned = ops.select(best_iou >= self.pos_iou_thr, best_gt.astype(mstype.int32) + 1, assigned)

        # Step 4 without a loop over gts: the highest j + 1 among the gts claiming each candidate (0 if none).
        # Elementwise ops on equal shapes (tile) are much faster here than broadcasting on the CPU backend.
        claim_iou = ops.select(gt_max_iou >= self.min_pos_iou, gt_max_iou, ops.full_like(gt_max_iou, UNREACHABLE_IOU))
        claims = ops.equal(overlaps, ops.tile(ops.reshape(claim_iou, (-1, 1)), (1, self.num_bboxes)))
        claimed_by = claims.astype(mstype.float32) * ops.tile(self.gt_numbers_column, (1, self.num_bboxes))
        _, last_claim = ops.ArgMaxWithValue(axis=0)(claimed_by)
        assigned = ops.select(last_claim > 0, last_claim.astype(mstype.int32), assigned)

        return ops.select(valid_mask, assigned, minus_one)

    def gt_self_labels(self, gt_valids: Tensor) -> Tensor:
        """Labels (G,) of gts used as candidates: j + 1 for a valid gt, -1 (ignored) otherwise."""
        return ops.select(gt_valids, self.gt_numbers, ops.full_like(self.gt_numbers, -1))

    def sample(self, assigned: Tensor):
        """Random positives and negatives of labels (M,).

        Returns pos_index (P,) int32, pos_gt (P,) int32 (0-based gt of each positive), pos_valid (P,) bool,
        neg_index (Q,) int32, neg_valid (Q,) bool. Valid slots come first; unused slots have index 0 and gt 0.
        """
        is_pos = assigned > 0
        pos_index, _ = self.choose_pos(is_pos)
        pos_valid = self.pos_slots < is_pos.astype(mstype.float32).sum()
        pos_index = ops.reshape(pos_index, (-1,)) * pos_valid.astype(mstype.int32)
        pos_gt = (ops.gather(assigned, pos_index, 0) - 1) * pos_valid.astype(mstype.int32)

        neg_index, neg_valid = self.choose_neg(assigned == 0)
        num_pos_kept = pos_valid.astype(mstype.float32).sum()
        neg_valid = ops.logical_and(neg_valid, self.neg_slots < self.num_expected_neg - num_pos_kept)
        neg_index = ops.reshape(neg_index, (-1,)) * neg_valid.astype(mstype.int32)
        return pos_index, pos_gt, pos_valid, neg_index, neg_valid

    def construct(self, gt_bboxes: Tensor, gt_valids: Tensor, bboxes: Tensor, valid_mask: Tensor):
        """Assign and sample one image.

        Returns (candidates (M, 4) masked, gt_bboxes (G, 4) masked, pos_index, pos_gt, pos_valid, neg_index,
        neg_valid) with M = N, or G + N (gts first) when gts_as_candidates.
        """
        gt_bboxes, bboxes = self.mask_invalid(gt_bboxes, gt_valids, bboxes, valid_mask)
        assigned = self.assign(gt_bboxes, bboxes, valid_mask)
        if self.gts_as_candidates:
            bboxes = ops.concat((gt_bboxes, bboxes), 0)
            assigned = ops.concat((self.gt_self_labels(gt_valids), assigned), 0)
        pos_index, pos_gt, pos_valid, neg_index, neg_valid = self.sample(assigned)
        return bboxes, gt_bboxes, pos_index, pos_gt, pos_valid, neg_index, neg_valid


class BboxAssignSample(nn.Cell):
    """RPN targets of one image, dense over the N = settings.num_candidates anchors.

    construct(gt_bboxes (G, 4), gt_labels (G,), valid_mask (N,) bool, anchors (N, 4), gt_valids (G,) bool) ->
        bbox_targets (N, 4) float32 (zero except at sampled positives), bbox_weights (N,) bool (sampled positives),
        labels (N,) int32 (the matched gt's label at sampled positives, else 0), label_weights (N,) bool (sampled
        positives and negatives).
    """

    def __init__(self, settings: AssignerSettings):
        super().__init__()
        self.num_bboxes = settings.num_candidates
        self.means = settings.target_means
        self.stds = settings.target_stds
        self.core = MaxIoUAssignRandomSample.from_settings(settings, gts_as_candidates=False)

    def construct(self, gt_bboxes, gt_labels, valid_mask, anchors, gt_valids):
        anchors, gt_bboxes, pos_index, pos_gt, pos_valid, neg_index, neg_valid = self.core(
            gt_bboxes, gt_valids, anchors, valid_mask)
        pos_weight = pos_valid.astype(mstype.float32)
        targets = encode_boxes(ops.gather(anchors, pos_index, 0), ops.gather(gt_bboxes, pos_gt, 0),
                               self.means, self.stds)
        pos_labels = ops.gather(gt_labels.astype(mstype.int32), pos_gt, 0) * pos_valid.astype(mstype.int32)
        # Unused slots all point at anchor 0 with zero updates; scatter_nd adds, so they change nothing. (The
        # original leaves a label and a target there under zero weight: same losses.)
        pos_at = ops.reshape(pos_index, (-1, 1))
        bbox_targets = ops.scatter_nd(pos_at, targets * ops.reshape(pos_weight, (-1, 1)), (self.num_bboxes, 4))
        bbox_weights = ops.scatter_nd(pos_at, pos_weight, (self.num_bboxes,)) > 0
        labels = ops.scatter_nd(pos_at, pos_labels, (self.num_bboxes,))
        sampled_at = ops.concat((pos_at, ops.reshape(neg_index, (-1, 1))), 0)
        sampled_weight = ops.concat((pos_weight, neg_valid.astype(mstype.float32)), 0)
        label_weights = ops.scatter_nd(sampled_at, sampled_weight, (self.num_bboxes,)) > 0
        return bbox_targets, bbox_weights, labels, label_weights
