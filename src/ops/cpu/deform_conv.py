"""The original model's modulated deformable convolution as a CPU custom op plus one batched matmul.

What it computes (the original DeformConv2d, tests/data/FIDELITY.md): for output pixel (i, j) and tap k = 3a + b,
sample x bilinearly at row clip(s*i + a + dy_k, 0, H-1), column clip(s*j + b + dx_k, 0, W-1) (edge
replication), multiply by sigmoid(mask_logit_k), and contract with the conv weight. The sampling and its
gradient to x and to the offsets/mask logits are `deform_sampling.cc`. The forward pass samples and contracts block
by block in one kernel (`DeformConv`, oneDNN's sgemm), so the sampled columns (N, Ho*Wo, 9C) are never stored (its
gradient samples them again); in training (`set_train(True)`) the columns are sampled, kept and contracted with
MindSpore's batched matmul, whose autodiff gives the weight's gradient.
"""

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from src.ops.cpu.build import library_path
from src.ops.cpu.dtypes import require_float32

OFFSET_MASK_GROUPS = 3  # row offsets, column offsets, mask logits


def _check_shapes(x_shape, offset_mask_shape) -> int:
    """Number of kernel taps K*K; ValueError unless x is (N, C, H, W) and offset_mask (N, 3*K*K, Ho, Wo)."""
    taps = offset_mask_shape[1] // OFFSET_MASK_GROUPS if len(offset_mask_shape) == 4 else 0
    kernel = round(taps ** 0.5)
    if len(x_shape) != 4 or taps < 1 or kernel * kernel * OFFSET_MASK_GROUPS != offset_mask_shape[1] \
            or offset_mask_shape[0] != x_shape[0]:
        raise ValueError(f"DeformConv2dOriginal: offset_mask {tuple(offset_mask_shape)} must be (N, 3*K*K, Ho, Wo) "
                         f"for x (N, C, H, W) {tuple(x_shape)}")
    return taps


class DeformConv2dOriginal(nn.Cell):
    """Modulated deformable conv exactly as the original DeformConv2d computes it (CPU custom op). No parameters.

    Args:
        stride: the convolution stride s (the stride of the conv that produced offset_mask).

    Inputs (float32; float16 inputs, as in a network run with `to_float(float16)`, are computed in float32 and the
    output returned in x's dtype, as torchvision's autocast does for its detection ops):
        x (N, C, H, W);
        offset_mask (N, 27, Ho, Wo): channels [0, 9) row offsets dy (= p_conv(x)[:, :9]), [9, 18) column
            offsets dx (= p_conv(x)[:, 9:]), [18, 27) mask logits before the sigmoid (= m_conv(x)); tap k = 3a + b;
        weight (O, C, 3, 3) = conv.weight.
    Output: (N, O, Ho, Wo) in x's dtype. Gradients flow to x, offset_mask and weight.
    """

    def __init__(self, stride: int):
        super().__init__()
        if int(stride) < 1:
            raise ValueError(f"DeformConv2dOriginal: stride must be >= 1, got {stride}")
        self.stride = Tensor(np.array([stride], dtype=np.int32))
        library = library_path("deform_sampling")

        def sample_shape(x_shape, offset_mask_shape, stride_shape):
            taps = _check_shapes(x_shape, offset_mask_shape)
            return [x_shape[0], offset_mask_shape[2] * offset_mask_shape[3], taps * x_shape[1]]

        def sample_dtype(x_dtype, offset_mask_dtype, stride_dtype):
            require_float32("DeformConv2dOriginal", "x and offset_mask", [x_dtype, offset_mask_dtype])
            return mstype.float32

        def grad_shape(x_shape, offset_mask_shape, stride_shape, dcol_shape):
            return list(x_shape), list(offset_mask_shape)

        def grad_dtype(x_dtype, offset_mask_dtype, stride_dtype, dcol_dtype):
            return x_dtype, offset_mask_dtype

        grad_op = ops.Custom(f"{library}:DeformSampleGrad", out_shape=grad_shape, out_dtype=grad_dtype,
                             func_type="aot")
        # col (N, Ho*Wo, K*K*C): col[n, i*Wo + j, k*C + c] = sigmoid(logit_k) * sample_k of channel c
        self.sample = ops.Custom(f"{library}:DeformSample", out_shape=sample_shape, out_dtype=sample_dtype,
                                 func_type="aot")

        def sample_bprop(x, offset_mask, stride, out, dout):
            dx, doffset_mask = grad_op(x, offset_mask, stride, dout)
            return dx, doffset_mask, ops.zeros_like(stride)

        self.sample_with_grad = ops.Custom(f"{library}:DeformSample", out_shape=sample_shape,
                                           out_dtype=sample_dtype, func_type="aot", bprop=sample_bprop)
        self.contract = ops.BatchMatMul(transpose_b=True)
        contract_cols = ops.BatchMatMul()  # dout (N, O, P) @ col (N, P, K*K*C)
        contract_outs = ops.BatchMatMul(transpose_a=True)  # dout^T (N, P, O) @ weight (N, O, K*K*C)

        def conv_shape(x_shape, offset_mask_shape, stride_shape, weight_shape):
            taps = _check_shapes(x_shape, offset_mask_shape)
            if len(weight_shape) != 2 or weight_shape[1] != taps * x_shape[1]:
                raise ValueError(f"DeformConv2dOriginal: weight {tuple(weight_shape)} must be (O, K*K*C)")
            return [x_shape[0], weight_shape[0], offset_mask_shape[2], offset_mask_shape[3]]

        def conv_dtype(x_dtype, offset_mask_dtype, stride_dtype, weight_dtype):
            require_float32("DeformConv2dOriginal", "x, offset_mask and weight",
                            [x_dtype, offset_mask_dtype, weight_dtype])
            return mstype.float32

        def conv_bprop(x, offset_mask, stride, weight, out, dout):
            """The gradients of weight @ col^T, col recomputed (the forward pass never stores it)."""
            n, out_channels = dout.shape[0], dout.shape[1]
            dout = dout.reshape(n, out_channels, -1)
            col = self.sample(x, offset_mask, stride)
            dweight = contract_cols(dout, col).sum(0)
            dcol = contract_outs(dout, ops.broadcast_to(weight, (n,) + weight.shape))
            dx, doffset_mask = grad_op(x, offset_mask, stride, dcol)
            return dx, doffset_mask, ops.zeros_like(stride), dweight

        # out (N, O, Ho, Wo) = weight (O, K*K*C) @ col^T, sampled and contracted block by block
        self.sample_and_contract = ops.Custom(f"{library}:DeformConv", out_shape=conv_shape, out_dtype=conv_dtype,
                                              func_type="aot", bprop=conv_bprop)

    def construct(self, x, offset_mask, weight):
        dtype = x.dtype
        x, offset_mask, weight = (t.astype(mstype.float32) for t in (x, offset_mask, weight))
        taps_major = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)  # (O, K*K*C), index k*C + c
        if not self.training:
            return self.sample_and_contract(x, offset_mask, self.stride, taps_major).astype(dtype)
        # training: the columns kept for the backward pass (a recomputation costs more here than it saves)
        n, out_channels = x.shape[0], weight.shape[0]
        col = self.sample_with_grad(x, offset_mask, self.stride)
        out = self.contract(ops.broadcast_to(taps_major, (n,) + taps_major.shape), col)
        return out.reshape(n, out_channels, offset_mask.shape[2], offset_mask.shape[3]).astype(dtype)
