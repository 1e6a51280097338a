"""Faster R-CNN-DCN (ResNet-50 with modulated deformable convolutions in layer2-4, FPN), MindSpore."""
from src.FasterRcnn.faster_rcnn_resnet50 import (
    FasterRcnnInfer,
    FasterRcnnResnet50,
    build_infer_model,
    build_model,
)
from src.FasterRcnn.settings import ModelSettings

__all__ = ["FasterRcnnInfer", "FasterRcnnResnet50", "ModelSettings", "build_infer_model", "build_model"]
