"""Throughput of the training data pipeline (MindRecord -> decode -> augment -> normalise -> batch), as a table.

    GLOG_v=3 .venv/bin/python bench/bench_data.py [--img_height 768] [--img_width 1280] [--workers 1 2]
                                                  [--batch_size 2] [--batches 100] [--coco_root DIR]
                                                  [--augment off|on|both]

Runs `create_fasterrcnn_dataset` as train.py does (the config's python_multiprocessing, expand and flip) on the
synthetic data set (`--num_images` images written to a temporary folder) or on `--coco_root`'s train2017, and
times `--batches` batches after `--warmup` untimed ones, for each worker count. `--augment on` turns every
augmentation option on as well (ALL_AUGMENTATIONS), `both` times the config's pipeline and that one, interleaved,
and adds the per-image CPU time of the map function alone in this process (less sensitive to a busy machine than
the rates). The last line is one json object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.bench_common import peak_rss_mb, print_table  # noqa: E402
from src.data.mindrecord import create_mindrecord  # noqa: E402
from src.data.settings import DataSettings  # noqa: E402
from src.data.synthetic import generate  # noqa: E402
from src.data.transforms import PreprocessSettings, TrainPreprocess  # noqa: E402
from src.dataset import PipelineSettings, create_fasterrcnn_dataset  # noqa: E402
from src.model_utils.config import get_config  # noqa: E402

PREFIX = "FasterRcnn.mindrecord"
SEED = 0
ALL_AUGMENTATIONS = {"photometric_distortion": True, "scale_jitter": [0.5, 1.5], "random_crop": 0.5,
                     "vertical_flip_ratio": 0.5}


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


def preprocess_cpu_ms(cfg, rows: list[tuple[np.ndarray, np.ndarray]], repeats: int = 3) -> float:
    """CPU milliseconds per image of the training map function on decoded `rows` (best of `repeats` passes)."""
    preprocess = TrainPreprocess(PreprocessSettings.from_config(cfg), seed=SEED)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for image, annotation in rows:
            preprocess(image, annotation)
        best = min(best, time.process_time() - start)
    return best / len(rows) * 1000


def decoded_rows(mindrecord: str) -> list[tuple[np.ndarray, np.ndarray]]:
    import mindspore.dataset as de  # noqa: PLC0415
    from mindspore.dataset import vision  # noqa: PLC0415

    ds = de.MindDataset(mindrecord, columns_list=["image", "annotation"], shuffle=False)
    ds = ds.map(vision.Decode(), input_columns=["image"])
    return [(row[0], row[1]) for row in ds.create_tuple_iterator(output_numpy=True, num_epochs=1)]


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
    parser.add_argument("--augment", choices=["off", "on", "both"], default="off",
                        help="the augmentation options off (the config's), all on, or both in one run")
    args = parser.parse_args()
    variants = {"off": ["off"], "on": ["on"], "both": ["off", "on"]}[args.augment]

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        coco_root = args.coco_root or os.path.join(tmp, "synthetic")
        if not args.coco_root:
            generate(coco_root, args.num_images, 0, SEED, get_config([]).coco_classes)
        cfg = get_config([], img_height=args.img_height, img_width=args.img_width, coco_root=coco_root,
                         mindrecord_dir=os.path.join(tmp, "mindrecord"))
        mindrecord = create_mindrecord(DataSettings.from_config(cfg), PREFIX, is_training=True)
        configs = {"off": cfg, "on": cfg.replace(**ALL_AUGMENTATIONS)}
        results = {}
        for workers in args.workers:
            for variant in variants:
                results[workers, variant] = images_per_second(PipelineSettings.from_config(configs[variant]),
                                                              mindrecord, workers, args.batch_size, args.batches,
                                                              args.warmup)
        cpu_ms = {}
        if len(variants) > 1:
            decoded = decoded_rows(mindrecord)
            cpu_ms = {variant: preprocess_cpu_ms(configs[variant], decoded) for variant in variants}

    source = args.coco_root or f"synthetic ({args.num_images} images of 300x400 to 360x640)"
    rows = [(f"{w} worker{'s' if w > 1 else ''}" + (", augmentations on" if variant == "on" else ""),
             f"{ips:7.2f} images/s  ({args.batch_size / ips * 1000:6.1f} ms/batch)")
            for (w, variant), ips in results.items()]
    rows += [(f"map function alone, augmentations {variant}", f"{ms:7.1f} ms CPU/image (this process)")
             for variant, ms in cpu_ms.items()]
    rows.append(("peak RSS", f"{peak_rss_mb():.0f} MB (this process)"))
    print_table(f"training pipeline at {args.img_height}x{args.img_width}, batch {args.batch_size}, "
                f"python_multiprocessing={cfg.python_multiprocessing}, {os.cpu_count()} cores; {source}", rows)
    print(json.dumps({"bench": "data", "img_height": args.img_height, "img_width": args.img_width,
                      "batch_size": args.batch_size, "batches": args.batches,
                      "python_multiprocessing": bool(cfg.python_multiprocessing),
                      "augment": args.augment, "map_cpu_ms": {k: round(v, 2) for k, v in cpu_ms.items()},
                      "images_per_second": {f"{w}{'+aug' if variant == 'on' else ''}": round(v, 2)
                                            for (w, variant), v in results.items()}}))


if __name__ == "__main__":
    main()
