"""Training wrappers: the loss and one training step with static loss scaling.

Cells (parameter names unchanged: the wrappers have no prefix of their own):
- `LossNet`: total loss = RPN loss + R-CNN loss (each already the configured weighted sum of cls + reg).
- `WithLossCell`: network + loss; returns (total_loss, the six loss terms without gradient) so that progress can
  show every term from the same forward pass.
- `TrainOneStepCell`: backward seeded with `sens` (the original's static loss scale; the optimizer is built with the
  same `loss_scale` and divides it back out), gradients averaged across devices when distributed, then the update.
  No overflow check, as the original; optional clipping of the gradients' global norm (added by this port for
  training from scratch; off by default, as the original).

`clip_by_global_norm` is the clipping TrainOneStepCell does; `split_outputs` reads a training cell's outputs back as
(total loss, terms). The training callbacks are in src/engine/hooks.py.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.nn.wrap.grad_reducer import DistributedGradReducer


class LossTerms(NamedTuple):
    """The six outputs of FasterRcnnResnet50 in training mode, in its order."""
    rpn_loss: float  # rpn_loss_cls_weight * rpn_cls_loss + rpn_loss_reg_weight * rpn_reg_loss
    rcnn_loss: float  # rcnn_loss_cls_weight * rcnn_cls_loss + rcnn_loss_reg_weight * rcnn_reg_loss
    rpn_cls_loss: float
    rpn_reg_loss: float
    rcnn_cls_loss: float
    rcnn_reg_loss: float


LOSS_TERMS = LossTerms._fields


class LossNet(nn.Cell):
    """Total loss from the network's six training outputs: rpn_loss + rcnn_loss (the others are their parts)."""

    def construct(self, rpn_loss, rcnn_loss, rpn_cls_loss, rpn_reg_loss, rcnn_cls_loss, rcnn_reg_loss):
        return rpn_loss + rcnn_loss


class WithLossCell(nn.Cell):
    """Network + loss. Returns (total_loss () float32, terms (6,) float32 in LOSS_TERMS order, no gradient)."""

    def __init__(self, network: nn.Cell, loss_fn: nn.Cell):
        super().__init__(auto_prefix=False)
        self._backbone = network
        self._loss_fn = loss_fn

    def construct(self, img, img_shape, gt_bboxes, gt_labels, gt_valids):
        outputs = self._backbone(img, img_shape, gt_bboxes, gt_labels, gt_valids)
        # float32 and shape (): the loss-scale seed is a float32 scalar whatever precision the network runs in.
        loss = ops.cast(self._loss_fn(*outputs), mstype.float32).reshape(())
        terms = ops.stack([ops.cast(term, mstype.float32).reshape(()) for term in outputs])
        return loss, ops.stop_gradient(terms)

    @property
    def backbone_network(self) -> nn.Cell:
        return self._backbone


def clip_by_global_norm(grads: tuple[Tensor, ...], clip_norm: float) -> tuple[Tensor, ...]:
    """`grads` times clip_norm / their global L2 norm when that norm exceeds clip_norm, else unchanged.

    The value of `mindspore.ops.clip_by_global_norm` up to float32 rounding (x * (c / n) instead of x * c / n). The
    norm is one reduction over all gradients laid end to end (182 small reductions cost more in thread
    hand-offs than the copy), and the scaling pass runs only when the norm exceeds the limit.
    """
    flat = ops.concat([ops.cast(grad, mstype.float32).reshape(-1) for grad in grads])
    norm = ops.sqrt(ops.reduce_sum(ops.square(flat)))
    if norm > clip_norm:
        scale = clip_norm / norm
        grads = tuple(grad * ops.cast(scale, grad.dtype) for grad in grads)
    return grads


class TrainOneStepCell(nn.Cell):
    """One step: forward, backward seeded with `sens`, optional all-reduce (mean) of gradients, optimizer update.

    Args:
        network: a WithLossCell (outputs (loss, terms)).
        optimizer: built over network.trainable_params() with loss_scale == sens.
        sens: static loss scale (the original passes config.loss_scale = 256).
        reduce_flag: average gradients over `degree` devices (data parallel).
        clip_norm: if > 0, scale the (averaged) gradients down so that their global L2 norm, in loss units (i.e.
            before the loss scale), is at most clip_norm. 0: no clipping (the original).
    Returns (loss () float32, terms (6,) float32).
    """

    def __init__(self, network: nn.Cell, optimizer: nn.Optimizer, sens: float = 1.0, reduce_flag: bool = False,
                 mean: bool = True, degree: int | None = None, clip_norm: float = 0.0):
        super().__init__(auto_prefix=False)
        if clip_norm < 0:
            raise ValueError(f"clip_norm must be >= 0 (0: no clipping), got {clip_norm}")
        self.clip = clip_norm > 0
        # The gradients still carry the loss scale here: clip them at the scaled norm.
        self.scaled_clip_norm = float(clip_norm) * float(sens)
        self.network = network
        self.network.set_grad()
        self.weights = optimizer.parameters
        self.optimizer = optimizer
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        # One seed per output: `sens` for the loss, zeros for the (gradient-free) terms.
        self.sens = (Tensor(sens, mstype.float32), Tensor(np.zeros(len(LOSS_TERMS), np.float32)))
        self.reduce_flag = reduce_flag
        if reduce_flag:
            self.grad_reducer = DistributedGradReducer(optimizer.parameters, mean, degree)

    def construct(self, img, img_shape, gt_bboxes, gt_labels, gt_valids):
        loss, terms = self.network(img, img_shape, gt_bboxes, gt_labels, gt_valids)
        grads = self.grad(self.network, self.weights)(img, img_shape, gt_bboxes, gt_labels, gt_valids, self.sens)
        if self.reduce_flag:
            grads = self.grad_reducer(grads)
        if self.clip:
            grads = clip_by_global_norm(grads, self.scaled_clip_norm)
        return ops.depend(loss, self.optimizer(grads)), terms


def split_outputs(net_outputs) -> tuple[float, LossTerms | None]:
    """(total loss, the six terms or None) from a training cell's outputs (a Tensor, or a (loss, terms) tuple)."""
    if isinstance(net_outputs, (tuple, list)):
        loss, terms = net_outputs[0], (net_outputs[1] if len(net_outputs) > 1 else None)
    else:
        loss, terms = net_outputs, None
    loss = float(np.asarray(loss.asnumpy() if isinstance(loss, Tensor) else loss).reshape(-1)[0])
    if terms is not None:
        values = np.asarray(terms.asnumpy() if isinstance(terms, Tensor) else terms, np.float64).reshape(-1)
        terms = LossTerms(*(float(v) for v in values)) if len(values) == len(LOSS_TERMS) else None
    return loss, terms
