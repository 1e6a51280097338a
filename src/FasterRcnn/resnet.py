"""ResNet-50 backbone of the original faster_rcnn_dcn: plain bottlenecks in layer1, deformable 3x3 in layer2-4.

Freezing as the original: the stem conv and all of layer1 take no gradient (c2 leaves through stop_gradient) and
their BatchNorms have no trainable affine; layer2-4 are trainable; every BatchNorm normalises with its moving
statistics, in training as in evaluation (in evaluation, in the stem and in the frozen blocks computed as the
preceding conv with the BatchNorm folded into its weight, plus a bias). `weights_update=True` unfreezes the stem
conv and layer1 and `bn_training=True` makes the BatchNorms use batch statistics in training mode,
`zero_init_residual=True` starts each trainable block as its shortcut: all for training from scratch.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import Tensor, nn, ops
from mindspore.common.initializer import HeNormal

from src.ops import Kernels, conv3x3

from .dcn_v2 import DeformConv2d
from .settings import BackboneSettings

NUM_STAGES = 4
EXPANSION = 4  # bottleneck: out_channels = 4 x the 3x3 conv's channels
# MindSpore convention: moving = momentum * moving + (1 - momentum) * batch; acts only with bn_training.
BN_MOMENTUM = 0.9


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    """Conv without bias, He-normal initialised."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad", padding=padding,
                     has_bias=False, weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


def fold_batch_norm(weight: Tensor, bn: nn.BatchNorm2d, dtype=ms.float32) -> tuple[Tensor, Tensor]:
    """Conv weight (O, I, kh, kw) and a BatchNorm on moving statistics -> (weight * scale, shift), so that
    bn(conv(x, weight)) = conv(x, weight * scale) + shift with scale = gamma / sqrt(moving_var + eps). Gradients
    reach weight, gamma and beta as through the unfolded pair; one cheap bias pass replaces the BatchNorm's.
    Folded from the float32 parameters, returned in `dtype` (the activations' dtype: float16 after to_float)."""
    weight = weight.astype(ms.float32)
    gamma, beta = bn.gamma.astype(ms.float32), bn.beta.astype(ms.float32)
    mean, variance = bn.moving_mean.astype(ms.float32), bn.moving_variance.astype(ms.float32)
    scale = gamma / ops.sqrt(variance + bn.eps)
    return (weight * scale.reshape(-1, 1, 1, 1)).astype(dtype), (beta - mean * scale).astype(dtype)


def _conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: Tensor, fold: bool) -> Tensor:
    """bn(conv(x)); folded into the conv when the BatchNorm normalises with its moving statistics."""
    if fold:
        weight, shift = fold_batch_norm(conv.weight, bn, x.dtype)
        return ops.bias_add(conv.conv2d(x, weight), shift)
    return bn(conv(x))


def _batch_norm(channels: int, affine: bool, bn_training: bool) -> nn.BatchNorm2d:
    """BatchNorm on moving statistics (the original), or on batch statistics in training mode if bn_training."""
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, affine=affine, gamma_init="ones", beta_init="zeros",
                          moving_mean_init="zeros", moving_var_init="ones",
                          use_batch_statistics=None if bn_training else False)


class _Bottleneck(nn.Cell):
    """1x1 -> 3x3 (stride here) -> 1x1 residual block; subclasses build and run the 3x3 (`_build_spatial`, which
    receives `spatial_options`, and `_spatial_bn`). Parameters are created in the original's order (a checkpoint
    lists them so)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, down_sample: bool, trainable: bool,
                 bn_training: bool, **spatial_options):
        super().__init__()
        mid = out_channels // EXPANSION
        self.conv1 = _conv(in_channels, mid, 1)
        self.bn1 = _batch_norm(mid, trainable, bn_training)
        self._build_spatial(mid, stride, **spatial_options)
        self.bn2 = _batch_norm(mid, trainable, bn_training)
        self.conv3 = _conv(mid, out_channels, 1)
        self.bn3 = _batch_norm(out_channels, trainable, bn_training)
        self.down_sample = down_sample
        # Folded in training only where no gradient reaches the weights (frozen blocks): for a trained conv the
        # folding's gradient (passes over the weight, a reduction per conv) costs more than the BatchNorm's.
        self.fold_bn = not bn_training and not trainable
        if down_sample:
            self.conv_down_sample = _conv(in_channels, out_channels, 1, stride=stride)
            self.bn_down_sample = _batch_norm(out_channels, trainable, bn_training)

    def _build_spatial(self, channels: int, stride: int, **options) -> None:
        raise NotImplementedError

    def _spatial_bn(self, x: Tensor, fold: bool) -> Tensor:
        """bn2 of the 3x3 conv, folded into it if `fold`."""
        raise NotImplementedError

    def construct(self, x: Tensor) -> Tensor:
        fold = self.fold_bn or not self.training
        out = ops.relu(_conv_bn(self.conv1, self.bn1, x, fold))
        out = ops.relu(self._spatial_bn(out, fold))
        out = _conv_bn(self.conv3, self.bn3, out, fold)
        identity = x
        if self.down_sample:
            identity = _conv_bn(self.conv_down_sample, self.bn_down_sample, x, fold)
        return ops.relu(out + identity)


class ResidualBlock(_Bottleneck):
    """Plain bottleneck (layer1); frozen unless `trainable`. Params conv1/2/3, bn1/2/3, [conv|bn]_down_sample."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, down_sample: bool = False,
                 trainable: bool = False, bn_training: bool = False, *, kernels: Kernels):
        super().__init__(in_channels, out_channels, stride, down_sample, trainable, bn_training, kernels=kernels)
        if not trainable:
            for param in self.trainable_params():
                param.requires_grad = False

    def _build_spatial(self, channels: int, stride: int, kernels: Kernels) -> None:
        self.conv2 = _conv(channels, channels, 3, stride=stride, padding=1)
        self.folded_conv2 = conv3x3(kernels, stride)

    def _spatial_bn(self, x: Tensor, fold: bool) -> Tensor:
        if fold:
            weight, shift = fold_batch_norm(self.conv2.weight, self.bn2, x.dtype)
            return self.folded_conv2(x, weight, shift)
        return _conv_bn(self.conv2, self.bn2, x, fold)


class ResidualBlockDCN(_Bottleneck):
    """Bottleneck whose 3x3 is the original's DeformConv2d (`defconv`, computed by `kernels`); layer2-4, always
    trainable."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, down_sample: bool = False,
                 bn_training: bool = False, *, kernels: Kernels):
        super().__init__(in_channels, out_channels, stride, down_sample, True, bn_training, kernels=kernels)

    def _build_spatial(self, channels: int, stride: int, kernels: Kernels) -> None:
        self.defconv = DeformConv2d(channels, channels, 3, stride=stride, padding=1, kernels=kernels)

    def _spatial_bn(self, x: Tensor, fold: bool) -> Tensor:
        if fold:
            weight, shift = fold_batch_norm(self.defconv.conv.weight, self.bn2, x.dtype)
            # a broadcast add rather than BiasAdd: MindSpore's ONNX exporter turns a BiasAdd that follows no Conv into
            # an Add over the last axis
            return self.defconv(x, weight) + shift.reshape(-1, 1, 1)
        return self.bn2(self.defconv(x))


def _make_stage(block: type, num_blocks: int, in_channels: int, out_channels: int, stride: int,
                **kwargs) -> nn.SequentialCell:
    """First block takes the stride and a projection shortcut (whenever shape changes), the rest keep the shape."""
    down_sample = stride != 1 or in_channels != out_channels
    blocks = [block(in_channels, out_channels, stride=stride, down_sample=down_sample, **kwargs)]
    blocks += [block(out_channels, out_channels, stride=1, **kwargs) for _ in range(1, num_blocks)]
    return nn.SequentialCell(blocks)


class ResNetFea(nn.Cell):
    """ResNet-50 feature extractor: (N, 3, H, W) -> (c2, c3, c4, c5) at strides 4, 8, 16, 32.

    settings: layer_nums, in_channels, out_channels per stage ((3, 4, 6, 3), (64, 256, 512, 1024),
    (256, 512, 1024, 2048)); weights_update, bn_training, zero_init_residual: see the module docstring. kernels:
    what computes the 3x3 and deformable convolutions. Spatial sizes are ceil(H / stride), ceil(W / stride).
    """

    def __init__(self, settings: BackboneSettings, *, kernels: Kernels):
        super().__init__()
        layer_nums, in_channels, out_channels = settings.layer_nums, settings.in_channels, settings.out_channels
        weights_update, bn_training = settings.weights_update, settings.bn_training
        if not len(layer_nums) == len(in_channels) == len(out_channels) == NUM_STAGES:
            raise ValueError(f"ResNetFea needs {NUM_STAGES} stages in layer_nums, in_channels and out_channels, got "
                             f"{list(layer_nums)}, {list(in_channels)}, {list(out_channels)}")
        self.weights_update = weights_update
        stem_channels = in_channels[0]
        self.conv1 = _conv(3, stem_channels, 7, stride=2, padding=3)
        self.conv1.weight.requires_grad = weights_update
        self.bn1 = _batch_norm(stem_channels, affine=False, bn_training=bn_training)
        self.fold_bn = not bn_training
        # TF "SAME" padding: output ceil(H / 2), the odd padding row/column goes bottom/right.
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="same")
        self.layer1 = _make_stage(ResidualBlock, layer_nums[0], in_channels[0], out_channels[0], 1,
                                  trainable=weights_update, bn_training=bn_training, kernels=kernels)
        self.layer2 = _make_stage(ResidualBlockDCN, layer_nums[1], in_channels[1], out_channels[1], 2,
                                  bn_training=bn_training, kernels=kernels)
        self.layer3 = _make_stage(ResidualBlockDCN, layer_nums[2], in_channels[2], out_channels[2], 2,
                                  bn_training=bn_training, kernels=kernels)
        self.layer4 = _make_stage(ResidualBlockDCN, layer_nums[3], in_channels[3], out_channels[3], 2,
                                  bn_training=bn_training, kernels=kernels)
        if settings.zero_init_residual:
            self._zero_init_residual()

    def _zero_init_residual(self) -> None:
        """Every trainable block's last BatchNorm scale starts at 0, so the block starts as its shortcut (Goyal et
        al. 2017; torchvision's zero_init_residual): from scratch, the deep residual stack starts shallow."""
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                if block.bn3.gamma.requires_grad:
                    block.bn3.gamma.set_data(ops.zeros_like(block.bn3.gamma))

    def construct(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = ops.relu(_conv_bn(self.conv1, self.bn1, x, self.fold_bn or not self.training))
        x = self.maxpool(x)
        c2 = self.layer1(x)
        if not self.weights_update:
            c2 = ops.stop_gradient(c2)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c2, c3, c4, c5
