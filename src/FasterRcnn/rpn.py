"""Region proposal network: one conv head shared by every FPN level, and its training loss."""
from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import Normal

from src.ops import Kernels, SameConv3x3

from .bbox_assign_sample import BboxAssignSample
from .box_ops import boxes_inside
from .settings import RpnSettings

# The original's head initialisation: weights N(0, 0.01), biases 0.
HEAD_INIT_SIGMA = 0.01
# The original's SmoothL1 transition point for the RPN regression loss.
RPN_SMOOTH_L1_BETA = 1.0 / 9.0


class RpnRegClsBlock(nn.Cell):
    """3x3 conv + ReLU, then 1x1 convs to objectness logits (N, A * cls_out, H, W) and deltas (N, A * 4, H, W)."""

    def __init__(self, in_channels: int, feat_channels: int, num_anchors: int, cls_out_channels: int, *,
                 kernels: Kernels):
        super().__init__()
        init = Normal(sigma=HEAD_INIT_SIGMA)
        self.rpn_conv = SameConv3x3(in_channels, feat_channels, kernels=kernels, weight_init=init)
        self.relu = nn.ReLU()
        self.rpn_cls = nn.Conv2d(feat_channels, num_anchors * cls_out_channels, 1, pad_mode="valid", has_bias=True,
                                 weight_init=init, bias_init="zeros")
        self.rpn_reg = nn.Conv2d(feat_channels, num_anchors * 4, 1, pad_mode="valid", has_bias=True,
                                 weight_init=init, bias_init="zeros")

    def construct(self, x):
        x = self.relu(self.rpn_conv(x))
        return self.rpn_cls(x), self.rpn_reg(x)


def flatten_levels(maps, values_per_anchor: int) -> Tensor:
    """Per-level maps (B, A * k, H, W) -> (B, sum_l H * W * A, k) in anchor order (level, y, x, anchor)."""
    flat = [ops.reshape(ops.transpose(m, (0, 2, 3, 1)), (m.shape[0], -1, values_per_anchor)) for m in maps]
    return ops.concat(flat, 1)


class RPN(nn.Cell):
    """Objectness and box deltas for the anchors of every level; the RPN loss when training.

    Args:
        settings: the head's sizes (in_channels, feat_channels, num_anchors A, cls_out_channels), num_levels L, the
            loss weights and the anchors' assigner/sampler.
        batch_size: B, training images per call (the loss normaliser is assigner.num_expected_neg * B, as the
            original).
        kernels: what computes the head's 3x3 conv.

    construct(inputs (L maps (B, C, H_l, W_l)), img_metas (B, 3) [h, w, ratio] (training), anchor_list (L Tensors
    (H_l * W_l * A, 4)), gt_bboxes (B, G, 4), gt_labels (B, G), gt_valids (B, G) bool) ->
        (rpn_loss (1,), cls_scores (L maps (B, A * cls_out, H_l, W_l)), bbox_preds (L maps (B, A * 4, H_l, W_l)),
         rpn_cls_loss (1,), rpn_reg_loss (1,)).
    Not training: the losses are ones (1,) placeholders and img_metas / gt inputs are not read.
    Loss: sum over sampled anchors of SigmoidCE (label weights) and of SmoothL1 (beta 1/9, positive anchors) over
    the fixed num_expected_neg * B; anchors are valid only if fully inside img_metas' (h, w).
    """

    def __init__(self, settings: RpnSettings, batch_size: int, *, kernels: Kernels):
        super().__init__()
        self.num_levels = settings.num_levels
        self.batch_size = batch_size
        # One head for all levels; the CellList keeps the original's checkpoint names (rpn_convs_list.0.*).
        head = RpnRegClsBlock(settings.in_channels, settings.feat_channels, settings.num_anchors,
                              settings.cls_out_channels, kernels=kernels)
        self.rpn_convs_list = nn.CellList([head])
        self.cls_out_channels = settings.cls_out_channels
        self.get_targets = BboxAssignSample(settings.assigner)
        self.loss_normaliser = float(settings.assigner.num_expected_neg * batch_size)
        self.cls_loss_weight = settings.cls_loss_weight
        self.reg_loss_weight = settings.reg_loss_weight
        self.sigmoid_ce = ops.SigmoidCrossEntropyWithLogits()
        self.placeholder = Tensor(np.ones((1,), np.float32))

    def construct(self, inputs, img_metas, anchor_list, gt_bboxes, gt_labels, gt_valids):
        head = self.rpn_convs_list[0]
        cls_scores = ()
        bbox_preds = ()
        for level in range(self.num_levels):
            cls_map, reg_map = head(inputs[level])
            cls_scores += (cls_map,)
            bbox_preds += (reg_map,)
        if not self.training:
            return self.placeholder, cls_scores, bbox_preds, self.placeholder, self.placeholder

        anchors = ops.concat(anchor_list, 0)
        targets, target_weights, labels, label_weights = (), (), (), ()
        for i in range(self.batch_size):
            valid = boxes_inside(anchors, img_metas[i, :3])
            target, target_weight, label, label_weight = self.get_targets(
                gt_bboxes[i], gt_labels[i], valid, anchors, gt_valids[i])
            targets += (target,)
            target_weights += (target_weight,)
            labels += (label,)
            label_weights += (label_weight,)
        targets = ops.stop_gradient(ops.stack(targets))  # (B, N, 4)
        target_weights = ops.stop_gradient(ops.stack(target_weights).astype(mstype.float32))  # (B, N)
        labels = ops.stop_gradient(ops.stack(labels).astype(mstype.float32))
        label_weights = ops.stop_gradient(ops.stack(label_weights).astype(mstype.float32))

        logits = ops.reshape(flatten_levels(cls_scores, self.cls_out_channels), labels.shape).astype(mstype.float32)
        deltas = flatten_levels(bbox_preds, 4).astype(mstype.float32)
        cls_loss = (self.sigmoid_ce(logits, labels) * label_weights).sum() / self.loss_normaliser
        reg_loss = ops.smooth_l1_loss(deltas, targets, beta=RPN_SMOOTH_L1_BETA, reduction="none")
        reg_loss = (reg_loss.sum(-1) * target_weights).sum() / self.loss_normaliser
        cls_loss = ops.reshape(cls_loss, (1,))
        reg_loss = ops.reshape(reg_loss, (1,))
        loss = self.cls_loss_weight * cls_loss + self.reg_loss_weight * reg_loss
        return loss, cls_scores, bbox_preds, cls_loss, reg_loss
