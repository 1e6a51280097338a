"""`Kernels`: which implementation computes the network's device-specific operators (see the table in src/ops)."""
from __future__ import annotations

import enum


class Kernels(enum.Enum):
    """Which implementation computes RoIAlign, the deformable convolution, NMS, the FPN's top-down merge and the
    stride-1 3x3 convolutions."""

    CPU = "cpu"  # this project's C++ kernels (src/ops/cpu, Winograd 3x3 convs): the CPU only, faster there
    MINDSPORE = "mindspore"  # MindSpore's operators (ROIAlign, DeformableOffsets, NMSWithMask): any device
    # standard operators, deformable sampling and RoIAlign as gathers (src/ops/gathered.py), NMSWithMask: export.py's
    # MINDIR (any device, no machine-local library, fast on the CPU); inference only
    GATHER = "gather"
