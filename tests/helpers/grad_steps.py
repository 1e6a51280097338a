"""GRAPH_MODE-ready cells giving the gradients of <op output, dout> for the two CPU kernels' interfaces, shared by
tests/test_custom_ops.py (graph vs PyNative) and bench/bench_kernels.py (timing). Each returns the gradient with
respect to every input, in input order."""

from mindspore import nn, ops


class RoIAlignGradStep(nn.Cell):
    """align(rois, (p2, p3, p4, p5)) -> (R, C, S, S), e.g. MultiLevelRoIAlign.

    construct(rois, dout, p2, p3, p4, p5) -> gradients to (rois, dout, p2, p3, p4, p5).
    """

    def __init__(self, align: nn.Cell):
        super().__init__()
        self.align = align
        self.grad = ops.GradOperation(get_all=True)

    def loss(self, rois, dout, p2, p3, p4, p5):
        return (self.align(rois, (p2, p3, p4, p5)) * dout).sum()

    def construct(self, rois, dout, p2, p3, p4, p5):
        return self.grad(self.loss)(rois, dout, p2, p3, p4, p5)


class DcnGradStep(nn.Cell):
    """dcn(x, offset_mask, weight) -> (N, O, Ho, Wo), e.g. DeformConv2dOriginal.

    construct(x, offset_mask, weight, dout) -> gradients to (x, offset_mask, weight, dout).
    """

    def __init__(self, dcn: nn.Cell):
        super().__init__()
        self.dcn = dcn
        self.grad = ops.GradOperation(get_all=True)

    def loss(self, x, offset_mask, weight, dout):
        return (self.dcn(x, offset_mask, weight) * dout).sum()

    def construct(self, x, offset_mask, weight, dout):
        return self.grad(self.loss)(x, offset_mask, weight, dout)
