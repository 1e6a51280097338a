"""Any COCO json + image folder (train_anno_path / train_image_dir, val_anno_path / val_image_dir) instead of the
coco_root layout, on a labelling tool's export (images/ + annotations.json, file_names relative to images/): the
conversion and the evaluation's ground truth read them, and classes not given are taken from the json's categories
by id with one warning line."""
import json

import pytest
from mindspore import dataset as de

from src.data.mindrecord import DEFAULT_SUBDIR, label_map, mindrecord_directory
from src.data.settings import DataSettings
from src.deploy.detect_images import model_to_run
from src.evaluation.evaluator import EvaluationSettings, ground_truth_path, prepare_evaluation_set
from src.infra.errors import DataError
from src.model_utils.config import classes_from_data, get_config
from src.util import load_ground_truth
from tests.helpers.data import convert, write_coco_set

TRAIN, EVAL = "FasterRcnn.mindrecord", "FasterRcnn_eval.mindrecord"
# listed out of id order: the classes follow the ids
CATEGORIES = [(7, "owl"), (2, "fox"), (5, "hedgehog")]  # not COCO names
IMAGES = [(11, "a.png", (60, 80)), (12, "sub/b.png", (50, 70))]
ANNOTATIONS = [(11, 5, [4, 6, 20, 30], 0), (11, 7, [30, 10, 25, 25], 0), (12, 2, [1, 2, 40, 30], 0)]
WARNING = "WARNING: classes taken from annotations.json's 3 categories (by id): fox, hedgehog, owl"


@pytest.fixture()
def export(tmp_path):
    """A labelling tool's export: images/ and annotations.json beside it."""
    return write_coco_set(tmp_path / "annotations.json", tmp_path / "images", IMAGES, ANNOTATIONS, CATEGORIES)


def own_json_cfg(json_path, argv=(), **overrides):
    folder = str(json_path).rsplit("/", 1)[0] + "/images"
    return get_config(list(argv), train_anno_path=str(json_path), train_image_dir=folder,
                      val_anno_path=str(json_path), val_image_dir=folder, **overrides)


def stored_rows(path):
    rows = de.MindDataset(path, columns_list=["annotation", "image_id"], shuffle=False)
    return {int(r["image_id"]): r["annotation"].tolist() for r in rows.create_dict_iterator(output_numpy=True)}


def test_training_set_from_a_json_and_an_image_folder_with_its_classes(export, tmp_path, capsys):
    cfg = own_json_cfg(export)
    assert cfg.coco_root == "" and cfg.num_classes == 81
    cfg = classes_from_data(cfg, is_training=True)
    assert capsys.readouterr().err.strip() == WARNING
    assert list(cfg.coco_classes) == ["background", "fox", "hedgehog", "owl"] and cfg.num_classes == 4
    # the set lives beside the json (no coco_root), labels follow the ids: fox 1, hedgehog 2, owl 3
    assert mindrecord_directory(DataSettings.from_config(cfg)) == str(tmp_path / DEFAULT_SUBDIR)
    path = convert(cfg, TRAIN, True)
    assert path == str(tmp_path / DEFAULT_SUBDIR / (TRAIN + "0"))
    assert stored_rows(path) == {11: [[4, 6, 24, 36, 2, 0], [30, 10, 55, 35, 3, 0]], 12: [[1, 2, 41, 32, 1, 0]]}
    assert label_map(path) == {1: {"id": 2, "name": "fox"}, 2: {"id": 5, "name": "hedgehog"},
                               3: {"id": 7, "name": "owl"}}


def test_given_classes_are_kept_and_checked_against_the_json(export, capsys):
    # given on the command line: today's check, naming the categories they lack
    cfg = own_json_cfg(export, ["--coco_classes=[background, hedgehog]", "--num_classes=2"])
    assert classes_from_data(cfg, is_training=True) is cfg
    with pytest.raises(DataError, match=r"categories \['fox', 'owl'\] are not in the config's coco_classes"):
        convert(cfg, TRAIN, True)
    # given in a yaml (not the shipped COCO names): kept
    demo = own_json_cfg(export, ["--config_path=demo_config.yaml"])
    assert classes_from_data(demo, is_training=True) is demo
    assert "WARNING" not in capsys.readouterr().err


def test_a_json_of_coco_names_keeps_cocos_classes(tmp_path, capsys):
    json_path = write_coco_set(tmp_path / "annotations.json", tmp_path / "images", IMAGES[:1],
                               [(11, 18, [4, 6, 20, 30], 0)], [(18, "dog"), (3, "car")])
    cfg = own_json_cfg(json_path)
    assert classes_from_data(cfg, is_training=True) is cfg and "WARNING" not in capsys.readouterr().err
    assert stored_rows(convert(cfg, TRAIN, True)) == {11: [[4, 6, 24, 36, 17, 0]]}  # COCO's label of "dog"


def test_the_coco_root_layout_keeps_the_configured_classes(tmp_path):
    """Its json is COCO's (large) and not read for classes: other categories fail the conversion as before."""
    write_coco_set(tmp_path / "annotations" / "instances_train2017.json", tmp_path / "train2017", IMAGES,
                   ANNOTATIONS, CATEGORIES)
    cfg = get_config([], coco_root=str(tmp_path))
    assert classes_from_data(cfg, is_training=True) is cfg
    with pytest.raises(DataError, match=r"categories \['fox', 'hedgehog', 'owl'\] are not in the config's"):
        convert(cfg, TRAIN, True)


def test_repeated_category_names_are_refused(tmp_path):
    json_path = write_coco_set(tmp_path / "annotations.json", tmp_path / "images", IMAGES[:1], [],
                               [(1, "fox"), (2, "fox")])
    with pytest.raises(DataError, match=r"annotations.json: categories \['fox'\] appear more than once"):
        classes_from_data(own_json_cfg(json_path), is_training=True)


def test_evaluation_reads_the_validation_json_and_folder(export, tmp_path, capsys):
    cfg = classes_from_data(own_json_cfg(export), is_training=False)
    data = DataSettings.from_config(cfg)
    anno_path = ground_truth_path(data)
    assert anno_path == export and f"anno_path not given: using {export}" in capsys.readouterr().out
    evaluation_set = prepare_evaluation_set(data, load_ground_truth(anno_path, "coco", data.classes), anno_path)
    assert evaluation_set.num_images == 2 and sorted(evaluation_set.coco.getImgIds()) == [11, 12]
    assert EvaluationSettings.from_config(cfg).image_folder == str(tmp_path / "images")
    with open(export, encoding="utf-8") as f:
        assert len(json.load(f)["annotations"]) == len(evaluation_set.coco.getAnnIds()) == 3


def test_a_missing_json_names_its_key(tmp_path):
    cfg = get_config([], train_anno_path=str(tmp_path / "nope.json"), train_image_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"annotation file not found: .*nope.json' \(config keys train_anno_path\)"):
        convert(cfg, TRAIN, True)



def test_infer_and_export_with_a_checkpoint_take_the_training_jsons_classes(export, capsys):
    cfg, exported, classes, _ = model_to_run(own_json_cfg(export, checkpoint_path="model.ckpt"))
    assert exported == "" and classes == ["background", "fox", "hedgehog", "owl"] and cfg.num_classes == 4
    assert capsys.readouterr().err.strip() == WARNING


def test_the_anchor_report_takes_the_training_jsons_classes(export, capsys):
    from src.tools.anchor_report import report  # noqa: PLC0415

    report(own_json_cfg(export))  # the json's categories are not the config's: refused without them
    captured = capsys.readouterr()
    assert captured.err.strip() == WARNING
    assert "anchor fit: 3 non-crowd boxes of 2 training images" in captured.out
