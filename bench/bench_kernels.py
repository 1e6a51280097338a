"""Benchmark the CPU custom kernels against the MindSpore-op way of computing the same thing (fwd + bwd).

    .venv/bin/python bench/bench_kernels.py [--reps 3] [--only roi|dcn] [--dcn_layers probe|network]
                                            [--img_height 768 --img_width 1280] [--num_rois 1280]

RoIAlign: `--num_rois` RoIs (default 1280 = 2 images x 640, as one training step) on the FPN maps P2..P5 of a
batch-2 image, 256 channels: the original's way (MindSpore ROIAlign on all 4 levels, then select) vs
MultiLevelRoIAlign. DCN: one deformable layer after its p_conv/m_conv (sampling + contraction, gradients to x,
offsets/mask logits and weight): `ops.deformable_conv2d` with the offset transform of fidelity/README.md vs
DeformConv2dOriginal. GRAPH_MODE, times in seconds, min (and median) over --reps runs after one warm-up (runs of the two
implementations alternate). The machine may be shared: compare the min of two invocations.
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

import mindspore as ms  # noqa: E402
from mindspore import Tensor, nn, ops  # noqa: E402

from src.custom_ops import DeformConv2dOriginal, MultiLevelRoIAlign  # noqa: E402

BATCH = 2
FPN_CHANNELS = 256
FPN_STRIDES = (4, 8, 16, 32)
ROI_OUT_SIZE = 7
ROI_SAMPLE_NUM = 2
FINEST_SCALE = 56
KERNEL = 3
# DCN layer shapes: (channels, input size = image size / divisor, stride, how many such layers)
DCN_LAYER_SETS = {
    # the probes: 256 ch at 96x160, 128 ch at 192x320 stride 2, 512 ch at 48x80 (at 768x1280)
    "probe": ((256, 8, 1, 1), (128, 4, 2, 1), (512, 16, 1, 1)),
    # the 13 DCN layers of ResNet-50 layer2-4 (the first block of each stage has stride 2)
    "network": ((128, 4, 2, 1), (128, 8, 1, 3), (256, 8, 2, 1), (256, 16, 1, 5), (512, 16, 2, 1), (512, 32, 1, 2)),
}


class OriginalRoIAlign(nn.Cell):
    """The original's extractor: ROIAlign on every level, then a per-RoI select of the mapped level."""

    def __init__(self):
        super().__init__()
        self.align = [ops.ROIAlign(ROI_OUT_SIZE, ROI_OUT_SIZE, 1.0 / s, ROI_SAMPLE_NUM) for s in FPN_STRIDES]

    def construct(self, rois, feats):
        scale = ops.sqrt(rois[:, 3:4] - rois[:, 1:2] + 1) * ops.sqrt(rois[:, 4:5] - rois[:, 2:3] + 1)
        level = ops.floor(ops.log(scale / FINEST_SCALE + 1e-6) / ops.log(ops.full_like(scale, 2)))
        level = ops.clip(level.astype(ms.int32), 0, len(FPN_STRIDES) - 1).reshape(-1, 1, 1, 1)
        res = ops.zeros((rois.shape[0], feats[0].shape[1], ROI_OUT_SIZE, ROI_OUT_SIZE), ms.float32)
        for i in range(len(FPN_STRIDES)):
            pooled = self.align[i](feats[i], rois)
            res = ops.select(ops.broadcast_to(level == i, pooled.shape), pooled, res)
        return res


class RoIAlignStep(nn.Cell):
    """Pooled features dotted with a fixed cotangent, and the gradient to the four maps."""

    def __init__(self, align):
        super().__init__()
        self.align = align
        self.grad = ops.GradOperation(get_all=True)

    def loss(self, rois, dout, p2, p3, p4, p5):
        return (self.align(rois, (p2, p3, p4, p5)) * dout).sum()

    def construct(self, rois, dout, p2, p3, p4, p5):
        return self.grad(self.loss)(rois, dout, p2, p3, p4, p5)


class DeformableConv2dOp(nn.Cell):
    """The original's DCN via ops.deformable_conv2d (offset transform of fidelity/README.md)."""

    def __init__(self, stride, out_h, out_w, in_h, in_w):
        super().__init__()
        self.stride = stride
        a = np.repeat(np.arange(KERNEL), KERNEL)[:, None, None]
        b = np.tile(np.arange(KERNEL), KERNEL)[:, None, None]
        rows = stride * np.arange(out_h)[None, :, None] + a + np.zeros((1, 1, out_w))
        cols = stride * np.arange(out_w)[None, None, :] + b + np.zeros((1, out_h, 1))
        self.base_rows = Tensor(rows[None].astype(np.float32))
        self.base_cols = Tensor(cols[None].astype(np.float32))
        self.max_row = float(in_h - 1)
        self.max_col = float(in_w - 1)

    def construct(self, x, offset_mask, weight):
        taps = KERNEL * KERNEL
        dy = (self.base_rows + offset_mask[:, :taps]).clip(0.0, self.max_row) - self.base_rows + 1.0
        dx = (self.base_cols + offset_mask[:, taps:2 * taps]).clip(0.0, self.max_col) - self.base_cols + 1.0
        packed = ops.concat([dx, dy, ops.sigmoid(offset_mask[:, 2 * taps:])], axis=1)
        return ops.deformable_conv2d(x, weight, packed, (KERNEL, KERNEL), (1, 1, self.stride, self.stride),
                                     (1, 1, 1, 1))


class DcnStep(nn.Cell):
    def __init__(self, dcn):
        super().__init__()
        self.dcn = dcn
        self.grad = ops.GradOperation(get_all=True)

    def loss(self, x, offset_mask, weight, dout):
        return (self.dcn(x, offset_mask, weight) * dout).sum()

    def construct(self, x, offset_mask, weight, dout):
        return self.grad(self.loss)(x, offset_mask, weight, dout)


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
    steps = {"ops.ROIAlign x4 + select": RoIAlignStep(OriginalRoIAlign()),
             "MultiLevelRoIAlign": RoIAlignStep(MultiLevelRoIAlign(ROI_OUT_SIZE, ROI_SAMPLE_NUM, FPN_STRIDES,
                                                                   FINEST_SCALE))}
    report(name, time_interleaved(steps, (rois, dout, *feats), args.reps))


def bench_dcn(args, rng, report):
    totals = {}
    for channels, divisor, stride, count in DCN_LAYER_SETS[args.dcn_layers]:
        in_h, in_w = args.img_height // divisor, args.img_width // divisor
        out_h, out_w = (in_h - 1) // stride + 1, (in_w - 1) // stride + 1
        taps = KERNEL * KERNEL
        x = Tensor(rng.standard_normal((BATCH, channels, in_h, in_w), dtype=np.float32))
        offset_mask = Tensor(rng.standard_normal((BATCH, 3 * taps, out_h, out_w), dtype=np.float32))
        weight = Tensor(rng.standard_normal((channels, channels, KERNEL, KERNEL), dtype=np.float32) * 0.01)
        dout = Tensor(rng.standard_normal((BATCH, channels, out_h, out_w), dtype=np.float32))
        name = f"DCN fwd+bwd {channels} ch, {in_h}x{in_w}, stride {stride}, b{BATCH}" + (f" (x{count})" if count > 1
                                                                                      else "")
        steps = {"ops.deformable_conv2d": DcnStep(DeformableConv2dOp(stride, out_h, out_w, in_h, in_w)),
                 "DeformConv2dOriginal": DcnStep(DeformConv2dOriginal(stride))}
        results = time_interleaved(steps, (x, offset_mask, weight, dout), args.reps)
        report(name, results)
        for label, (_, times) in results.items():
            totals[label] = totals.get(label, 0.0) + count * min(times)
    if args.dcn_layers == "network":
        report(f"DCN fwd+bwd, all 13 layers of the network at {args.img_height}x{args.img_width}, b{BATCH}",
               {label: (0.0, [total]) for label, total in totals.items()})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=("roi", "dcn"))
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
    print("\n| case | implementation | min s | median s | speed-up |\n|---|---|---|---|---|")
    for i, (name, label, _, best, median) in enumerate(rows):
        speedup = f"{rows[i - 1][3] / best:.1f}x" if i % 2 else ""
        print(f"| {name} | {label} | {best:.3f} | {median:.3f} | {speedup} |")


if __name__ == "__main__":
    main()
