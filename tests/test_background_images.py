"""Background images (no usable box), as the original's create_coco_label treats them: written with the dummy row
[0, 0, 0, 0, 0, 1] (no annotation) or their crowd rows, and counted; `skip_background_images` leaves them out of a
training set. Their gts are all invalid: the assigners find no positive, and a training step on them has zero
regression losses and lowers the objectness of every anchor."""
import numpy as np
import pytest
from mindspore import Tensor, nn
from mindspore import dataset as de

from src.data.mindrecord import NO_BOX_ROW, describe_source, read_sidecar
from src.data.settings import DataSettings
from src.FasterRcnn.anchor_generator import multi_level_anchors
from src.FasterRcnn.bbox_assign_sample import BboxAssignSample
from src.FasterRcnn.bbox_assign_sample_stage2 import BboxAssignSampleForRcnn
from src.FasterRcnn.rpn import flatten_levels
from src.FasterRcnn.settings import AnchorSettings, AssignerSettings
from src.model_utils.config import get_config
from src.network_define import LossNet, TrainOneStepCell, WithLossCell
from src.ops import Kernels
from tests.helpers.box_reference import np_inside
from tests.helpers.data import convert, pipeline, write_coco_set
from tests.helpers.fidelity import reference_network
from tests.helpers.training import HEIGHT, TINY, WIDTH

TRAIN = "FasterRcnn.mindrecord"
CAR, DOG = 3, 18                          # COCO category ids; labels 3 and 17 in the default coco_classes
CROWD_BOX = [40, 30, 64, 48]              # x, y, w, h
CROWD_ROW = [40, 30, 104, 78, 17, 1]      # its MindRecord row: corners, label of "dog", crowd


def write_set(root, image_ids=(1, 2, 3)):
    """COCO layout under `root`, HEIGHT x WIDTH images (scale 1 on the TINY canvas): 1 has a car, 2 no annotation,
    3 only a crowd box."""
    annotations = [(1, CAR, [10, 20, 50, 40], 0), (3, DOG, CROWD_BOX, 1)]
    write_coco_set(root / "annotations" / "instances_train2017.json", root / "train2017",
                   [(i, f"{i}.png", (HEIGHT, WIDTH)) for i in image_ids],
                   [a for a in annotations if a[0] in image_ids], [(CAR, "car"), (DOG, "dog")])
    return root


def tiny_cfg(root, **overrides):
    return get_config(TINY, coco_root=str(root), mindrecord_dir=str(root / "mr"), **overrides)


def stored_rows(path):
    rows = de.MindDataset(path, columns_list=["annotation", "image_id"], shuffle=False)
    return {int(r["image_id"]): r["annotation"].tolist() for r in rows.create_dict_iterator(output_numpy=True)}


def test_background_images_are_trained_on_with_the_dummy_row(tmp_path, capsys):
    path = convert(tiny_cfg(write_set(tmp_path)), TRAIN, True)
    assert stored_rows(path) == {1: [[10, 20, 60, 60, 3, 0]], 2: NO_BOX_ROW.tolist(), 3: [CROWD_ROW]}
    summary = read_sidecar(path)["summary"]
    assert (summary["images_written"], summary["images_background"], summary["images_without_box"]) == (3, 2, 0)
    assert ("3 of 3 images written, 2 of them background images (no usable box); left out 0 without a usable box"
            in capsys.readouterr().out)


def test_skip_background_images_leaves_them_out_and_toggling_rebuilds(tmp_path, capsys):
    cfg = tiny_cfg(write_set(tmp_path), skip_background_images=True)
    assert describe_source(DataSettings.from_config(cfg), True)["skip_background_images"] is True
    path = convert(cfg, TRAIN, True)
    assert stored_rows(path) == {1: [[10, 20, 60, 60, 3, 0]]}
    summary = read_sidecar(path)["summary"]
    assert (summary["images_written"], summary["images_background"], summary["images_without_box"]) == (1, 0, 2)
    assert "1 of 3 images written, 0 of them background images (no usable box); left out 2 without a usable box" \
        in capsys.readouterr().out
    assert convert(cfg.replace(skip_background_images=False), TRAIN, True) == path
    assert "skip_background_images changed" in capsys.readouterr().out
    assert sorted(stored_rows(path)) == [1, 2, 3]
    # evaluation sets keep every image whatever the key says: it is not part of their source
    as_validation = DataSettings.from_config(cfg.replace(val_data_type="train2017"))
    assert "skip_background_images" not in describe_source(as_validation, False)


def test_crowd_rows_are_invalid_gts_never_positives(tmp_path):
    """The pipeline's gts of a crowd-only image: not valid; the RPN and R-CNN assigners make no positive of them,
    not even of an anchor or proposal equal to the crowd box. The same gt marked valid does make positives."""
    cfg = tiny_cfg(write_set(tmp_path, image_ids=(3,)))
    (batch,) = pipeline(cfg, convert(cfg, TRAIN, True), 1).create_dict_iterator(output_numpy=True)
    boxes, labels, valids = batch["box"][0], batch["label"][0], batch["valid_num"][0]
    np.testing.assert_array_equal(boxes[0], CROWD_ROW[:4])  # scale 1, no flip
    assert labels[0] == 17 and not valids.any()

    anchors = np.concatenate(multi_level_anchors(AnchorSettings.from_config(cfg)))
    inside = np_inside(anchors, cfg.img_height, cfg.img_width)
    anchors[np.flatnonzero(inside)[0]] = boxes[0]  # an anchor exactly on the crowd box
    rpn = BboxAssignSample(AssignerSettings.from_config(cfg, "rpn"))

    def rpn_positives(gt_valids):
        _, positive, _, sampled = rpn(Tensor(boxes), Tensor(labels), Tensor(inside), Tensor(anchors),
                                      Tensor(gt_valids))
        return int(positive.asnumpy().sum()), int(sampled.asnumpy().sum())

    assert rpn_positives(valids) == (0, inside.sum())  # every anchor inside the image sampled as a negative
    assert rpn_positives(np.arange(len(valids)) == 0)[0] > 0

    proposals = np.zeros((cfg.num_bboxes_stage2, 4), np.float32)
    proposals[0], proposals[1] = boxes[0], [150, 90, 190, 126]
    proposal_mask = np.arange(cfg.num_bboxes_stage2) < 2
    rcnn = BboxAssignSampleForRcnn(AssignerSettings.from_config(cfg, "rcnn"), add_gt_as_proposals=True)

    def rcnn_positives(gt_valids):
        _, _, _, mask = rcnn(Tensor(boxes), Tensor(labels), Tensor(proposal_mask), Tensor(proposals),
                             Tensor(gt_valids))
        return int(mask.asnumpy()[:cfg.num_expected_pos_stage2].sum())

    assert rcnn_positives(valids) == 0
    assert rcnn_positives(np.arange(len(valids)) == 0) > 0


@pytest.mark.slow  # the whole network, one training step
def test_a_training_step_on_background_images_lowers_every_anchors_objectness(tmp_path, reference_ckpt):
    cfg = tiny_cfg(write_set(tmp_path, image_ids=(2, 3)))
    (batch,) = pipeline(cfg, convert(cfg, TRAIN, True), cfg.batch_size).create_tuple_iterator()
    assert not batch[4].asnumpy().any()  # no valid gt in the batch
    net = reference_network(cfg, reference_ckpt, Kernels.CPU)
    head = net.rpn_with_loss.rpn_convs_list[0]

    def objectness():
        """Every anchor's RPN logit (B, N) on the batch's images."""
        return flatten_levels([head(feat)[0] for feat in net.fpn_neck(net.backbone(batch[0]))], 1).asnumpy()[..., 0]

    before = objectness()
    optimizer = nn.SGD(net.trainable_params(), learning_rate=0.01, momentum=0.0)
    step = TrainOneStepCell(WithLossCell(net, LossNet()), optimizer, sens=1.0)
    step.set_train(True)
    loss, terms = step(*batch)
    rpn_cls, rpn_reg, rcnn_cls, rcnn_reg = terms.asnumpy()[2:]
    assert np.isfinite(loss.asnumpy()).all() and np.isfinite(terms.asnumpy()).all()
    assert rpn_reg == 0 and rcnn_reg == 0  # no positive anchor, no positive RoI
    assert rpn_cls > 0 and rcnn_cls > 0
    after = objectness()
    assert before.shape == (cfg.batch_size, cfg.num_bboxes)
    assert (after < before).all(), f"{(after >= before).sum()} anchors' objectness did not go down"
