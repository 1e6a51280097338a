"""What the network is built from: one frozen dataclass per stage.

Each stage's `from_config(cfg)` is the only code that reads the config for that stage, and `ModelSettings` gathers
them; the cells receive their own stage's settings and a `Kernels` (src/ops), never the config or global state.
Every field defaults to the value default_config.yaml gives it (768x1280 images, COCO's 81 classes), so a cell can
be built without a Config. Sizes are (height, width) in pixels of the padded input canvas, boxes are in input-image
pixels.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from src.infra.errors import ConfigError

if TYPE_CHECKING:
    from src.model_utils.config import Config

Shape = tuple[int, int]  # (height, width)
BoxCoding = tuple[float, ...]  # (dx, dy, dw, dh): means or stds normalising encoded box deltas

# default_config.yaml's values, the defaults of the fields below
IMG_SHAPE: Shape = (768, 1280)
FEATURE_SHAPES: tuple[Shape, ...] = ((192, 320), (96, 160), (48, 80), (24, 40), (12, 20))  # P2..P6 of IMG_SHAPE
NUM_ANCHORS = 3
NUM_CLASSES = 81
ZERO_MEANS: BoxCoding = (0.0, 0.0, 0.0, 0.0)
RPN_STDS: BoxCoding = (1.0, 1.0, 1.0, 1.0)
RCNN_STDS: BoxCoding = (0.1, 0.1, 0.2, 0.2)


def _ints(values: Iterable) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _floats(values: Iterable) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _shapes(values: Iterable) -> tuple[Shape, ...]:
    return tuple((int(h), int(w)) for h, w in values)


@dataclass(frozen=True)
class BackboneSettings:
    """ResNet-50 with deformable 3x3 convolutions in layer2-4 (`ResNetFea`)."""

    layer_nums: tuple[int, ...] = (3, 4, 6, 3)  # residual blocks per stage
    in_channels: tuple[int, ...] = (64, 256, 512, 1024)  # input channels per stage
    out_channels: tuple[int, ...] = (256, 512, 1024, 2048)  # output channels per stage
    weights_update: bool = False  # the stem conv and layer1 train too
    bn_training: bool = False  # BatchNorms on batch statistics in training mode, else on their moving statistics
    zero_init_residual: bool = False  # each trainable block's last BatchNorm scale starts at 0

    @classmethod
    def from_config(cls, cfg: Config) -> BackboneSettings:
        return cls(layer_nums=_ints(cfg.resnet_block), in_channels=_ints(cfg.resnet_in_channels),
                   out_channels=_ints(cfg.resnet_out_channels), weights_update=bool(cfg.resnet_weights_update),
                   bn_training=bool(cfg.resnet_bn_training), zero_init_residual=bool(cfg.resnet_zero_init_residual))


@dataclass(frozen=True)
class FpnSettings:
    """The feature pyramid neck (`FeatPyramidNeck`)."""

    in_channels: tuple[int, ...] = (256, 512, 1024, 2048)  # channels of C2..C5
    out_channels: int = 256  # channels of every output level
    num_outs: int = 5  # output levels P2..P6
    feature_shapes: tuple[Shape, ...] = FEATURE_SHAPES  # (h, w) of every output level, fine to coarse

    @classmethod
    def from_config(cls, cfg: Config) -> FpnSettings:
        return cls(in_channels=_ints(cfg.fpn_in_channels), out_channels=int(cfg.fpn_out_channels),
                   num_outs=int(cfg.fpn_num_outs), feature_shapes=_shapes(cfg.feature_shapes))


@dataclass(frozen=True)
class AnchorSettings:
    """Anchors of every FPN level (`multi_level_anchors`); a level's base size is its stride."""

    strides: tuple[int, ...] = (4, 8, 16, 32, 64)  # stride of each level in pixels
    scales: tuple[float, ...] = (8.0,)  # anchor side multipliers
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height / width ratios
    num_anchors: int = NUM_ANCHORS  # A, anchors per position = len(scales) * len(ratios)
    feature_shapes: tuple[Shape, ...] = FEATURE_SHAPES  # (h, w) of each level

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
    """Max-IoU assignment and random sampling of one stage (`BboxAssignSample`, `BboxAssignSampleForRcnn`); the
    defaults are the RPN's."""

    num_gts: int = 128  # G, gt slots per image
    num_candidates: int = NUM_ANCHORS * sum(h * w for h, w in FEATURE_SHAPES)  # N, anchors (RPN) or proposals (R-CNN)
    pos_iou_thr: float = 0.7  # best IoU >= this: positive
    neg_iou_thr: float = 0.3  # best IoU < this: negative
    min_pos_iou: float = 0.3  # a gt's best candidates are positives if their IoU reaches this
    num_expected_pos: int = 128  # P, positive slots
    num_expected_neg: int = 256  # Q, negative slots (at most Q - #positives used)
    target_means: BoxCoding = ZERO_MEANS  # normalisation of the regression targets
    target_stds: BoxCoding = RPN_STDS

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

    in_channels: int = 256  # channels of each FPN map
    feat_channels: int = 256  # channels of the shared 3x3 conv
    num_anchors: int = NUM_ANCHORS  # A, anchors per position
    cls_out_channels: int = 1  # objectness logits per anchor (1: sigmoid)
    num_levels: int = len(FEATURE_SHAPES)  # FPN levels the head runs on
    cls_loss_weight: float = 1.0
    reg_loss_weight: float = 1.0
    assigner: AssignerSettings = field(default_factory=AssignerSettings)  # the training targets of the anchors

    @classmethod
    def from_config(cls, cfg: Config) -> RpnSettings:
        return cls(in_channels=int(cfg.rpn_in_channels), feat_channels=int(cfg.rpn_feat_channels),
                   num_anchors=int(cfg.num_anchors), cls_out_channels=int(cfg.rpn_cls_out_channels),
                   num_levels=len(cfg.feature_shapes), cls_loss_weight=float(cfg.rpn_loss_cls_weight),
                   reg_loss_weight=float(cfg.rpn_loss_reg_weight),
                   assigner=AssignerSettings.from_config(cfg, "rpn"))


@dataclass(frozen=True)
class ProposalSettings:
    """Proposals from the RPN's outputs (`Proposal`): one instance for training, one for inference (the defaults)."""

    nms_pre: int = 1000  # candidates per level (best objectness) going into NMS
    nms_thr: float = 0.7  # NMS IoU threshold
    max_num: int = 1000  # proposals per image
    num_anchors: int = NUM_ANCHORS  # A, anchors per position
    feature_shapes: tuple[Shape, ...] = FEATURE_SHAPES  # (h, w) of each level
    img_shape: Shape = IMG_SHAPE  # the canvas decoded boxes are clipped to
    target_means: BoxCoding = ZERO_MEANS  # normalisation of the RPN's deltas
    target_stds: BoxCoding = RPN_STDS

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

    out_size: int = 7  # pooled height = width
    sample_num: int = 2  # bilinear samples per bin side
    out_channels: int = 256  # channels of the pooled maps
    featmap_strides: tuple[int, ...] = (4, 8, 16, 32)  # stride of each pooled level
    finest_scale: float = 56.0  # RoIs with sqrt(area) < 2 * finest_scale go to the first level

    @classmethod
    def from_config(cls, cfg: Config) -> RoiSettings:
        return cls(out_size=int(cfg.roi_layer.out_size), sample_num=int(cfg.roi_layer.sample_num),
                   out_channels=int(cfg.roi_align_out_channels), featmap_strides=_ints(cfg.roi_align_featmap_strides),
                   finest_scale=float(cfg.roi_align_finest_scale))


@dataclass(frozen=True)
class RcnnSettings:
    """The R-CNN box head and its training loss (`Rcnn`)."""

    representation_size: int = 256 * 7 * 7  # flattened RoI feature size, channels * out_size**2
    fc_out_channels: int = 1024  # width of the two shared fully connected layers
    num_classes: int = NUM_CLASSES  # K, classes including background (81 for COCO)
    cls_loss_weight: float = 1.0
    reg_loss_weight: float = 1.0

    @classmethod
    def from_config(cls, cfg: Config) -> RcnnSettings:
        return cls(representation_size=int(cfg.rcnn_in_channels) * int(cfg.roi_layer.out_size) ** 2,
                   fc_out_channels=int(cfg.rcnn_fc_out_channels), num_classes=int(cfg.num_classes),
                   cls_loss_weight=float(cfg.rcnn_loss_cls_weight), reg_loss_weight=float(cfg.rcnn_loss_reg_weight))


@dataclass(frozen=True)
class DetectionSettings:
    """Test-time decode and per-class NMS of the head's output (`DetectionOutput`)."""

    num_classes: int = NUM_CLASSES  # K, classes including background
    score_thr: float = 0.05  # a class score must exceed this to be a candidate
    iou_thr: float = 0.5  # per-class NMS IoU threshold
    img_shape: Shape = IMG_SHAPE  # the canvas decoded boxes are clipped to
    target_means: BoxCoding = ZERO_MEANS  # normalisation of the head's deltas
    target_stds: BoxCoding = RCNN_STDS

    @classmethod
    def from_config(cls, cfg: Config) -> DetectionSettings:
        return cls(num_classes=int(cfg.num_classes), score_thr=float(cfg.test_score_thr),
                   iou_thr=float(cfg.test_iou_thr), img_shape=(int(cfg.img_height), int(cfg.img_width)),
                   target_means=_floats(cfg.rcnn_target_means), target_stds=_floats(cfg.rcnn_target_stds))


@dataclass(frozen=True)
class ModelSettings:
    """Everything `FasterRcnnResnet50` is built from."""

    batch_size: int = 2  # B in training
    test_batch_size: int = 2  # B in inference
    backbone: BackboneSettings = field(default_factory=BackboneSettings)
    fpn: FpnSettings = field(default_factory=FpnSettings)
    anchors: AnchorSettings = field(default_factory=AnchorSettings)
    rpn: RpnSettings = field(default_factory=RpnSettings)
    train_proposals: ProposalSettings = field(default_factory=lambda: ProposalSettings(nms_pre=2000, max_num=2000))
    test_proposals: ProposalSettings = field(default_factory=ProposalSettings)
    rcnn_assigner: AssignerSettings = field(default_factory=lambda: AssignerSettings(
        num_candidates=2000, pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5, num_expected_neg=512,
        target_stds=RCNN_STDS))
    roi: RoiSettings = field(default_factory=RoiSettings)
    rcnn: RcnnSettings = field(default_factory=RcnnSettings)
    detection: DetectionSettings = field(default_factory=DetectionSettings)

    @classmethod
    def from_config(cls, cfg: Config) -> ModelSettings:
        return cls(batch_size=int(cfg.batch_size), test_batch_size=int(cfg.test_batch_size),
                   backbone=BackboneSettings.from_config(cfg), fpn=FpnSettings.from_config(cfg),
                   anchors=AnchorSettings.from_config(cfg), rpn=RpnSettings.from_config(cfg),
                   train_proposals=ProposalSettings.from_config(cfg, training=True),
                   test_proposals=ProposalSettings.from_config(cfg, training=False),
                   rcnn_assigner=AssignerSettings.from_config(cfg, "rcnn"), roi=RoiSettings.from_config(cfg),
                   rcnn=RcnnSettings.from_config(cfg), detection=DetectionSettings.from_config(cfg))
