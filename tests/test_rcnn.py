"""The R-CNN head: (in, out) dense weights, the loss against a NumPy transcription of the original's formula,
and the test-time post-processing against a NumPy decode + greedy per-class NMS."""

import mindspore as ms
import numpy as np
from mindspore import Tensor

from src.FasterRcnn.rcnn import DenseNoTranpose, DetectionOutput, Rcnn
from src.FasterRcnn.settings import DetectionSettings, RcnnSettings
from src.ops import Kernels


def head(representation_size: int, num_classes: int) -> Rcnn:
    """A head with 16 hidden units and unit loss weights."""
    return Rcnn(RcnnSettings(representation_size=representation_size, fc_out_channels=16, num_classes=num_classes,
                             cls_loss_weight=1.0, reg_loss_weight=1.0))



def test_dense_stores_in_out_and_computes_x_w_plus_b():
    rng = np.random.default_rng(0)
    dense = DenseNoTranpose(5, 3, "normal")
    assert dense.weight.shape == (5, 3) and dense.bias.shape == (3,)
    np.testing.assert_array_equal(dense.bias.asnumpy(), 0.0)
    weight = rng.standard_normal((5, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    dense.weight.set_data(Tensor(weight))
    dense.bias.set_data(Tensor(bias))
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(dense(Tensor(x)).asnumpy(), x @ weight + bias, rtol=1e-5, atol=1e-6)


def test_head_parameters_and_output_shapes():
    rcnn = head(2 * 3 * 3, num_classes=5)
    shapes = {p.name: p.shape for p in rcnn.get_parameters()}
    assert shapes == {
        "shared_fc_0.weight": (18, 16), "shared_fc_0.bias": (16,),
        "shared_fc_1.weight": (16, 16), "shared_fc_1.bias": (16,),
        "cls_scores.weight": (16, 5), "cls_scores.bias": (5,),
        "reg_scores.weight": (16, 20), "reg_scores.bias": (20,),
    }
    # XavierUniform bound sqrt(6 / (fan_in + fan_out)) for the shared layers.
    assert np.abs(rcnn.shared_fc_0.weight.asnumpy()).max() <= np.sqrt(6 / (18 + 16))
    logits, deltas = rcnn(Tensor(np.ones((7, 2, 3, 3), np.float32)))
    assert logits.shape == (7, 5) and deltas.shape == (7, 20)


def numpy_rcnn_loss(logits, deltas, targets, labels, mask, num_classes):
    """The original's loss, written the original's way: full one-hot weights over every class."""
    weights = mask.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    ce = -log_prob[np.arange(len(labels)), labels]
    loss_cls = (ce * weights).sum() / weights.sum()
    class_idx = np.where((labels > 0) & mask, labels, 0)
    reg_weights = np.eye(num_classes)[class_idx]
    reg_weights[:, 0] = 0
    diff = np.abs(deltas.reshape(len(labels), num_classes, 4) - targets[:, None, :])
    smooth = np.where(diff < 1.0, 0.5 * diff ** 2, diff - 0.5).sum(axis=2)
    loss_reg = (smooth * reg_weights / weights.sum()).sum()
    return loss_cls + loss_reg, loss_cls, loss_reg


def test_loss_matches_numpy_original_formula():
    rng = np.random.default_rng(1)
    num_rois, num_classes = 40, 6
    logits = rng.standard_normal((num_rois, num_classes)).astype(np.float32) * 3
    deltas = rng.standard_normal((num_rois, num_classes * 4)).astype(np.float32) * 2  # both SmoothL1 branches
    targets = rng.standard_normal((num_rois, 4)).astype(np.float32)
    labels = rng.integers(0, num_classes, num_rois).astype(np.int32)
    labels[:10] = 0
    mask = rng.random(num_rois) < 0.7
    mask[labels > 0] &= rng.random(int((labels > 0).sum())) < 0.8  # some positives not sampled
    got = head(4, num_classes).loss(Tensor(logits), Tensor(deltas), Tensor(targets), Tensor(labels), Tensor(mask))
    expected = numpy_rcnn_loss(logits.astype(np.float64), deltas.astype(np.float64), targets.astype(np.float64),
                               labels, mask, num_classes)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == ()
        np.testing.assert_allclose(float(g.asnumpy()), e, rtol=1e-5)


def test_loss_gradient_reaches_only_positive_own_class_deltas():
    num_classes = 3
    labels = np.array([2, 0, 1, 2], np.int32)
    mask = np.array([True, True, True, False])
    rng = np.random.default_rng(2)
    logits = Tensor(rng.standard_normal((4, num_classes)).astype(np.float32))
    deltas = Tensor(rng.standard_normal((4, num_classes * 4)).astype(np.float32))
    targets = Tensor(rng.standard_normal((4, 4)).astype(np.float32))
    rcnn = head(4, num_classes)
    grad = ms.grad(lambda d: rcnn.loss(logits, d, targets, Tensor(labels), Tensor(mask))[0])(deltas).asnumpy()
    nonzero = np.abs(grad.reshape(4, num_classes, 4)).sum(axis=2) > 0
    expected = np.zeros((4, num_classes), bool)
    expected[0, 2] = expected[2, 1] = True  # RoI 1 is negative, RoI 3 is not sampled
    np.testing.assert_array_equal(nonzero, expected)


WH_RATIO_CLIP = abs(np.log(0.016))  # BoundingBoxDecode's default wh_ratio_clip


def numpy_decode(rois, deltas, means, stds, max_h, max_w, clip=WH_RATIO_CLIP):
    d = deltas * np.asarray(stds) + np.asarray(means)
    dw, dh = np.clip(d[:, 2], -clip, clip), np.clip(d[:, 3], -clip, clip)
    px, py = (rois[:, 0] + rois[:, 2]) * 0.5, (rois[:, 1] + rois[:, 3]) * 0.5
    pw, ph = rois[:, 2] - rois[:, 0] + 1, rois[:, 3] - rois[:, 1] + 1
    gx, gy, gw, gh = px + pw * d[:, 0], py + ph * d[:, 1], pw * np.exp(dw), ph * np.exp(dh)
    boxes = np.stack([gx - gw * 0.5 + 0.5, gy - gh * 0.5 + 0.5, gx + gw * 0.5 - 0.5, gy + gh * 0.5 - 0.5], 1)
    return np.clip(boxes, 0, [max_w, max_h, max_w, max_h])


def numpy_greedy_nms(boxes, scores, thr):
    order = np.argsort(-scores, kind="stable")
    keep = []
    for i in order:
        ok = True
        for k in keep:
            iw = max(min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0]), 0)
            ih = max(min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1]), 0)
            area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731 (no +1: NMSWithMask's IoU)
            inter = iw * ih
            if inter / (area(boxes[i]) + area(boxes[k]) - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def test_detection_output_matches_numpy_decode_and_per_class_nms():
    rng = np.random.default_rng(3)
    settings = DetectionSettings(num_classes=4, score_thr=0.05, iou_thr=0.5, img_shape=(64, 96),
                                 target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(0.1, 0.1, 0.2, 0.2))
    n, k, b = 30, settings.num_classes, 2
    # Clusters of overlapping RoIs, so that NMS has work to do.
    centres = rng.uniform(10, 80, (6, 2))
    pick = centres[rng.integers(0, 6, b * n)] + rng.normal(0, 3, (b * n, 2))
    size = rng.uniform(8, 30, (b * n, 2))
    rois = np.concatenate([pick - size / 2, pick + size / 2], 1).astype(np.float32)
    logits = (rng.standard_normal((b * n, k)) * 2).astype(np.float32)
    deltas = (rng.standard_normal((b * n, k * 4)) * 0.5).astype(np.float32)
    valid = rng.random(b * n) < 0.8
    metas = np.array([[64, 96, 1.0, 1.0], [40, 60, 0.625, 0.5]], np.float32)

    post = DetectionOutput(settings, batch_size=b, rois_per_image=n, kernels=Kernels.CPU)
    bboxes, labels, masks = post(Tensor(logits), Tensor(deltas), Tensor(rois), Tensor(valid), Tensor(metas))
    assert bboxes.shape == (b, (k - 1) * n, 5) and labels.shape == (b, (k - 1) * n, 1)
    assert masks.shape == (b, (k - 1) * n, 1) and masks.dtype == ms.bool_ and labels.dtype == ms.int32
    bboxes, labels, masks = bboxes.asnumpy(), labels.asnumpy()[..., 0], masks.asnumpy()[..., 0]
    np.testing.assert_array_equal(labels, np.repeat(np.arange(k - 1), n)[None].repeat(b, 0))

    shifted = np.exp(logits - logits.max(1, keepdims=True))
    scores = shifted / shifted.sum(1, keepdims=True)
    total = 0
    for i in range(b):
        rows = slice(i * n, (i + 1) * n)
        expected = []
        for c in range(1, k):
            boxes = numpy_decode(rois[rows], deltas[rows, 4 * c:4 * c + 4], settings.target_means,
                                 settings.target_stds, *settings.img_shape)
            boxes = boxes / metas[i, [3, 2, 3, 2]]
            cand = np.flatnonzero(valid[rows] & (scores[rows, c] > settings.score_thr))
            for j in numpy_greedy_nms(boxes[cand], scores[rows, c][cand], settings.iou_thr):
                expected.append([c - 1, *boxes[cand[j]], scores[rows, c][cand[j]]])
        got = np.concatenate([labels[i][:, None], bboxes[i]], 1)[masks[i]]
        expected = np.array(expected)
        by_label_then_score = lambda a: a[np.lexsort((-a[:, 5], a[:, 0]))]  # noqa: E731
        assert got.shape == expected.shape
        np.testing.assert_allclose(by_label_then_score(got), by_label_then_score(expected), rtol=0, atol=1e-4)
        total += len(got)
    assert total > 10
