"""Training-step benchmark of the whole network (forward + backward + optimizer update), printed as a table.

    GLOG_v=3 .venv/bin/python bench/bench_train.py [--img_height 768] [--img_width 1280] [--batch_size 2]
                                                   [--steps 3] [--warmup 1] [--mode GRAPH|PYNATIVE] [--profile]

The network runs as train.py runs it (WithLossCell + TrainOneStepCell with the config's loss scale, Momentum)
on the fidelity fixture's reference weights and a synthetic batch (noise image, a few random gt boxes per image).
Reported: graph compile time (first step minus the median step), median s/step over `--steps` timed steps after
`--warmup` untimed ones, images/s, peak RSS of the process. The last line is one json object.
`--profile` runs one more step under the MindSpore profiler and prints the 10 most expensive operator types.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.bench_common import peak_rss_mb, print_table, profile_top_ops  # noqa: E402
from src.FasterRcnn import FasterRcnnResnet50  # noqa: E402
from src.model_utils.config import get_config  # noqa: E402
from src.network_define import LossNet, TrainOneStepCell, WithLossCell  # noqa: E402
from tests.reference_ckpt import reference_params  # noqa: E402

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


def load_reference_weights(net: nn.Cell, prefix: str = "") -> None:
    params = {prefix + k: Parameter(Tensor(v), name=prefix + k) for k, v in reference_params().items()}
    not_loaded, _ = ms.load_param_into_net(net, params, strict_load=True)
    if not_loaded:
        raise RuntimeError(f"reference weights missing for {not_loaded[:5]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img_height", type=int, default=768)
    parser.add_argument("--img_width", type=int, default=1280)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first (compiling) one")
    parser.add_argument("--mode", choices=("GRAPH", "PYNATIVE"), default="GRAPH")
    parser.add_argument("--profile", action="store_true", help="print the 10 most expensive operator types")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    ms.set_context(mode=ms.GRAPH_MODE if args.mode == "GRAPH" else ms.PYNATIVE_MODE, device_target="CPU")
    cfg = get_config([], img_height=args.img_height, img_width=args.img_width, batch_size=args.batch_size)
    net = FasterRcnnResnet50(cfg)
    load_reference_weights(net)
    net.set_train(True)
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=1e-4, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay, loss_scale=cfg.loss_scale)
    step = TrainOneStepCell(WithLossCell(net, LossNet()), optimizer, sens=cfg.loss_scale)
    step.set_train(True)
    batch = synthetic_batch(cfg, np.random.default_rng(0))

    start = time.perf_counter()
    loss, _ = step(*batch)
    loss.asnumpy()
    first_s = time.perf_counter() - start
    for _ in range(args.warmup):
        step(*batch)[0].asnumpy()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss, _ = step(*batch)
        loss.asnumpy()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    compile_s = max(first_s - median, 0.0)
    rss = peak_rss_mb()
    print_table(f"train step, {args.mode}, {args.img_height}x{args.img_width}, batch {args.batch_size}", [
        ("compile (first step - median)", f"{compile_s:.1f} s"),
        (f"step (median of {args.steps})", f"{median:.2f} s"),
        ("steps (all)", " ".join(f"{t:.2f}" for t in times)),
        ("images/s", f"{args.batch_size / median:.3f}"),
        ("last loss", f"{float(loss.asnumpy()):.4f}"),
        ("peak RSS", f"{rss:.0f} MB"),
    ])
    if args.profile:
        profile_top_ops(lambda: step(*batch)[0].asnumpy())
    print(json.dumps({"bench": "train", "img": [args.img_height, args.img_width], "batch": args.batch_size,
                      "compile_s": round(compile_s, 2), "step_s_median": round(median, 3),
                      "peak_rss_mb": round(rss)}))


if __name__ == "__main__":
    main()
