"""DeformConv2d against the NumPy transcription of the original layer's closed form (tests/helpers/dcn_reference.py,
which states the formula and its gradients).
"""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, ops

from src.FasterRcnn.dcn_v2 import DeformConv2d
from src.ops import Kernels
from src.ops.cpu import DeformConv2dOriginal
from src.ops.deform_conv import deform_conv2d_edge_clamped
from tests.helpers.dcn_reference import dcn_reference


def conv2d_pad1(x, weight, stride):
    """Plain 3x3 conv, zero padding 1 (p_conv/m_conv), float64."""
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out_h, out_w = (x.shape[2] - 1) // stride + 1, (x.shape[3] - 1) // stride + 1
    out = np.zeros((x.shape[0], weight.shape[0], out_h, out_w))
    for a in range(3):
        for b in range(3):
            patch = xp[:, :, a:a + stride * (out_h - 1) + 1:stride, b:b + stride * (out_w - 1) + 1:stride]
            out += np.einsum("oc,ncij->noij", weight[:, :, a, b], patch)
    return out


def conv2d_pad1_weight_grad(x, grad_out, stride):
    """Gradient of conv2d_pad1 wrt its weight, float64."""
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out_h, out_w = grad_out.shape[2:]
    grad = np.zeros((grad_out.shape[1], x.shape[1], 3, 3))
    for a in range(3):
        for b in range(3):
            patch = xp[:, :, a:a + stride * (out_h - 1) + 1:stride, b:b + stride * (out_w - 1) + 1:stride]
            grad[:, :, a, b] = np.einsum("noij,ncij->oc", grad_out, patch)
    return grad


def _port_forward_backward(x, weight, offset_mask, stride, grad_out):
    def loss(x_t, w_t, om_t):
        return (deform_conv2d_edge_clamped(x_t, w_t, om_t, stride) * Tensor(grad_out)).sum()

    tensors = [Tensor(t.astype(np.float32)) for t in (x, weight, offset_mask)]
    out = deform_conv2d_edge_clamped(*tensors, stride).asnumpy()
    grads = ms.grad(loss, grad_position=(0, 1, 2))(*tensors)
    return (out,) + tuple(g.asnumpy() for g in grads)


def _assert_close(actual, expected, name, tol=2e-5):
    scale = max(np.abs(expected).max(), 1e-3)
    err = np.abs(actual - expected).max()
    assert err <= tol * scale, f"{name}: max abs error {err:.3g} > {tol:.1g} x scale {scale:.3g}"


def test_reference_gradient_matches_finite_differences():
    """The NumPy reference's analytic gradient is itself right where the formula is smooth."""
    rng = np.random.default_rng(3)
    x, weight = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((2, 2, 3, 3))
    offset_mask = rng.uniform(-1.7, 1.7, (1, 27, 5, 6)) + 0.37
    grad_out = rng.standard_normal((1, 2, 5, 6))
    _, grad_x, _, grad_om = dcn_reference(x, weight, offset_mask, 1, grad_out)
    eps = 1e-6
    for idx in [(0, 3, 2, 4), (0, 12, 1, 1), (0, 22, 4, 5), (0, 0, 0, 0)]:
        plus, minus = offset_mask.copy(), offset_mask.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric = ((dcn_reference(x, weight, plus, 1, grad_out)[0]
                    - dcn_reference(x, weight, minus, 1, grad_out)[0]) * grad_out).sum() / (2 * eps)
        assert abs(numeric - grad_om[idx]) < 1e-6 * max(1.0, abs(numeric)), idx
    plus, minus = x.copy(), x.copy()
    plus[0, 1, 2, 3] += eps
    minus[0, 1, 2, 3] -= eps
    numeric = ((dcn_reference(plus, weight, offset_mask, 1, grad_out)[0]
                - dcn_reference(minus, weight, offset_mask, 1, grad_out)[0]) * grad_out).sum() / (2 * eps)
    assert abs(numeric - grad_x[0, 1, 2, 3]) < 1e-6 * max(1.0, abs(numeric))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("case", ["fractional", "far_outside", "zero"])
def test_functional_matches_original_formula(stride, case):
    rng = np.random.default_rng(stride * 10 + len(case))
    height, width = 7, 9  # odd sizes: stride 2 gives a last row/column sampling the edge
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    x = rng.standard_normal((2, 3, height, width))
    weight = rng.standard_normal((4, 3, 3, 3))
    offset_mask = np.zeros((2, 27, out_h, out_w))
    if case == "fractional":
        offset_mask[:, :18] = rng.uniform(-2.5, 2.5, (2, 18, out_h, out_w))
    elif case == "far_outside":
        shape = (2, 18, out_h, out_w)
        offset_mask[:, :18] = rng.choice([-1.0, 1.0], shape) * rng.uniform(10, 60, shape)
        offset_mask[:, :18, ::2] = rng.uniform(-1.5, 1.5, (2, 18, (out_h + 1) // 2, out_w))  # mix in near ones
    if case != "zero":
        offset_mask[:, 18:] = rng.uniform(-4, 4, (2, 9, out_h, out_w))
    grad_out = rng.standard_normal((2, 4, out_h, out_w))
    expected = dcn_reference(x, weight, offset_mask, stride, grad_out)
    actual = _port_forward_backward(x, weight, offset_mask, stride, grad_out)
    for name, got, want in zip(["out", "grad_x", "grad_weight", "grad_offset_mask"], actual, expected, strict=True):
        assert got.shape == want.shape, name
        _assert_close(got, want, f"{case} stride {stride} {name}")


def test_zero_offsets_is_shifted_plain_conv_with_edge_replication():
    """Hand-checkable case: zero offsets, zero mask logits -> 0.5 * conv of the edge-padded map shifted by +1."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 5, 6))
    weight = rng.standard_normal((3, 2, 3, 3))
    out = deform_conv2d_edge_clamped(Tensor(x.astype(np.float32)), Tensor(weight.astype(np.float32)),
                                     ops.zeros((1, 27, 5, 6), ms.float32), 1).asnumpy()
    xe = np.pad(x, ((0, 0), (0, 0), (0, 2), (0, 2)), mode="edge")  # rows i..i+2, columns j..j+2
    expected = 0.5 * sum(np.einsum("oc,ncij->noij", weight[:, :, a, b], xe[:, :, a:a + 5, b:b + 6])
                         for a in range(3) for b in range(3))
    _assert_close(out, expected, "zero offsets")


@pytest.mark.parametrize("stride", [1, 2])
def test_cell_matches_original_and_trains_offsets(stride, kernels):
    rng = np.random.default_rng(11 + stride)
    layer = DeformConv2d(4, 5, kernel_size=3, stride=stride, padding=1, kernels=kernels)
    assert isinstance(layer.deform, DeformConv2dOriginal) == (kernels is Kernels.CPU)
    names = {p.name: p.shape for p in layer.get_parameters()}
    assert names == {"conv.weight": (5, 4, 3, 3), "p_conv.weight": (18, 4, 3, 3), "m_conv.weight": (9, 4, 3, 3)}
    assert not layer.p_conv.weight.asnumpy().any() and not layer.m_conv.weight.asnumpy().any()
    x = rng.standard_normal((2, 4, 9, 7))
    out_h, out_w = (9 - 1) // stride + 1, (7 - 1) // stride + 1
    grad_out = rng.standard_normal((2, 5, out_h, out_w))
    for init in ["zero", "random"]:
        if init == "random":
            layer.p_conv.weight.set_data(Tensor(rng.standard_normal((18, 4, 3, 3)).astype(np.float32) * 0.5))
            layer.m_conv.weight.set_data(Tensor(rng.standard_normal((9, 4, 3, 3)).astype(np.float32) * 0.5))
        p_w, m_w = layer.p_conv.weight.asnumpy(), layer.m_conv.weight.asnumpy()
        offset_mask = np.concatenate([conv2d_pad1(x, p_w, stride), conv2d_pad1(x, m_w, stride)], axis=1)
        out_ref, _, grad_w_ref, grad_om_ref = dcn_reference(
            x, layer.conv.weight.asnumpy(), offset_mask, stride, grad_out)
        grad_pw_ref = conv2d_pad1_weight_grad(x, grad_om_ref[:, :18], stride)
        grad_mw_ref = conv2d_pad1_weight_grad(x, grad_om_ref[:, 18:], stride)

        params = layer.trainable_params()
        grad_fn = ms.value_and_grad(lambda t: (layer(t) * Tensor(grad_out.astype(np.float32))).sum(), None, params)
        _, grads = grad_fn(Tensor(x.astype(np.float32)))
        grads = {p.name: g.asnumpy() for p, g in zip(params, grads, strict=True)}
        _assert_close(layer(Tensor(x.astype(np.float32))).asnumpy(), out_ref, f"{init} out")
        _assert_close(grads["conv.weight"], grad_w_ref, f"{init} grad conv")
        _assert_close(grads["p_conv.weight"], grad_pw_ref, f"{init} grad p_conv")
        _assert_close(grads["m_conv.weight"], grad_mw_ref, f"{init} grad m_conv")
        assert np.abs(grads["p_conv.weight"]).max() > 1e-3 and np.abs(grads["m_conv.weight"]).max() > 1e-3


def test_rejects_unsupported_geometry():
    with pytest.raises(ValueError, match="kernel_size"):
        DeformConv2d(4, 4, kernel_size=5, padding=2, kernels=Kernels.CPU)
