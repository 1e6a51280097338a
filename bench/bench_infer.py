"""Inference benchmark of the whole network (FasterRcnnInfer, as eval.py runs it; `--kernels cpu`, the default, is
this project's CPU kernels) and of the MINDIR that export.py writes for the same weights (its `export_network`:
MindSpore's own operators, as deployed), run as run_infer_310.sh runs it on the CPU (`mindspore.load` +
`nn.GraphCell`), and with `--onnx` of its ONNX file run by onnxruntime (src/deploy/onnx_infer.py), printed as tables.

    GLOG_v=3 .venv/bin/python bench/bench_infer.py [--img_height 768] [--img_width 1280] [--batch_size 1]
                                                   [--steps 3] [--warmup 1] [--mode GRAPH|PYNATIVE]
                                                   [--kernels cpu|mindspore] [--profile] [--no_mindir]
                                                   [--onnx] [--onnx_threads N]

Reference weights of the fidelity fixture, a noise image. Reported: graph compile time (first call minus the
median call), median s/image over `--steps` timed calls after `--warmup` untimed ones, images/s, peak RSS (after
the network part); then export.py's export time and the same figures for its MINDIR. The last line is one json
object. `--profile` prints the 10 most expensive operator types of one more call of the network.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import src  # noqa: E402, F401  (first: src/__init__.py sets OpenMP's wait policy before MindSpore loads libgomp)

# isort: split
import mindspore as ms  # noqa: E402
from mindspore import Tensor  # noqa: E402

from bench.bench_common import (  # noqa: E402
    Timing,
    bench_config,
    load_reference_weights,
    network_bench_parser,
    parse_network_bench_args,
    peak_rss_mb,
    print_table,
    profile_top_ops,
    time_calls,
)
from src.deploy.export import export_network  # noqa: E402
from src.deploy.exported import exported_detector  # noqa: E402
from src.FasterRcnn import build_infer_model  # noqa: E402
from src.ops import Kernels  # noqa: E402


def main() -> None:
    parser = network_bench_parser(__doc__, batch_size=1, unit="call")
    parser.add_argument("--no_mindir", action="store_true", help="skip the export and the MINDIR measurement")
    parser.add_argument("--onnx", action="store_true", help="also export the ONNX file and time onnxruntime on it")
    parser.add_argument("--onnx_threads", type=int, default=0,
                        help="onnxruntime's intra-op threads (0: its default, one per physical core)")
    args = parse_network_bench_args(parser)
    cfg = bench_config(args)
    net = build_infer_model(cfg, kernels=Kernels(args.kernels), test_batch_size=args.batch_size)
    load_reference_weights(net, prefix="network.")
    rng = np.random.default_rng(0)
    img = Tensor(rng.standard_normal((args.batch_size, 3, args.img_height, args.img_width)).astype(np.float32))
    metas = Tensor(np.tile(np.array([[args.img_height, args.img_width, 1.0, 1.0]], np.float32),
                           (args.batch_size, 1)))

    def run_once():
        return net(img, metas)[2].asnumpy()

    timing = time_calls(run_once, args.warmup, args.steps)
    rss = peak_rss_mb()
    masks = run_once()
    print_table(f"inference of the network ({args.kernels} kernels), {args.mode}, {args.img_height}x{args.img_width}, "
                f"batch {args.batch_size}", [
        *call_rows(timing, args.batch_size),
        ("candidate detections", str(int(masks.sum()))),
        ("peak RSS", f"{rss:.0f} MB"),
    ])
    top_ops = profile_top_ops(run_once) if args.profile else []
    result = {"bench": "infer", "img": [args.img_height, args.img_width], "batch": args.batch_size,
              "compile_s": round(timing.compile_s, 2), "s_per_image_median": round(timing.median / args.batch_size, 3),
              "peak_rss_mb": round(rss), "top_ops": top_ops}
    for file_format, wanted in (("MINDIR", not args.no_mindir), ("ONNX", args.onnx)):
        if wanted:
            result.update(bench_exported(net, cfg, img, metas, masks, args, file_format))
    print(json.dumps(result))


def call_rows(timing: Timing, batch_size: int) -> list[tuple[str, str]]:
    """Table rows of timed network calls on batches of `batch_size` images."""
    per_image = timing.median / batch_size
    return [*timing.rows("call"), ("s/image", f"{per_image:.3f}"), ("images/s", f"{1 / per_image:.3f}")]


# (json key prefix, table title) of each exported format
EXPORTED = {"MINDIR": ("mindir", "export.py's MINDIR (mindspore.load + nn.GraphCell)"),
            "ONNX": ("onnx", "export.py's ONNX file (onnxruntime, CPU, intra-op threads: {threads})")}


def bench_exported(net, cfg, img, metas, net_masks, args, file_format: str) -> dict:
    """Export `net`'s weights with `export_network` (src/deploy/export.py) in `file_format` and time the file as it
    is deployed (src/deploy/exported.py: the MINDIR through GraphCell, the ONNX file in onnxruntime); prints a
    table, returns the json fields."""
    key, title = EXPORTED[file_format]
    with tempfile.TemporaryDirectory(prefix=f"bench_{key}_") as folder:
        path, export_s, size_mb = export_weights(net, cfg, folder, file_format, args.batch_size)
        start = time.perf_counter()
        detect, _, _ = exported_detector(path, threads=args.onnx_threads)
        load_s = time.perf_counter() - start
    images, image_metas = img.asnumpy(), metas.asnumpy()

    def run_once():
        return detect(images, image_metas)[2]

    timing = time_calls(run_once, args.warmup, args.steps)
    candidates = int(run_once().sum())
    threads = args.onnx_threads or f"onnxruntime's default ({os.cpu_count()} logical CPUs)"
    print_table(f"{title.format(threads=threads)}, {args.img_height}x{args.img_width}, batch {args.batch_size}", [
        ("export (export.py's export_network)", f"{export_s:.1f} s, {size_mb:.0f} MB"),
        ("load (mindspore.load / onnxruntime.InferenceSession)", f"{load_s:.1f} s"),
        *call_rows(timing, args.batch_size),
        ("candidate detections", f"{candidates} (the network: {int(net_masks.sum())})"),
        ("peak RSS (whole run)", f"{peak_rss_mb():.0f} MB"),
    ])
    return {f"{key}_export_s": round(export_s, 2), f"{key}_first_call_extra_s": round(timing.compile_s, 2),
            f"{key}_s_per_image_median": round(timing.median / args.batch_size, 3)}


def export_weights(net, cfg, folder: str, file_format: str, batch_size: int) -> tuple[str, float, float]:
    """`net`'s weights exported by `export_network` (src/deploy/export.py) into `folder` -> (path, seconds, size
    in MB)."""
    weights = os.path.join(folder, "weights.ckpt")
    # the weights just timed, under a training checkpoint's names (the wrapper's `network.` prefix removed)
    ms.save_checkpoint([{"name": p.name.removeprefix("network."), "data": p} for p in net.get_parameters()], weights)
    start = time.perf_counter()
    path = export_network(cfg.replace(ckpt_file=weights, file_format=file_format,
                                      file_name=os.path.join(folder, "faster_rcnn_dcn")), batch_size)
    return path, time.perf_counter() - start, os.path.getsize(path) / 2 ** 20


if __name__ == "__main__":
    main()
