"""SingleRoIExtractor: the level mapping on crafted RoIs, ROIAlign against a NumPy implementation of its
documented semantics, and the one-level-per-RoI computation against the original's all-levels-then-select (both
references in tests/helpers/roi_align_reference.py)."""

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from src.FasterRcnn.roi_align import SingleRoIExtractor
from src.FasterRcnn.settings import RoiSettings
from src.ops import Kernels
from src.ops.roi_align import roi_levels
from tests.helpers.roi_align_reference import AllLevelsThenSelect, roi_align_one

OUT_SIZE, SAMPLE_NUM = 7, 2
STRIDES = (4, 8, 16, 32)
FINEST_SCALE = 56


# Every test runs with each kernel choice (tests/conftest.py `kernels`): the C++ kernel, MindSpore's ROIAlign and the
# gathers of the exported graph (in PyNative mode, as every test starts).
pytestmark = pytest.mark.usefixtures("kernels")


def extractor_of(channels: int, kernels: Kernels) -> SingleRoIExtractor:
    return SingleRoIExtractor(RoiSettings(out_size=OUT_SIZE, sample_num=SAMPLE_NUM, out_channels=channels,
                                          featmap_strides=STRIDES, finest_scale=FINEST_SCALE), kernels)


def square_roi(side: float, x1: float = 10.0, y1: float = 20.0) -> list:
    """A RoI whose legacy size (x2 - x1 + 1) is `side` in both directions."""
    return [0.0, x1, y1, x1 + side - 1.0, y1 + side - 1.0]


@pytest.mark.parametrize("side, level", [
    (1, 0), (50, 0), (111, 0), (111.9, 0),   # sqrt(area) < 2 * 56 -> P2
    (112, 1), (200, 1), (223, 1),            # [112, 224) -> P3
    (224, 2), (447, 2),                      # [224, 448) -> P4
    (448, 3), (1000, 3), (5000, 3),          # >= 448 -> P5 (clamped)
])
def test_level_of_square_rois(side, level):
    rois = Tensor(np.array([square_roi(side)], np.float32))
    assert roi_levels(rois, FINEST_SCALE, 4).asnumpy().tolist() == [level]


def test_level_uses_sqrt_of_legacy_area_of_non_square_rois():
    # 56 x 224: sqrt(56 * 224) = 112 -> level 1, although neither side alone says so; 55 x 224 -> 111 -> level 0.
    rois = np.array([[0, 0, 0, 55, 223], [0, 0, 0, 54, 223], [1, 5, 5, 5 + 895, 5 + 223]], np.float32)
    expected = [1, 0, 3]  # the last: sqrt(896 * 224) = 448
    assert roi_levels(Tensor(rois), FINEST_SCALE, 4).asnumpy().tolist() == expected


def random_maps(rng, batch, channels, height, width):
    return [rng.standard_normal((batch, channels, height // s, width // s)).astype(np.float32) for s in STRIDES]


def test_extractor_matches_numpy_roi_align_per_level(kernels):
    rng = np.random.default_rng(0)
    height, width, channels = 96, 128, 3
    maps = random_maps(rng, 1, channels, height, width)
    rois = np.array([
        [0, 3.5, 7.25, 40.0, 30.0],      # small, fractional: P2
        [0, 0.0, 0.0, 150.0, 100.0],     # P3, reaches past the map's right edge
        [0, -20.0, 10.0, 300.0, 250.0],  # P4, partly outside the map on every side
        [0, 0.0, 5.0, 600.0, 500.0],     # P5
        [0, 60.0, 50.0, 60.0, 50.0],     # a single pixel (1 x 1 legacy size): P2
    ], np.float32)
    extractor = extractor_of(channels, kernels)
    got = extractor(Tensor(rois), *[Tensor(m) for m in maps]).asnumpy()
    assert got.shape == (len(rois), channels, 7, 7)
    levels = roi_levels(Tensor(rois), FINEST_SCALE, 4).asnumpy()
    assert levels.tolist() == [0, 1, 2, 3, 0]
    for r, roi in enumerate(rois):
        expected = roi_align_one(maps[levels[r]][0].astype(np.float64), roi, 1.0 / STRIDES[levels[r]], 7, 2)
        np.testing.assert_allclose(got[r], expected, rtol=1e-5, atol=1e-5)


def test_kernel_skipped_roi_gives_zeros(kernels):
    rng = np.random.default_rng(1)
    maps = random_maps(rng, 1, 2, 64, 64)
    # ops.ROIAlign skips a box with x1 = x2 = 0 (left unwritten); one with y1 = y2 = 0 is pooled as usual.
    rois = np.array([[0, 0.0, 5.0, 0.0, 30.0], [0, 5.0, 0.0, 30.0, 0.0]], np.float32)
    extractor = extractor_of(2, kernels)
    got = extractor(Tensor(rois), *[Tensor(m) for m in maps]).asnumpy()
    np.testing.assert_array_equal(got[0], 0.0)
    expected = roi_align_one(maps[0][0].astype(np.float64), rois[1], 1.0 / STRIDES[0], 7, 2)
    np.testing.assert_allclose(got[1], expected, rtol=1e-5, atol=1e-5)


def test_one_level_per_roi_equals_all_levels_then_select_forward_and_backward(kernels):
    rng = np.random.default_rng(2)
    batch, channels, height, width = 2, 4, 128, 192
    maps = [Tensor(m) for m in random_maps(rng, batch, channels, height, width)]
    num = 64
    x1 = rng.uniform(-10, width, num)
    y1 = rng.uniform(1, height, num)
    size = np.exp(rng.uniform(np.log(4), np.log(900), (num, 2)))
    rois = np.stack([rng.integers(0, batch, num), x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1).astype(np.float32)
    rois = Tensor(rois)
    assert len(set(roi_levels(rois, FINEST_SCALE, 4).asnumpy().tolist())) == 4
    weights = Tensor(rng.standard_normal((num, channels, 7, 7)).astype(np.float32))
    extractor = extractor_of(channels, kernels)
    all_levels_then_select = AllLevelsThenSelect(OUT_SIZE, SAMPLE_NUM, STRIDES, FINEST_SCALE)

    def ours(*feats):
        return (extractor(rois, *feats) * weights).sum()

    def original(*feats):
        return (all_levels_then_select(rois, feats) * weights).sum()

    pooled, expected = extractor(rois, *maps).asnumpy(), all_levels_then_select(rois, tuple(maps)).asnumpy()
    if kernels is Kernels.GATHER:  # the same products, summed in another order
        np.testing.assert_allclose(pooled, expected, rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(pooled, expected)
    grads_ours = ms.grad(ours, grad_position=(0, 1, 2, 3))(*maps)
    grads_original = ms.grad(original, grad_position=(0, 1, 2, 3))(*maps)
    grad_tol = 1e-5 if kernels is Kernels.GATHER else 1e-6  # sums of up to a few hundred products per element
    for ours_l, original_l in zip(grads_ours, grads_original, strict=True):
        assert np.abs(original_l.asnumpy()).sum() > 0
        np.testing.assert_allclose(ours_l.asnumpy(), original_l.asnumpy(), rtol=0, atol=grad_tol)
