"""Throughput of the training data pipeline (MindRecord -> decode -> augment -> normalise -> batch), as a table.

    GLOG_v=3 .venv/bin/python bench/bench_data.py [--img_height 768] [--img_width 1280] [--workers 1 2]
                                                  [--batch_size 2] [--batches 100] [--coco_root DIR]

Runs `create_fasterrcnn_dataset` as train.py does (the config's python_multiprocessing, expand and flip) on the
synthetic data set (`--num_images` images written to a temporary folder) or on `--coco_root`'s train2017, and
times `--batches` batches after `--warmup` untimed ones, for each worker count. The last line is one json object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.bench_common import peak_rss_mb, print_table  # noqa: E402
from src.data.mindrecord import create_mindrecord  # noqa: E402
from src.data.settings import DataSettings  # noqa: E402
from src.data.synthetic import generate  # noqa: E402
from src.dataset import PipelineSettings, create_fasterrcnn_dataset  # noqa: E402
from src.model_utils.config import get_config  # noqa: E402

PREFIX = "FasterRcnn.mindrecord"
SEED = 0


def images_per_second(pipeline: PipelineSettings, mindrecord: str, workers: int, batch_size: int, batches: int,
                      warmup: int) -> float:
    ds = create_fasterrcnn_dataset(replace(pipeline, workers=workers), mindrecord, batch_size=batch_size)
    iterator = ds.repeat().create_tuple_iterator(output_numpy=True, num_epochs=1)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    elapsed = time.perf_counter() - start
    iterator.stop()
    return batches * batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img_height", type=int, default=768)
    parser.add_argument("--img_width", type=int, default=1280)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=100, help="timed batches per worker count")
    parser.add_argument("--warmup", type=int, default=10, help="untimed batches first (workers starting up)")
    parser.add_argument("--num_images", type=int, default=64, help="synthetic training images")
    parser.add_argument("--coco_root", default="", help="a COCO root to read instead of the synthetic set")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        coco_root = args.coco_root or os.path.join(tmp, "synthetic")
        if not args.coco_root:
            generate(coco_root, args.num_images, 0, SEED, get_config([]).coco_classes)
        cfg = get_config([], img_height=args.img_height, img_width=args.img_width, coco_root=coco_root,
                         mindrecord_dir=os.path.join(tmp, "mindrecord"))
        mindrecord = create_mindrecord(DataSettings.from_config(cfg), PREFIX, is_training=True)
        pipeline, results = PipelineSettings.from_config(cfg), {}
        for workers in args.workers:
            results[workers] = images_per_second(pipeline, mindrecord, workers, args.batch_size, args.batches,
                                                 args.warmup)

    source = args.coco_root or f"synthetic ({args.num_images} images of 300x400 to 360x640)"
    rows = [(f"{w} worker{'s' if w > 1 else ''}", f"{ips:7.2f} images/s  ({args.batch_size / ips * 1000:6.1f} "
             "ms/batch)") for w, ips in results.items()]
    rows.append(("peak RSS", f"{peak_rss_mb():.0f} MB (this process)"))
    print_table(f"training pipeline at {args.img_height}x{args.img_width}, batch {args.batch_size}, "
                f"python_multiprocessing={cfg.python_multiprocessing}, {os.cpu_count()} cores; {source}", rows)
    print(json.dumps({"bench": "data", "img_height": args.img_height, "img_width": args.img_width,
                      "batch_size": args.batch_size, "batches": args.batches,
                      "python_multiprocessing": bool(cfg.python_multiprocessing),
                      "images_per_second": {str(w): round(v, 2) for w, v in results.items()}}))


if __name__ == "__main__":
    main()
