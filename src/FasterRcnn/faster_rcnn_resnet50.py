"""Faster R-CNN with a deformable ResNet-50 + FPN: the stages wired together (the original's Faster_Rcnn_Resnet).

image -> backbone (C2..C5) -> FPN (P2..P6) -> RPN -> proposals
  training:  proposals -> R-CNN assigner/sampler -> RoIAlign (P2..P5) -> box head -> RPN and R-CNN losses
  inference: proposals -> RoIAlign (P2..P5) -> box head -> per-class decode + NMS (DetectionOutput)
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from src.ops import Kernels

from .anchor_generator import multi_level_anchors
from .bbox_assign_sample_stage2 import BboxAssignSampleForRcnn
from .fpn_neck import FeatPyramidNeck
from .proposal_generator import Proposal
from .rcnn import DetectionOutput, Rcnn
from .resnet import ResNetFea
from .roi_align import SingleRoIExtractor
from .rpn import RPN
from .settings import ModelSettings

if TYPE_CHECKING:
    from src.model_utils.config import Config


NetT = TypeVar("NetT", bound=nn.Cell)


def _batch_index_column(batch_size: int, rois_per_image: int) -> Tensor:
    """(batch_size * rois_per_image, 1) float32: the image index column of ROIAlign's rois."""
    return Tensor(np.repeat(np.arange(batch_size, dtype=np.float32), rois_per_image).reshape(-1, 1))


class FasterRcnnResnet50(nn.Cell):
    """The whole detector; parameter names, shapes and trainability are the original's (321 parameters).

    Training (`set_train(True)`):
        construct(img (B, 3, H, W) float32 normalised RGB, img_metas (B, 3) [H, W, 1.0] of the padded canvas,
                  gt_bboxes (B, G, 4) float32 x1, y1, x2, y2, gt_labels (B, G) int32 1..num_classes-1,
                  gt_valids (B, G) bool)
        -> (rpn_loss (1,), rcnn_loss, rpn_cls_loss (1,), rpn_reg_loss (1,), rcnn_cls_loss, rcnn_reg_loss), the
        order src.network_define.LossTerms names. B = settings.batch_size, G = the assigners' num_gts,
        H x W = the proposals' img_shape.
    Inference (`set_train(False)`):
        construct(img, img_metas (B, 4) [orig_h, orig_w, scale_h, scale_w], None, None, None)
        -> (bboxes (B, N*(K-1), 5) [x1, y1, x2, y2, score] in original-image pixels,
            labels (B, N*(K-1), 1) int32 0..K-2, masks (B, N*(K-1), 1) bool),
        B = settings.test_batch_size, N = test_proposals.max_num, K = detection.num_classes; see DetectionOutput.
    `kernels` chooses what computes ROIAlign, the deformable convolutions and NMS.
    """

    def __init__(self, settings: ModelSettings, kernels: Kernels):
        super().__init__()
        self.batch_size = settings.batch_size
        self.test_batch_size = settings.test_batch_size
        self.num_roi_levels = len(settings.roi.featmap_strides)
        self.anchor_list = tuple(Tensor(anchors) for anchors in multi_level_anchors(settings.anchors))

        self.backbone = ResNetFea(settings.backbone, kernels=kernels)
        # Named as in the original's checkpoints (sic): its parameters are fpn_ncek.*. Read it as `fpn_neck`.
        self.fpn_ncek = FeatPyramidNeck(settings.fpn, kernels=kernels)
        self.rpn_with_loss = RPN(settings.rpn, settings.batch_size, kernels=kernels)
        # The RPN is class-agnostic: every gt is "object".
        self.rpn_gt_labels = Tensor(np.ones((settings.batch_size, settings.rpn.assigner.num_gts), np.int32))
        self.proposal_generator = Proposal(settings.train_proposals, settings.batch_size, kernels)
        self.proposal_generator_test = Proposal(settings.test_proposals, settings.test_batch_size, kernels)
        self.bbox_assigner_sampler_for_rcnn = BboxAssignSampleForRcnn(settings.rcnn_assigner,
                                                                      add_gt_as_proposals=True)
        self.roi_align = SingleRoIExtractor(settings.roi, kernels)
        self.rcnn = Rcnn(settings.rcnn)
        test_rois_per_image = settings.test_proposals.max_num
        self.detection_output = DetectionOutput(settings.detection, settings.test_batch_size, test_rois_per_image,
                                                kernels)

        train_rois_per_image = settings.rcnn_assigner.num_expected_pos + settings.rcnn_assigner.num_expected_neg
        self.train_roi_batch_index = _batch_index_column(settings.batch_size, train_rois_per_image)
        self.test_roi_batch_index = _batch_index_column(settings.test_batch_size, test_rois_per_image)

    @property
    def fpn_neck(self) -> FeatPyramidNeck:
        """The FPN neck (attribute `fpn_ncek`)."""
        return self.fpn_ncek

    def to_float(self, dst_type) -> FasterRcnnResnet50:
        """Run the convolutions and fully connected layers (backbone, FPN, RPN head, R-CNN head) in `dst_type`
        (float16 on Ascend, as the original); the network's inputs, anchors, box coordinates, targets, RoI pooling,
        NMS and losses stay float32."""
        for cell in (self.backbone, self.fpn_neck, self.rpn_with_loss.rpn_convs_list, self.rcnn):
            cell.to_float(dst_type)
        return self

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

    def __init__(self, settings: ModelSettings, kernels: Kernels):
        super().__init__()
        self.network = FasterRcnnResnet50(settings, kernels)
        self.network.set_train(False)

    def to_float(self, dst_type) -> FasterRcnnInfer:
        """As FasterRcnnResnet50.to_float: the inputs and the box computations stay float32."""
        self.network.to_float(dst_type)
        return self

    def construct(self, img, img_metas):
        return self.network(img, img_metas, None, None, None)


def _model_settings(cfg: Config, test_batch_size: int | None, bn_training: bool | None) -> ModelSettings:
    """The config's settings with the run's overrides."""
    settings = ModelSettings.from_config(cfg)
    if test_batch_size is not None:
        settings = replace(settings, test_batch_size=int(test_batch_size))
    if bn_training is not None:
        settings = replace(settings, backbone=replace(settings.backbone, bn_training=bool(bn_training)))
    return settings


def _in_dtype(net: NetT, dtype: ms.Type) -> NetT:
    """`net` computing in `dtype`: float32 as built, float16 through the network's to_float rule."""
    if dtype == ms.float16:
        return net.to_float(ms.float16)
    if dtype != ms.float32:
        raise ValueError(f"dtype must be mindspore.float32 or mindspore.float16, got {dtype}")
    return net


def build_model(cfg: Config, *, kernels: Kernels, dtype: ms.Type = ms.float32, test_batch_size: int | None = None,
                bn_training: bool | None = None) -> FasterRcnnResnet50:
    """The network of `cfg` (not modified): computing in `dtype` (float16 as the original on Ascend, see
    FasterRcnnResnet50.to_float), with `kernels`; `test_batch_size` / `bn_training` replace the config's
    test_batch_size / resnet_bn_training when given."""
    return _in_dtype(FasterRcnnResnet50(_model_settings(cfg, test_batch_size, bn_training), kernels), dtype)


def build_infer_model(cfg: Config, *, kernels: Kernels, dtype: ms.Type = ms.float32,
                      test_batch_size: int | None = None) -> FasterRcnnInfer:
    """As build_model, the inference wrapper: construct(img, img_metas)."""
    return _in_dtype(FasterRcnnInfer(_model_settings(cfg, test_batch_size, None), kernels), dtype)
