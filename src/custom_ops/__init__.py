"""CPU custom ops (C++ with OpenMP, compiled on first use) for the network's hot spots.

- `MultiLevelRoIAlign`: the original's multi-level RoIAlign, pooling each RoI on its own level only.
- `DeformConv2dOriginal`: the original's modulated deformable conv (sampling kernel + one batched matmul).
- `NmsWithMask`: `ops.NMSWithMask`'s outputs, computing only the IoUs greedy NMS needs.

Both give the original's numbers and gradients; see their docstrings and tests/test_custom_ops.py.
"""

import os

import mindspore as ms

from src.custom_ops.deform_conv import DeformConv2dOriginal
from src.custom_ops.nms import NmsWithMask
from src.custom_ops.roi_align import MultiLevelRoIAlign

DISABLE_ENV = "FASTER_RCNN_CPU_KERNELS"  # set to 0 to use MindSpore's ops on the CPU too (A/B comparisons)

__all__ = ["DeformConv2dOriginal", "MultiLevelRoIAlign", "NmsWithMask", "use_cpu_kernels"]


def use_cpu_kernels() -> bool:
    """True when the cells should use these kernels: the MindSpore context targets the CPU (read it in a
    Cell's __init__, after set_context) and FASTER_RCNN_CPU_KERNELS is not 0."""
    return ms.get_context("device_target") == "CPU" and os.environ.get(DISABLE_ENV, "1") != "0"
