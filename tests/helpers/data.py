"""The conversion and the pipelines built from a Config, as train.py and eval.py build them."""
from __future__ import annotations

from src.data.mindrecord import create_mindrecord
from src.data.settings import DataSettings
from src.dataset import PipelineSettings, create_fasterrcnn_dataset


def convert(cfg, prefix: str, is_training: bool, **kwargs) -> str:
    """create_mindrecord on the config's DataSettings; returns the file to open."""
    return create_mindrecord(DataSettings.from_config(cfg), prefix, is_training, **kwargs)


def pipeline(cfg, mindrecord_file: str, batch_size: int, **kwargs):
    """create_fasterrcnn_dataset on the config's PipelineSettings."""
    return create_fasterrcnn_dataset(PipelineSettings.from_config(cfg), mindrecord_file, batch_size, **kwargs)
