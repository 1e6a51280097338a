"""The config: yaml values as the original's, command-line overrides, derived sizes, clear errors."""
import os

import pytest

from src.model_utils.config import ROOT, ConfigError, get_config, parse_yaml


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
