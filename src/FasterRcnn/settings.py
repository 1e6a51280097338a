"""What the network is built from: one frozen dataclass per stage, and the kernel choice.

Each stage's `from_config(cfg)` is the only code that reads the config for that stage, and `ModelSettings` gathers
them; the cells receive their own stage's settings (or plain arguments) and a `Kernels`, never the config or global
state. Sizes are (height, width) in pixels of the padded input canvas, boxes are in input-image pixels.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from src.infra.errors import ConfigError

if TYPE_CHECKING:
    from src.model_utils.config import Config

Shape = tuple[int, int]  # (height, width)
BoxCoding = tuple[float, ...]  # (dx, dy, dw, dh): means or stds normalising encoded box deltas


class Kernels(enum.Enum):
    """Which implementation computes ROIAlign, the deformable convolution's sampling, NMS and the FPN's and RPN's 3x3
    convolutions."""

    CPU = "cpu"  # this project's C++ kernels (src/custom_ops, Winograd 3x3 convs): the CPU only, faster there
    MINDSPORE = "mindspore"  # MindSpore's operators (ROIAlign, DeformableOffsets, NMSWithMask): any device
    # standard operators, deformable sampling and RoIAlign as gathers (gathered_ops.py), NMSWithMask: export.py's
    # MINDIR (any device, no machine-local library, fast on the CPU); inference only
    GATHER = "gather"


def _ints(values: Iterable) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _floats(values: Iterable) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _shapes(values: Iterable) -> tuple[Shape, ...]:
    return tuple((int(h), int(w)) for h, w in values)


@dataclass(frozen=True)
class BackboneSettings:
    """ResNet-50 with deformable 3x3 convolutions in layer2-4 (`ResNetFea`)."""

    layer_nums: tuple[int, ...]  # residual blocks per stage (3, 4, 6, 3)
    in_channels: tuple[int, ...]  # input channels per stage (64, 256, 512, 1024)
    out_channels: tuple[int, ...]  # output channels per stage (256, 512, 1024, 2048)
    weights_update: bool  # the stem conv and layer1 train too
    bn_training: bool  # BatchNorms on batch statistics in training mode, else on their moving statistics
    zero_init_residual: bool  # each trainable block's last BatchNorm scale starts at 0

    @classmethod
    def from_config(cls, cfg: Config) -> BackboneSettings:
        return cls(layer_nums=_ints(cfg.resnet_block), in_channels=_ints(cfg.resnet_in_channels),
                   out_channels=_ints(cfg.resnet_out_channels), weights_update=bool(cfg.resnet_weights_update),
                   bn_training=bool(cfg.resnet_bn_training), zero_init_residual=bool(cfg.resnet_zero_init_residual))


@dataclass(frozen=True)
class FpnSettings:
    """The feature pyramid neck (`FeatPyramidNeck`)."""

    in_channels: tuple[int, ...]  # channels of C2..C5 (256, 512, 1024, 2048)
    out_channels: int  # channels of every output level (256)
    num_outs: int  # output levels P2..P6 (5)
    feature_shapes: tuple[Shape, ...]  # (h, w) of every output level, fine to coarse

    @classmethod
    def from_config(cls, cfg: Config) -> FpnSettings:
        return cls(in_channels=_ints(cfg.fpn_in_channels), out_channels=int(cfg.fpn_out_channels),
                   num_outs=int(cfg.fpn_num_outs), feature_shapes=_shapes(cfg.feature_shapes))


@dataclass(frozen=True)
class AnchorSettings:
    """Anchors of every FPN level (`multi_level_anchors`); a level's base size is its stride."""

    strides: tuple[int, ...]  # stride of each level in pixels (4, 8, 16, 32, 64)
    scales: tuple[float, ...]  # anchor side multipliers (8,)
    ratios: tuple[float, ...]  # height / width ratios (0.5, 1.0, 2.0)
    num_anchors: int  # A, anchors per position = len(scales) * len(ratios)
    feature_shapes: tuple[Shape, ...]  # (h, w) of each level

    @classmethod
    def from_config(cls, cfg: Config) -> AnchorSettings:
        """ConfigError unless num_anchors = len(anchor_scales) x len(anchor_ratios)."""
        settings = cls(strides=_ints(cfg.anchor_strides), scales=_floats(cfg.anchor_scales),
                       ratios=_floats(cfg.anchor_ratios), num_anchors=int(cfg.num_anchors),
                       feature_shapes=_shapes(cfg.feature_shapes))
        if settings.num_anchors != len(settings.scales) * len(settings.ratios):
            raise ConfigError(f"num_anchors={cfg.num_anchors} but anchor_scales x anchor_ratios give "
                              f"{len(settings.scales) * len(settings.ratios)} anchors per position")
        return settings


@dataclass(frozen=True)
class AssignerSettings:
    """Max-IoU assignment and random sampling of one stage (`BboxAssignSample`, `BboxAssignSampleForRcnn`)."""

    num_gts: int  # G, gt slots per image
    num_candidates: int  # N, anchors of all levels (RPN) or proposals per image (R-CNN)
    pos_iou_thr: float  # best IoU >= this: positive
    neg_iou_thr: float  # best IoU < this: negative
    min_pos_iou: float  # a gt's best candidates are positives if their IoU reaches this
    num_expected_pos: int  # P, positive slots
    num_expected_neg: int  # Q, negative slots (at most Q - #positives used)
    target_means: BoxCoding  # normalisation of the regression targets
    target_stds: BoxCoding

    @classmethod
    def from_config(cls, cfg: Config, stage: Literal["rpn", "rcnn"]) -> AssignerSettings:
        if stage == "rpn":
            return cls(num_gts=int(cfg.num_gts), num_candidates=int(cfg.num_bboxes),
                       pos_iou_thr=float(cfg.pos_iou_thr), neg_iou_thr=float(cfg.neg_iou_thr),
                       min_pos_iou=float(cfg.min_pos_iou), num_expected_pos=int(cfg.num_expected_pos),
                       num_expected_neg=int(cfg.num_expected_neg), target_means=_floats(cfg.rpn_target_means),
                       target_stds=_floats(cfg.rpn_target_stds))
        if stage == "rcnn":
            # The candidates are the training proposals of one image.
            return cls(num_gts=int(cfg.num_gts), num_candidates=int(cfg.rpn_proposal_max_num),
                       pos_iou_thr=float(cfg.pos_iou_thr_stage2), neg_iou_thr=float(cfg.neg_iou_thr_stage2),
                       min_pos_iou=float(cfg.min_pos_iou_stage2), num_expected_pos=int(cfg.num_expected_pos_stage2),
                       num_expected_neg=int(cfg.num_expected_neg_stage2),
                       target_means=_floats(cfg.rcnn_target_means), target_stds=_floats(cfg.rcnn_target_stds))
        raise ValueError(f"AssignerSettings: stage must be 'rpn' or 'rcnn', got {stage!r}")


@dataclass(frozen=True)
class RpnSettings:
    """The RPN head shared by every level and its training loss (`RPN`)."""

    in_channels: int  # channels of each FPN map (256)
    feat_channels: int  # channels of the shared 3x3 conv (256)
    num_anchors: int  # A, anchors per position
    cls_out_channels: int  # objectness logits per anchor (1: sigmoid)
    num_levels: int  # FPN levels the head runs on (5)
    cls_loss_weight: float
    reg_loss_weight: float
    assigner: AssignerSettings  # the training targets of the anchors

    @classmethod
    def from_config(cls, cfg: Config) -> RpnSettings:
        return cls(in_channels=int(cfg.rpn_in_channels), feat_channels=int(cfg.rpn_feat_channels),
                   num_anchors=int(cfg.num_anchors), cls_out_channels=int(cfg.rpn_cls_out_channels),
                   num_levels=len(cfg.feature_shapes), cls_loss_weight=float(cfg.rpn_loss_cls_weight),
                   reg_loss_weight=float(cfg.rpn_loss_reg_weight),
                   assigner=AssignerSettings.from_config(cfg, "rpn"))


@dataclass(frozen=True)
class ProposalSettings:
    """Proposals from the RPN's outputs (`Proposal`): one instance for training, one for inference."""

    nms_pre: int  # candidates per level (best objectness) going into NMS
    nms_thr: float  # NMS IoU threshold
    max_num: int  # proposals per image
    num_anchors: int  # A, anchors per position
    feature_shapes: tuple[Shape, ...]  # (h, w) of each level
    img_shape: Shape  # the canvas decoded boxes are clipped to
    target_means: BoxCoding  # normalisation of the RPN's deltas
    target_stds: BoxCoding

    @classmethod
    def from_config(cls, cfg: Config, *, training: bool) -> ProposalSettings:
        """Training proposals from the rpn_proposal_* keys, test proposals from the rpn_* keys (the original's test
        instance keeps the training NMS threshold; both are 0.7 in every shipped config). ConfigError unless the
        objectness is a sigmoid (the only kind supported) and the levels offer max_num candidates."""
        if not cfg.use_sigmoid_cls or cfg.activate_num_classes != 2:
            raise ConfigError(f"only sigmoid objectness (use_sigmoid_cls=True, activate_num_classes=2) is "
                              f"supported, got use_sigmoid_cls={cfg.use_sigmoid_cls}, "
                              f"activate_num_classes={cfg.activate_num_classes}")
        if training:
            keys = ("rpn_proposal_nms_pre", "rpn_proposal_nms_thr", "rpn_proposal_max_num")
            nms_pre, nms_thr, max_num = cfg.rpn_proposal_nms_pre, cfg.rpn_proposal_nms_thr, cfg.rpn_proposal_max_num
        else:
            keys = ("rpn_nms_pre", "rpn_nms_thr", "rpn_max_num")
            nms_pre, nms_thr, max_num = cfg.rpn_nms_pre, cfg.rpn_nms_thr, cfg.rpn_max_num
        settings = cls(nms_pre=int(nms_pre), nms_thr=float(nms_thr), max_num=int(max_num),
                       num_anchors=int(cfg.num_anchors), feature_shapes=_shapes(cfg.feature_shapes),
                       img_shape=(int(cfg.img_height), int(cfg.img_width)),
                       target_means=_floats(cfg.rpn_target_means), target_stds=_floats(cfg.rpn_target_stds))
        candidates = sum(settings.level_k)
        if settings.max_num > candidates:
            raise ConfigError(f"{keys[2]}={max_num} exceeds the {candidates} per-level candidates of a "
                              f"{cfg.img_height}x{cfg.img_width} image ({keys[0]}={nms_pre})")
        return settings

    @property
    def level_k(self) -> tuple[int, ...]:
        """Candidates taken from each level: min(nms_pre, h * w * A)."""
        return tuple(min(self.nms_pre, h * w * self.num_anchors) for h, w in self.feature_shapes)


@dataclass(frozen=True)
class RoiSettings:
    """RoI feature extraction from the FPN levels (`SingleRoIExtractor`)."""

    out_size: int  # pooled height = width (7)
    sample_num: int  # bilinear samples per bin side (2)
    out_channels: int  # channels of the pooled maps (256)
    featmap_strides: tuple[int, ...]  # stride of each pooled level (4, 8, 16, 32)
    finest_scale: float  # RoIs with sqrt(area) < 2 * finest_scale go to the first level (56)

    @classmethod
    def from_config(cls, cfg: Config) -> RoiSettings:
        return cls(out_size=int(cfg.roi_layer.out_size), sample_num=int(cfg.roi_layer.sample_num),
                   out_channels=int(cfg.roi_align_out_channels), featmap_strides=_ints(cfg.roi_align_featmap_strides),
                   finest_scale=float(cfg.roi_align_finest_scale))


@dataclass(frozen=True)
class RcnnSettings:
    """The R-CNN box head and its training loss (`Rcnn`)."""

    representation_size: int  # flattened RoI feature size, channels * out_size**2
    fc_out_channels: int  # width of the two shared fully connected layers (1024)
    num_classes: int  # K, classes including background (81 for COCO)
    cls_loss_weight: float
    reg_loss_weight: float

    @classmethod
    def from_config(cls, cfg: Config) -> RcnnSettings:
        return cls(representation_size=int(cfg.rcnn_in_channels) * int(cfg.roi_layer.out_size) ** 2,
                   fc_out_channels=int(cfg.rcnn_fc_out_channels), num_classes=int(cfg.num_classes),
                   cls_loss_weight=float(cfg.rcnn_loss_cls_weight), reg_loss_weight=float(cfg.rcnn_loss_reg_weight))


@dataclass(frozen=True)
class DetectionSettings:
    """Test-time decode and per-class NMS of the head's output (`DetectionOutput`)."""

    num_classes: int  # K, classes including background
    score_thr: float  # a class score must exceed this to be a candidate
    iou_thr: float  # per-class NMS IoU threshold
    img_shape: Shape  # the canvas decoded boxes are clipped to
    target_means: BoxCoding  # normalisation of the head's deltas
    target_stds: BoxCoding

    @classmethod
    def from_config(cls, cfg: Config) -> DetectionSettings:
        return cls(num_classes=int(cfg.num_classes), score_thr=float(cfg.test_score_thr),
                   iou_thr=float(cfg.test_iou_thr), img_shape=(int(cfg.img_height), int(cfg.img_width)),
                   target_means=_floats(cfg.rcnn_target_means), target_stds=_floats(cfg.rcnn_target_stds))


@dataclass(frozen=True)
class ModelSettings:
    """Everything `FasterRcnnResnet50` is built from."""

    batch_size: int  # B in training
    test_batch_size: int  # B in inference
    backbone: BackboneSettings
    fpn: FpnSettings
    anchors: AnchorSettings
    rpn: RpnSettings
    train_proposals: ProposalSettings
    test_proposals: ProposalSettings
    rcnn_assigner: AssignerSettings
    roi: RoiSettings
    rcnn: RcnnSettings
    detection: DetectionSettings

    @classmethod
    def from_config(cls, cfg: Config) -> ModelSettings:
        return cls(batch_size=int(cfg.batch_size), test_batch_size=int(cfg.test_batch_size),
                   backbone=BackboneSettings.from_config(cfg), fpn=FpnSettings.from_config(cfg),
                   anchors=AnchorSettings.from_config(cfg), rpn=RpnSettings.from_config(cfg),
                   train_proposals=ProposalSettings.from_config(cfg, training=True),
                   test_proposals=ProposalSettings.from_config(cfg, training=False),
                   rcnn_assigner=AssignerSettings.from_config(cfg, "rcnn"), roi=RoiSettings.from_config(cfg),
                   rcnn=RcnnSettings.from_config(cfg), detection=DetectionSettings.from_config(cfg))
