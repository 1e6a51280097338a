"""The settings dataclasses' defaults are default_config.yaml's values, so a cell built from them in a test is the
shipped network's."""
from src.FasterRcnn.settings import ModelSettings
from src.model_utils.config import get_config


def test_defaults_are_the_default_configs():
    assert ModelSettings() == ModelSettings.from_config(get_config([]))
