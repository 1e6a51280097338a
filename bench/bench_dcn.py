"""Forward+backward time of one deformable conv layer vs a plain 3x3 conv (CPU), printed as a table.

    GLOG_v=3 .venv/bin/python bench/bench_dcn.py [--channels 256] [--height 96] [--width 160] [--batch 2]
                                                 [--stride 1] [--reps 5] [--mode GRAPH|PYNATIVE]
                                                 [--kernels cpu|mindspore]

Variants: `plain` nn.Conv2d 3x3; `port` DeformConv2d as shipped (one 27-channel offset/mask conv, then the CPU
kernel, or with `--kernels mindspore` the offset transform with the original's boundary gradient and
ops.deformable_conv2d); `straight` p_conv and m_conv as two convs and the plain
clip(base + d) - (base - 1) transform; `grid_sample` the same formula sampled with ops.grid_sample
(align_corners, positions pre-clamped) and contracted with a 1x1 conv over (C x 9) channels - an alternative
to ops.deformable_conv2d, for comparison only; `core_only` ops.deformable_conv2d alone on fixed offsets (what
the offset/mask conv and the offset transform add on top of it is `port` - `core_only`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import src  # noqa: E402, F401  (first: src/__init__.py sets OpenMP's wait policy before MindSpore loads libgomp)

# isort: split
import mindspore as ms  # noqa: E402
from mindspore import Tensor, nn, ops  # noqa: E402

from bench.bench_common import add_kernels_option  # noqa: E402
from src.FasterRcnn.dcn_v2 import DeformConv2d  # noqa: E402
from src.ops import Kernels  # noqa: E402
from src.ops.deform_conv import NUM_TAPS  # noqa: E402

# The variants below replace DeformConv2d.construct: the CPU kernel would be built and never used.
VARIANT_KERNELS = Kernels.MINDSPORE


class StraightDeformConv(DeformConv2d):
    """p_conv and m_conv run separately, offsets by the textbook clip form."""

    def construct(self, x):
        height, width = x.shape[2], x.shape[3]
        offset = self.p_conv(x)
        out_h, out_w = offset.shape[2], offset.shape[3]
        tap_row = Tensor(np.repeat(np.arange(3), 3).reshape(1, NUM_TAPS, 1, 1), ms.float32)
        tap_col = Tensor(np.tile(np.arange(3), 3).reshape(1, NUM_TAPS, 1, 1), ms.float32)
        rows = ops.arange(0, out_h * self.stride, self.stride).reshape(1, 1, out_h, 1).astype(ms.float32) + tap_row
        cols = ops.arange(0, out_w * self.stride, self.stride).reshape(1, 1, 1, out_w).astype(ms.float32) + tap_col
        dy, dx = offset[:, :NUM_TAPS], offset[:, NUM_TAPS:]
        off_y = ops.clamp(rows + dy, 0, height - 1) - rows + 1
        off_x = ops.clamp(cols + dx, 0, width - 1) - cols + 1
        offsets = ops.concat((off_x, off_y, ops.sigmoid(self.m_conv(x))), axis=1)
        return ops.deformable_conv2d(x, self.conv.weight, offsets, (3, 3), (1, 1, self.stride, self.stride),
                                     (1, 1, 1, 1))


class GridSampleDeformConv(DeformConv2d):
    """The same formula through ops.grid_sample on pre-clamped positions."""

    def construct(self, x):
        n, c, height, width = x.shape
        offset_weight = ops.concat((self.p_conv.weight, self.m_conv.weight), axis=0)
        offset_mask = ops.conv2d(x, offset_weight, stride=self.stride, pad_mode="pad", padding=1)
        out_h, out_w = offset_mask.shape[2], offset_mask.shape[3]
        tap_row = Tensor(np.repeat(np.arange(3), 3).reshape(1, NUM_TAPS, 1, 1), ms.float32)
        tap_col = Tensor(np.tile(np.arange(3), 3).reshape(1, NUM_TAPS, 1, 1), ms.float32)
        rows = ops.arange(0, out_h * self.stride, self.stride).reshape(1, 1, out_h, 1).astype(ms.float32) + tap_row
        cols = ops.arange(0, out_w * self.stride, self.stride).reshape(1, 1, 1, out_w).astype(ms.float32) + tap_col
        dy, dx, logits = ops.split(offset_mask, NUM_TAPS, axis=1)
        gy = ops.clamp(rows + dy, 0, height - 1) * (2.0 / (height - 1)) - 1
        gx = ops.clamp(cols + dx, 0, width - 1) * (2.0 / (width - 1)) - 1
        grid = ops.stack((gx, gy), axis=-1).reshape(n, NUM_TAPS * out_h, out_w, 2)
        sampled = ops.grid_sample(x, grid, "bilinear", "border", True).reshape(n, c, NUM_TAPS, out_h, out_w)
        sampled = (sampled * ops.sigmoid(logits).reshape(n, 1, NUM_TAPS, out_h, out_w))
        weight = self.conv.weight.reshape(self.conv.weight.shape[0], c * NUM_TAPS, 1, 1)
        return ops.conv2d(sampled.reshape(n, c * NUM_TAPS, out_h, out_w), weight)


class CoreOnly(DeformConv2d):
    """ops.deformable_conv2d alone on fixed offsets: the floor under any formulation that uses it."""

    def __init__(self, in_channels, out_channels, stride, offsets):
        super().__init__(in_channels, out_channels, stride=stride, kernels=VARIANT_KERNELS)
        self.offsets = offsets

    def construct(self, x):
        return ops.deformable_conv2d(x, self.conv.weight, self.offsets, (3, 3), (1, 1, self.stride, self.stride),
                                     (1, 1, 1, 1))


class TrainStep(nn.Cell):
    """Loss = sum(layer(x) * g); returns gradients wrt x and every parameter (what a training step needs)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.params = ms.ParameterTuple(layer.trainable_params())
        self.grad = ops.GradOperation(get_all=True, get_by_list=True)

    def loss(self, x, g):
        return (self.layer(x) * g).sum()

    def construct(self, x, g):
        return self.grad(self.loss, self.params)(x, g)


def _run(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    (out[0][0] if isinstance(out, tuple) else out).asnumpy()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="runtime_num_threads (0: MindSpore's default)")
    parser.add_argument("--mode", choices=["GRAPH", "PYNATIVE"], default="GRAPH")
    parser.add_argument("--variants", default="plain,core_only,port,straight,grid_sample")
    add_kernels_option(parser)
    args = parser.parse_args()
    ms.set_context(mode=ms.GRAPH_MODE if args.mode == "GRAPH" else ms.PYNATIVE_MODE, device_target="CPU")
    if args.threads:
        ms.set_context(runtime_num_threads=args.threads)

    rng = np.random.default_rng(0)
    ch, s = args.channels, args.stride
    x = Tensor(rng.standard_normal((args.batch, ch, args.height, args.width)).astype(np.float32))
    out_hw = ((args.height - 1) // s + 1, (args.width - 1) // s + 1)
    g = Tensor(rng.standard_normal((args.batch, ch) + out_hw).astype(np.float32))
    p_w = Tensor(rng.standard_normal((18, ch, 3, 3)).astype(np.float32) * 0.02)
    m_w = Tensor(rng.standard_normal((9, ch, 3, 3)).astype(np.float32) * 0.02)
    conv_w = Tensor(rng.standard_normal((ch, ch, 3, 3)).astype(np.float32) * 0.02)
    offsets = Tensor(np.concatenate([rng.uniform(-2, 2, (args.batch, 18) + out_hw),
                                     rng.uniform(0, 1, (args.batch, 9) + out_hw)], axis=1).astype(np.float32))
    factories = {
        "plain": lambda: nn.Conv2d(ch, ch, 3, stride=s, pad_mode="pad", padding=1, has_bias=False),
        "core_only": lambda: CoreOnly(ch, ch, s, offsets),
        "port": lambda: DeformConv2d(ch, ch, stride=s, kernels=Kernels(args.kernels)),
        "straight": lambda: StraightDeformConv(ch, ch, stride=s, kernels=VARIANT_KERNELS),
        "grid_sample": lambda: GridSampleDeformConv(ch, ch, stride=s, kernels=VARIANT_KERNELS),
    }
    names = args.variants.split(",")
    layers, steps = {}, {}
    for name in names + (["port"] if "port" not in names else []):
        layer = factories[name]()
        if isinstance(layer, DeformConv2d):
            layer.p_conv.weight.set_data(p_w)
            layer.m_conv.weight.set_data(m_w)
            layer.conv.weight.set_data(conv_w)
        layers[name], steps[name] = layer, TrainStep(layer)
    for name in names:  # compile and warm up
        _run(steps[name], x, g)
        _run(layers[name], x)
    # Variants take turns, so that load from other processes spreads over all of them.
    fwd_bwd = {name: [] for name in names}
    fwd = {name: [] for name in names}
    for _ in range(args.reps):
        for name in names:
            fwd_bwd[name].append(_run(steps[name], x, g))
            fwd[name].append(_run(layers[name], x))
    reference = layers["port"](x).asnumpy()

    print(f"one layer {ch}->{ch} ch, input {args.batch}x{ch}x{args.height}x{args.width}, stride {s}, {args.mode}, "
          f"threads {args.threads or 'default'}, {args.reps} interleaved reps after warm-up")
    header = ("variant", "fwd+bwd min s", "median s", "fwd min s", "max |out - port|")
    print(f"| {header[0]:<12} | {header[1]:>13} | {header[2]:>8} | {header[3]:>9} | {header[4]:>16} |")
    print(f"|{'-' * 14}|{'-' * 15}|{'-' * 10}|{'-' * 11}|{'-' * 18}|")
    for name in names:
        diff = "-"
        if isinstance(layers[name], DeformConv2d) and name != "core_only":
            diff = f"{np.abs(layers[name](x).asnumpy() - reference).max():.2e}"
        print(f"| {name:<12} | {min(fwd_bwd[name]):>13.3f} | {np.median(fwd_bwd[name]):>8.3f} | "
              f"{min(fwd[name]):>9.3f} | {diff:>16} |")


if __name__ == "__main__":
    main()
