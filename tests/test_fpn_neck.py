"""FeatPyramidNeck against a NumPy feature pyramid (lateral 1x1, nearest 2x upsample + sum, 3x3, stride-2 P6)."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from src.FasterRcnn.fpn_neck import FeatPyramidNeck
from src.FasterRcnn.settings import FpnSettings
from src.model_utils.config import get_config
from src.ops import Kernels, fpn_merge

TSV = os.path.join(os.path.dirname(__file__), "data", "original_params.tsv")


def _np_conv_same(x, w, b):
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    out = np.zeros((x.shape[0], w.shape[0]) + x.shape[2:]) + b[None, :, None, None]
    for a in range(k):
        for c in range(k):
            out += np.einsum("oi,nihw->nohw", w[:, :, a, c], xp[:, :, a:a + x.shape[2], c:c + x.shape[3]])
    return out


def _np_fpn(params, inputs, num_outs):
    laterals = [_np_conv_same(x, params[f"lateral_convs_list.{i}.weight"], params[f"lateral_convs_list.{i}.bias"])
                for i, x in enumerate(inputs)]
    merged = [laterals[-1]]
    for lateral in laterals[-2::-1]:
        up = merged[-1].repeat(2, axis=2).repeat(2, axis=3)[:, :, :lateral.shape[2], :lateral.shape[3]]
        merged.append(lateral + up)
    merged = merged[::-1]
    outs = [_np_conv_same(m, params[f"fpn_convs_list.{i}.weight"], params[f"fpn_convs_list.{i}.bias"])
            for i, m in enumerate(merged)]
    while len(outs) < num_outs:
        outs.append(outs[-1][:, :, ::2, ::2])
    return outs


# even and odd coarsest maps (P6 = ceil(P5 / 2)); with Kernels.CPU, P2 of (6, 10) is large enough for the Winograd
# 3x3 conv (SameConv3x3), the smaller levels go through the direct one
@pytest.mark.parametrize("top,kernels", [((2, 3), Kernels.MINDSPORE), ((3, 5), Kernels.MINDSPORE),
                                         ((6, 10), Kernels.CPU)])
def test_matches_numpy_pyramid(top, kernels):
    rng = np.random.default_rng(top[1])
    in_channels, out_channels = [4, 6, 8, 10], 5
    sizes = [(top[0] * 2 ** (3 - i), top[1] * 2 ** (3 - i)) for i in range(4)]
    feature_shapes = sizes + [(-(-top[0] // 2), -(-top[1] // 2))]
    neck = FeatPyramidNeck(FpnSettings(tuple(in_channels), out_channels, 5, tuple(feature_shapes)), kernels=kernels)
    params = {}
    for p in neck.get_parameters():
        params[p.name] = rng.standard_normal(p.shape).astype(np.float32)
        p.set_data(Tensor(params[p.name]))
    inputs = [rng.standard_normal((2, c) + s).astype(np.float32) for c, s in zip(in_channels, sizes, strict=True)]
    outs = neck(tuple(Tensor(x) for x in inputs))
    expected = _np_fpn({k: v.astype(np.float64) for k, v in params.items()}, [x.astype(np.float64) for x in inputs], 5)
    assert len(outs) == 5
    for level, (got, want) in enumerate(zip(outs, expected, strict=True)):
        assert tuple(got.shape) == want.shape == (2, out_channels) + tuple(feature_shapes[level]), level
        np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_config_shapes_names_and_init():
    cfg = get_config([], img_height=128, img_width=192)
    neck = FeatPyramidNeck(FpnSettings.from_config(cfg), kernels=Kernels.CPU)
    holder = nn.Cell()
    holder.fpn_ncek = neck
    with open(TSV, encoding="utf-8") as f:
        expected = [(n, tuple(int(v) for v in s.split("x"))) for n, s, _, _ in
                    (line.rstrip("\n").split("\t") for line in list(f)[1:]) if n.startswith("fpn_ncek.")]
    assert [(p.name, tuple(p.shape)) for p in holder.get_parameters()] == expected
    for p in neck.get_parameters():
        value = p.asnumpy()
        if p.name.endswith("bias"):
            assert not value.any()
        else:  # XavierUniform: U(-b, b), b = sqrt(6 / (fan_in + fan_out))
            bound = np.sqrt(6.0 / ((value.shape[0] + value.shape[1]) * value.shape[2] * value.shape[3]))
            assert 0.9 * bound < np.abs(value).max() <= bound * (1 + 1e-6)
    rng = np.random.default_rng(0)
    inputs = tuple(Tensor(rng.standard_normal((1, c) + tuple(s)).astype(np.float32))
                   for c, s in zip(cfg.fpn_in_channels, cfg.feature_shapes, strict=False))
    outs = neck(inputs)
    assert [tuple(o.shape) for o in outs] == [(1, 256) + tuple(s) for s in cfg.feature_shapes]


def test_rejects_inconsistent_arguments():
    with pytest.raises(ValueError, match="num_outs"):
        FeatPyramidNeck(FpnSettings((4, 8, 16, 32), 8, 3, ((8, 8), (4, 4), (2, 2), (1, 1))), kernels=Kernels.MINDSPORE)
    with pytest.raises(ValueError, match="feature_shapes"):
        FeatPyramidNeck(FpnSettings((4, 8, 16, 32), 8, 5, ((8, 8), (4, 4), (2, 2), (1, 1))), kernels=Kernels.MINDSPORE)


@pytest.mark.parametrize("size", [(8, 12), (9, 12), (5, 7)])
def test_fpn_merge_equals_add_interpolate(size, kernels):
    """Every path (exact 2x by a broadcasting add or the CPU kernel, other sizes) gives lateral + ops.interpolate's
    nearest resize, in value and in the gradients to both inputs."""
    merge = fpn_merge(kernels)
    rng = np.random.default_rng(5)
    x = Tensor(rng.standard_normal((2, 3, 4, 6)).astype(np.float32))
    lateral = Tensor(rng.standard_normal((2, 3) + size).astype(np.float32))
    dout = Tensor(rng.standard_normal((2, 3) + size).astype(np.float32))

    def ours(a, b):
        return (merge(a, b, size) * dout).sum()

    def reference(a, b):
        return ((a + ops.interpolate(b, size=size, mode="nearest")) * dout).sum()

    np.testing.assert_array_equal(merge(lateral, x, size).asnumpy(),
                                  (lateral + ops.interpolate(x, size=size, mode="nearest")).asnumpy())
    got = ms.grad(ours, grad_position=(0, 1))(lateral, x)
    want = ms.grad(reference, grad_position=(0, 1))(lateral, x)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g.asnumpy(), r.asnumpy(), rtol=1e-6, atol=1e-6)
