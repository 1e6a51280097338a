"""Proposals from the RPN's outputs: per level top-k, decode, NMS; then the best max_num over all levels."""
from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from src.ops import Kernels, nms_with_mask

from .box_ops import decode_boxes
from .settings import ProposalSettings

# Score given to NMS-suppressed rows before the final ranking (the original's; representable in float16).
SUPPRESSED_SCORE = -65500.0


class Proposal(nn.Cell):
    """Per image, per level: the k = min(nms_pre, H * W * A) best anchors by sigmoid objectness, decoded with the
    RPN deltas (clipped to the img_shape canvas), NMS (nms_thr); then the max_num best unsuppressed boxes of all
    levels (suppressed ones rank last, with score -65500).

    Args:
        settings: the training or the test instance (nms_pre, nms_thr, max_num, the levels' anchor counts, the
            canvas, the deltas' means and stds).
        batch_size: B, images per call.
        kernels: which NMS runs (see src.ops.nms_with_mask).

    construct(cls_scores (L maps (B, A, H_l, W_l)), bbox_preds (L maps (B, A * 4, H_l, W_l)),
              anchor_list (L Tensors (H_l * W_l * A, 4))) ->
        (proposals: B Tensors (max_num, 5) [x1, y1, x2, y2, score], masks: B Tensors (max_num,) bool, False for
         suppressed or padding rows).
    """

    def __init__(self, settings: ProposalSettings, batch_size: int, kernels: Kernels):
        super().__init__()
        self.nms = nms_with_mask(kernels, settings.nms_thr)
        self.max_num = settings.max_num
        self.batch_size = batch_size
        self.level_k = settings.level_k
        self.num_levels = len(self.level_k)
        self.max_shape = settings.img_shape
        self.means = settings.target_means
        self.stds = settings.target_stds
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
