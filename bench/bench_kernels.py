"""Benchmark the CPU custom kernels against the MindSpore-op way of computing the same thing (fwd + bwd).

    .venv/bin/python bench/bench_kernels.py [--reps 3] [--only roi|dcn|conv3x3] [--dcn_layers probe|network]
                                            [--img_height 768 --img_width 1280] [--num_rois 1280]

RoIAlign: `--num_rois` RoIs (default 1280 = 2 images x 640, as one training step) on the FPN maps P2..P5 of a
batch-2 image, 256 channels: the original's way (MindSpore ROIAlign on all 4 levels, then select) vs
MultiLevelRoIAlign. DCN: one deformable layer after its p_conv/m_conv (sampling + contraction, gradients to x,
offsets/mask logits and weight): `ops.deformable_conv2d` with the offset transform of tests/data/FIDELITY.md (as
DeformConv2d runs it without the CPU kernel) vs DeformConv2dOriginal. GRAPH_MODE, times in seconds, min (and
median) over --reps runs after one warm-up (runs of the two implementations alternate). The machine may be shared:
compare the min of two invocations. 3x3 convs (stride 1, padding 1, with bias): every shape of the network's
FPN output convs and RPN head (256 -> 256 on P2-P6), DCN offset convs (-> 27) and layer1 (64 -> 64), batch 1
forward (inference) and batch 2 forward + both gradients (training): ops.conv2d + bias_add vs WinogradConv3x3.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import src  # noqa: E402, F401  (first: src/__init__.py sets OpenMP's wait policy before MindSpore loads libgomp)

# isort: split
import mindspore as ms  # noqa: E402
from mindspore import Tensor, nn, ops  # noqa: E402

from src.ops.cpu import DeformConv2dOriginal, MultiLevelRoIAlign, WinogradConv3x3  # noqa: E402
from src.ops.deform_conv import KERNEL_SIZE, NUM_TAPS, deform_conv2d_edge_clamped  # noqa: E402
from tests.helpers.grad_steps import DcnGradStep, RoIAlignGradStep  # noqa: E402
from tests.helpers.roi_align_reference import AllLevelsThenSelect  # noqa: E402

BATCH = 2
FPN_CHANNELS = 256
FPN_STRIDES = (4, 8, 16, 32)
ROI_OUT_SIZE = 7
ROI_SAMPLE_NUM = 2
FINEST_SCALE = 56
# DCN layer shapes: (channels, input size = image size / divisor, stride, how many such layers)
DCN_LAYER_SETS = {
    # the probes: 256 ch at 96x160, 128 ch at 192x320 stride 2, 512 ch at 48x80 (at 768x1280)
    "probe": ((256, 8, 1, 1), (128, 4, 2, 1), (512, 16, 1, 1)),
    # the 13 DCN layers of ResNet-50 layer2-4 (the first block of each stage has stride 2)
    "network": ((128, 4, 2, 1), (128, 8, 1, 3), (256, 8, 2, 1), (256, 16, 1, 5), (512, 16, 2, 1), (512, 32, 1, 2)),
}
# 3x3 stride-1 conv shapes: (in channels, out channels, map size = image size / divisor)
CONV3X3_SHAPES = ((256, 256, 4), (256, 256, 8), (256, 256, 16), (256, 256, 32), (256, 256, 64),
                  (128, 27, 8), (256, 27, 16), (512, 27, 32), (64, 64, 4))


class DirectConv3x3(nn.Cell):
    """ops.conv2d (padding 1) + bias_add, as nn.Conv2d computes it."""

    def construct(self, x, weight, bias):
        return ops.bias_add(ops.conv2d(x, weight, pad_mode="pad", padding=1), bias)


class ConvGradStep(nn.Cell):
    """construct(x, weight, bias, dout) -> gradients of sum(conv(x, weight, bias) * dout) to the four inputs."""

    def __init__(self, conv: nn.Cell):
        super().__init__()
        self.conv = conv
        self.grad = ops.GradOperation(get_all=True)

    def loss(self, x, weight, bias, dout):
        return (self.conv(x, weight, bias) * dout).sum()

    def construct(self, x, weight, bias, dout):
        return self.grad(self.loss)(x, weight, bias, dout)


class ConvStep(nn.Cell):
    """construct(x, weight, bias) -> (conv(x, weight, bias),)."""

    def __init__(self, conv: nn.Cell):
        super().__init__()
        self.conv = conv

    def construct(self, x, weight, bias):
        return (self.conv(x, weight, bias),)


class EdgeClampedDeformConv(nn.Cell):
    """DeformConv2d's path off the CPU kernel: ops.deformable_conv2d with the edge-clamping offset transform."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def construct(self, x, offset_mask, weight):
        return deform_conv2d_edge_clamped(x, weight, offset_mask, self.stride)


def time_interleaved(steps, inputs, reps):
    """{label: (first-call seconds, [seconds per run])}; the implementations alternate run by run so that load
    from other processes on the machine hits them alike. Outputs are synchronised."""
    times = {label: [] for label in steps}
    for _ in range(reps + 1):
        for label, step in steps.items():
            start = time.perf_counter()
            for out in step(*inputs):
                out.asnumpy()
            times[label].append(time.perf_counter() - start)
    return {label: (t[0], t[1:]) for label, t in times.items()}


def random_rois(rng, num, img_h, img_w):
    w = np.exp(rng.uniform(np.log(8), np.log(0.9 * img_w), num))
    h = np.exp(rng.uniform(np.log(8), np.log(0.9 * img_h), num))
    w, h = np.minimum(w, img_w - 1), np.minimum(h, img_h - 1)
    x1, y1 = rng.uniform(0, img_w - w), rng.uniform(0, img_h - h)
    batch = np.repeat(np.arange(BATCH), num // BATCH + 1)[:num]
    return np.stack([batch, x1, y1, x1 + w, y1 + h], 1).astype(np.float32)


def bench_roi(args, rng, report):
    feats = [Tensor(rng.standard_normal((BATCH, FPN_CHANNELS, args.img_height // s, args.img_width // s),
                                        dtype=np.float32)) for s in FPN_STRIDES]
    rois = Tensor(random_rois(rng, args.num_rois, args.img_height, args.img_width))
    dout = Tensor(rng.standard_normal((args.num_rois, FPN_CHANNELS, ROI_OUT_SIZE, ROI_OUT_SIZE), dtype=np.float32))
    name = f"RoIAlign fwd+bwd {args.num_rois} RoIs, P2-P5 of {args.img_height}x{args.img_width}, b{BATCH}"
    original = AllLevelsThenSelect(ROI_OUT_SIZE, ROI_SAMPLE_NUM, FPN_STRIDES, FINEST_SCALE)
    ours = MultiLevelRoIAlign(ROI_OUT_SIZE, ROI_SAMPLE_NUM, FPN_STRIDES, FINEST_SCALE)
    steps = {"ops.ROIAlign x4 + select": RoIAlignGradStep(original), "MultiLevelRoIAlign": RoIAlignGradStep(ours)}
    report(name, time_interleaved(steps, (rois, dout, *feats), args.reps))


def bench_dcn(args, rng, report):
    totals = {}
    for channels, divisor, stride, count in DCN_LAYER_SETS[args.dcn_layers]:
        in_h, in_w = args.img_height // divisor, args.img_width // divisor
        out_h, out_w = (in_h - 1) // stride + 1, (in_w - 1) // stride + 1
        x = Tensor(rng.standard_normal((BATCH, channels, in_h, in_w), dtype=np.float32))
        offset_mask = Tensor(rng.standard_normal((BATCH, 3 * NUM_TAPS, out_h, out_w), dtype=np.float32))
        weight = Tensor(rng.standard_normal((channels, channels, KERNEL_SIZE, KERNEL_SIZE), dtype=np.float32) * 0.01)
        dout = Tensor(rng.standard_normal((BATCH, channels, out_h, out_w), dtype=np.float32))
        name = f"DCN fwd+bwd {channels} ch, {in_h}x{in_w}, stride {stride}, b{BATCH}" + (f" (x{count})" if count > 1
                                                                                      else "")
        steps = {"ops.deformable_conv2d": DcnGradStep(EdgeClampedDeformConv(stride)),
                 "DeformConv2dOriginal": DcnGradStep(DeformConv2dOriginal(stride).set_train(True))}
        results = time_interleaved(steps, (x, offset_mask, weight, dout), args.reps)
        report(name, results)
        for label, (_, times) in results.items():
            totals[label] = totals.get(label, 0.0) + count * min(times)
    if args.dcn_layers == "network":
        report(f"DCN fwd+bwd, all 13 layers of the network at {args.img_height}x{args.img_width}, b{BATCH}",
               {label: (0.0, [total]) for label, total in totals.items()})


def bench_conv3x3(args, rng, report):
    for in_channels, out_channels, divisor in CONV3X3_SHAPES:
        h, w = args.img_height // divisor, args.img_width // divisor
        weight = Tensor(rng.standard_normal((out_channels, in_channels, 3, 3), dtype=np.float32) * 0.01)
        bias = Tensor(rng.standard_normal(out_channels, dtype=np.float32))
        for batch, training in ((1, False), (BATCH, True)):
            x = Tensor(rng.standard_normal((batch, in_channels, h, w), dtype=np.float32))
            name = f"conv3x3 {'fwd+bwd' if training else 'fwd'} {in_channels}->{out_channels}, {h}x{w}, b{batch}"
            if training:
                dout = Tensor(rng.standard_normal((batch, out_channels, h, w), dtype=np.float32))
                steps = {"ops.conv2d": ConvGradStep(DirectConv3x3()),
                         "WinogradConv3x3": ConvGradStep(WinogradConv3x3())}
                inputs = (x, weight, bias, dout)
            else:
                steps = {"ops.conv2d": ConvStep(DirectConv3x3()), "WinogradConv3x3": ConvStep(WinogradConv3x3())}
                inputs = (x, weight, bias)
            report(name, time_interleaved(steps, inputs, args.reps))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=("roi", "dcn", "conv3x3"))
    parser.add_argument("--img_height", type=int, default=768)
    parser.add_argument("--img_width", type=int, default=1280)
    parser.add_argument("--num_rois", type=int, default=1280)
    parser.add_argument("--dcn_layers", choices=sorted(DCN_LAYER_SETS), default="probe",
                        help="probe: the issue's three layer shapes; network: every DCN layer shape of the network")
    args = parser.parse_args()
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    rng = np.random.default_rng(0)
    rows = []

    def report(name, results):
        for label, (first, times) in results.items():
            rows.append((name, label, first, min(times), statistics.median(times)))
            print(f"{name:<55} {label:<26} first {first:7.3f}  min {min(times):7.3f}  median "
                  f"{statistics.median(times):7.3f}", flush=True)

    if args.only in (None, "roi"):
        bench_roi(args, rng, report)
    if args.only in (None, "dcn"):
        bench_dcn(args, rng, report)
    if args.only in (None, "conv3x3"):
        bench_conv3x3(args, rng, report)
    print("\n| case | implementation | min s | median s | speed-up |\n|---|---|---|---|---|")
    for i, (name, label, _, best, median) in enumerate(rows):
        speedup = f"{rows[i - 1][3] / best:.1f}x" if i % 2 else ""
        print(f"| {name} | {label} | {best:.3f} | {median:.3f} | {speedup} |")


if __name__ == "__main__":
    main()
