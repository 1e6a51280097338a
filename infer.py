"""Detect objects in your own images with a trained checkpoint (or an exported MINDIR or ONNX file).

    python infer.py --checkpoint_path=CKPT --images=PATH[,PATH...] [--images_from=LIST.txt]
        [--detections_dir=detections] [--draw=True] [--score_thr=T] [--config_path=...yaml]
    python infer.py --mindir=FILE.mindir --images=...      (a MINDIR written by export.py)
    python infer.py --onnx=FILE.onnx --images=...          (export.py --file_format=ONNX, run by onnxruntime)

PATH: an image file, a folder (its image files, by name) or a quoted glob pattern (`'photos/*.jpg'`); several are
separated by commas. A name that exists as a file is that file, even with `*?[` in it, and so is a whole --images
value naming an existing file. --images_from=LIST.txt: a UTF-8 text file with one image file (or folder) per line,
taken exactly as written (no splitting at commas, no patterns; relative to the current folder; blank lines ignored),
for names that hold commas; a missing one is named with its line (`LIST.txt:3: ...`). Images of any size go through the
evaluation's preprocessing (keep-ratio resize to the network's img_height x img_width, or the exported model's, padded
at the bottom and right; src/data/transforms.py; the detection: src/deploy/detect_images.py). The detections scoring at
least score_thr (0..1; negative, the default: visualize_score_thr) among the eval_max_num best of each image are
written, atomically, to `<detections_dir>/detections.json` (an earlier run's is replaced): a list with one record per
image, `{"file", "height", "width", "boxes": [[x1, y1, x2, y2], ...] (the image's pixels), "scores", "labels" (indices
into coco_classes, background = 0), "names"}`, best score first. A MINDIR written by export.py carries its class names,
input size and keep_ratio, which are used (a --coco_classes or --config_path whose classes differ is refused); an older
MINDIR gets the config's class names, with a warning. An ONNX file likewise.
With --draw=True, after detections.json: `<detections_dir>/<file name>.png` (the image with its boxes, names and
scores; the record's "picture"): `x.jpg` -> `x.jpg.png`, and a name this run already gave or that a file in the
folder has gets `-2`, `-3`, ... (`x.jpg-2.png`): a picture never replaces a file.
detections_dir is checked (writable, FASTER_RCNN_MIN_FREE_MB free) and held for this run (a second infer.py into it
is refused) before the network is built; a detections_dir that holds input images (or folders of them) is refused.
A write that fails (disk full) ends the run with one line, status 1: detections.json complete, the pictures drawn
until then kept, no temporary file. A missing or unreadable image is named, skipped and counted; the run fails only
when no image at all can be read.
"""
from __future__ import annotations

import sys

from src.deploy.detect_images import (
    check_detections_dir,
    check_request,
    collect_images,
    detect_and_write,
    held_output_folder,
    model_to_run,
)
from src.infra.errors import InferError
from src.infra.fileio import check_output_dir
from src.infra.runtime import device_id, run_job, set_up_device


def infer(cfg) -> list[dict]:
    """Detect, write detections.json, then (draw) the pictures; returns the records."""
    check_request(cfg)
    cfg, exported, classes, keep_ratio = model_to_run(cfg)
    files, skipped = collect_images(cfg)
    for problem in skipped:
        print(f"WARNING: {problem}; skipped", file=sys.stderr, flush=True)
    if not files:
        raise InferError(f"no image file found ({'; '.join(skipped)})")
    set_up_device(cfg.device_target, cfg.run_mode, device_id(cfg))
    check_detections_dir(cfg.detections_dir, files)
    check_output_dir(cfg.detections_dir, "--detections_dir")
    with held_output_folder(cfg.detections_dir):
        return detect_and_write(cfg, files, skipped, exported, classes, keep_ratio)


def main() -> int:
    return run_job(infer, "infer.py")


if __name__ == "__main__":
    sys.exit(main())
