"""CPU custom ops (C++ with OpenMP, compiled on first use) for the network's hot spots.

- `MultiLevelRoIAlign`: the original's multi-level RoIAlign, pooling each RoI on its own level only.
- `DeformConv2dOriginal`: the original's modulated deformable conv (sampling kernel + one batched matmul).
- `NmsWithMask`: `ops.NMSWithMask`'s outputs, computing only the IoUs greedy NMS needs.

Each gives the numbers (and gradients) of the MindSpore operator it replaces; see their docstrings and
tests/test_custom_ops.py. Which implementation a network uses is its `Kernels` (src/FasterRcnn/settings.py).
"""

from src.custom_ops.deform_conv import DeformConv2dOriginal
from src.custom_ops.nms import NmsWithMask
from src.custom_ops.roi_align import MultiLevelRoIAlign

__all__ = ["DeformConv2dOriginal", "MultiLevelRoIAlign", "NmsWithMask"]
