"""R-CNN targets of one image: proposals (plus the gts) assigned and sampled into a fixed list of RoIs.

Same assign + sample core as the RPN's (bbox_assign_sample.py), with the stage-2 settings and the gts added as
candidates first.
"""
from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from .bbox_assign_sample import MaxIoUAssignRandomSample
from .box_ops import encode_boxes
from .settings import AssignerSettings


class BboxAssignSampleForRcnn(nn.Cell):
    """Sampled RoIs and their targets for one image.

    N = settings.num_candidates proposals, P = settings.num_expected_pos, Q = settings.num_expected_neg. With
    add_gt_as_proposals (the original's setting) the candidates are [G gts, N proposals], every valid gt a positive
    matched to itself (delta 0); without it only the proposals are candidates.

    construct(gt_bboxes (G, 4), gt_labels (G,), valid_mask (N,) bool, bboxes (N, 4), gt_valids (G,) bool) ->
        bboxes (S, 4) float32: P positive slots then Q negative slots (S = P + Q); unused slots repeat candidate 0
            (gt 0 with add_gt_as_proposals);
        deltas (S, 4) float32: encode(positive box, matched gt) with the rcnn means/stds, zeros for negative slots;
        labels (S,) int32: the matched gt's label for positive slots (gt 0's for unused ones), 0 for negative slots;
        mask (S, 1) int32: 1 for a sampled RoI, 0 for an unused slot.
    """

    def __init__(self, settings: AssignerSettings, add_gt_as_proposals: bool = True):
        super().__init__()
        self.means = settings.target_means
        self.stds = settings.target_stds
        self.core = MaxIoUAssignRandomSample.from_settings(settings, gts_as_candidates=add_gt_as_proposals)
        self.neg_deltas = Tensor(np.zeros((settings.num_expected_neg, 4), np.float32))
        self.neg_labels = Tensor(np.zeros(settings.num_expected_neg, np.int32))

    def construct(self, gt_bboxes, gt_labels, valid_mask, bboxes, gt_valids):
        candidates, gt_bboxes, pos_index, pos_gt, pos_valid, neg_index, neg_valid = self.core(
            gt_bboxes, gt_valids, bboxes, valid_mask)
        pos_boxes = ops.gather(candidates, pos_index, 0)
        deltas = encode_boxes(pos_boxes, ops.gather(gt_bboxes, pos_gt, 0), self.means, self.stds)
        pos_labels = ops.gather(gt_labels.astype(mstype.int32), pos_gt, 0)
        rois = ops.concat((pos_boxes, ops.gather(candidates, neg_index, 0)), 0)
        mask = ops.concat((pos_valid, neg_valid), 0).astype(mstype.int32)
        return (rois, ops.concat((deltas, self.neg_deltas), 0), ops.concat((pos_labels, self.neg_labels), 0),
                ops.reshape(mask, (-1, 1)))
