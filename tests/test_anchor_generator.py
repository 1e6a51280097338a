"""Anchors against hand-computed values: the original's rounded base anchors per stride, their grid layout
(index = (y * w + x) * A + a, shift = stride * (x, y), no half-stride offset) and the per-level counts."""

import numpy as np
import pytest

from src.FasterRcnn.anchor_generator import AnchorGenerator, multi_level_anchors
from src.FasterRcnn.settings import AnchorSettings
from src.model_utils.config import get_config

# The original's base anchors (ratios 0.5, 1, 2; scale 8; base size = stride), as listed in ORIGINAL_NETWORK.md.
BASE_ANCHORS = {
    4: [[-21, -9, 24, 12], [-14, -14, 17, 17], [-9, -21, 12, 24]],
    8: [[-41, -19, 48, 26], [-28, -28, 35, 35], [-19, -41, 26, 48]],
    16: [[-83, -37, 98, 52], [-56, -56, 71, 71], [-37, -83, 52, 98]],
    32: [[-165, -75, 196, 106], [-112, -112, 143, 143], [-75, -165, 106, 196]],
    64: [[-330, -149, 393, 212], [-224, -224, 287, 287], [-149, -330, 212, 393]],
}


@pytest.mark.parametrize("stride", sorted(BASE_ANCHORS))
def test_base_anchors_match_the_original(stride):
    generator = AnchorGenerator(stride, [8], [0.5, 1.0, 2.0])
    np.testing.assert_array_equal(generator.base_anchors, BASE_ANCHORS[stride])


def test_base_anchor_formula_by_hand():
    # base 10 -> centre 4.5. ratio 1, scale 2: side 20 -> 4.5 -+ 9.5 = [-5, 14].
    # ratio 4 (h/w), scale 2: w = 10 * 0.5 * 2 = 10 -> 4.5 -+ 4.5; h = 10 * 2 * 2 = 40 -> 4.5 -+ 19.5.
    generator = AnchorGenerator(10, [2], [1.0, 4.0])
    np.testing.assert_array_equal(generator.base_anchors, [[-5, -5, 14, 14], [0, -15, 9, 24]])
    # ratio-major, scale-minor order with two scales: (r0 s0), (r0 s1), (r1 s0), (r1 s1)
    generator = AnchorGenerator(10, [1, 2], [1.0, 4.0])
    assert generator.num_base_anchors == 4
    np.testing.assert_array_equal(generator.base_anchors[1], [-5, -5, 14, 14])
    np.testing.assert_array_equal(generator.base_anchors[3], [0, -15, 9, 24])


def test_grid_anchors_layout_on_a_small_map():
    anchors = AnchorGenerator(4, [8], [0.5, 1.0, 2.0]).grid_anchors((2, 3), 4)
    assert anchors.shape == (2 * 3 * 3, 4) and anchors.dtype == np.float32
    # position (y=0, x=0) holds the base anchors
    np.testing.assert_array_equal(anchors[0:3], BASE_ANCHORS[4])
    # (y=0, x=1), anchor 0 (index 3): shifted by 4 in x only
    np.testing.assert_array_equal(anchors[3], [-17, -9, 28, 12])
    # (y=1, x=2), anchor 1 (index (1 * 3 + 2) * 3 + 1 = 16): shifted by (8, 4)
    np.testing.assert_array_equal(anchors[16], [-6, -10, 25, 21])
    # last: (y=1, x=2), anchor 2
    np.testing.assert_array_equal(anchors[17], [-1, -17, 20, 28])


def test_multi_level_anchors_follow_the_config():
    cfg = get_config([], img_height=128, img_width=192)
    levels = multi_level_anchors(AnchorSettings.from_config(cfg))
    assert [tuple(s) for s in cfg.feature_shapes] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert [len(a) for a in levels] == [3 * h * w for h, w in cfg.feature_shapes]
    assert sum(len(a) for a in levels) == cfg.num_bboxes == 3 * (1536 + 384 + 96 + 24 + 6)
    for stride, anchors, (h, w) in zip(cfg.anchor_strides, levels, cfg.feature_shapes, strict=True):
        np.testing.assert_array_equal(anchors[:3], BASE_ANCHORS[stride])
        last = np.asarray(BASE_ANCHORS[stride][2]) + stride * np.array([w - 1, h - 1, w - 1, h - 1])
        np.testing.assert_array_equal(anchors[-1], last)


def test_anchor_count_mismatch_is_a_config_error():
    cfg = get_config([], img_height=128, img_width=192, anchor_ratios=[1.0])
    with pytest.raises(ValueError, match="num_anchors"):
        multi_level_anchors(AnchorSettings.from_config(cfg))
