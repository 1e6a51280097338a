"""ResNetFea: the original's parameter names/shapes/trainability, its wiring against NumPy, freezing, BN modes."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from src.FasterRcnn.resnet import ResNetFea, fold_batch_norm
from src.FasterRcnn.settings import BackboneSettings
from src.ops import Kernels
from tests.helpers.dcn_reference import dcn_reference

TSV = os.path.join(os.path.dirname(__file__), "data", "original_params.tsv")
# A tiny ResNetFea with the same structure: two blocks in layer1-2 (projection and identity shortcuts).
TINY = dict(layer_nums=(2, 2, 1, 1), in_channels=(8, 16, 32, 64), out_channels=(16, 32, 64, 128))


def tiny(**options) -> ResNetFea:
    return ResNetFea(BackboneSettings(**TINY, **options), kernels=Kernels.CPU)


class _Net(nn.Cell):
    """The backbone under the network's attribute name."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def _original_backbone_rows():
    rows = []
    with open(TSV, encoding="utf-8") as f:
        next(f)
        for line in f:
            name, shape, _, requires_grad = line.rstrip("\n").split("\t")
            if name.startswith("backbone."):
                rows.append((name, tuple(int(v) for v in shape.split("x")), requires_grad == "True"))
    return rows


@pytest.fixture(scope="module")
def resnet50():
    return ResNetFea(BackboneSettings(), kernels=Kernels.CPU)  # default_config.yaml's


def test_parameters_are_the_originals(resnet50):
    ours = [(p.name, tuple(p.shape), p.requires_grad) for p in _Net(resnet50).get_parameters()]
    expected = _original_backbone_rows()
    assert len(expected) == 291
    assert ours == expected  # same names, shapes, trainability and order


def test_initialisation(resnet50):
    conv = resnet50.layer3.get_parameters()
    weights = {p.name: p.asnumpy() for p in conv}
    for name, value in weights.items():
        if "p_conv" in name or "m_conv" in name or name.endswith(("beta", "moving_mean")):
            assert not value.any(), name
        elif name.endswith(("gamma", "moving_variance")):
            assert np.all(value == 1), name
        else:  # He-normal, fan_out: std sqrt(2 / (out * kh * kw))
            std = np.sqrt(2.0 / (value.shape[0] * value.shape[2] * value.shape[3]))
            assert abs(value.std() / std - 1) < 0.1, name


def test_output_shapes_are_ceil_of_strides(resnet50):
    resnet50.set_train(False)
    outs = resnet50(Tensor(np.random.default_rng(0).standard_normal((1, 3, 70, 100)).astype(np.float32)))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 18, 25), (1, 512, 9, 13), (1, 1024, 5, 7), (1, 2048, 3, 4)]


def _grads(net, params, x):
    def loss(t):
        return sum((o * o).mean() for o in net(t))

    return ms.grad(loss, grad_position=0, weights=params)(x)


@pytest.mark.parametrize("weights_update", [False, True])
def test_frozen_parameters_get_no_gradient(weights_update):
    net = tiny(weights_update=weights_update)
    net.set_train(True)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32))
    frozen = [p for p in net.get_parameters() if p.name.startswith(("conv1.", "layer1.")) and p.name.endswith("weight")]
    later = [p for p in net.get_parameters() if p.name.startswith(("layer2.", "layer3.", "layer4."))
             and (p.name.endswith("weight") or p.name.endswith(("gamma", "beta")))]
    assert all(p.requires_grad == weights_update for p in frozen)
    assert all(p.requires_grad for p in later)
    grad_x, grads = _grads(net, frozen + later, x)
    # The original returns c2 through stop_gradient: nothing flows back into the stem and layer1 (nor the image).
    assert (np.abs(grad_x.asnumpy()).max() > 0) == weights_update
    norms = {p.name: float(np.abs(g.asnumpy()).max()) for p, g in zip(frozen + later, grads, strict=True)}
    for p in frozen:
        assert (norms[p.name] > 0) == weights_update, p.name
    assert all(norms[p.name] > 0 for p in later), [n for n, v in norms.items() if v == 0]


def _np_conv(x, w, stride=1, pad=0):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    out_h, out_w = (xp.shape[2] - kh) // stride + 1, (xp.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], out_h, out_w))
    for a in range(kh):
        for b in range(kw):
            patch = xp[:, :, a:a + stride * (out_h - 1) + 1:stride, b:b + stride * (out_w - 1) + 1:stride]
            out += np.einsum("oc,ncij->noij", w[:, :, a, b], patch)
    return out


def _np_dcn_zero_offsets(x, w, stride):
    """The original DCN with p_conv = m_conv = 0 (mask 0.5, taps at (s*i + a, s*j + b) clamped into the map)."""
    height, width = x.shape[2:]
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    return dcn_reference(x, w, np.zeros((x.shape[0], 27, out_h, out_w)), stride)[0]


def _np_maxpool_tf_same(x):
    out_h, out_w = -(-x.shape[2] // 2), -(-x.shape[3] // 2)
    pad_h, pad_w = max((out_h - 1) * 2 + 3 - x.shape[2], 0), max((out_w - 1) * 2 + 3 - x.shape[3], 0)
    xp = np.pad(x, ((0, 0), (0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)),
                constant_values=-np.inf)
    return np.max([xp[:, :, a:a + 2 * out_h - 1:2, b:b + 2 * out_w - 1:2] for a in range(3) for b in range(3)], 0)


def _np_resnet(params, x, layer_nums):
    """NumPy forward of the original's ResNetFea (BN on moving statistics, eps 1e-5)."""
    def bn(t, name):
        mean, var = params[name + ".moving_mean"], params[name + ".moving_variance"]
        gamma, beta = params[name + ".gamma"], params[name + ".beta"]
        return ((t - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)) * gamma[:, None, None] \
            + beta[:, None, None]

    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    t = _np_maxpool_tf_same(relu(bn(_np_conv(x, params["conv1.weight"], 2, 3), "bn1")))
    outs = []
    for stage in range(4):
        for block in range(layer_nums[stage]):
            pre = f"layer{stage + 1}.{block}."
            stride = 2 if stage > 0 and block == 0 else 1
            out = relu(bn(_np_conv(t, params[pre + "conv1.weight"]), pre + "bn1"))
            if stage == 0:
                out = _np_conv(out, params[pre + "conv2.weight"], stride, 1)
            else:
                out = _np_dcn_zero_offsets(out, params[pre + "defconv.conv.weight"], stride)
            out = relu(bn(out, pre + "bn2"))
            out = bn(_np_conv(out, params[pre + "conv3.weight"]), pre + "bn3")
            identity = t
            if block == 0:
                identity = bn(_np_conv(t, params[pre + "conv_down_sample.weight"], stride), pre + "bn_down_sample")
            t = relu(out + identity)
        outs.append(t)
    return outs


def test_forward_matches_numpy_resnet():
    rng = np.random.default_rng(2)
    net = tiny()
    params = {}
    for p in net.get_parameters():
        if "p_conv" in p.name or "m_conv" in p.name:
            value = np.zeros(p.shape)
        elif p.name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, p.shape)
        elif len(p.shape) == 1:
            value = rng.uniform(-0.5, 0.5, p.shape) + (1.0 if p.name.endswith("gamma") else 0.0)
        else:
            value = rng.standard_normal(p.shape) * np.sqrt(2.0 / np.prod(p.shape[1:]))
        params[p.name] = value.astype(np.float32)
        p.set_data(Tensor(params[p.name]))
    x = rng.standard_normal((2, 3, 37, 50)).astype(np.float32)  # odd sizes: ceil at every stride
    expected = _np_resnet({k: v.astype(np.float64) for k, v in params.items()}, x.astype(np.float64),
                          TINY["layer_nums"])
    for train in (False, True):  # moving statistics in both modes (bn_training False)
        net.set_train(train)
        outs = net(Tensor(x))
        for level, (got, want) in enumerate(zip(outs, expected, strict=True)):
            assert got.shape == want.shape, level
            np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_bn_training_uses_batch_statistics_in_training_mode():
    x = Tensor(np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32) * 3 + 1)
    frozen, batch = tiny(), tiny(bn_training=True)
    ms.load_param_into_net(batch, {p.name: ms.Parameter(Tensor(p.asnumpy()), p.name) for p in frozen.get_parameters()})
    for net in (frozen, batch):
        net.set_train(False)
    eval_frozen, eval_batch = frozen(x)[3].asnumpy(), batch(x)[3].asnumpy()
    # eval: both on moving statistics (folded into the convs)
    np.testing.assert_allclose(eval_batch, eval_frozen, rtol=1e-6)
    stem_mean_before = batch.bn1.moving_mean.asnumpy().copy()
    frozen.set_train(True)
    batch.set_train(True)
    # moving statistics in training too (the trained blocks' BatchNorms unfolded: float32 rounding apart)
    np.testing.assert_allclose(frozen(x)[3].asnumpy(), eval_frozen, rtol=1e-5, atol=1e-5 * np.abs(eval_frozen).max())
    assert not np.allclose(batch(x)[3].asnumpy(), eval_batch, rtol=1e-3)
    assert not np.allclose(batch.bn1.moving_mean.asnumpy(), stem_mean_before)  # statistics are tracked
    assert np.all(frozen.bn1.moving_mean.asnumpy() == 0)


@pytest.mark.parametrize("weights_update", [False, True])
def test_zero_init_residual_starts_each_trainable_block_as_its_shortcut(weights_update):
    net = tiny(weights_update=weights_update, zero_init_residual=True)
    net.set_train(True)
    reference = tiny(weights_update=weights_update)
    for layer_name in ("layer1", "layer2", "layer3", "layer4"):
        zeroed = layer_name != "layer1" or weights_update  # layer1's BatchNorms have no affine when frozen
        for block, ref_block in zip(getattr(net, layer_name), getattr(reference, layer_name), strict=True):
            gamma = block.bn3.gamma.asnumpy()
            np.testing.assert_array_equal(gamma, np.zeros_like(gamma) if zeroed else ref_block.bn3.gamma.asnumpy())
    # an identity-shortcut block is relu(0 + x) = x on non-negative input; a projection block is relu(shortcut)
    x = np.abs(np.random.default_rng(4).standard_normal((2, 32, 16, 16))).astype(np.float32)
    np.testing.assert_allclose(net.layer2[1](Tensor(x)).asnumpy(), x, rtol=0, atol=0)
    first = net.layer2[0]
    x2 = np.abs(np.random.default_rng(5).standard_normal((2, 16, 16, 16))).astype(np.float32)
    weight = first.conv_down_sample.weight.asnumpy()[:, :, 0, 0]  # (out, in), stride 2; BatchNorm at (0, 1)
    shortcut = np.einsum("oi,nihw->nohw", weight, x2[:, :, ::2, ::2]) / np.sqrt(1 + first.bn_down_sample.eps)
    np.testing.assert_allclose(first(Tensor(x2)).asnumpy(), np.maximum(shortcut, 0), rtol=1e-5, atol=1e-6)


def test_rejects_wrong_stage_count():
    with pytest.raises(ValueError, match="4 stages"):
        ResNetFea(BackboneSettings((3, 4, 6), (64, 256, 512), (256, 512, 1024)), kernels=Kernels.CPU)


def test_folded_batch_norm_equals_conv_then_batch_norm_with_gradients():
    """bn(conv(x)) on moving statistics = conv(x, w * scale) + shift, for the output and every gradient."""
    rng = np.random.default_rng(12)
    conv = nn.Conv2d(4, 6, 3, pad_mode="pad", padding=1, has_bias=False)
    bn = nn.BatchNorm2d(6, use_batch_statistics=False)
    for param, value in ((bn.gamma, rng.uniform(0.5, 2, 6)), (bn.beta, rng.normal(0, 1, 6)),
                         (bn.moving_mean, rng.normal(0, 1, 6)), (bn.moving_variance, rng.uniform(0.1, 3, 6))):
        param.set_data(Tensor(value.astype(np.float32)))
    x = Tensor(rng.standard_normal((2, 4, 7, 9)).astype(np.float32))
    weights = [conv.weight, bn.gamma, bn.beta]

    def folded(t):
        weight, shift = fold_batch_norm(conv.weight, bn)
        return (ops.bias_add(conv.conv2d(t, weight), shift) ** 2).sum()

    def unfolded(t):
        return (bn(conv(t)) ** 2).sum()

    ref = ms.grad(unfolded, grad_position=0, weights=weights)(x)
    got = ms.grad(folded, grad_position=0, weights=weights)(x)
    np.testing.assert_allclose(folded(x).asnumpy(), unfolded(x).asnumpy(), rtol=1e-5)
    for g, r in zip([got[0], *got[1]], [ref[0], *ref[1]], strict=True):
        np.testing.assert_allclose(g.asnumpy(), r.asnumpy(), rtol=1e-4, atol=1e-4 * np.abs(r.asnumpy()).max())
