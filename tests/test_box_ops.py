"""Box maths against NumPy implementations of the original's documented formulas (legacy "+1" convention for IoU,
encode, decode, CheckValid; NMS without "+1"), in PYNATIVE and GRAPH mode. The NumPy helpers here are the
reference for the other RPN-side tests too (tests/helpers/box_reference.py)."""

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from src.FasterRcnn.box_ops import (
    box_iou,
    boxes_inside,
    decode_boxes,
    encode_boxes,
)
from src.ops import Kernels, nms_with_mask
from src.ops.cpu import NmsWithMask
from tests.helpers.box_reference import np_decode, np_encode, np_iou, np_nms_keep


def random_boxes(rng, n: int, extent: float = 200.0, max_side: float = 80.0, integer: bool = True) -> np.ndarray:
    xy = rng.uniform(0, extent, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, max_side, (n, 2))], 1)
    return (np.round(boxes) if integer else boxes).astype(np.float32)


# ---------------------------------------------------------------- IoU
def test_iou_uses_plus_one_areas_on_crafted_boxes():
    boxes = np.array([[0, 0, 9, 9], [5, 5, 14, 14], [10, 0, 19, 9], [0, 0, 0, 0], [-2, -2, -2, -2]], np.float32)
    gts = np.array([[0, 0, 9, 9], [-1, -1, -1, -1]], np.float32)
    iou = box_iou(Tensor(boxes), Tensor(gts)).asnumpy()
    # 10x10 boxes: identical 1; overlap 5x5 -> 25 / 175; adjacent (x 10..19 vs 0..9) 0; one pixel 1 / 100.
    np.testing.assert_allclose(iou[0], [1.0, 25 / 175, 0.0, 1 / 100, 0.0], rtol=1e-6)
    # The (-1) invalid-gt box and the (-2) invalid-candidate box overlap nothing (and not each other).
    np.testing.assert_array_equal(iou[1], [0, 0, 0, 0, 0])


@pytest.mark.parametrize("integer", [True, False])
def test_iou_matches_numpy_on_random_boxes(integer):
    rng = np.random.default_rng(3)
    boxes, gts = random_boxes(rng, 700, integer=integer), random_boxes(rng, 23, integer=integer)
    gts[-3:] = -1  # padding gts
    iou = box_iou(Tensor(boxes), Tensor(gts)).asnumpy()
    assert iou.shape == (23, 700)
    np.testing.assert_allclose(iou, np_iou(boxes, gts), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- encode / decode
def test_encode_matches_numpy_and_hand_values():
    p = np.array([[0, 0, 9, 9]], np.float32)
    g = np.array([[2, 3, 13, 23]], np.float32)
    # p: centre (4.5, 4.5), size 10; g: centre (7.5, 13), size (12, 21)
    hand = [0.3, 0.85, np.log(1.2), np.log(2.1)]
    np.testing.assert_allclose(encode_boxes(Tensor(p), Tensor(g), (0,) * 4, (1,) * 4).asnumpy()[0], hand, rtol=1e-5)
    stds = (0.1, 0.1, 0.2, 0.2)
    np.testing.assert_allclose(encode_boxes(Tensor(p), Tensor(g), (0,) * 4, stds).asnumpy()[0],
                               np.asarray(hand) / stds, rtol=1e-5)
    rng = np.random.default_rng(4)
    boxes, gts = random_boxes(rng, 300, integer=False), random_boxes(rng, 300, integer=False)
    means, stds = (0.1, -0.2, 0.05, 0.0), (0.1, 0.1, 0.2, 0.2)
    np.testing.assert_allclose(encode_boxes(Tensor(boxes), Tensor(gts), means, stds).asnumpy(),
                               np_encode(boxes, gts, means, stds), rtol=1e-4, atol=1e-4)


def test_decode_matches_numpy_including_clip_and_ratio_limit():
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 400, extent=300)
    deltas = rng.normal(0, 1.5, (400, 4)).astype(np.float32)
    deltas[:20, 2:] = rng.choice([-9.0, 9.0], (20, 2))  # beyond |log(0.016)| = 4.135: clamped
    max_shape = (256, 384)
    for means, stds in (((0,) * 4, (1,) * 4), ((0,) * 4, (0.1, 0.1, 0.2, 0.2))):
        out = decode_boxes(Tensor(boxes), Tensor(deltas), max_shape, means, stds).asnumpy()
        np.testing.assert_allclose(out, np_decode(boxes, deltas, max_shape, means, stds), rtol=1e-5, atol=1e-3)
    out = decode_boxes(Tensor(boxes), Tensor(deltas), max_shape, (0,) * 4, (1,) * 4).asnumpy()
    # clipped to the canvas size itself (x up to 384, y up to 256), both limits reached
    assert out[:, [0, 2]].max() == 384 and out[:, [1, 3]].max() == 256 and out.min() == 0


def test_decode_inverts_encode():
    rng = np.random.default_rng(6)
    anchors = random_boxes(rng, 200, extent=150, max_side=60)
    gts = random_boxes(rng, 200, extent=150, max_side=60)
    for stds in ((1, 1, 1, 1), (0.1, 0.1, 0.2, 0.2)):
        deltas = encode_boxes(Tensor(anchors), Tensor(gts), (0,) * 4, stds)
        back = decode_boxes(Tensor(anchors), deltas, (1000, 1000), (0,) * 4, stds).asnumpy()
        np.testing.assert_allclose(back, gts, atol=2e-3)
    same = encode_boxes(Tensor(gts), Tensor(gts), (0,) * 4, (0.1, 0.1, 0.2, 0.2)).asnumpy()
    np.testing.assert_array_equal(same, 0)


# ---------------------------------------------------------------- CheckValid
def test_boxes_inside_uses_size_times_ratio_minus_one():
    boxes = np.array([[0, 0, 63, 31], [0, 0, 64, 31], [0, 0, 63, 32], [-1, 0, 5, 5], [0, -0.5, 5, 5],
                      [10, 10, 31, 15], [10, 10, 32, 15], [10, 10, 31, 16]], np.float32)
    meta_full = Tensor(np.array([32, 64, 1.0], np.float32))
    assert boxes_inside(Tensor(boxes), meta_full).asnumpy().tolist() == [True, False, False, False, False,
                                                                       True, True, True]
    meta_half = Tensor(np.array([32, 64, 0.5], np.float32))  # limits x2 <= 31, y2 <= 15
    assert boxes_inside(Tensor(boxes), meta_half).asnumpy().tolist() == [False] * 5 + [True, False, False]


# ---------------------------------------------------------------- NMS
# nms_with_mask (src/ops/nms.py) of every kernel mode: MindSpore's NMSWithMask and the CPU kernel (src/ops/cpu/nms.cc).
@pytest.fixture(params=list(Kernels), ids=[k.name.lower() for k in Kernels])
def nms(request):
    return lambda thr: nms_with_mask(request.param, thr)


def test_nms_iou_without_plus_one_and_strict_threshold(nms):
    dets = np.array([[0, 0, 10, 10, 0.9],
                     [0, 0, 10, 7.2, 0.8],   # IoU 0.72 with the first (0.745 with "+1"): dropped
                     [0, 0, 10, 6.8, 0.7],   # IoU 0.68 (0.709 with "+1"): kept
                     [50, 50, 60, 60, 0.6],
                     [50, 50, 60, 57, 0.5],  # IoU exactly 0.7 with the previous: kept (dropped only if > 0.7)
                     [50, 50, 60, 59, 0.4]], np.float32)  # 0.9 with [50, 50, 60, 60]: dropped
    out, index, keep = nms(0.7)(Tensor(dets))
    np.testing.assert_array_equal(out.asnumpy(), dets)
    assert index.asnumpy().tolist() == list(range(6))
    assert keep.asnumpy().tolist() == [True, False, True, True, True, False]


def test_nms_is_exact_greedy_on_random_sorted_boxes(nms):
    rng = np.random.default_rng(7)
    for _ in range(10):
        n = int(rng.integers(20, 400))
        boxes = random_boxes(rng, n, extent=120, max_side=50, integer=False)
        dets = np.concatenate([boxes, np.sort(rng.uniform(0, 1, (n, 1)), 0)[::-1]], 1).astype(np.float32)
        out, _, keep = nms(0.7)(Tensor(dets))
        np.testing.assert_array_equal(out.asnumpy(), dets)
        np.testing.assert_array_equal(keep.asnumpy(), np_nms_keep(dets, 0.7))


def test_nms_kernel_gives_nmswithmask_outputs_with_ties_and_unsorted_input():
    """Unsorted scores with many ties (as the test-time head's zero-score rows): same order, indices and mask."""
    rng = np.random.default_rng(9)
    for n in (1, 2, 7, 300, 1000):
        boxes = random_boxes(rng, n, extent=100, max_side=60, integer=False)
        scores = rng.choice(np.array([0.0, 0.25, 0.5, 0.9], np.float32), size=(n, 1))
        boxes[rng.uniform(size=n) < 0.3] = -1.0  # degenerate rows, as the head's non-candidates
        dets = Tensor(np.concatenate([boxes, scores], 1).astype(np.float32))
        for thr in (0.5, 0.7):
            expected = [o.asnumpy() for o in ops.NMSWithMask(thr)(dets)]
            got = [o.asnumpy() for o in NmsWithMask(thr)(dets)]
            for e, g, what in zip(expected, got, ("sorted dets", "indices", "keep"), strict=True):
                np.testing.assert_array_equal(g, e, err_msg=f"{what}, n={n}, thr={thr}")


# ---------------------------------------------------------------- GRAPH_MODE
class _AllOps(nn.Cell):
    def __init__(self):
        super().__init__()
        self.nms = nms_with_mask(Kernels.CPU, 0.7)

    def construct(self, boxes, gts, deltas, meta, dets):
        return (box_iou(boxes, gts), encode_boxes(boxes, gts[:4], (0.0,) * 4, (0.1, 0.1, 0.2, 0.2)),
                decode_boxes(boxes, deltas, (64, 96), (0.0,) * 4, (1.0,) * 4), boxes_inside(boxes, meta),
                self.nms(dets)[2])


def test_box_ops_in_graph_mode():
    rng = np.random.default_rng(8)
    boxes, gts = random_boxes(rng, 4, extent=60, max_side=40), random_boxes(rng, 6, extent=60, max_side=40)
    deltas = rng.normal(0, 0.5, (4, 4)).astype(np.float32)
    meta = np.array([64, 96, 1.0], np.float32)
    dets = np.concatenate([boxes, [[0.9], [0.8], [0.7], [0.6]]], 1).astype(np.float32)
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        iou, enc, dec, inside, keep = (o.asnumpy() for o in _AllOps()(
            Tensor(boxes), Tensor(gts), Tensor(deltas), Tensor(meta), Tensor(dets)))
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_allclose(iou, np_iou(boxes, gts), rtol=1e-6)
    np.testing.assert_allclose(enc, np_encode(boxes, gts[:4], (0,) * 4, (0.1, 0.1, 0.2, 0.2)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dec, np_decode(boxes, deltas, (64, 96)), rtol=1e-5, atol=1e-3)
    inside_ref = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= 95) & (boxes[:, 3] <= 63)
    np.testing.assert_array_equal(inside, inside_ref)
    np.testing.assert_array_equal(keep, np_nms_keep(dets, 0.7))
