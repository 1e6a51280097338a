"""CPU custom ops (C++ with OpenMP, compiled on first use) for the network's hot spots.

- `MultiLevelRoIAlign`: the original's multi-level RoIAlign, pooling each RoI on its own level only.
- `DeformConv2dOriginal`: the original's modulated deformable conv (sampling kernel + one batched matmul).
- `NmsWithMask`: `ops.NMSWithMask`'s outputs, computing only the IoUs greedy NMS needs.
- `UpsampleAdd2x`: the FPN's lateral + 2x nearest upsampling in one pass, and its gradient.
- `WinogradConv3x3`: a 3x3 stride-1 convolution by Winograd's F(4x4, 3x3), 4x fewer multiply-adds.

Each gives the numbers (and gradients) of the MindSpore operator it replaces; see their docstrings and
tests/test_custom_ops.py. The operator factories of `src.ops` choose them with `Kernels.CPU`.
"""

from src.ops.cpu.deform_conv import DeformConv2dOriginal
from src.ops.cpu.nms import NmsWithMask
from src.ops.cpu.roi_align import MultiLevelRoIAlign
from src.ops.cpu.upsample_add import UpsampleAdd2x
from src.ops.cpu.winograd_conv import WinogradConv3x3

__all__ = ["DeformConv2dOriginal", "MultiLevelRoIAlign", "NmsWithMask", "UpsampleAdd2x", "WinogradConv3x3"]
