"""Inference benchmark of the whole network (FasterRcnnInfer, as export/eval run it) and of its exported MINDIR
(as run_infer_310.sh runs it on the CPU: `mindspore.load` + `nn.GraphCell`), printed as tables.

    GLOG_v=3 .venv/bin/python bench/bench_infer.py [--img_height 768] [--img_width 1280] [--batch_size 1]
                                                   [--steps 3] [--warmup 1] [--mode GRAPH|PYNATIVE] [--profile]
                                                   [--no_mindir]

Reference weights of the fidelity fixture, a noise image. Reported: graph compile time (first call minus the
median call), median s/image over `--steps` timed calls after `--warmup` untimed ones, images/s, peak RSS (after
the network part); then the `ms.export` time and the same figures for the MINDIR. The last line is one json
object. `--profile` prints the 10 most expensive operator types of one more call of the network.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.bench_common import peak_rss_mb, print_table, profile_top_ops  # noqa: E402
from bench.bench_train import load_reference_weights  # noqa: E402
from src.FasterRcnn import FasterRcnnInfer  # noqa: E402
from src.model_utils.config import get_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img_height", type=int, default=768)
    parser.add_argument("--img_width", type=int, default=1280)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed calls (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after the first (compiling) one")
    parser.add_argument("--mode", choices=("GRAPH", "PYNATIVE"), default="GRAPH")
    parser.add_argument("--profile", action="store_true", help="print the 10 most expensive operator types")
    parser.add_argument("--no_mindir", action="store_true", help="skip the export and the MINDIR measurement")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    ms.set_context(mode=ms.GRAPH_MODE if args.mode == "GRAPH" else ms.PYNATIVE_MODE, device_target="CPU")
    cfg = get_config([], img_height=args.img_height, img_width=args.img_width, test_batch_size=args.batch_size)
    net = FasterRcnnInfer(cfg)
    load_reference_weights(net, prefix="network.")
    rng = np.random.default_rng(0)
    img = Tensor(rng.standard_normal((args.batch_size, 3, args.img_height, args.img_width)).astype(np.float32))
    metas = Tensor(np.tile(np.array([[args.img_height, args.img_width, 1.0, 1.0]], np.float32),
                           (args.batch_size, 1)))

    def run_once():
        return net(img, metas)[2].asnumpy()

    first_s, times = time_calls(run_once, args.warmup, args.steps)
    median = float(np.median(times))
    per_image = median / args.batch_size
    compile_s = max(first_s - median, 0.0)
    rss = peak_rss_mb()
    masks = run_once()
    print_table(f"inference, {args.mode}, {args.img_height}x{args.img_width}, batch {args.batch_size}", [
        ("compile (first call - median)", f"{compile_s:.1f} s"),
        (f"call (median of {args.steps})", f"{median:.2f} s"),
        ("calls (all)", " ".join(f"{t:.2f}" for t in times)),
        ("s/image", f"{per_image:.3f}"),
        ("images/s", f"{1 / per_image:.3f}"),
        ("candidate detections", str(int(masks.sum()))),
        ("peak RSS", f"{rss:.0f} MB"),
    ])
    if args.profile:
        profile_top_ops(run_once)
    result = {"bench": "infer", "img": [args.img_height, args.img_width], "batch": args.batch_size,
              "compile_s": round(compile_s, 2), "s_per_image_median": round(per_image, 3),
              "peak_rss_mb": round(rss)}
    if not args.no_mindir:
        result.update(bench_mindir(net, img, metas, masks, args))
    print(json.dumps(result))


def time_calls(run_once, warmup: int, steps: int) -> tuple[float, list[float]]:
    """(seconds of the first call, seconds of each of `steps` timed calls after `warmup` untimed ones)."""
    start = time.perf_counter()
    run_once()
    first_s = time.perf_counter() - start
    for _ in range(warmup):
        run_once()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run_once()
        times.append(time.perf_counter() - start)
    return first_s, times


def bench_mindir(net, img, metas, net_masks, args) -> dict:
    """Export `net` to MINDIR, run it through GraphCell; prints a table, returns the json fields."""
    with tempfile.TemporaryDirectory(prefix="bench_mindir_") as folder:
        base = os.path.join(folder, "faster_rcnn_dcn")
        start = time.perf_counter()
        ms.export(net, img, metas, file_name=base, file_format="MINDIR")
        export_s = time.perf_counter() - start
        size_mb = os.path.getsize(base + ".mindir") / 2 ** 20
        start = time.perf_counter()
        graph = nn.GraphCell(ms.load(base + ".mindir"))
        load_s = time.perf_counter() - start

    def run_once():
        return graph(img, metas)[2].asnumpy()

    first_s, times = time_calls(run_once, args.warmup, args.steps)
    median = float(np.median(times))
    per_image = median / args.batch_size
    compile_s = max(first_s - median, 0.0)
    same = bool(np.array_equal(run_once(), net_masks))
    print_table(f"MINDIR (mindspore.load + nn.GraphCell), {args.img_height}x{args.img_width}, "
                f"batch {args.batch_size}", [
        ("export (ms.export)", f"{export_s:.1f} s, {size_mb:.0f} MB"),
        ("load (mindspore.load)", f"{load_s:.1f} s"),
        ("compile (first call - median)", f"{compile_s:.1f} s"),
        (f"call (median of {args.steps})", f"{median:.2f} s"),
        ("calls (all)", " ".join(f"{t:.2f}" for t in times)),
        ("s/image", f"{per_image:.3f}"),
        ("images/s", f"{1 / per_image:.3f}"),
        ("same valid mask as the network", str(same)),
        ("peak RSS (whole run)", f"{peak_rss_mb():.0f} MB"),
    ])
    return {"export_s": round(export_s, 2), "mindir_compile_s": round(compile_s, 2),
            "mindir_s_per_image_median": round(per_image, 3)}


if __name__ == "__main__":
    main()
