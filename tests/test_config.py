"""The config: yaml values as the original's, command-line overrides, derived sizes, clear errors."""
import os

import pytest
import yaml

from src.model_utils.config import DERIVED_KEYS, INACTIVE_KEYS, ROOT, ConfigError, get_config, parse_yaml


def test_default_values_are_the_originals():
    cfg = get_config(["--config_path", "default_config.yaml"])
    assert cfg.device_target == "Ascend"
    assert (cfg.base_lr, cfg.momentum, cfg.weight_decay, cfg.loss_scale) == (0.04, 0.91, 1e-5, 256)
    assert (cfg.warmup_step, cfg.warmup_ratio, cfg.epoch_size) == (500, 0.0625, 68)
    assert cfg.roi_layer.out_size == 7 and cfg.roi_layer.sample_num == 2
    assert cfg.num_classes == 81 == len(cfg.coco_classes) and cfg.coco_classes[0] == "background"


def test_three_yamls_differ_only_where_the_target_does():
    base, _, _ = parse_yaml(os.path.join(ROOT, "default_config.yaml"))
    for name, expected in (("default_config_gpu.yaml", {"device_target": "GPU", "epoch_size": 72}),
                           ("default_config_cpu.yaml", {"device_target": "CPU", "epoch_size": 72,
                                                        "num_parallel_workers": 2})):
        other, _, _ = parse_yaml(os.path.join(ROOT, name))
        assert set(other) == set(base)
        assert {k: v for k, v in other.items() if base[k] != v} == expected


def test_own_photos_recipe_differs_from_the_demo_only_where_it_says():
    """configs/own_photos_cpu.yaml is demo_config.yaml with the recipe's values (its header lists them), the same
    help strings and choices, and a consistent head (classes, anchors per position)."""
    demo = parse_yaml(os.path.join(ROOT, "demo_config.yaml"))
    own = parse_yaml(os.path.join(ROOT, "configs", "own_photos_cpu.yaml"))
    assert set(own[0]) == set(demo[0]) and own[1:] == demo[1:]
    assert {k: v for k, v in own[0].items() if demo[0][k] != v} == {
        "img_width": 320, "img_height": 320, "anchor_scales": [4, 5.66], "num_anchors": 6, "num_gts": 64,
        "epoch_size": 6, "coco_classes": ["background", "tree"], "num_classes": 2, "dataset": "other"}
    cfg = get_config([f"--config_path={ROOT}/configs/own_photos_cpu.yaml"])
    assert cfg.num_classes == len(cfg.coco_classes)
    assert cfg.num_anchors == len(cfg.anchor_scales) * len(cfg.anchor_ratios)


def test_default_file_follows_device_target():
    assert get_config(["--device_target=GPU"]).epoch_size == 72
    assert get_config(["--device_target=GPU"]).device_target == "GPU"
    assert get_config([]).device_target == "CPU"


def test_sizes_derive_from_the_image_size():
    cfg = get_config([])
    assert cfg.feature_shapes == [[192, 320], [96, 160], [48, 80], [24, 40], [12, 20]]
    assert cfg.num_bboxes == 245520
    cfg = get_config(["--img_height=384", "--img_width=640"])
    assert cfg.feature_shapes == [[96, 160], [48, 80], [24, 40], [12, 20], [6, 10]]
    assert cfg.num_bboxes == 3 * (96 * 160 + 48 * 80 + 24 * 40 + 12 * 20 + 6 * 10)
    # 224 = 7 x 32: the stride-64 level is rounded up as the network's pooling does
    assert get_config([], img_height=224, img_width=352).feature_shapes[-1] == [4, 6]


def test_overrides_are_typed():
    cfg = get_config(["--img_width=640", "--keep_ratio=False", "--base_lr=0.01", "--anchor_ratios=[1, 2]"])
    assert cfg.img_width == 640 and isinstance(cfg.img_width, int)
    assert cfg.keep_ratio is False and cfg.base_lr == 0.01 and cfg.anchor_ratios == [1, 2]


@pytest.mark.parametrize("argv, words", [
    (["--img_width=641"], "img_width=641"),
    (["--no_such_key=1"], "no_such_key"),
    (["--img_width=abc"], "--img_width"),
    (["--batch_size=1.5"], "integer"),
    (["--keep_ratio=maybe"], "--keep_ratio"),
    (["--device_target=TPU"], "device_target"),
    (["--file_format=PNG"], "--file_format"),
    (["--config_path=/nonexistent.yaml"], "/nonexistent.yaml"),
    (["--anchor_ratios=5"], "--anchor_ratios"),
])
def test_bad_values_fail_with_the_key_named(argv, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        get_config(argv)


def test_worker_count_never_exceeds_the_cores():
    cfg = get_config(["--config_path", "default_config.yaml"])
    assert cfg.num_parallel_workers <= (os.cpu_count() or 1)


def test_every_key_of_the_yamls_is_read_by_the_code():
    """No key of this project's yamls is dead: each is read as an attribute somewhere outside the tests."""
    import glob  # noqa: PLC0415
    import re  # noqa: PLC0415

    sources = glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "src", "**", "*.py"), recursive=True)
    code = "\n".join(open(path, encoding="utf-8").read() for path in sources)
    for name in ("default_config.yaml", "default_config_gpu.yaml", "default_config_cpu.yaml", "demo_config.yaml"):
        values, _, _ = parse_yaml(os.path.join(ROOT, name))
        unread = [key for key in values if not re.search(rf"\.{key}\b|\"{key}\"", code)]
        assert unread == [], f"{name}: keys nothing reads: {unread}"
        assert not set(values) & (INACTIVE_KEYS.keys() | DERIVED_KEYS.keys()), name


def test_a_copy_of_the_originals_yaml_loads_with_one_warning(tmp_path, capsys):
    """The original's keys that have no effect are named in one warning line; a derived value that disagrees is
    replaced (with a warning) by the one that follows from the other keys."""
    values, helps, choices = parse_yaml(os.path.join(ROOT, "default_config_cpu.yaml"))
    original = dict(values, rpn_nms_post=1000, sgd_step=[8, 11], num_expected_total_stage2=512, roi_sample_num=640,
                    num_bboxes=245520, num_bboxes_stage2=1999)
    path = tmp_path / "original.yaml"
    path.write_text(yaml.safe_dump_all([original, helps, choices]))
    capsys.readouterr()
    cfg = get_config([f"--config_path={path}"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 2
    assert "no effect" in warnings[0] and "num_expected_total_stage2, rpn_nms_post, sgd_step" in warnings[0]
    assert "num_bboxes_stage2=1999 -> 2000" in warnings[1] and "roi_sample_num" not in warnings[1]
    assert cfg.num_bboxes_stage2 == cfg.rpn_proposal_max_num == 2000 and "sgd_step" not in cfg
    # and the same key on the command line (an original's launcher), with the image size changing num_bboxes
    get_config(["--rpn_nms_post=5", "--img_height=384", "--img_width=640"])
    assert "rpn_nms_post" in capsys.readouterr().err


def test_given_keys_and_replace():
    cfg = get_config(["--batch_size=1"], img_width=640)
    assert {"batch_size", "img_width"} <= cfg.given and "img_height" not in cfg.given
    changed = cfg.replace(coco_root="/data")
    assert changed.coco_root == "/data" and cfg.coco_root != "/data" and "coco_root" in changed.given
    with pytest.raises(ConfigError, match="no_such_key"):
        cfg.replace(no_such_key=1)
