"""The FPN's top-down merge at an exact 2x, lateral + nearest_upsample_2x(x), as a CPU custom op with its gradient.

One pass over the output instead of MindSpore's broadcast (materialised) and add, and a 2x2 block sum for the
gradient instead of a strided ReduceSum. See upsample_add.cc.
"""

from mindspore import dtype as mstype
from mindspore import nn, ops

from src.ops.cpu.build import library_path
from src.ops.cpu.dtypes import require_float32


class UpsampleAdd2x(nn.Cell):
    """out = lateral + x upsampled 2x by nearest neighbour (CPU custom op). No parameters.

    Inputs: lateral (N, C, 2h, 2w) float32, x (N, C, h, w) float32. Output: (N, C, 2h, 2w) float32,
    out[..., i, j] = lateral[..., i, j] + x[..., i // 2, j // 2]. Gradients flow to both inputs.
    """

    def __init__(self):
        super().__init__()
        library = library_path("upsample_add")

        def forward_shape(lateral_shape, x_shape):
            if len(x_shape) != 4 or list(lateral_shape) != [*x_shape[:2], 2 * x_shape[2], 2 * x_shape[3]]:
                raise ValueError(f"UpsampleAdd2x: lateral {tuple(lateral_shape)} must be (N, C, 2h, 2w) for x "
                                 f"(N, C, h, w) {tuple(x_shape)}")
            return list(lateral_shape)

        def forward_dtype(lateral_dtype, x_dtype):
            require_float32("UpsampleAdd2x", "lateral and x", [lateral_dtype, x_dtype])
            return mstype.float32

        x_grad = ops.Custom(f"{library}:UpsampleAdd2xGrad", out_dtype=lambda dout: dout, func_type="aot",
                            out_shape=lambda dout: [dout[0], dout[1], dout[2] // 2, dout[3] // 2])

        def bprop(lateral, x, out, dout):
            return dout, x_grad(dout)

        self.merge = ops.Custom(f"{library}:UpsampleAdd2x", out_shape=forward_shape, out_dtype=forward_dtype,
                                func_type="aot", bprop=bprop)

    def construct(self, lateral, x):
        return self.merge(lateral, x)
