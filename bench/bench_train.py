"""Training-step benchmark of the whole network (forward + backward + optimizer update), printed as a table.

    GLOG_v=3 .venv/bin/python bench/bench_train.py [--img_height 768] [--img_width 1280] [--batch_size 2]
                                                   [--steps 3] [--warmup 1] [--mode GRAPH|PYNATIVE]
                                                   [--kernels cpu|mindspore] [--profile]
                                                   [--compare KEY=VALUE [KEY=VALUE ...]]

The network runs in train.py's own training cell (src/engine/trainer.py: SGD with the config's lr schedule, loss
scale and gradient clipping) on the fidelity fixture's reference weights and a synthetic batch (noise image, a few
random gt boxes per image).
Reported: graph compile time (first step minus the median step), median s/step over `--steps` timed steps after
`--warmup` untimed ones, images/s, peak RSS of the process. The last line is one json object.
`--profile` runs one more step under the MindSpore profiler and prints the 10 most expensive operator types.
`--compare KEY=VALUE ...` times that cell twice, with the config as it is ("before") and with these config overrides
("after"), one step of each in turn, so that both medians and their ratio come from the same run under the same load.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import src  # noqa: E402, F401  (first: src/__init__.py sets OpenMP's wait policy before MindSpore loads libgomp)

# isort: split
from mindspore import Tensor  # noqa: E402

from bench.bench_common import (  # noqa: E402
    bench_config,
    load_reference_weights,
    network_bench_parser,
    parse_network_bench_args,
    peak_rss_mb,
    print_table,
    profile_top_ops,
    time_calls,
)
from src.engine.trainer import build_optimizer, build_train_cell  # noqa: E402
from src.FasterRcnn import build_model  # noqa: E402
from src.ops import Kernels  # noqa: E402

GTS_PER_IMAGE = 4  # valid gt boxes in each synthetic image
GT_MIN_SIDE, GT_MAX_SIDE_FRACTION = 32, 0.5  # gt box sides in pixels / as a fraction of the image side


def synthetic_batch(cfg, rng):
    """(img (B,3,H,W), img_metas (B,3), gt_bboxes (B,G,4), gt_labels (B,G), gt_valids (B,G)) as the dataset gives."""
    batch, height, width = cfg.batch_size, cfg.img_height, cfg.img_width
    img = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
    metas = np.tile(np.array([[height, width, 1.0]], np.float32), (batch, 1))
    boxes = np.zeros((batch, cfg.num_gts, 4), np.float32)
    labels = np.zeros((batch, cfg.num_gts), np.int32)
    valids = np.zeros((batch, cfg.num_gts), bool)
    for i in range(batch):
        for g in range(min(GTS_PER_IMAGE, cfg.num_gts)):
            w = rng.uniform(GT_MIN_SIDE, GT_MAX_SIDE_FRACTION * width)
            h = rng.uniform(GT_MIN_SIDE, GT_MAX_SIDE_FRACTION * height)
            x1, y1 = rng.uniform(0, width - w - 1), rng.uniform(0, height - h - 1)
            boxes[i, g] = [x1, y1, x1 + w, y1 + h]
            labels[i, g] = rng.integers(1, cfg.num_classes)
            valids[i, g] = True
    return tuple(Tensor(a) for a in (img, metas, boxes, labels, valids))


def trainer_step(cfg, kernels: Kernels, steps_per_epoch: int = 100):
    """train.py's training cell (SGD, the config's lr schedule, loss scale and clipping) on this benchmark's weights."""
    net = build_model(cfg, kernels=kernels)
    load_reference_weights(net)
    net.set_train(True)
    step = build_train_cell(cfg, net, build_optimizer(cfg, net, steps_per_epoch, device_num=1), device_num=1)
    step.set_train(True)
    return step


def compare(args, parser) -> None:
    """--compare: train.py's cell before and after the overrides, one step of each in turn."""
    overrides = [f"--{item}" for item in args.compare]
    if any("=" not in item for item in args.compare):
        parser.error(f"--compare takes KEY=VALUE items, got {args.compare}")
    cells, batches, times = {}, {}, {"before": [], "after": []}
    for name, extra in (("before", []), ("after", overrides)):
        cfg = bench_config(args, extra, batch_size=args.batch_size)
        cells[name] = trainer_step(cfg, Kernels(args.kernels))
        batches[name] = synthetic_batch(cfg, np.random.default_rng(0))
        for _ in range(1 + args.warmup):  # compile, then the untimed steps
            cells[name](*batches[name])[0].asnumpy()
    for _ in range(args.steps):
        for name in times:
            start = time.perf_counter()
            cells[name](*batches[name])[0].asnumpy()
            times[name].append(time.perf_counter() - start)
    before, after = (float(np.median(times[name])) for name in ("before", "after"))
    print_table(f"train.py's step, {args.img_height}x{args.img_width}, batch {args.batch_size}, "
                f"before / after {' '.join(args.compare)}, alternating", [
                    ("before: step (median)", f"{before:.3f} s   ({' '.join(f'{t:.2f}' for t in times['before'])})"),
                    ("after: step (median)", f"{after:.3f} s   ({' '.join(f'{t:.2f}' for t in times['after'])})"),
                    ("after / before", f"{after / before:.3f}"),
                    ("peak RSS (both cells)", f"{peak_rss_mb():.0f} MB"),
                ])
    print(json.dumps({"bench": "train_compare", "img": [args.img_height, args.img_width], "batch": args.batch_size,
                      "compare": args.compare, "before_s": round(before, 3), "after_s": round(after, 3),
                      "ratio": round(after / before, 3)}))


def main() -> None:
    parser = network_bench_parser(__doc__, batch_size=2, unit="step")
    parser.add_argument("--compare", nargs="+", metavar="KEY=VALUE",
                        help="train.py's step with the config as it is and with these overrides, alternately")
    args = parse_network_bench_args(parser)
    if args.compare:
        compare(args, parser)
        return
    cfg = bench_config(args, batch_size=args.batch_size)
    step = trainer_step(cfg, Kernels(args.kernels))
    batch = synthetic_batch(cfg, np.random.default_rng(0))
    losses = []

    def run_once():
        losses.append(float(step(*batch)[0].asnumpy()))

    timing = time_calls(run_once, args.warmup, args.steps)
    rss = peak_rss_mb()
    print_table(f"train step, {args.mode}, {args.img_height}x{args.img_width}, batch {args.batch_size}", [
        *timing.rows("step"),
        ("images/s", f"{args.batch_size / timing.median:.3f}"),
        ("last loss", f"{losses[-1]:.4f}"),
        ("peak RSS", f"{rss:.0f} MB"),
    ])
    top_ops = profile_top_ops(run_once) if args.profile else []
    print(json.dumps({"bench": "train", "img": [args.img_height, args.img_width], "batch": args.batch_size,
                      "compile_s": round(timing.compile_s, 2), "step_s_median": round(timing.median, 3),
                      "peak_rss_mb": round(rss), "top_ops": top_ops}))


if __name__ == "__main__":
    main()
