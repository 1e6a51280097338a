"""Faster R-CNN with a deformable ResNet-50 + FPN: the stages wired together (the original's Faster_Rcnn_Resnet).

image -> backbone (C2..C5) -> FPN (P2..P6) -> RPN -> proposals
  training:  proposals -> R-CNN assigner/sampler -> RoIAlign (P2..P5) -> box head -> RPN and R-CNN losses
  inference: proposals -> RoIAlign (P2..P5) -> box head -> per-class decode + NMS (DetectionOutput)
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from src.FasterRcnn.anchor_generator import multi_level_anchors
from src.FasterRcnn.bbox_assign_sample_stage2 import BboxAssignSampleForRcnn
from src.FasterRcnn.fpn_neck import FeatPyramidNeck
from src.FasterRcnn.proposal_generator import Proposal
from src.FasterRcnn.rcnn import DetectionOutput, Rcnn
from src.FasterRcnn.resnet import ResNetFea
from src.FasterRcnn.roi_align import SingleRoIExtractor
from src.FasterRcnn.rpn import RPN

# Sub-cells whose checkpoint name differs from the attribute name: attribute -> name in the original's
# checkpoints. The cell is registered under the checkpoint name, so every parameter name (and thus
# save_checkpoint, load_checkpoint, load_param_into_net, ModelCheckpoint, wrappers) carries the original's.
ORIGINAL_CELL_NAMES = {"fpn_neck": "fpn_ncek"}


def _batch_index_column(batch_size: int, rois_per_image: int) -> Tensor:
    """(batch_size * rois_per_image, 1) float32: the image index column of ROIAlign's rois."""
    return Tensor(np.repeat(np.arange(batch_size, dtype=np.float32), rois_per_image).reshape(-1, 1))


class FasterRcnnResnet50(nn.Cell):
    """The whole detector; parameter names, shapes and trainability are the original's (321 parameters).

    Training (`set_train(True)`):
        construct(img (B, 3, H, W) float32 normalised RGB, img_metas (B, 3) [H, W, 1.0] of the padded canvas,
                  gt_bboxes (B, G, 4) float32 x1, y1, x2, y2, gt_labels (B, G) int32 1..num_classes-1,
                  gt_valids (B, G) bool)
        -> (rpn_loss (1,), rcnn_loss, rpn_cls_loss (1,), rpn_reg_loss (1,), rcnn_cls_loss, rcnn_reg_loss).
        B = cfg.batch_size, G = cfg.num_gts, H x W = cfg.img_height x cfg.img_width.
    Inference (`set_train(False)`):
        construct(img, img_metas (B, 4) [orig_h, orig_w, scale_h, scale_w], None, None, None)
        -> (bboxes (B, N*(K-1), 5) [x1, y1, x2, y2, score] in original-image pixels,
            labels (B, N*(K-1), 1) int32 0..K-2, masks (B, N*(K-1), 1) bool),
        B = cfg.test_batch_size, N = cfg.rpn_max_num, K = cfg.num_classes; see DetectionOutput.
    """

    def __init__(self, cfg):
        super().__init__()
        self.batch_size = cfg.batch_size
        self.test_batch_size = cfg.test_batch_size
        self.num_roi_levels = len(cfg.roi_align_featmap_strides)
        self.anchor_list = tuple(Tensor(anchors) for anchors in multi_level_anchors(cfg))

        self.backbone = ResNetFea(cfg.resnet_block, cfg.resnet_in_channels, cfg.resnet_out_channels,
                                  weights_update=cfg.resnet_weights_update, bn_training=cfg.resnet_bn_training,
                                  zero_init_residual=cfg.resnet_zero_init_residual)
        self.fpn_neck = FeatPyramidNeck(cfg.fpn_in_channels, cfg.fpn_out_channels, cfg.fpn_num_outs,
                                        cfg.feature_shapes)
        self.rpn_with_loss = RPN(cfg, cfg.batch_size, cfg.rpn_in_channels, cfg.rpn_feat_channels, cfg.num_anchors,
                                 cfg.rpn_cls_out_channels)
        # The RPN is class-agnostic: every gt is "object".
        self.rpn_gt_labels = Tensor(np.ones((cfg.batch_size, cfg.num_gts), np.int32))
        self.proposal_generator = Proposal(cfg, cfg.batch_size, cfg.activate_num_classes, cfg.use_sigmoid_cls,
                                           cfg.rpn_target_means, cfg.rpn_target_stds, training=True)
        self.proposal_generator_test = Proposal(cfg, cfg.test_batch_size, cfg.activate_num_classes,
                                                cfg.use_sigmoid_cls, cfg.rpn_target_means, cfg.rpn_target_stds,
                                                training=False)
        self.bbox_assigner_sampler_for_rcnn = BboxAssignSampleForRcnn(cfg, cfg.batch_size, cfg.num_bboxes_stage2,
                                                                      True)
        self.roi_align = SingleRoIExtractor(cfg.roi_layer, cfg.roi_align_out_channels,
                                            cfg.roi_align_featmap_strides, cfg.roi_align_finest_scale)
        self.rcnn = Rcnn(cfg, cfg.rcnn_in_channels * cfg.roi_layer.out_size ** 2, cfg.num_classes)
        self.detection_output = DetectionOutput(cfg)

        train_rois_per_image = cfg.num_expected_pos_stage2 + cfg.num_expected_neg_stage2
        self.train_roi_batch_index = _batch_index_column(cfg.batch_size, train_rois_per_image)
        self.test_roi_batch_index = _batch_index_column(cfg.test_batch_size, cfg.rpn_max_num)

    def to_float(self, dst_type) -> FasterRcnnResnet50:
        """Run the convolutions and fully connected layers (backbone, FPN, RPN head, R-CNN head) in `dst_type`
        (float16 on Ascend, as the original); the network's inputs, anchors, box coordinates, targets, RoI pooling,
        NMS and losses stay float32."""
        for cell in (self.backbone, self.fpn_neck, self.rpn_with_loss.rpn_convs_list, self.rcnn):
            cell.to_float(dst_type)
        return self

    def __setattr__(self, name, value):
        if isinstance(value, nn.Cell):
            name = ORIGINAL_CELL_NAMES.get(name, name)
        super().__setattr__(name, value)

    def __getattr__(self, name):
        return super().__getattr__(ORIGINAL_CELL_NAMES.get(name, name))

    def construct(self, img, img_metas, gt_bboxes, gt_labels, gt_valids):
        feats = self.fpn_neck(self.backbone(img))
        if self.training:
            return self.losses(feats, img_metas, gt_bboxes, gt_labels, gt_valids)
        return self.detect(feats, img_metas)

    def losses(self, feats, img_metas, gt_bboxes, gt_labels, gt_valids):
        """Training: RPN losses, proposals, sampled RoIs, R-CNN losses (see the class docstring)."""
        rpn_loss, cls_scores, bbox_preds, rpn_cls_loss, rpn_reg_loss = self.rpn_with_loss(
            feats, img_metas, self.anchor_list, gt_bboxes, self.rpn_gt_labels, gt_valids)
        proposals, proposal_masks = self.proposal_generator(cls_scores, bbox_preds, self.anchor_list)

        sampled_boxes, targets, labels, masks = (), (), (), ()
        for i in range(self.batch_size):
            boxes_i, targets_i, labels_i, mask_i = self.bbox_assigner_sampler_for_rcnn(
                gt_bboxes[i], gt_labels[i], proposal_masks[i], proposals[i][:, :4], gt_valids[i].astype(ms.bool_))
            sampled_boxes += (boxes_i,)
            targets += (targets_i,)
            labels += (labels_i,)
            masks += (mask_i,)
        rois = ops.concat((self.train_roi_batch_index, ops.concat(sampled_boxes)), axis=1)
        rois = ops.stop_gradient(rois)
        targets = ops.stop_gradient(ops.concat(targets))
        labels = ops.stop_gradient(ops.concat(labels)).astype(ms.int32)
        masks = ops.stop_gradient(ops.concat(masks)).reshape(-1).astype(ms.bool_)

        roi_feats = self.roi_align(rois, *self.roi_levels_float32(feats))
        cls_logits, box_deltas = self.rcnn(roi_feats)
        rcnn_loss, rcnn_cls_loss, rcnn_reg_loss = self.rcnn.loss(cls_logits, box_deltas, targets, labels, masks)
        return rpn_loss, rcnn_loss, rpn_cls_loss, rpn_reg_loss, rcnn_cls_loss, rcnn_reg_loss

    def roi_levels_float32(self, feats):
        """The pooled FPN levels (P2..P5) in float32: RoI pooling runs in float32 whatever the convolutions run in."""
        return tuple(feat.astype(ms.float32) for feat in feats[:self.num_roi_levels])

    def detect(self, feats, img_metas):
        """Inference: proposals -> R-CNN -> per-class candidate detections (see the class docstring)."""
        _, cls_scores, bbox_preds, _, _ = self.rpn_with_loss(feats, img_metas, self.anchor_list, None, None, None)
        proposals, proposal_masks = self.proposal_generator_test(cls_scores, bbox_preds, self.anchor_list)
        boxes = ()
        for i in range(self.test_batch_size):
            boxes += (proposals[i][:, :4],)
        boxes = ops.stop_gradient(ops.concat(boxes))
        valid = ops.concat(proposal_masks)
        rois = ops.concat((self.test_roi_batch_index, boxes), axis=1)

        roi_feats = self.roi_align(rois, *self.roi_levels_float32(feats))
        cls_logits, box_deltas = self.rcnn(roi_feats)
        return self.detection_output(cls_logits, box_deltas, boxes, valid, img_metas)


class FasterRcnnInfer(nn.Cell):
    """Inference wrapper (the original's FasterRcnn_Infer): construct(img, img_metas) -> the network's
    inference outputs. Its checkpoint keys are the network's with the prefix `network.`."""

    def __init__(self, cfg):
        super().__init__()
        self.network = FasterRcnnResnet50(cfg)
        self.network.set_train(False)

    def to_float(self, dst_type) -> FasterRcnnInfer:
        """As FasterRcnnResnet50.to_float: the inputs and the box computations stay float32."""
        self.network.to_float(dst_type)
        return self

    def construct(self, img, img_metas):
        return self.network(img, img_metas, None, None, None)
