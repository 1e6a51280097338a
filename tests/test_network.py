"""The whole network at a small size: training gives finite positive losses and a gradient for every trainable
parameter; inference gives the documented outputs, the same in GRAPH_MODE (through FasterRcnnInfer) as in
PYNATIVE_MODE; one training step runs in GRAPH_MODE through the training wrappers."""

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

from src.FasterRcnn import build_infer_model, build_model
from src.FasterRcnn.anchor_generator import multi_level_anchors
from src.FasterRcnn.settings import AnchorSettings
from src.model_utils.config import get_config
from src.network_define import LossNet, TrainOneStepCell, WithLossCell
from src.ops import Kernels
from tests.helpers.reference_ckpt import reference_params

pytestmark = pytest.mark.slow  # graph compilations of the full network

# A small network: light proposal / sampling settings, 128x192 images for inference.
SMALL = dict(img_height=128, img_width=192, batch_size=2, test_batch_size=2, num_gts=8,
             rpn_proposal_nms_pre=300, rpn_proposal_max_num=300,
             num_expected_pos_stage2=32, num_expected_neg_stage2=96,
             rpn_nms_pre=150, rpn_max_num=100)
# Training: for fpn_convs_list.3 (P5) to get a gradient, P5 needs an anchor inside the image (stride 32,
# 256-pixel anchors; CheckValid drops the others) that the RPN samples. 256x512 is small and has some (the wide
# 0.5-ratio ones); a gt placed exactly on one makes it a positive, which is always sampled.
TRAIN_SIZE = dict(img_height=256, img_width=512)
P5 = 3


@pytest.fixture(scope="module")
def cfg():
    return get_config([], **SMALL)


@pytest.fixture(scope="module")
def train_cfg():
    return get_config([], **{**SMALL, **TRAIN_SIZE})


def load_reference(net, prefix=""):
    """Well-conditioned weights (the fidelity recipe): the original's init leaves the backbone constant."""
    params = {prefix + name: Parameter(Tensor(value), name=prefix + name)
              for name, value in reference_params(salt=1).items()}
    assert ms.load_param_into_net(net, params, strict_load=True) == ([], [])


def image_batch(rng, cfg, batch):
    return Tensor(rng.standard_normal((batch, 3, cfg.img_height, cfg.img_width)).astype(np.float32))


def anchor_inside(cfg, level):
    """An anchor of `level` lying inside the img_height x img_width canvas (legacy "+1" sizes)."""
    anchors = multi_level_anchors(AnchorSettings.from_config(cfg))[level]
    inside = ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= cfg.img_width - 1)
              & (anchors[:, 3] <= cfg.img_height - 1))
    assert inside.any(), f"no level-{level} anchor inside {cfg.img_height}x{cfg.img_width}"
    return anchors[np.flatnonzero(inside)[0]]


def gt_batch(rng, cfg, last_box=None):
    """3 + i random gts in image i, then `last_box` (if given) as one more gt of every image."""
    boxes = np.zeros((cfg.batch_size, cfg.num_gts, 4), np.float32)
    labels = np.zeros((cfg.batch_size, cfg.num_gts), np.int32)
    valids = np.zeros((cfg.batch_size, cfg.num_gts), bool)
    for i in range(cfg.batch_size):
        for g in range(3 + i):
            w, h = rng.uniform(16, 80, 2)
            x1, y1 = rng.uniform(0, cfg.img_width - w - 1), rng.uniform(0, cfg.img_height - h - 1)
            boxes[i, g] = [x1, y1, x1 + w, y1 + h]
            labels[i, g] = rng.integers(1, cfg.num_classes)
            valids[i, g] = True
        if last_box is not None:
            boxes[i, 3 + i], labels[i, 3 + i], valids[i, 3 + i] = last_box, 1, True
    return Tensor(boxes), Tensor(labels), Tensor(valids)


def test_training_losses_and_gradients(train_cfg):
    cfg = train_cfg
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(0)
    net = build_model(cfg, kernels=Kernels.CPU)
    load_reference(net)
    net.set_train(True)
    img = image_batch(rng, cfg, cfg.batch_size)
    metas = Tensor(np.tile([[cfg.img_height, cfg.img_width, 1.0]], (cfg.batch_size, 1)).astype(np.float32))
    gt_boxes, gt_labels, gt_valids = gt_batch(rng, cfg, last_box=anchor_inside(cfg, P5))
    weights = net.trainable_params()

    def total_loss(*inputs):
        outputs = net(*inputs)
        return outputs[0].sum() + outputs[1], outputs

    (_, outputs), grads = ms.value_and_grad(total_loss, None, weights, has_aux=True)(
        img, metas, gt_boxes, gt_labels, gt_valids)
    names = ("rpn_loss", "rcnn_loss", "rpn_cls_loss", "rpn_reg_loss", "rcnn_cls_loss", "rcnn_reg_loss")
    assert len(outputs) == len(names)
    for name, value in zip(names, outputs, strict=True):
        value = value.asnumpy()
        assert np.all(np.isfinite(value)) and np.all(value > 0), f"{name} = {value}"
    np.testing.assert_allclose(outputs[0].asnumpy(), (outputs[2] + outputs[3]).asnumpy(), rtol=1e-5)
    np.testing.assert_allclose(outputs[1].asnumpy(), (outputs[4] + outputs[5]).asnumpy(), rtol=1e-5)
    no_grad = [p.name for p, g in zip(weights, grads, strict=True) if not np.abs(g.asnumpy()).sum() > 0]
    assert not no_grad, f"no gradient for {no_grad}"
    assert all(np.all(np.isfinite(g.asnumpy())) for g in grads)


def check_detections(cfg, bboxes, labels, masks):
    rows = (cfg.num_classes - 1) * cfg.rpn_max_num
    assert bboxes.shape == (cfg.test_batch_size, rows, 5) and bboxes.dtype == ms.float32
    assert labels.shape == (cfg.test_batch_size, rows, 1) and labels.dtype == ms.int32
    assert masks.shape == (cfg.test_batch_size, rows, 1) and masks.dtype == ms.bool_
    labels = labels.asnumpy()
    assert labels.min() == 0 and labels.max() == cfg.num_classes - 2


def test_inference_graph_mode_matches_pynative(cfg):
    rng = np.random.default_rng(1)
    img = image_batch(rng, cfg, cfg.test_batch_size)
    # Image 0 resized by 1 (no scaling), image 1 by 0.5: its boxes come back in twice the coordinates.
    metas = Tensor(np.array([[cfg.img_height, cfg.img_width, 1.0, 1.0],
                             [cfg.img_height * 2, cfg.img_width * 2, 0.5, 0.5]], np.float32))

    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = build_model(cfg, kernels=Kernels.CPU)
    load_reference(net)
    net.set_train(False)
    eager = net(img, metas, None, None, None)
    check_detections(cfg, *eager)

    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        infer = build_infer_model(cfg, kernels=Kernels.CPU)
        load_reference(infer, prefix="network.")
        graph = infer(img, metas)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    check_detections(cfg, *graph)

    bboxes, _, masks = (t.asnumpy() for t in eager)
    g_bboxes, _, g_masks = (t.asnumpy() for t in graph)
    np.testing.assert_array_equal(g_masks, masks)
    assert masks.sum() > 0
    kept = masks[..., 0]
    np.testing.assert_allclose(g_bboxes[kept], bboxes[kept], rtol=1e-4, atol=1e-3)
    # Boxes are clipped to the padded canvas and then divided by the image's scale.
    for i, scale in enumerate((1.0, 0.5)):
        boxes = bboxes[i][kept[i]]
        assert boxes[:, [0, 2]].max() <= cfg.img_width / scale + 1e-3
        assert boxes[:, [1, 3]].max() <= cfg.img_height / scale + 1e-3
        assert boxes[:, :4].min() >= 0
        assert np.all((boxes[:, 4] > cfg.test_score_thr) & (boxes[:, 4] <= 1))


def test_training_step_in_graph_mode(cfg):
    """One optimiser step in GRAPH_MODE through the project's training wrappers, as train.py runs them."""
    rng = np.random.default_rng(2)
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        net = build_model(cfg, kernels=Kernels.CPU)
        load_reference(net)
        optimizer = nn.Momentum(net.trainable_params(), learning_rate=1e-4, momentum=cfg.momentum,
                                loss_scale=cfg.loss_scale)
        step = TrainOneStepCell(WithLossCell(net, LossNet()), optimizer, sens=cfg.loss_scale)
        step.set_train(True)
        before = net.parameters_dict()["rcnn.cls_scores.weight"].asnumpy().copy()
        metas = Tensor(np.tile([[cfg.img_height, cfg.img_width, 1.0]], (cfg.batch_size, 1)).astype(np.float32))
        loss, terms = step(image_batch(rng, cfg, cfg.batch_size), metas, *gt_batch(rng, cfg))
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    loss, terms = float(loss.asnumpy()), terms.asnumpy()
    assert np.isfinite(loss) and loss > 0 and np.all(np.isfinite(terms))
    np.testing.assert_allclose(loss, terms[0] + terms[1], rtol=1e-5)
    after = net.parameters_dict()["rcnn.cls_scores.weight"].asnumpy()
    assert np.all(np.isfinite(after)) and not np.array_equal(before, after)
