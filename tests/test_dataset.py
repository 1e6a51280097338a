"""COCO / TXT -> MindRecord -> pipeline batches, against the original's golden output and hand-computed cases."""
import json
import os
import shutil
import signal
import threading
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest
from mindspore import dataset as de

import src.data.mindrecord as mindrecord
import src.dataset as dataset
from src.data.mindrecord import is_mindrecord_complete, label_map, read_sidecar
from src.data.sources import DataError
from src.data.transforms import (
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    ExpandDraw,
    PreprocessSettings,
    draw_augmentation,
    pad_gt,
    preprocess_eval,
    preprocess_train,
)
from src.dataset import PipelineSettings, create_fasterrcnn_dataset
from src.model_utils.config import ROOT, cap_workers, get_config
from tests.helpers.data import convert, pipeline
from tests.helpers.processes import run_script

GOLDEN_DIR = os.path.join(ROOT, "tests", "data", "preprocess")
TRAIN, EVAL = "FasterRcnn.mindrecord", "FasterRcnn_eval.mindrecord"
H, W = 256, 384  # the small canvas of these tests
PAD_VALUE = -np.asarray(IMAGENET_MEAN_RGB) / np.asarray(IMAGENET_STD_RGB)


def small_cfg(**overrides):
    values = dict(img_height=H, img_width=W, python_multiprocessing=False, num_parallel_workers=1)
    values.update(overrides)
    return get_config([], **values)


def rows(ds):
    return list(ds.create_dict_iterator(output_numpy=True, num_epochs=1))


def random_image(seed, height, width):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def write_coco(root, split, images, annotations, categories):
    """images: [(id, file_name, BGR array or raw bytes or None = no file)]; writes root/split and the json."""
    os.makedirs(os.path.join(root, split), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    entries = []
    for image_id, name, content in images:
        path = os.path.join(root, split, name)
        if isinstance(content, np.ndarray):
            cv2.imwrite(path, content)
            height, width = content.shape[:2]
        else:
            if content is not None:
                with open(path, "wb") as f:
                    f.write(content)
            height, width = 100, 100
        entries.append({"id": image_id, "file_name": name, "height": height, "width": width})
    anns = [dict({"id": i + 1, "iscrowd": 0, "area": 1.0}, **a) for i, a in enumerate(annotations)]
    with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump({"images": entries, "annotations": anns, "categories": categories}, f)


CATS = [{"id": 44, "name": "bottle"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
LABEL = {"car": 3, "dog": 17, "bottle": 40}  # index in the default coco_classes


# ---------------------------------------------------------------------------------------------------------------
# The evaluation pipeline against the original's own output
def test_eval_pipeline_matches_the_originals_golden(tmp_path):
    golden = np.load(os.path.join(GOLDEN_DIR, "golden_eval_preprocess.npz"))
    cfg = get_config([], coco_root=os.path.join(GOLDEN_DIR, "coco"), mindrecord_dir=str(tmp_path),
                     img_height=768, img_width=1280, num_parallel_workers=1)
    ds = pipeline(cfg, convert(cfg, EVAL, is_training=False), batch_size=1, is_training=False)
    got = rows(ds)
    assert [int(r["image_id"][0]) for r in got] == [1, 2]
    for k, row in enumerate(got):
        image = row["image"][0]
        assert image.shape == (3, 768, 1280) and image.dtype == np.float32
        np.testing.assert_allclose(row["image_shape"][0], golden[f"img{k}_image_shape"], rtol=1e-6)
        np.testing.assert_allclose(image.reshape(-1)[golden[f"img{k}_idx"]], golden[f"img{k}_val"], atol=1e-4)
        np.testing.assert_allclose(image[:, 384, :], golden[f"img{k}_row_mid"], atol=1e-4)
        np.testing.assert_allclose(image[:, :, 426], golden[f"img{k}_col_mid"], atol=1e-4)
        np.testing.assert_allclose(image.mean(axis=(1, 2)), golden[f"img{k}_channel_mean"], atol=1e-4)
        np.testing.assert_array_equal(row["box"][0], golden[f"img{k}_box"])
        np.testing.assert_array_equal(row["label"][0], golden[f"img{k}_label"])
        np.testing.assert_array_equal(row["valid_num"][0], golden[f"img{k}_valid"])


# ---------------------------------------------------------------------------------------------------------------
# Training batches: source boxes x scale (mirrored when flipped), images equal to the evaluation's
@pytest.fixture(scope="module")
def two_image_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    images = [(7, "land.png", random_image(1, 300, 400)), (9, "port.png", random_image(2, 480, 320))]
    anns = [  # float corners: the MindRecord truncates them
        {"image_id": 7, "category_id": 3, "bbox": [10.7, 20.2, 100.5, 50.9]},
        {"image_id": 7, "category_id": 3, "bbox": [350, 250, 50, 50]},
        {"image_id": 9, "category_id": 18, "bbox": [0, 400, 320, 80]},
        {"image_id": 9, "category_id": 44, "bbox": [30, 5, 60, 90], "iscrowd": 1},
    ]
    write_coco(root, "train2017", images, anns, CATS)
    write_coco(root, "val2017", images, anns, CATS)
    return root


# (source corners after truncation, total scale, resized (h, w)), computed by hand for the 256x384 canvas:
# 300x400: min(384/400, 256/300) = 0.85333 -> 256x341. 480x320: min(384/480, 256/320) = 0.8 -> 384x256, too high,
# so again with min(256/384, 256/256) = 2/3 -> 256x171; total 0.8 * 2/3.
EXPECTED = {
    3: ([[10, 20, 111, 71], [350, 250, 400, 300]], 256 / 300, (256, 341)),
    17: ([[0, 400, 320, 480], [30, 5, 90, 95]], 0.8 * 2 / 3, (256, 171)),
}


@pytest.mark.parametrize("flip", [False, True])
def test_training_boxes_are_source_times_scale(two_image_coco, tmp_path, flip):
    cfg = small_cfg(coco_root=str(two_image_coco), mindrecord_dir=str(tmp_path), flip_ratio=float(flip),
                    expand_ratio=0.0)
    train = rows(pipeline(cfg, convert(cfg, TRAIN, True), batch_size=1))
    evals = rows(pipeline(cfg, convert(cfg, EVAL, False), 1, is_training=False))
    assert len(train) == 2
    eval_by_label = {int(r["label"][0, 0]): r for r in evals}
    for row in train:
        label = int(row["label"][0, 0])
        corners, scale, (h, w) = EXPECTED[label]
        expected = np.array(corners, dtype=np.float64) * scale
        expected[:, 0::2] = np.clip(expected[:, 0::2], 0, w - 1)
        expected[:, 1::2] = np.clip(expected[:, 1::2], 0, h - 1)
        if flip:
            expected[:, [0, 2]] = W - expected[:, [2, 0]] - 1
        np.testing.assert_allclose(row["box"][0, :2], expected, rtol=1e-6)
        padding_row = [W - 1, 0, W - 1, 0] if flip else [0, 0, 0, 0]  # padding rows are flipped too
        np.testing.assert_array_equal(row["box"][0, 2:], np.tile(padding_row, (cfg.num_gts - 2, 1)))
        np.testing.assert_array_equal(row["image_shape"][0], [H, W, 1.0])
        np.testing.assert_array_equal(row["valid_num"][0, :3], [True, label == 3, False])
        assert row["valid_num"][0].sum() == 1 + (label == 3) and (row["label"][0, 2:] == -1).all()
        eval_image = eval_by_label[label]["image"][0]
        np.testing.assert_array_equal(row["image"][0], eval_image[:, :, ::-1] if flip else eval_image)
        padding = eval_image[:, h:, :] if h < H else eval_image[:, :, w:]
        np.testing.assert_allclose(padding.mean(axis=(1, 2)), PAD_VALUE, rtol=1e-5)
        np.testing.assert_allclose(eval_by_label[label]["image_shape"][0][2:], [scale, scale], rtol=1e-6)


def test_expand_moves_the_image_and_boxes():
    image = np.zeros((100, 200, 3), np.uint8)
    image[10:30, 20:60] = 255
    annotation = np.array([[20, 10, 60, 30, 5, 0]], np.int32)
    settings = PreprocessSettings(H, W, True, 0.0, 1.0, 4)
    out = preprocess_train(image, annotation, settings, flip=False, expand=ExpandDraw(2.0, left=50, top=30))
    # canvas 200x400 -> min(384/400, 256/200) = 0.96 -> 192x384
    np.testing.assert_allclose(out[2][0], np.array([70, 40, 110, 60]) * 0.96, rtol=1e-6)
    white = (255 - np.asarray(IMAGENET_MEAN_RGB)) / np.asarray(IMAGENET_STD_RGB)
    np.testing.assert_allclose(out[0][:, 50, 86], white, rtol=1e-5)     # inside the moved white block
    np.testing.assert_allclose(out[0][:, 10, 10], PAD_VALUE, rtol=1e-5)  # expand's zero canvas
    np.testing.assert_allclose(out[0][:, 250, 10], PAD_VALUE, rtol=1e-5)  # the canvas padding below


def test_plain_resize_when_keep_ratio_is_off():
    image = random_image(7, 100, 200)
    annotation = np.array([[10, 10, 50, 50, 5, 0]], np.int32)
    settings = PreprocessSettings(H, W, False, 0.0, 0.0, 4)
    # 100x200 -> 256x384: scale_h 2.56, scale_w 1.92
    img, meta, boxes, _, _ = preprocess_train(image, annotation, settings, flip=False)
    np.testing.assert_array_equal(meta, [H, W, 1.0])
    np.testing.assert_allclose(boxes[0], [19.2, 25.6, 96, 128], rtol=1e-6)
    img_eval, meta, boxes, _, _ = preprocess_eval(image, annotation, settings)
    np.testing.assert_allclose(meta, [100, 200, 2.56, 1.92], rtol=1e-6)
    np.testing.assert_allclose(boxes[0], [19.2, 25.6, 96, 99], rtol=1e-6)  # the original clips to the source size
    np.testing.assert_array_equal(img, img_eval)
    expected = (cv2.resize(image, (W, H), interpolation=cv2.INTER_LINEAR) - np.float32(IMAGENET_MEAN_RGB)) \
        / np.float32(IMAGENET_STD_RGB)
    np.testing.assert_allclose(img, expected.transpose(2, 0, 1), atol=1e-5)


def test_augmentation_rates_are_the_originals():
    rng = np.random.default_rng(0)
    for expand_ratio in (1.0, 0.5):
        settings = PreprocessSettings(H, W, True, 0.5, expand_ratio, 8)
        draws = [draw_augmentation(rng, settings, 100, 200) for _ in range(4000)]
        assert abs(np.mean([f for f, _ in draws]) - 0.5) < 0.03
        expands = [e for _, e in draws if e is not None]
        assert abs(len(expands) / len(draws) - expand_ratio * 0.5) < 0.03
        for e in expands:
            assert 1.0 <= e.ratio <= 4.0 and 0 <= e.left <= 200 * e.ratio - 200 and 0 <= e.top <= 100 * e.ratio - 100


def test_gt_padding_keeps_non_crowd_first():
    annotation = np.array([[1, 1, 5, 5, 2, 1], [2, 2, 6, 6, 3, 0], [3, 3, 7, 7, 4, 0]], np.int32)
    boxes, labels, valid = pad_gt(annotation, 5)
    np.testing.assert_array_equal(labels, [2, 3, 4, -1, -1])
    np.testing.assert_array_equal(valid, [False, True, True, False, False])
    np.testing.assert_array_equal(boxes[3:], 0)
    boxes, labels, valid = pad_gt(annotation, 2)  # more rows than num_gts (the original fails)
    np.testing.assert_array_equal(labels, [3, 4])
    assert valid.all()


# ---------------------------------------------------------------------------------------------------------------
# Label mapping, bad input
def test_label_map_round_trip(two_image_coco, tmp_path):
    cfg = small_cfg(coco_root=str(two_image_coco), mindrecord_dir=str(tmp_path))
    path = convert(cfg, EVAL, False)
    mapping = label_map(path)
    assert mapping == {3: {"id": 3, "name": "car"}, 17: {"id": 18, "name": "dog"},
                       40: {"id": 44, "name": "bottle"}}
    with open(os.path.join(two_image_coco, "annotations", "instances_val2017.json")) as f:
        source = json.load(f)
    for row in rows(pipeline(cfg, path, 1, is_training=False)):
        image_id = int(row["image_id"][0])
        expected = [a["category_id"] for a in source["annotations"] if a["image_id"] == image_id]
        labels = row["label"][0][: len(expected)]
        assert [mapping[int(label)]["id"] for label in labels] == expected
    # A user's own class names: coco_classes in the config, labels follow its order.
    own = small_cfg(coco_root=str(two_image_coco), mindrecord_dir=str(tmp_path / "own"), num_classes=4,
                    coco_classes=["background", "dog", "car", "bottle"])
    assert {k: v["id"] for k, v in label_map(convert(own, EVAL, False)).items()} == {1: 18, 2: 3, 3: 44}


def test_unknown_category_names_are_named(two_image_coco, tmp_path):
    cfg = small_cfg(coco_root=str(two_image_coco), mindrecord_dir=str(tmp_path), num_classes=3,
                    coco_classes=["background", "car", "cat"])
    with pytest.raises(DataError, match=r"categories \['bottle', 'dog'\] are not in the config's coco_classes"):
        convert(cfg, EVAL, False)


def test_json_missing_keys_are_named(tmp_path):
    write_coco(tmp_path, "val2017", [(1, "a.png", random_image(0, 50, 60))],
               [{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}], CATS)
    path = tmp_path / "annotations" / "instances_val2017.json"
    content = json.loads(path.read_text())
    del content["annotations"][0]["bbox"]
    path.write_text(json.dumps(content))
    cfg = small_cfg(coco_root=str(tmp_path), mindrecord_dir=str(tmp_path / "mr"))
    with pytest.raises(DataError, match=r"instances_val2017.json: annotations\[0\] has no 'bbox'"):
        convert(cfg, EVAL, False)
    content["annotations"][0]["bbox"] = [1, 2, 3, 4]
    del content["categories"]
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match="missing the list 'categories'"):
        convert(cfg, EVAL, False)


@pytest.fixture()
def messy_coco(tmp_path):
    images = [(1, "good.png", random_image(3, 100, 120)), (2, "gone.png", None),
              (3, "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg"), (4, "empty.png", random_image(4, 80, 90)),
              (5, "edge.png", random_image(5, 100, 120))]
    anns = [{"image_id": 1, "category_id": 3, "bbox": [10, 10, 30, 30]},
            {"image_id": 2, "category_id": 3, "bbox": [10, 10, 30, 30]},
            {"image_id": 3, "category_id": 3, "bbox": [10, 10, 30, 30]},
            {"image_id": 4, "category_id": 3, "bbox": [10, 10, 0.5, 30]},            # degenerate after truncation
            {"image_id": 4, "category_id": 18, "bbox": [20, 20, 10, 10], "iscrowd": 1},  # crowd only
            {"image_id": 5, "category_id": 18, "bbox": [-15, 90, 40, 30]},           # partly outside: clipped
            {"image_id": 5, "category_id": 3, "bbox": [130, 10, 20, 20]}]            # wholly outside: dropped
    write_coco(tmp_path, "train2017", images, anns, CATS)
    write_coco(tmp_path, "val2017", images, anns, CATS)
    return tmp_path


def test_missing_or_unreadable_image_is_named(messy_coco):
    cfg = small_cfg(coco_root=str(messy_coco), mindrecord_dir=str(messy_coco / "mr"))
    with pytest.raises(DataError, match=r"images\[1\] \(id 2\): image not found: .*gone.png"):
        convert(cfg, TRAIN, True)
    os.remove(messy_coco / "train2017" / "broken.jpg")
    (messy_coco / "train2017" / "gone.png").write_bytes(b"GIF89a")
    with pytest.raises(DataError, match=r"gone.png is not a BMP/JPEG/PNG/TIFF image"):
        convert(cfg, TRAIN, True)
    assert not os.path.exists(messy_coco / "mr" / (TRAIN + "0"))


def test_bad_images_skipped_and_boxes_cleaned_with_counts(messy_coco, capsys):
    cfg = small_cfg(coco_root=str(messy_coco), mindrecord_dir=str(messy_coco / "mr"), skip_bad_images=True,
                    skip_background_images=True)
    path = convert(cfg, TRAIN, True)
    sidecar = read_sidecar(path)
    assert sidecar["summary"] == {"images_in_source": 5, "images_written": 2, "images_background": 0,
                                  "images_without_box": 1,
                                  "images_missing": 1, "images_unreadable": 1, "images_over_num_gts": 0,
                                  "boxes_clipped": 2, "boxes_degenerate": 2, "boxes_crowd": 1, "images_oriented": 0}
    # what the evaluation needs to know: [image id, box index in the image], image ids
    assert sidecar["dropped_boxes"] == [[4, 0], [5, 1]] and sidecar["skipped_images"] == [2, 3]
    train = messy_coco / "train2017"
    assert (f"2 of 5 images written, 0 of them background images (no usable box); left out 1 without a usable box, "
            f"1 missing ({train / 'gone.png'}), 1 unreadable ({train / 'broken.jpg'})") in capsys.readouterr().out
    raw = {int(r["image_id"]): r["annotation"] for r in
           de.MindDataset(path, columns_list=["annotation", "image_id"], shuffle=False)
           .create_dict_iterator(output_numpy=True, num_epochs=1)}
    np.testing.assert_array_equal(raw[1], [[10, 10, 40, 40, 3, 0]])
    np.testing.assert_array_equal(raw[5], [[0, 90, 25, 100, 17, 0]])
    # Evaluation keeps every readable image, one without boxes as a single crowd row.
    path = convert(cfg, EVAL, False)
    ids = [int(r["image_id"][0]) for r in rows(pipeline(cfg, path, 1, is_training=False))]
    assert ids == [1, 4, 5]
    raw = {int(r["image_id"]): r["annotation"] for r in
           de.MindDataset(path, columns_list=["annotation", "image_id"], shuffle=False)
           .create_dict_iterator(output_numpy=True, num_epochs=1)}
    np.testing.assert_array_equal(raw[4], [[20, 20, 30, 30, 17, 1]])


def test_image_without_any_annotation_in_eval(tmp_path):
    write_coco(tmp_path, "val2017", [(1, "a.png", random_image(0, 50, 60))], [], CATS)
    cfg = small_cfg(coco_root=str(tmp_path), mindrecord_dir=str(tmp_path / "mr"))
    (row,) = rows(pipeline(cfg, convert(cfg, EVAL, False), 1, is_training=False))
    assert not row["valid_num"].any() and row["label"][0, 0] == 0 and (row["label"][0, 1:] == -1).all()


# ---------------------------------------------------------------------------------------------------------------
# Writing: temporary name + rename, reuse, interruption, ranks
@pytest.fixture(scope="module")
def synthetic(synthetic_data, tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("synthetic"), num_train=12, num_val=5, seed=1)


def test_txt_and_coco_give_the_same_rows(synthetic, tmp_path):
    def raw(path):
        ds = de.MindDataset(path, columns_list=["annotation", "image_id"], shuffle=False)
        return {int(r["image_id"]): r["annotation"].tolist() for r in ds.create_dict_iterator(output_numpy=True)}

    coco = small_cfg(coco_root=str(synthetic), mindrecord_dir=str(tmp_path / "coco"))
    txt = small_cfg(dataset="other", image_dir=str(synthetic), anno_path=str(synthetic / "train.txt"),
                    mindrecord_dir=str(tmp_path / "txt"))
    from_coco, from_txt = raw(convert(coco, TRAIN, True)), raw(convert(txt, TRAIN, True))
    assert len(from_coco) == 12 and from_coco == from_txt
    assert label_map(os.path.join(tmp_path / "txt", TRAIN + "0"))[75] == {"id": 75, "name": "clock"}


def test_reused_when_complete_rebuilt_when_the_source_changes(synthetic, tmp_path, capsys):
    cfg = small_cfg(coco_root=str(synthetic), mindrecord_dir=str(tmp_path))
    path = convert(cfg, EVAL, False)
    stamp = os.stat(path).st_mtime_ns
    assert convert(cfg, EVAL, False) == path and os.stat(path).st_mtime_ns == stamp
    assert f"Reusing MindRecord {path}" in capsys.readouterr().out
    other = small_cfg(coco_root=str(synthetic), mindrecord_dir=str(tmp_path), dataset="other",
                      image_dir=str(synthetic), anno_path=str(synthetic / "val.txt"))
    convert(other, EVAL, False)
    assert read_sidecar(path)["source"]["dataset"] == "txt"
    assert "Reusing" not in capsys.readouterr().out


def test_boxes_beyond_num_gts_are_counted_and_named(synthetic, tmp_path, capsys):
    cfg = small_cfg(coco_root=str(synthetic), mindrecord_dir=str(tmp_path))
    path = convert(cfg, TRAIN, True)
    with open(synthetic / "annotations" / "instances_train2017.json", encoding="utf-8") as f:
        boxes_per_image = {}
        for ann in json.load(f)["annotations"]:
            boxes_per_image[ann["image_id"]] = boxes_per_image.get(ann["image_id"], 0) + 1
    num_gts = max(boxes_per_image.values()) - 1
    expected = sum(n - num_gts for n in boxes_per_image.values() if n > num_gts)
    most_id = max(boxes_per_image, key=boxes_per_image.get)
    capsys.readouterr()
    pipeline(small_cfg(coco_root=str(synthetic), mindrecord_dir=str(tmp_path), num_gts=num_gts),
                              path, 2)
    err = capsys.readouterr().err
    assert f"have more than num_gts={num_gts} boxes" in err and f"{expected} boxes are not trained on" in err
    assert f"image id {most_id} with {boxes_per_image[most_id]}" in err
    assert dataset.warn_boxes_over_num_gts(path, num_gts + 1) == 0


def test_an_image_replaced_in_place_triggers_a_rebuild(synthetic, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(synthetic, data)
    cfg = small_cfg(coco_root=str(data), mindrecord_dir=str(tmp_path / "mr"))
    path = convert(cfg, EVAL, False)
    first = read_sidecar(path)["source"]["images"]
    image = data / "val2017" / sorted(os.listdir(data / "val2017"))[0]
    picture = cv2.imread(str(image))
    cv2.imwrite(str(image), 255 - picture)  # the same name, other pixels
    capsys.readouterr()
    assert convert(cfg, EVAL, False) == path
    out = capsys.readouterr().out
    assert f"Rebuilding MindRecord {path}: an image file changed" in out and "Reusing" not in out
    assert read_sidecar(path)["source"]["images"] != first
    (data / "annotations" / "instances_val2017.json").write_text(
        (data / "annotations" / "instances_val2017.json").read_text() + "\n")
    convert(cfg, EVAL, False)
    assert "the annotation file's content changed" in capsys.readouterr().out


class Interrupted(BaseException):
    """Stands for Ctrl-C or a kill in the middle of a write."""


def test_interrupted_write_is_never_taken_for_complete(synthetic, tmp_path, monkeypatch):
    cfg = small_cfg(coco_root=str(synthetic), mindrecord_dir=str(tmp_path))
    target = os.path.join(tmp_path, TRAIN + "0")
    # 1. interrupted while writing rows: nothing lands in the folder
    monkeypatch.setattr(mindrecord, "WRITE_BATCH_ROWS", 2)
    calls = {"n": 0}
    real_write = mindrecord.FileWriter.write_raw_data

    def failing_write(self, batch, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupted()
        return real_write(self, batch, *args, **kwargs)

    monkeypatch.setattr(mindrecord.FileWriter, "write_raw_data", failing_write)
    with pytest.raises(Interrupted):
        convert(cfg, TRAIN, True)
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    # 2. interrupted while moving the files into place: some are there, the set is not complete
    real_replace, moved = os.replace, []

    def failing_replace(src, dst):
        if len(moved) == 5:
            raise Interrupted()
        moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(mindrecord.os, "replace", failing_replace)
    with pytest.raises(Interrupted):
        convert(cfg, TRAIN, True)
    monkeypatch.undo()
    assert os.path.isfile(moved[0]) and not is_mindrecord_complete(target)
    with pytest.raises(DataError, match="not a complete MindRecord"):
        pipeline(cfg, target, 2)
    # 3. the next run rebuilds it; a damaged file afterwards makes it incomplete again
    assert convert(cfg, TRAIN, True) == target and is_mindrecord_complete(target)
    assert pipeline(cfg, target, 2).get_dataset_size() == 6
    with open(os.path.join(tmp_path, TRAIN + "3"), "r+b") as f:
        f.truncate(100)
    assert not is_mindrecord_complete(target)


@pytest.mark.slow  # a subprocess that converts a data set
def test_killed_writer_leaves_nothing_accepted(synthetic, tmp_path):
    """A real kill (no clean-up code runs) in the middle of moving the files into place."""
    script = f"""
import os, signal
import src.data.mindrecord as mindrecord
from src.data.settings import DataSettings
from src.model_utils.config import get_config
real, count = os.replace, [0]
def replace(src, dst):
    count[0] += 1
    if count[0] == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
mindrecord.os.replace = replace
cfg = get_config([], coco_root={str(synthetic)!r}, mindrecord_dir={str(tmp_path)!r}, img_height={H}, img_width={W})
mindrecord.create_mindrecord(DataSettings.from_config(cfg), {TRAIN!r}, True)
"""
    result = run_script(f"-c {script}", timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    target = os.path.join(tmp_path, TRAIN + "0")
    leftovers = os.listdir(tmp_path)
    assert any(name.startswith(f".{TRAIN}.partial-") for name in leftovers) and len(leftovers) == 4
    assert not is_mindrecord_complete(target)
    cfg = small_cfg(coco_root=str(synthetic), mindrecord_dir=str(tmp_path))
    assert convert(cfg, TRAIN, True) == target and is_mindrecord_complete(target)
    assert not any(name.startswith(".") for name in os.listdir(tmp_path))  # the stale partial folder is gone
    assert sorted(os.listdir(tmp_path)) == sorted([f"{TRAIN}{i}{ext}" for i in range(8) for ext in ("", ".db")]
                                                  + [f"{TRAIN}0.json"])


def test_other_ranks_wait_for_rank_0(synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(mindrecord, "WAIT_POLL_SECONDS", 0.05)
    cfg = small_cfg(coco_root=str(synthetic), mindrecord_dir=str(tmp_path))
    result = {}
    waiter = threading.Thread(target=lambda: result.update(path=convert(cfg, TRAIN, True, rank_id=1)))
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive() and not os.path.exists(tmp_path / (TRAIN + "0"))  # rank 1 writes nothing
    path = convert(cfg, TRAIN, True, rank_id=0)
    waiter.join(timeout=30)
    assert not waiter.is_alive() and result["path"] == path


# ---------------------------------------------------------------------------------------------------------------
# Pipelines: shards, workers, batches
def test_each_rank_reads_its_shard(synthetic, tmp_path):
    cfg = small_cfg(coco_root=str(synthetic), mindrecord_dir=str(tmp_path))
    path = convert(cfg, EVAL, False)
    seen = []
    for rank in (0, 1):
        ds = pipeline(cfg, path, 1, device_num=2, rank_id=rank, is_training=False)
        seen.append([int(r["image_id"][0]) for r in rows(ds)])
    assert len(seen[0]) == len(seen[1]) == 3  # 5 images over 2 ranks: MindDataset evens the shards out
    assert set(seen[0]) | set(seen[1]) == {1_000_001 + i for i in range(5)}
    ds = pipeline(cfg, path, 2, is_training=False)
    ids = [r["image_id"].tolist() for r in rows(ds)]
    assert ids == [[1_000_001, 1_000_002], [1_000_003, 1_000_004], [1_000_005, -1]]  # json order, padded
    with pytest.raises(ValueError, match="rank_id=2 must lie in"):
        pipeline(cfg, path, 1, device_num=2, rank_id=2)


def test_training_pipeline_with_worker_processes(synthetic, tmp_path):
    cfg = small_cfg(coco_root=str(synthetic), mindrecord_dir=str(tmp_path), python_multiprocessing=True,
                    num_parallel_workers=2)
    settings = replace(PipelineSettings.from_config(cfg), workers=64)  # capped at the machine's cores
    ds = create_fasterrcnn_dataset(settings, convert(cfg, TRAIN, True), batch_size=2)
    assert ds.get_dataset_size() == 6 and ds.get_col_names() == dataset.TRAIN_COLUMNS
    batches = rows(ds)
    assert len(batches) == 6
    for batch in batches:
        assert batch["image"].shape == (2, 3, H, W) and batch["image"].dtype == np.float32
        assert batch["image_shape"].shape == (2, 3) and batch["box"].shape == (2, cfg.num_gts, 4)
        assert batch["label"].dtype == np.int32 and batch["valid_num"].dtype == np.bool_
        valid = batch["valid_num"]
        boxes = batch["box"][valid]
        assert valid.sum(axis=1).min() >= 1 and (batch["label"][valid] > 0).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert boxes[:, [0, 2]].max() <= W - 1 and boxes[:, [1, 3]].max() <= H - 1 and boxes.min() >= 0
    assert cap_workers(64) == os.cpu_count()
