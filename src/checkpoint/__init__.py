"""Checkpoint files: the whole network's (reading, matching, loading for inference, resuming: detector.py), the
ResNet-50 backbone's (backbone.py) and torchvision's ResNet-50 converted to the model zoo's names
(from_torchvision.py). Nothing here imports training code; writing checkpoints during training is
src/engine/hooks.py."""
