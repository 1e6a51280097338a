"""The NumPy reference of the deformable convolution (the original layer's closed form, tests/data/FIDELITY.md), for
tests/test_dcn_v2.py, tests/test_custom_ops.py and tests/test_resnet.py (nothing here imports the code under test).

out(i, j) = sum_k W[:, :, a, b] . sigmoid(m_k) . bilinear(x, r, c) with r = clip(s*i + a + dy_k, 0, H-1),
c = clip(s*j + b + dx_k, 0, W-1), floor corners, upper corner clipped to the map; p_conv channels [0, 9) are dy and
[9, 18) dx, m_conv's [18, 27) the mask logits. Gradients are the original's: the clip passes the gradient on its
boundary, the floor none, and a tap lying on the last row/column has coinciding corners (zero slope).
"""
import numpy as np


def _taps():
    return [(a, b, 3 * a + b) for a in range(3) for b in range(3)]


def _sample_positions(x_shape, delta_y, delta_x, a, b, stride):
    """Clamped positions and their corners for tap (a, b): float64 arrays (N, Ho, Wo)."""
    height, width = x_shape[2], x_shape[3]
    out_h, out_w = delta_y.shape[1:]
    u = stride * np.arange(out_h)[:, None] + a + delta_y
    v = stride * np.arange(out_w)[None, :] + b + delta_x
    r, c = np.clip(u, 0, height - 1), np.clip(v, 0, width - 1)
    r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
    r1, c1 = np.minimum(r0 + 1, height - 1), np.minimum(c0 + 1, width - 1)
    in_r = (u >= 0) & (u <= height - 1)
    in_c = (v >= 0) & (v <= width - 1)
    return r - r0, c - c0, r0, r1, c0, c1, in_r, in_c


def _gather(x, rows, cols):
    """x (N, C, H, W), rows/cols (N, Ho, Wo) -> (N, C, Ho, Wo)."""
    n_idx = np.arange(x.shape[0])[:, None, None]
    return np.moveaxis(x[n_idx, :, rows, cols], -1, 1)


def dcn_reference(x, weight, offset_mask, stride, grad_out=None):
    """The original formula in float64: x (N, C, H, W), weight (O, C, 3, 3), offset_mask (N, 27, Ho, Wo) the raw
    p_conv (dy, dx) and m_conv (mask logits) outputs -> (out (N, O, Ho, Wo), grad_x, grad_weight, grad_offset_mask)
    for `grad_out` (N, O, Ho, Wo) = dL/d(out); without `grad_out` only the output (the gradients are None)."""
    forward_only = grad_out is None
    out = np.zeros((np.shape(x)[0], np.shape(weight)[0]) + np.shape(offset_mask)[2:])
    grad_out = np.zeros(out.shape) if forward_only else grad_out
    x, weight, offset_mask, grad_out = (np.asarray(t, np.float64) for t in (x, weight, offset_mask, grad_out))
    grad_x, grad_w, grad_om = np.zeros_like(x), np.zeros_like(weight), np.zeros_like(offset_mask)
    n_idx = np.arange(x.shape[0])[:, None, None]
    for a, b, k in _taps():
        fr, fc, r0, r1, c0, c1, in_r, in_c = _sample_positions(
            x.shape, offset_mask[:, k], offset_mask[:, 9 + k], a, b, stride)
        mask = 1.0 / (1.0 + np.exp(-offset_mask[:, 18 + k]))
        v00, v01 = _gather(x, r0, c0), _gather(x, r0, c1)
        v10, v11 = _gather(x, r1, c0), _gather(x, r1, c1)
        fr_, fc_ = fr[:, None], fc[:, None]
        sample = (1 - fr_) * (1 - fc_) * v00 + (1 - fr_) * fc_ * v01 + fr_ * (1 - fc_) * v10 + fr_ * fc_ * v11
        w_k = weight[:, :, a, b]
        out += np.einsum("oc,ncij->noij", w_k, mask[:, None] * sample)
        if forward_only:
            continue
        grad_w[:, :, a, b] = np.einsum("noij,ncij->oc", grad_out, mask[:, None] * sample)
        grad_sample = np.einsum("noij,oc->ncij", grad_out, w_k)  # dL / d(mask * sample)
        grad_om[:, 18 + k] = (grad_sample * sample).sum(1) * mask * (1 - mask)
        d_row = (1 - fc_) * (v10 - v00) + fc_ * (v11 - v01)
        d_col = (1 - fr_) * (v01 - v00) + fr_ * (v11 - v10)
        grad_om[:, k] = (grad_sample * d_row).sum(1) * mask * in_r
        grad_om[:, 9 + k] = (grad_sample * d_col).sum(1) * mask * in_c
        g = grad_sample * mask[:, None]
        for rows, cols, wgt in ((r0, c0, (1 - fr) * (1 - fc)), (r0, c1, (1 - fr) * fc),
                                (r1, c0, fr * (1 - fc)), (r1, c1, fr * fc)):
            np.add.at(grad_x, (n_idx, slice(None), rows, cols), np.moveaxis(g * wgt[:, None], 1, -1))
    if forward_only:
        return out, None, None, None
    return out, grad_x, grad_w, grad_om
