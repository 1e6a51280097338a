"""The R-CNN box head: two shared fully connected layers, class scores and class-specific box deltas.

`Rcnn` computes the head and its training loss; `DetectionOutput` turns the head's test-time output into
the original's per-class candidate detections (decode, rescale to the original image, per-class NMS).
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, XavierUniform, initializer

from src.ops import Kernels, nms_with_mask

from .box_ops import decode_boxes
from .settings import DetectionSettings, RcnnSettings


class DenseNoTranpose(nn.Cell):
    """y = x @ weight + bias with `weight` stored (in, out), as the original's checkpoints hold it.

    The original's class name (sic) is kept: its parameters are `weight` (in, out) and `bias` (out,), zero bias.
    The weight is cast to the input's dtype, so the cell follows `to_float(float16)` on Ascend.
    """

    def __init__(self, in_channels: int, out_channels: int, weight_init):
        super().__init__()
        self.weight = Parameter(initializer(weight_init, [in_channels, out_channels], ms.float32), name="weight")
        self.bias = Parameter(initializer("zeros", [out_channels], ms.float32), name="bias")
        # The MatMul primitive, as the original: ops.matmul's gradient copies the transposed weight every step.
        self.matmul = ops.MatMul()

    def construct(self, x: Tensor) -> Tensor:
        return ops.bias_add(self.matmul(x, self.weight.astype(x.dtype)), self.bias.astype(x.dtype))


class Rcnn(nn.Cell):
    """The box head (the original's `Rcnn`; parameter names `shared_fc_0/1`, `cls_scores`, `reg_scores`).

    construct(roi_feats (R, C, S, S) with C * S * S = representation_size) -> (cls_logits (R, K),
    box_deltas (R, K * 4)) with K = num_classes, float32 whatever dtype the layers compute in (float16 after
    to_float).
    """

    def __init__(self, settings: RcnnSettings):
        super().__init__()
        hidden = settings.fc_out_channels
        num_classes = settings.num_classes
        self.num_classes = num_classes
        self.cls_loss_weight = settings.cls_loss_weight
        self.reg_loss_weight = settings.reg_loss_weight
        self.shared_fc_0 = DenseNoTranpose(settings.representation_size, hidden, XavierUniform())
        self.shared_fc_1 = DenseNoTranpose(hidden, hidden, XavierUniform())
        # The original initialises both prediction layers with MindSpore's default Normal (sigma 0.01).
        self.cls_scores = DenseNoTranpose(hidden, num_classes, Normal(0.01))
        self.reg_scores = DenseNoTranpose(hidden, num_classes * 4, Normal(0.01))
        self.softmax_cross_entropy = ops.SoftmaxCrossEntropyWithLogits()

    def to_float(self, dst_type) -> Rcnn:
        """The fully connected layers compute in `dst_type`; the loss (a method, whose inputs a flagged cell would
        cast too) stays float32."""
        for layer in (self.shared_fc_0, self.shared_fc_1, self.cls_scores, self.reg_scores):
            layer.to_float(dst_type)
        return self

    def construct(self, roi_feats: Tensor) -> tuple[Tensor, Tensor]:
        x = roi_feats.reshape(roi_feats.shape[0], -1)
        x = ops.relu(self.shared_fc_0(x))
        x = ops.relu(self.shared_fc_1(x))
        return self.cls_scores(x).astype(ms.float32), self.reg_scores(x).astype(ms.float32)

    def loss(self, cls_logits: Tensor, box_deltas: Tensor, bbox_targets: Tensor, labels: Tensor,
             mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The original's R-CNN loss.

        Args:
            cls_logits: (R, K); box_deltas: (R, K * 4).
            bbox_targets: (R, 4) encoded targets (zeros for negatives).
            labels: (R,) int32 class 0..K-1 (0 = background).
            mask: (R,) bool, True for the sampled (valid) RoIs.
        Returns:
            (loss, loss_cls, loss_reg) scalars. Both terms are normalised by the number of valid RoIs
            (positives and negatives); the regression term only counts each positive's own-class deltas.
        """
        weights = mask.astype(ms.float32)
        num_valid = weights.sum()
        one_hot = ops.one_hot(labels, self.num_classes, Tensor(1.0, ms.float32), Tensor(0.0, ms.float32))
        loss_cls, _ = self.softmax_cross_entropy(cls_logits, one_hot)
        loss_cls = (loss_cls * weights).sum() / num_valid

        # Regression only for positives: the predicted deltas of each RoI's own class.
        positive = ops.logical_and(labels > 0, mask)
        class_idx = ops.where(positive, labels, ops.zeros_like(labels))
        deltas = box_deltas.reshape(-1, self.num_classes, 4)
        index = class_idx.reshape(-1, 1, 1).broadcast_to((-1, 1, 4))
        own_deltas = ops.gather_elements(deltas, 1, index).squeeze(1)
        loss_reg = ops.smooth_l1_loss(own_deltas, bbox_targets, beta=1.0).sum(axis=1)
        loss_reg = (loss_reg * positive.astype(ms.float32) / num_valid).sum()

        loss = self.cls_loss_weight * loss_cls + self.reg_loss_weight * loss_reg
        return loss, loss_cls, loss_reg


class DetectionOutput(nn.Cell):
    """The original's test-time post-processing of the head's output, per image and per foreground class.

    Softmax scores; every RoI decoded with each class's deltas (BoundingBoxDecode, clipped to the img_shape
    canvas, the settings' means/stds); boxes divided by the image's resize factors (x by scale_w, y by scale_h);
    then per class: candidates = RoI valid and score > score_thr (others get box -1 and score 0), sorted by score
    (TopK over all RoIs), NMSWithMask(iou_thr) (`src.ops.nms_with_mask`); a row is kept if valid and not
    suppressed.

    construct(cls_logits (B*N, K), box_deltas (B*N, K*4), rois (B*N, 4) x1, y1, x2, y2 in input pixels,
              valid (B*N,) bool, img_metas (B, 4) [h, w, scale_h, scale_w])
        -> (bboxes (B, (K-1)*N, 5) [x1, y1, x2, y2, score] in original-image pixels,
            labels (B, (K-1)*N, 1) int32 0..K-2, masks (B, (K-1)*N, 1) bool), rows grouped by class.
    B = batch_size, N = rois_per_image, K = settings.num_classes.
    """

    def __init__(self, settings: DetectionSettings, batch_size: int, rois_per_image: int, kernels: Kernels):
        super().__init__()
        self.num_fg = settings.num_classes - 1
        self.rois_per_image = rois_per_image
        self.batch_size = batch_size
        self.score_thr = settings.score_thr
        self.max_shape = settings.img_shape
        self.means = settings.target_means
        self.stds = settings.target_stds
        self.nms = nms_with_mask(kernels, settings.iou_thr)
        labels = np.repeat(np.arange(self.num_fg, dtype=np.int32), self.rois_per_image)
        self.labels = Tensor(labels.reshape(1, -1, 1))

    def construct(self, cls_logits: Tensor, box_deltas: Tensor, rois: Tensor, valid: Tensor,
                  img_metas: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        num_fg, num_rois = self.num_fg, self.rois_per_image
        scores = ops.softmax(cls_logits, axis=1)[:, 1:]
        fg_deltas = box_deltas[:, 4:].reshape(-1, 4)
        tiled_rois = rois.reshape(-1, 1, 4).broadcast_to((-1, num_fg, 4)).reshape(-1, 4)
        boxes = decode_boxes(tiled_rois, fg_deltas, self.max_shape, self.means, self.stds)
        boxes = boxes.reshape(self.batch_size, num_rois, num_fg, 4)
        scale_h = img_metas[:, 2:3]
        scale_w = img_metas[:, 3:4]
        divisor = ops.concat((scale_w, scale_h, scale_w, scale_h), axis=1).reshape(self.batch_size, 1, 1, 4)
        boxes = boxes / divisor

        all_bboxes = ()
        all_masks = ()
        for i in range(self.batch_size):
            image_scores = scores[i * num_rois:(i + 1) * num_rois].transpose(1, 0)  # (K-1, N)
            image_boxes = boxes[i].transpose(1, 0, 2)  # (K-1, N, 4)
            image_valid = valid[i * num_rois:(i + 1) * num_rois].reshape(1, -1)
            candidate = ops.logical_and(image_valid, image_scores > self.score_thr)
            cand_scores = ops.where(candidate, image_scores, ops.zeros_like(image_scores))
            cand_boxes = ops.where(candidate.reshape(num_fg, num_rois, 1), image_boxes,
                                   ops.full_like(image_boxes, -1.0))
            sorted_scores, order = ops.topk(cand_scores, num_rois, dim=1, sorted=True)
            sorted_boxes = ops.gather_elements(cand_boxes, 1, order.reshape(num_fg, num_rois, 1)
                                               .broadcast_to((num_fg, num_rois, 4)))
            sorted_valid = ops.gather_elements(candidate.astype(ms.int32), 1, order)
            dets = ops.concat((sorted_boxes, sorted_scores.reshape(num_fg, num_rois, 1)), axis=2)
            class_dets = ()
            class_masks = ()
            for j in range(num_fg):
                # As the original: the validity flags are re-gathered by NMSWithMask's index output.
                kept_dets, kept_order, not_suppressed = self.nms(dets[j])
                kept_valid = ops.gather(sorted_valid[j], kept_order, 0) > 0
                class_dets += (kept_dets,)
                class_masks += (ops.logical_and(kept_valid, not_suppressed),)
            all_bboxes += (ops.concat(class_dets, axis=0).reshape(1, -1, 5),)
            all_masks += (ops.concat(class_masks, axis=0).reshape(1, -1, 1),)
        labels = self.labels.broadcast_to((self.batch_size, -1, 1))
        return ops.concat(all_bboxes, axis=0), labels, ops.concat(all_masks, axis=0)
