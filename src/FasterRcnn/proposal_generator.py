"""Proposals from the RPN's outputs: per level top-k, decode, NMS; then the best max_num over all levels."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from .box_ops import decode_boxes, nms_with_mask

# Score given to NMS-suppressed rows before the final ranking (the original's; representable in float16).
SUPPRESSED_SCORE = -65500.0


class Proposal(nn.Cell):
    """Per image, per level: the k = min(nms_pre, H * W * A) best anchors by sigmoid objectness, decoded with the
    RPN deltas (clipped to the img_height x img_width canvas), NMS; then the max_num best unsuppressed boxes of all
    levels (suppressed ones rank last, with score -65500).

    Args:
        cfg: config. Training instances read rpn_proposal_nms_pre / _nms_thr / _max_num, test instances rpn_nms_pre /
            rpn_nms_thr / rpn_max_num; also feature_shapes, num_anchors, img_height, img_width. As in the original,
            the min-box-size, nms_post and nms_across_levels keys have no effect. (The original's test instance
            keeps the training NMS threshold; both are 0.7 in every shipped config.)
        batch_size: images per call.
        num_classes: RPN classes including background (2); use_sigmoid_cls must be True (one logit per anchor).
        target_means, target_stds: delta normalisation of the RPN targets.
        training: which set of keys to use.

    construct(cls_scores (L maps (B, A, H_l, W_l)), bbox_preds (L maps (B, A * 4, H_l, W_l)),
              anchor_list (L Tensors (H_l * W_l * A, 4))) ->
        (proposals: B Tensors (max_num, 5) [x1, y1, x2, y2, score], masks: B Tensors (max_num,) bool, False for
         suppressed or padding rows).
    """

    def __init__(self, cfg, batch_size: int, num_classes: int, use_sigmoid_cls: bool,
                 target_means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
                 target_stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0), training: bool = True):
        super().__init__()
        if not use_sigmoid_cls or num_classes != 2:
            raise ValueError(f"Proposal: only sigmoid objectness (use_sigmoid_cls=True, activate_num_classes=2) is "
                             f"supported, got use_sigmoid_cls={use_sigmoid_cls}, num_classes={num_classes}")
        prefix = "rpn_proposal_" if training else "rpn_"
        nms_pre = getattr(cfg, prefix + "nms_pre")
        self.nms = nms_with_mask(getattr(cfg, prefix + "nms_thr"))
        self.max_num = getattr(cfg, prefix + "max_num")
        self.batch_size = batch_size
        self.num_levels = len(cfg.feature_shapes)
        self.level_k = tuple(min(nms_pre, h * w * cfg.num_anchors) for h, w in cfg.feature_shapes)
        if self.max_num > sum(self.level_k):
            raise ValueError(f"config: {prefix}max_num={self.max_num} exceeds the {sum(self.level_k)} per-level "
                             f"candidates of a {cfg.img_height}x{cfg.img_width} image ({prefix}nms_pre={nms_pre})")
        self.max_shape = (cfg.img_height, cfg.img_width)
        self.means = tuple(target_means)
        self.stds = tuple(target_stds)
        self.suppressed = Tensor(np.full(sum(self.level_k), SUPPRESSED_SCORE, np.float32))

    def construct(self, cls_scores, bbox_preds, anchor_list):
        # Per level: the top-k of every image at once; deltas gathered from the flattened (B * H * W * A, 4) map.
        # (Slicing one image out of a full-resolution map costs more than the whole top-k on the CPU.)
        level_top = ()
        for level in range(self.num_levels):
            cls_map = cls_scores[level].astype(mstype.float32)
            reg_map = bbox_preds[level].astype(mstype.float32)
            batch = cls_map.shape[0]
            # (B, A, H, W) -> (B, H * W * A) in anchor order (y, x, anchor)
            scores = ops.sigmoid(ops.reshape(ops.transpose(cls_map, (0, 2, 3, 1)), (batch, -1)))
            deltas = ops.reshape(ops.transpose(reg_map, (0, 2, 3, 1)), (-1, 4))
            top_scores, top_index = ops.topk(scores, self.level_k[level], sorted=True)
            level_top += ((top_scores, top_index, deltas, scores.shape[1]),)

        proposals, masks = (), ()
        for i in range(self.batch_size):
            level_dets, level_keep = (), ()
            for level in range(self.num_levels):
                top_scores, top_index, deltas, per_image = level_top[level]
                boxes = decode_boxes(ops.gather(anchor_list[level], top_index[i], 0),
                                     ops.gather(deltas, top_index[i] + i * per_image, 0), self.max_shape,
                                     self.means, self.stds)
                dets, _, keep = self.nms(ops.concat((boxes, ops.reshape(top_scores[i], (-1, 1))), 1))
                level_dets += (dets,)
                level_keep += (keep,)
            dets = ops.concat(level_dets, 0)
            keep = ops.concat(level_keep, 0)
            _, best = ops.topk(ops.select(keep, dets[:, 4], self.suppressed), self.max_num, sorted=True)
            proposals += (ops.gather(dets, best, 0),)
            masks += (ops.gather(keep, best, 0),)
        return proposals, masks
