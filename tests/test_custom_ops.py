"""CPU custom kernels (src/ops/cpu) against MindSpore's own ops and NumPy transcriptions of the formulas.

References: MultiLevelRoIAlign vs the original's way (ops.ROIAlign on all four levels + per-RoI select) and vs a
NumPy RoIAlign with MindSpore's CPU rules (both in tests/helpers/roi_align_reference.py); DeformConv2dOriginal vs the
original's DCN formula written with MindSpore ops (its autodiff is the original's gradient), vs
ops.deformable_conv2d with the offset transform of tests/data/FIDELITY.md, and vs a float64 NumPy formula (forward and
finite differences). WinogradConv3x3 vs a float64 NumPy convolution and its two gradients written out.
"""

import os
import time

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, ops

from src.ops.cpu import DeformConv2dOriginal, MultiLevelRoIAlign, WinogradConv3x3, build
from tests.helpers.dcn_reference import dcn_reference
from tests.helpers.grad_steps import DcnGradStep, RoIAlignGradStep
from tests.helpers.roi_align_reference import AllLevelsThenSelect, multi_level_roi_align, roi_level

STRIDES = (4, 8, 16, 32)
OUT_SIZE = 7
SAMPLE_NUM = 2
FINEST_SCALE = 56
IMG_H, IMG_W = 128, 192
KERNEL = 3


# ----------------------------------------------------------------------------------------------------------------
# RoIAlign references (tests/helpers/roi_align_reference.py)
# ----------------------------------------------------------------------------------------------------------------
def np_level(roi):
    return roi_level(roi, FINEST_SCALE, len(STRIDES))


def np_roi_align(rois, feats, dout=None):
    return multi_level_roi_align(rois, feats, STRIDES, OUT_SIZE, SAMPLE_NUM, FINEST_SCALE, dout)


def select_roi_align():
    return AllLevelsThenSelect(OUT_SIZE, SAMPLE_NUM, STRIDES, FINEST_SCALE)


def make_rois(rng):
    """RoIs on every level, at and beyond the image borders, tiny, degenerate, one skipped (x1 = x2 = 0)."""
    rows = []
    for side in (20, 60, 150, 200, 300, 420, 500, 900):  # levels 0, 0, 1, 1, 2, 2, 3, 3
        for _ in range(3):
            w, h = side * rng.uniform(0.6, 1.6), side * rng.uniform(0.6, 1.6)
            cx, cy = rng.uniform(0, IMG_W), rng.uniform(0, IMG_H)
            rows.append([rng.integers(0, 2), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    rows += [
        [0, 0.0, 0.0, IMG_W - 1, IMG_H - 1],  # whole image
        [1, IMG_W - 12, IMG_H - 9, IMG_W - 1, IMG_H - 1],  # bottom-right corner
        [1, -40, -30, 20, 15],  # mostly outside, top-left
        [0, IMG_W - 5, 10, IMG_W + 60, 70],  # beyond the right border
        [1, 33.3, 47.9, 33.5, 48.0],  # tiny
        [0, 50.0, 60.0, 50.0, 60.0],  # zero size (1 px with the +1 end)
        [0, 0.0, 10.0, 0.0, 40.0],  # x1 = x2 = 0: skipped by MindSpore's kernel
        [1, 0.5, 0.0, 30.0, 0.0005],  # y1 = y2 ~ 0: not skipped
    ]
    return np.array(rows, dtype=np.float32)


def make_feats(rng, channels=6):
    return [rng.standard_normal((2, channels, IMG_H // s, IMG_W // s)).astype(np.float32) for s in STRIDES]


def weighted_sum_grads(align, rois, feats, dout):
    def loss(p2, p3, p4, p5):
        return (align(Tensor(rois), (p2, p3, p4, p5)) * Tensor(dout)).sum()

    grads = ms.grad(loss, grad_position=(0, 1, 2, 3))(*[Tensor(f) for f in feats])
    return [g.asnumpy() for g in grads]


# ----------------------------------------------------------------------------------------------------------------
# RoIAlign tests
# ----------------------------------------------------------------------------------------------------------------
def test_roi_levels_cover_all_four():
    rois = make_rois(np.random.default_rng(0))
    assert {np_level(roi) for roi in rois} == {0, 1, 2, 3}


def test_roi_align_forward_matches_mindspore_and_numpy():
    rng = np.random.default_rng(0)
    rois, feats = make_rois(rng), make_feats(rng)
    ours = MultiLevelRoIAlign(OUT_SIZE, SAMPLE_NUM, STRIDES, FINEST_SCALE)(Tensor(rois), tuple(map(Tensor, feats)))
    ours = ours.asnumpy()
    ref_ms = select_roi_align()(Tensor(rois), tuple(map(Tensor, feats))).asnumpy()
    ref_np, _ = np_roi_align(rois, feats)
    skipped = (np.abs(rois[:, 1]) < 1e-3) & (np.abs(rois[:, 3]) < 1e-3)
    assert skipped.sum() == 1
    # MindSpore leaves a skipped RoI's output unwritten; ours is zero there.
    np.testing.assert_allclose(ours[~skipped], ref_ms[~skipped], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours, ref_np, rtol=1e-5, atol=1e-5)
    assert np.all(ours[skipped] == 0)
    assert np.abs(ours[~skipped]).sum(axis=(1, 2, 3)).min() > 0


def test_roi_align_level_boundaries_match_mindspore():
    # RoI scales straddling 112, 224 and 448 (finest_scale * 2, 4, 8), where float rounding picks the level.
    sides = np.concatenate([np.linspace(b - 0.02, b + 0.02, 21) for b in (112, 224, 448)]) - 1
    rois = np.array([[0, 3.0, 2.0, 3.0 + s, 2.0 + s] for s in sides], dtype=np.float32)
    feats = make_feats(np.random.default_rng(1), channels=2)
    ours = MultiLevelRoIAlign(OUT_SIZE, SAMPLE_NUM, STRIDES, FINEST_SCALE)(Tensor(rois), tuple(map(Tensor, feats)))
    ref_ms = select_roi_align()(Tensor(rois), tuple(map(Tensor, feats)))
    np.testing.assert_allclose(ours.asnumpy(), ref_ms.asnumpy(), rtol=0, atol=1e-6)
    assert len({np_level(roi) for roi in rois}) == 4


def test_roi_align_gradients_match_mindspore_and_numpy():
    rng = np.random.default_rng(2)
    rois, feats = make_rois(rng), make_feats(rng)
    dout = rng.standard_normal((len(rois), feats[0].shape[1], OUT_SIZE, OUT_SIZE)).astype(np.float32)
    ours = weighted_sum_grads(MultiLevelRoIAlign(OUT_SIZE, SAMPLE_NUM, STRIDES, FINEST_SCALE), rois, feats, dout)
    ref_ms = weighted_sum_grads(select_roi_align(), rois, feats, dout)
    _, ref_np = np_roi_align(rois, feats, dout)
    for level in range(len(STRIDES)):
        assert np.abs(ref_np[level]).max() > 0
        np.testing.assert_allclose(ours[level], ref_ms[level], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ours[level], ref_np[level], rtol=1e-5, atol=1e-5)


def test_roi_align_gradient_is_the_adjoint():
    # The op is linear in the maps: L(f + v) - L(f - v) = 2 <dL/df, v> exactly (up to float rounding).
    rng = np.random.default_rng(3)
    rois, feats = make_rois(rng), make_feats(rng)
    dout = rng.standard_normal((len(rois), feats[0].shape[1], OUT_SIZE, OUT_SIZE)).astype(np.float32)
    align = MultiLevelRoIAlign(OUT_SIZE, SAMPLE_NUM, STRIDES, FINEST_SCALE)
    grads = weighted_sum_grads(align, rois, feats, dout)
    direction = [rng.standard_normal(f.shape).astype(np.float32) for f in feats]

    def loss(maps):
        out = align(Tensor(rois), tuple(Tensor(m.astype(np.float32)) for m in maps)).asnumpy()
        return float((out.astype(np.float64) * dout).sum())

    plus = loss([f + d for f, d in zip(feats, direction, strict=True)])
    minus = loss([f - d for f, d in zip(feats, direction, strict=True)])
    expected = 2 * sum(float((g.astype(np.float64) * d).sum()) for g, d in zip(grads, direction, strict=True))
    assert plus - minus == pytest.approx(expected, rel=1e-4)


def test_roi_align_graph_mode_matches_pynative():
    rng = np.random.default_rng(4)
    rois, feats = make_rois(rng), make_feats(rng, channels=3)
    dout = rng.standard_normal((len(rois), 3, OUT_SIZE, OUT_SIZE)).astype(np.float32)
    align = MultiLevelRoIAlign(OUT_SIZE, SAMPLE_NUM, STRIDES, FINEST_SCALE)
    eager = weighted_sum_grads(align, rois, feats, dout)
    ms.set_context(mode=ms.GRAPH_MODE)
    graph = RoIAlignGradStep(align)(Tensor(rois), Tensor(dout), *map(Tensor, feats))
    for level in range(len(STRIDES)):
        np.testing.assert_array_equal(graph[2 + level].asnumpy(), eager[level])


def test_roi_align_rejects_bad_inputs():
    align = MultiLevelRoIAlign(OUT_SIZE, SAMPLE_NUM, STRIDES, FINEST_SCALE)
    feats = tuple(Tensor(f) for f in make_feats(np.random.default_rng(5), channels=2))
    with pytest.raises(ValueError, match=r"rois must have shape \(R, 5\)"):
        align(Tensor(np.zeros((3, 4), np.float32)), feats)
    with pytest.raises(TypeError, match="float32"):
        align(Tensor(np.ones((1, 5), np.float16)), feats)
    with pytest.raises(ValueError, match="expected 4 feature maps"):
        align(Tensor(np.ones((1, 5), np.float32)), feats[:3])
    with pytest.raises(RuntimeError):  # batch index 2 of a batch of 2 images
        align(Tensor(np.array([[2, 1, 1, 9, 9]], np.float32)), feats).asnumpy()
    with pytest.raises(ValueError, match="supports 4 levels"):
        MultiLevelRoIAlign(OUT_SIZE, SAMPLE_NUM, STRIDES[:3], FINEST_SCALE)


# ----------------------------------------------------------------------------------------------------------------
# Deformable conv references
# ----------------------------------------------------------------------------------------------------------------
def base_grid(stride, out_h, out_w):
    """Rows s*i + a and columns s*j + b of the original's sampling grid, each (K*K, Ho, Wo)."""
    a = np.repeat(np.arange(KERNEL), KERNEL)[:, None, None]
    b = np.tile(np.arange(KERNEL), KERNEL)[:, None, None]
    rows = stride * np.arange(out_h)[None, :, None] + a + np.zeros((1, 1, out_w))
    cols = stride * np.arange(out_w)[None, None, :] + b + np.zeros((1, out_h, 1))
    return rows.astype(np.float32), cols.astype(np.float32)


def original_dcn(x, offset_mask, weight, stride):
    """The original DeformConv2d's formula in MindSpore ops (floor corners, clip, gathers); differentiable."""
    n, c, h, w = x.shape
    taps, out_h, out_w = offset_mask.shape[1] // 3, *offset_mask.shape[2:]
    offsets, mask_logits = offset_mask[:, :2 * taps], offset_mask[:, 2 * taps:]
    rows, cols = (Tensor(g) for g in base_grid(stride, out_h, out_w))
    pos_r, pos_c = rows + offsets[:, :taps], cols + offsets[:, taps:]
    low_r, low_c = ops.floor(pos_r).astype(ms.int32), ops.floor(pos_c).astype(ms.int32)
    r0, r1 = low_r.clip(0, h - 1), (low_r + 1).clip(0, h - 1)
    c0, c1 = low_c.clip(0, w - 1), (low_c + 1).clip(0, w - 1)
    frac_r, frac_c = pos_r.clip(0, h - 1) - r0, pos_c.clip(0, w - 1) - c0
    flat = x.reshape(n, c, h * w)

    def gather(r, q):
        index = r * w + q
        return ops.stack([ops.gather(flat[b], index[b].reshape(-1), 1) for b in range(n)]).reshape(
            n, c, taps, out_h, out_w)

    def expand(t):
        return t.expand_dims(1)

    sample = (expand((1 - frac_r) * (1 - frac_c)) * gather(r0, c0) + expand(frac_r * frac_c) * gather(r1, c1)
              + expand(frac_r * (1 - frac_c)) * gather(r1, c0) + expand((1 - frac_r) * frac_c) * gather(r0, c1))
    col = (sample * expand(ops.sigmoid(mask_logits))).reshape(n, c * taps, out_h * out_w)
    return ops.matmul(weight.reshape(weight.shape[0], -1), col).reshape(n, -1, out_h, out_w)


def deformable_conv2d_op(x, offset_mask, weight, stride):
    """ops.deformable_conv2d with the offset transform of tests/data/FIDELITY.md."""
    _, _, h, w = x.shape
    taps, out_h, out_w = offset_mask.shape[1] // 3, *offset_mask.shape[2:]
    offsets, mask_logits = offset_mask[:, :2 * taps], offset_mask[:, 2 * taps:]
    rows, cols = (Tensor(g[None]) for g in base_grid(stride, out_h, out_w))
    dy = (rows + offsets[:, :taps]).clip(0.0, h - 1.0) - rows + 1.0
    dx = (cols + offsets[:, taps:]).clip(0.0, w - 1.0) - cols + 1.0
    packed = ops.concat([dx, dy, ops.sigmoid(mask_logits)], axis=1)
    return ops.deformable_conv2d(x, weight, packed, (KERNEL, KERNEL), (1, 1, stride, stride), (1, 1, 1, 1))


def np_dcn(x, offset_mask, weight, stride):
    """The float64 NumPy reference's output (tests/helpers/dcn_reference.py)."""
    return dcn_reference(x, weight, offset_mask, stride)[0]


def dcn_case(rng, stride, offset_scale, channels=5, height=9, width=11, out_channels=4, integer_offsets=False):
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    """x, offset_mask (N, 27, Ho, Wo) = [dy, dx, mask logits], weight, output cotangent."""
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    offsets = rng.standard_normal((2, 2 * KERNEL * KERNEL, out_h, out_w)) * offset_scale
    if integer_offsets:
        offsets = np.round(offsets)
    mask_logits = rng.standard_normal((2, KERNEL * KERNEL, out_h, out_w))
    return (rng.standard_normal((2, channels, height, width)).astype(np.float32),
            np.concatenate([offsets, mask_logits], axis=1).astype(np.float32),
            (rng.standard_normal((out_channels, channels, KERNEL, KERNEL)) / channels).astype(np.float32),
            rng.standard_normal((2, out_channels, out_h, out_w)).astype(np.float32))


def dcn_grads(fn, x, offset_mask, weight, dout):
    def loss(*args):
        return (fn(*args) * Tensor(dout)).sum()

    grads = ms.grad(loss, grad_position=(0, 1, 2))(Tensor(x), Tensor(offset_mask), Tensor(weight))
    return [g.asnumpy() for g in grads]


# stride, offset scale (0: every sample on the grid, incl. the clip bounds; 20: most samples clipped), integer
DCN_CASES = [(1, 0.0, False), (1, 1.5, False), (2, 1.5, False), (1, 20.0, False), (2, 2.0, True)]


# ----------------------------------------------------------------------------------------------------------------
# Deformable conv tests
# ----------------------------------------------------------------------------------------------------------------
# evaluation: one kernel samples and contracts block by block, its gradient samples again; training: the sampled
# columns are kept and contracted by BatchMatMul
@pytest.mark.parametrize("training", [False, True], ids=["fused", "columns_kept"])
@pytest.mark.parametrize("stride,offset_scale,integer", DCN_CASES)
def test_dcn_matches_the_original_formula_and_its_gradient(stride, offset_scale, integer, training):
    rng = np.random.default_rng(10 + stride)
    x, offset_mask, weight, dout = dcn_case(rng, stride, offset_scale, integer_offsets=integer)
    dcn = DeformConv2dOriginal(stride)
    dcn.set_train(training)
    ours = dcn(Tensor(x), Tensor(offset_mask), Tensor(weight)).asnumpy()
    np.testing.assert_allclose(ours, np_dcn(x, offset_mask, weight, stride), rtol=1e-5, atol=1e-5)

    def original(*args):
        return original_dcn(*args, stride)

    ours_g = dcn_grads(dcn, x, offset_mask, weight, dout)
    ref_g = dcn_grads(original, x, offset_mask, weight, dout)
    for name, a, b in zip(("x", "offset_mask", "weight"), ours_g, ref_g, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
    if offset_scale == 0:  # on the grid: taps at row/column 0 sit on the clip bound and still get a gradient
        assert np.abs(ours_g[1][:, 0, 0, :]).max() > 0


@pytest.mark.parametrize("stride", [1, 2])
def test_dcn_fused_kernel_over_several_pixel_blocks(stride):
    """More output pixels than the fused kernel's block (128): every block equals the NumPy formula."""
    rng = np.random.default_rng(30 + stride)
    x, offset_mask, weight, _ = dcn_case(rng, stride, 1.5, channels=7, height=37, width=41, out_channels=5)
    dcn = DeformConv2dOriginal(stride)
    assert offset_mask.shape[2] * offset_mask.shape[3] > 2 * 128
    ours = dcn(Tensor(x), Tensor(offset_mask), Tensor(weight)).asnumpy()
    np.testing.assert_allclose(ours, np_dcn(x, offset_mask, weight, stride), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_dcn_matches_mindspore_deformable_conv2d(stride):
    rng = np.random.default_rng(20 + stride)
    x, offset_mask, weight, dout = dcn_case(rng, stride, 1.7, channels=35, out_channels=6)

    def reference(*args):
        return deformable_conv2d_op(*args, stride)

    dcn = DeformConv2dOriginal(stride)
    args = (Tensor(x), Tensor(offset_mask), Tensor(weight))
    np.testing.assert_allclose(dcn(*args).asnumpy(), reference(*args).asnumpy(), rtol=1e-4, atol=1e-4)
    ours_g = dcn_grads(dcn, x, offset_mask, weight, dout)
    ref_g = dcn_grads(reference, x, offset_mask, weight, dout)
    for name, a, b in zip(("x", "offset_mask", "weight"), ours_g, ref_g, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


def test_dcn_gradient_finite_differences():
    rng = np.random.default_rng(30)
    stride = 1
    x, offset_mask, weight, dout = dcn_case(rng, stride, 1.2)
    grad_x, grad_offset_mask, _ = dcn_grads(DeformConv2dOriginal(stride), x, offset_mask, weight, dout)
    rows, cols = base_grid(stride, *offset_mask.shape[2:])
    taps = KERNEL * KERNEL
    pos = np.concatenate([rows[None] + offset_mask[:, :taps], cols[None] + offset_mask[:, taps:2 * taps]], axis=1)
    limit = np.array([x.shape[2] - 1] * taps + [x.shape[3] - 1] * taps)[None, :, None, None]
    frac = pos - np.floor(pos)
    smooth = (pos > 0.05) & (pos < limit - 0.05) & (frac > 0.05) & (frac < 0.95)  # away from kinks
    eps = 1e-3

    def loss(x_, offset_mask_):
        return float((np_dcn(x_, offset_mask_, weight, stride) * dout).sum())

    offset_points = [tuple(i) for i in np.argwhere(smooth)[rng.choice(smooth.sum(), 6, replace=False)]]
    mask_points = [(0, 2 * taps + 2, 1, 3), (1, 2 * taps + 5, 8, 10)]
    for index in offset_points + mask_points:
        step = np.zeros(offset_mask.shape)
        step[index] = eps
        numeric = (loss(x, offset_mask + step) - loss(x, offset_mask - step)) / (2 * eps)
        assert grad_offset_mask[index] == pytest.approx(numeric, rel=2e-3, abs=2e-4)
    for index in [(0, 1, 0, 0), (1, 4, 8, 10), (0, 3, 4, 5)]:
        step = np.zeros(x.shape)
        step[index] = eps
        numeric = (loss(x + step, offset_mask) - loss(x - step, offset_mask)) / (2 * eps)
        assert grad_x[index] == pytest.approx(numeric, rel=2e-3, abs=2e-4)


def test_dcn_graph_mode_matches_pynative():
    rng = np.random.default_rng(40)
    stride = 2
    x, offset_mask, weight, dout = dcn_case(rng, stride, 1.5, channels=19)
    dcn = DeformConv2dOriginal(stride)
    eager = dcn_grads(dcn, x, offset_mask, weight, dout)
    ms.set_context(mode=ms.GRAPH_MODE)
    graph = DcnGradStep(dcn)(*map(Tensor, (x, offset_mask, weight, dout)))
    for a, b in zip(graph[:3], eager, strict=True):
        np.testing.assert_allclose(a.asnumpy(), b, rtol=1e-6, atol=1e-6)


def test_dcn_rejects_bad_inputs():
    dcn = DeformConv2dOriginal(1)
    x = Tensor(np.zeros((1, 3, 5, 5), np.float32))
    weight = Tensor(np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="offset_mask"):
        dcn(x, Tensor(np.zeros((1, 18, 5, 5), np.float32)), weight)
    with pytest.raises(TypeError, match="float32"):  # the kernel itself; the cell casts (next test)
        dcn.sample(x, Tensor(np.zeros((1, 27, 5, 5), np.float16)), dcn.stride)
    with pytest.raises(ValueError, match="stride"):
        DeformConv2dOriginal(0)


def test_dcn_computes_float16_inputs_in_float32(mode):
    """A network run with to_float(float16) hands the kernel float16: it computes in float32, answers in float16, and
    its gradients come back in float16."""
    rng = np.random.default_rng(11)
    x, offset_mask, weight, dout = (rng.standard_normal(shape).astype(np.float16)
                                    for shape in ((1, 4, 7, 7), (1, 27, 7, 7), (3, 4, 3, 3), (1, 3, 7, 7)))
    dcn = DeformConv2dOriginal(1)
    out = dcn(Tensor(x), Tensor(offset_mask), Tensor(weight))
    want = dcn(*(Tensor(t.astype(np.float32)) for t in (x, offset_mask, weight)))
    grads = DcnGradStep(dcn)(*(Tensor(t) for t in (x, offset_mask, weight, dout)))
    assert out.dtype == ms.float16
    np.testing.assert_array_equal(out.asnumpy(), want.asnumpy().astype(np.float16))
    assert [g.dtype for g in grads] == [ms.float16] * 4


# ----------------------------------------------------------------------------------------------------------------
# Build cache
# ----------------------------------------------------------------------------------------------------------------
def test_build_caches_by_source_and_reports_missing_compiler(tmp_path, monkeypatch):
    source_dir, build_dir = tmp_path / "src", tmp_path / "build"
    source_dir.mkdir()
    source = source_dir / "probe.cc"
    source.write_text('extern "C" int Probe() { return 1; }\n')
    monkeypatch.setattr(build, "SOURCE_DIR", source_dir)
    monkeypatch.setattr(build, "BUILD_DIR", build_dir)
    monkeypatch.setattr(build, "_built", {})
    first = build.library_path("probe")
    assert first.exists() and first.parent == build_dir
    stamp = first.stat().st_mtime_ns
    build._built.clear()
    time.sleep(0.01)
    assert build.library_path("probe") == first and first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    source.write_text('extern "C" int Probe() { return 2; }\n')
    build._built.clear()
    second = build.library_path("probe")
    assert second != first and second.exists()
    assert os.listdir(build_dir) == [second.name]  # the stale build is gone, no temporary file is left

    source.write_text("this is not C++\n")
    build._built.clear()
    with pytest.raises(RuntimeError, match="Compiling .*probe.cc failed"):
        build.library_path("probe")
    assert os.listdir(build_dir) == [second.name]

    monkeypatch.setattr(build, "COMPILER", "g++-that-does-not-exist")
    build._built.clear()
    with pytest.raises(RuntimeError, match="g\\+\\+-that-does-not-exist"):
        build.library_path("probe")


def np_conv3x3(x, w):
    """float64 3x3 convolution, stride 1, zero padding 1: y[n, k] = sum_c,a,b w[k, c, a, b] x[n, c, i+a-1, j+b-1]."""
    h, width = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    return sum(np.einsum("kc,nchw->nkhw", w[:, :, a, b], xp[:, :, a:a + h, b:b + width])
               for a in range(3) for b in range(3))


def np_conv3x3_grads(x, w, dy):
    """(dL/dx, dL/dw) of L = sum(conv3x3(x, w) * dy), float64."""
    h, width = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for a in range(3):
        for b in range(3):
            dxp[:, :, a:a + h, b:b + width] += np.einsum("kc,nkhw->nchw", w[:, :, a, b], dy)
            dw[:, :, a, b] = np.einsum("nkhw,nchw->kc", dy, xp[:, :, a:a + h, b:b + width])
    return dxp[:, :, 1:-1, 1:-1], dw


# (N, C, K, H, W): maps smaller than a tile, sides that are not multiples of 4, rows of several tile segments (W >
# 4 x 96 tiles), more output than input channels and the reverse.
WINOGRAD_CASES = [(1, 3, 2, 1, 2), (2, 5, 7, 7, 9), (1, 16, 8, 13, 30), (2, 8, 12, 6, 401), (1, 32, 32, 20, 24)]


@pytest.mark.parametrize("n,c,k,h,w", WINOGRAD_CASES)
def test_winograd_conv_matches_numpy_in_value_and_gradients(n, c, k, h, w):
    rng = np.random.default_rng(h * w)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    dy = rng.standard_normal((n, k, h, w)).astype(np.float32)
    conv = WinogradConv3x3()
    got = conv(Tensor(x), Tensor(weight), Tensor(bias)).asnumpy()
    grads = ms.grad(lambda a, b, c: (conv(a, b, c) * Tensor(dy)).sum(), grad_position=(0, 1, 2))(
        Tensor(x), Tensor(weight), Tensor(bias))
    want = np_conv3x3(x.astype(np.float64), weight.astype(np.float64)) + bias.reshape(1, k, 1, 1)
    want_dx, want_dw = np_conv3x3_grads(x.astype(np.float64), weight.astype(np.float64), dy.astype(np.float64))
    want_db = dy.astype(np.float64).sum((0, 2, 3))
    # Winograd's transforms cost a few float32 roundings more than the direct sum: within 1e-5 of each output's scale
    for name, value, reference in (("y", got, want), ("dx", grads[0].asnumpy(), want_dx),
                                   ("dw", grads[1].asnumpy(), want_dw), ("db", grads[2].asnumpy(), want_db)):
        assert value.shape == reference.shape, name
        np.testing.assert_allclose(value, reference, rtol=0, atol=1e-5 * np.abs(reference).max(), err_msg=name)


def test_winograd_conv_rejects_bad_inputs():
    conv = WinogradConv3x3()
    x = Tensor(np.zeros((1, 4, 8, 8), np.float32))
    bias = Tensor(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"weight \(2, 3, 3, 3\) must be \(K, C, 3, 3\)"):
        conv(x, Tensor(np.zeros((2, 3, 3, 3), np.float32)), bias)
    with pytest.raises(ValueError, match="must be"):
        conv(x, Tensor(np.zeros((2, 4, 5, 5), np.float32)), bias)
    with pytest.raises(ValueError, match=r"bias \(3,\) must be \(K,\)"):
        conv(x, Tensor(np.zeros((2, 4, 3, 3), np.float32)), Tensor(np.zeros(3, np.float32)))
    with pytest.raises(TypeError, match="float32"):
        conv(x.astype(ms.float16), Tensor(np.zeros((2, 4, 3, 3), np.float16)), bias.astype(ms.float16))
