"""The network's device-specific operators. The model (src/FasterRcnn) calls these factories with its `Kernels`;
each returns a cell with one signature in every mode, and which code runs is decided here.

Which implementation each mode runs (CPU: train.py, eval.py and infer.py on the CPU; MINDSPORE: GPU, Ascend, and
the CPU with FASTER_RCNN_CPU_KERNELS=0; GATHER: export.py's MINDIR and ONNX graph, any device):

| factory (module)                  | Kernels.CPU                       | Kernels.MINDSPORE      | Kernels.GATHER    |
|-----------------------------------|-----------------------------------|------------------------|-------------------|
| multi_level_roi_align (roi_align) | C++ MultiLevelRoIAlign (4 levels) | ops.ROIAlign per level | gathers + matmuls |
| deform_conv (deform_conv)         | C++ DeformConv2dOriginal          | ops.deformable_conv2d  | gathers + matmul  |
| nms_with_mask (nms)               | C++ NmsWithMask                   | ops.NMSWithMask        | ops.NMSWithMask   |
| conv3x3, SameConv3x3 (conv3x3)    | C++ WinogradConv3x3 (stride 1)    | ops.conv2d             | ops.conv2d        |
| fpn_merge (fpn_merge)             | C++ UpsampleAdd2x (exact 2x)      | broadcast add          | broadcast add     |

The gathers are gathered.py (standard operators that MindSpore's ONNX exporter converts).
The C++ kernels (src/ops/cpu, compiled with g++ on first use into build/custom_ops/) run on the CPU only and never
go into an exported graph (a MINDIR must not reference a machine-local library); `src.infra.runtime.network_kernels`
picks the mode. Every implementation computes the numbers of the MindSpore operators the original uses
(tests/test_custom_ops.py, tests/test_fidelity*.py).
"""
from src.ops.conv3x3 import SameConv3x3, conv3x3
from src.ops.deform_conv import deform_conv
from src.ops.fpn_merge import fpn_merge
from src.ops.kernels import Kernels
from src.ops.nms import nms_with_mask
from src.ops.roi_align import multi_level_roi_align

__all__ = ["Kernels", "SameConv3x3", "conv3x3", "deform_conv", "fpn_merge", "multi_level_roi_align", "nms_with_mask"]
