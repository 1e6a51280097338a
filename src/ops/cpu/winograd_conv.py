"""3x3 convolution (stride 1, zero padding 1) by Winograd's F(4x4, 3x3) as a CPU custom op, with its gradients.

4x fewer multiply-adds than the direct convolution; the products are oneDNN's sgemm. Same value as
`ops.conv2d(x, w, pad_mode="pad", padding=1)` to float32 rounding (tests/test_custom_ops.py: within 2e-4 of the
output's std for 256 channels), in the forward pass and in both gradients. See winograd_conv.cc.
"""

from mindspore import dtype as mstype
from mindspore import nn, ops

from src.ops.cpu.build import library_path
from src.ops.cpu.dtypes import require_float32

# Below this many output pixels per map a 256 -> 256 direct convolution is faster than Winograd's (too few tiles to
# keep the products efficient; bench/RESULTS.md): the FPN's and the RPN head's convs use the direct one there.
WINOGRAD_MIN_PIXELS = 48 * 80


def _check_shapes(x_shape, w_shape, b_shape) -> None:
    if len(x_shape) != 4 or len(w_shape) != 4 or tuple(w_shape[2:]) != (3, 3) or w_shape[1] != x_shape[1]:
        raise ValueError(f"WinogradConv3x3: weight {tuple(w_shape)} must be (K, C, 3, 3) for x (N, C, H, W) "
                         f"{tuple(x_shape)}")
    if list(b_shape) != [w_shape[0]]:
        raise ValueError(f"WinogradConv3x3: bias {tuple(b_shape)} must be (K,) for weight {tuple(w_shape)}")


class WinogradConv3x3(nn.Cell):
    """y = conv2d(x, weight) + bias, 3x3, stride 1, padding 1 (CPU custom op). No parameters.

    Inputs: x (N, C, H, W), weight (K, C, 3, 3), bias (K,), all float32. Output: (N, K, H, W) float32.
    Gradients flow to all three.
    """

    def __init__(self):
        super().__init__()
        library = library_path("winograd_conv")

        def forward_shape(x_shape, w_shape, b_shape):
            _check_shapes(x_shape, w_shape, b_shape)
            return [x_shape[0], w_shape[0], x_shape[2], x_shape[3]]

        def forward_dtype(x_dtype, w_dtype, b_dtype):
            require_float32("WinogradConv3x3", "x, weight and bias", [x_dtype, w_dtype, b_dtype])
            return mstype.float32

        input_grad = ops.Custom(f"{library}:WinogradConv3x3Input", out_dtype=lambda dy, w: dy, func_type="aot",
                                out_shape=lambda dy, w: [dy[0], w[1], dy[2], dy[3]])
        filter_grad = ops.Custom(f"{library}:WinogradConv3x3Filter", out_dtype=lambda x, dy: (x, x),
                                 func_type="aot", out_shape=lambda x, dy: ([dy[1], x[1], 3, 3], [dy[1]]))

        def bprop(x, weight, bias, out, dout):
            dweight, dbias = filter_grad(x, dout)
            return input_grad(dout, weight), dweight, dbias

        self.conv = ops.Custom(f"{library}:WinogradConv3x3", out_shape=forward_shape, out_dtype=forward_dtype,
                               func_type="aot", bprop=bprop)

    def construct(self, x, weight, bias):
        return self.conv(x, weight, bias)
