"""End-to-end throughput of eval.py (MindRecord conversion, data pipeline, network, post-processing, COCO
evaluation) beside the network's own time, as a table.

    GLOG_v=3 .venv/bin/python bench/bench_eval.py [--num_images 50] [--min_side 500] [--max_side 1000]
                                                  [--config_path default_config_cpu.yaml] [--keep DIR]

A synthetic COCO set of `--num_images` images whose longer side is drawn from [min_side, max_side] px (the
synthetic images, resized, boxes scaled) and the fidelity fixture's reference weights; then `python eval.py` as a
user runs it, twice: cold (the evaluation MindRecord is built) and warm (reused). Every line eval.py prints is
time-stamped as it arrives: the network's time is the sum of its `Iter i cost time t` lines (the first one holds
the graph compilation), the loop is first to last Iter line; loop minus network is what the data pipeline and
the per-image post-processing add between network calls. The last line is one json object.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.bench_common import print_table  # noqa: E402
from src.data.synthetic import generate  # noqa: E402
from src.model_utils.config import get_config  # noqa: E402
from tests.helpers.reference_ckpt import write_reference_ckpt  # noqa: E402

SEED = 0
ITER_LINE = re.compile(r"^Iter (\d+) cost time ([0-9.]+)")


def resized_val_set(root: str, num_images: int, min_side: int, max_side: int) -> str:
    """The synthetic val split with every image resized so that its longer side is uniform in [min_side,
    max_side]; boxes and areas scaled with it. Returns the annotation file."""
    anno_path = generate(root, 0, num_images, SEED, get_config([]).coco_classes)["val2017_json"]
    with open(anno_path, encoding="utf-8") as f:
        coco = json.load(f)
    rng = np.random.default_rng(SEED)
    factors = {}
    for image in coco["images"]:
        path = os.path.join(root, "val2017", image["file_name"])
        pixels = cv2.imread(path)
        factor = rng.uniform(min_side, max_side) / max(pixels.shape[:2])
        width, height = round(pixels.shape[1] * factor), round(pixels.shape[0] * factor)
        cv2.imwrite(path, cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR))
        image["width"], image["height"] = width, height
        factors[image["id"]] = (width / pixels.shape[1], height / pixels.shape[0])
    for ann in coco["annotations"]:
        fx, fy = factors[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        ann["bbox"] = [x * fx, y * fy, w * fx, h * fy]
        ann["area"] = ann["area"] * fx * fy
        ann.pop("segmentation", None)
    with open(anno_path, "w", encoding="utf-8") as f:
        json.dump(coco, f)
    return anno_path


def timed_eval(args: list[str], cwd: str) -> dict:
    """Run eval.py, time-stamping its output lines; the figures of one run."""
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "eval.py"), *args], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    iters, lines = [], []
    for line in process.stdout:
        now = time.perf_counter() - start
        lines.append(line)
        match = ITER_LINE.match(line)
        if match:
            iters.append((now, float(match.group(2))))
    if process.wait() != 0:
        raise SystemExit(f"eval.py failed:\n{''.join(lines[-30:])}")
    wall = time.perf_counter() - start
    network = [cost for _, cost in iters]
    return {"wall_s": wall, "first_iter_at_s": iters[0][0] - iters[0][1], "batches": len(iters),
            "network_first_s": network[0], "network_rest_s": sum(network[1:]),
            "loop_rest_s": iters[-1][0] - iters[0][0], "after_loop_s": wall - iters[-1][0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=50)
    parser.add_argument("--min_side", type=int, default=500)
    parser.add_argument("--max_side", type=int, default=1000)
    parser.add_argument("--config_path", default=os.path.join(ROOT, "default_config_cpu.yaml"))
    parser.add_argument("--keep", default="", help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        work = args.keep or tmp
        os.makedirs(work, exist_ok=True)
        coco_root = os.path.join(work, "coco")
        anno_path = resized_val_set(coco_root, args.num_images, args.min_side, args.max_side)
        ckpt = write_reference_ckpt(os.path.join(work, "reference.ckpt"))
        cfg = get_config([f"--config_path={args.config_path}"])
        eval_args = [f"--config_path={args.config_path}", f"--checkpoint_path={ckpt}", f"--anno_path={anno_path}",
                     f"--coco_root={coco_root}", f"--mindrecord_dir={os.path.join(work, 'mindrecord')}"]
        os.makedirs(os.path.join(work, "mindrecord"), exist_ok=True)
        runs = {name: timed_eval(eval_args, work) for name in ("cold", "warm")}

    images, batch = args.num_images, cfg.test_batch_size
    rows = []
    for name, run in runs.items():
        steady_batches = run["batches"] - 1
        rows += [
            (f"{name}: eval.py wall", f"{run['wall_s']:.1f} s = {images / run['wall_s']:.3f} images/s"),
            (f"{name}: start-up to the first batch", f"{run['first_iter_at_s']:.1f} s (imports, checkpoint, "
             + ("MindRecord conversion)" if name == "cold" else "MindRecord check)")),
            (f"{name}: first batch (graph compile)", f"{run['network_first_s']:.1f} s"),
            (f"{name}: network, batches 2..", f"{run['network_rest_s'] / (steady_batches * batch):.3f} s/image"),
            (f"{name}: loop, batches 2..", f"{run['loop_rest_s'] / (steady_batches * batch):.3f} s/image "
             f"({run['loop_rest_s'] - run['network_rest_s']:.1f} s beside the network: data pipeline, "
             "post-processing)"),
            (f"{name}: after the loop", f"{run['after_loop_s']:.1f} s (json, COCOeval)"),
        ]
    print_table(f"eval.py end to end, {images} images of {args.min_side}-{args.max_side} px (longer side) -> "
                f"{cfg.img_height}x{cfg.img_width}, test_batch_size {batch}, {os.cpu_count()} cores", rows)
    print(json.dumps({"bench": "eval", "images": images, "img": [cfg.img_height, cfg.img_width],
                      **{f"{name}_{key}": round(value, 3) for name, run in runs.items()
                         for key, value in run.items()}}))


if __name__ == "__main__":
    main()
