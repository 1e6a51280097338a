"""Detecting objects in image files (infer.py): the detector (the network with a checkpoint, as eval.py, or an
exported MINDIR / ONNX file with the facts export.py recorded in it), the images read and batched for it, one
detections.json record per image, and the pictures drawn after it under names that never replace a file.

The records: `{"file", "height", "width", "boxes": [[x1, y1, x2, y2], ...] (the image's pixels), "scores",
"labels" (indices into coco_classes, background = 0), "names"}`, best score first, and with pictures `"picture"`.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import mindspore as ms
import numpy as np

from src.data.image_files import OrientationNotes, find_images, read_image, read_image_bgr, read_image_list
from src.data.transforms import PreprocessSettings
from src.deploy.exported import exported_detector, read_exported
from src.deploy.mindir_app import load_image
from src.evaluation.visualize import draw_detections, picture_for, save_png
from src.infra.errors import CheckpointError, ConfigError, DataError, InferError, OutputError, WriteError
from src.infra.fileio import write_json_atomic
from src.infra.progress import Progress
from src.infra.run_lock import holding
from src.infra.runtime import load_inference_network
from src.model_utils.config import Config, classes_from_data
from src.util import select_detections

DETECTIONS_FILE = "detections.json"
BOX_DECIMALS = 4  # pixels
SCORE_DECIMALS = 5
PICTURE_EXTENSION = ".png"
SHOWN_RENAMED = 5  # pictures named in the line about taken names

# (images (B, 3, H, W) float32, metas (B, 4) float32) -> (boxes (B, N, 5), labels (B, N, 1), masks (B, N, 1))
DetectBatch = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def collect_images(cfg) -> tuple[list[str], list[str]]:
    """The image files of --images then --images_from (each file once) and the problem lines of both."""
    files, problems = find_images(cfg.images) if cfg.images.strip() else ([], [])
    problems = [f"--images: {problem}" for problem in problems]
    if cfg.images_from:
        listed, listed_problems = read_image_list(cfg.images_from)
        files += [path for path in listed if path not in files]
        problems += [f"--images_from: {problem}" for problem in listed_problems]
    return files, problems


def check_request(cfg) -> None:
    """ConfigError before any work when the model, the images or the threshold are not given as expected."""
    if [bool(cfg.checkpoint_path), bool(cfg.mindir), bool(cfg.onnx)].count(True) != 1:
        raise ConfigError("infer.py needs exactly one model: --checkpoint_path=CKPT, --mindir=FILE.mindir or "
                          "--onnx=FILE.onnx")
    if not cfg.images.strip() and not cfg.images_from:
        raise ConfigError("--images: give image files, folders or quoted glob patterns, separated by commas (or "
                          "--images_from=LIST.txt, one path per line)")
    if cfg.score_thr > 1:
        raise ConfigError(f"--score_thr={cfg.score_thr}: scores are at most 1; give a threshold in [0, 1] "
                          "(negative: visualize_score_thr)")


def picture_names(files: Sequence[str], taken: Iterable[str] = ()) -> list[str]:
    """A PNG name per file, none of them among `taken` (the names already in the folder) or given twice:
    `<file name>.png` (`x.jpg` -> `x.jpg.png`, so `x.jpg` and `x.png` stay apart), else `<file name>-2.png`, `-3`,
    ... Names are compared without case (a case-insensitive file system holds one of `A.png` and `a.png`)."""
    used = {name.casefold() for name in taken}
    names = []
    for path in files:
        base = os.path.basename(path).lstrip(".") or "image"  # a hidden source still gets a visible picture
        name, count = base + PICTURE_EXTENSION, 1
        while name.casefold() in used:
            count += 1
            name = f"{base}-{count}{PICTURE_EXTENSION}"
        used.add(name.casefold())
        names.append(name)
    return names


def check_detections_dir(out_dir: str, files: Sequence[str]) -> None:
    """OutputError when detections_dir is, or contains, a folder of an input image: pictures and detections.json
    go beside the user's own files there (and a later run over that folder would take the pictures for images)."""
    out = os.path.realpath(out_dir)
    for path in files:
        folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        if os.path.commonpath([out, folder]) == out:
            where = "holds" if folder == out else "contains the folder of"
            raise OutputError(f"--detections_dir={out_dir!r} {where} the input image {path}: give a folder of "
                              "its own (the default: detections), so that no output lands among your images")


def held_output_folder(folder: str) -> contextlib.AbstractContextManager[None]:
    """`folder` (created if needed) held for this run (src/infra/run_lock.py `holding`: a second infer.py into it is
    refused); when the block fails, the folders this created are removed again if they are still empty."""
    return holding([(folder, "infer")], "infer.py")


def evaluation_preprocessing(canvas_h: int, canvas_w: int, keep_ratio: bool) -> PreprocessSettings:
    """The evaluation's preprocessing for a canvas (no augmentation; no ground truth, so one padding box)."""
    return PreprocessSettings(canvas_h=int(canvas_h), canvas_w=int(canvas_w), keep_ratio=bool(keep_ratio),
                              flip_ratio=0.0, expand_ratio=0.0, num_gts=1)


def checkpoint_detector(cfg) -> tuple[DetectBatch, int, PreprocessSettings]:
    """The network of cfg with cfg.checkpoint_path loaded (as eval.py), one image per call, cfg's image size."""
    if not os.path.isfile(cfg.checkpoint_path):
        raise CheckpointError(f"checkpoint file not found: {cfg.checkpoint_path!r} (config key checkpoint_path)")
    net = load_inference_network(cfg, cfg.checkpoint_path, test_batch_size=1)

    def detect(images: np.ndarray, metas: np.ndarray):
        outputs = net(ms.Tensor(images), ms.Tensor(metas), None, None, None)
        return tuple(o.asnumpy() for o in outputs)

    return detect, 1, evaluation_preprocessing(cfg.img_height, cfg.img_width, cfg.keep_ratio)


def exported_model_detector(path: str, keep_ratio: bool) -> tuple[DetectBatch, int, PreprocessSettings]:
    """export.py's MINDIR (MindSpore's runtime) or ONNX file (onnxruntime) at `path`: its batch size and input
    size."""
    detect, batch, (height, width) = exported_detector(path)
    return detect, batch, evaluation_preprocessing(height, width, keep_ratio)


def classes_source(cfg) -> str:
    """Where cfg's class names were given explicitly ('' when they are the default yaml's)."""
    if "coco_classes" in cfg.given:
        return "--coco_classes"
    return f"--config_path={cfg.config_path}'s coco_classes" if "config_path" in cfg.given else ""


def model_to_run(cfg) -> tuple[Config, str, list[str], bool]:
    """The config to build the network from, the exported model's path ('' for --checkpoint_path), its class names
    (background first) and keep_ratio: an exported model's (`exported_model`), or the config's, whose classes a
    --train_anno_path json gives when they are not (src.model_utils.config.classes_from_data)."""
    if cfg.mindir or cfg.onnx:
        return (cfg, *exported_model(cfg))
    cfg = classes_from_data(cfg, is_training=True)
    return cfg, "", list(cfg.coco_classes), bool(cfg.keep_ratio)


def exported_model(cfg) -> tuple[str, list[str], bool]:
    """The exported model's path (--mindir or --onnx), class names (background first) and keep_ratio: those
    export.py recorded in it (ConfigError when the command line or --config_path gives others), else, for an older
    export, the config's (with a warning)."""
    path = cfg.mindir or cfg.onnx
    _, facts = read_exported(path)
    if facts is None:
        print(f"WARNING: {path} does not record its classes (exported before export.py wrote them): the "
              f"{len(cfg.coco_classes)} class names and keep_ratio come from the config "
              f"({classes_source(cfg) or 'coco_classes of the default yaml'})", file=sys.stderr, flush=True)
        return path, list(cfg.coco_classes), bool(cfg.keep_ratio)
    classes, source = facts["coco_classes"], classes_source(cfg)
    if source and list(cfg.coco_classes) != classes:
        ours = list(cfg.coco_classes)
        first = next(k for k in range(max(len(ours), len(classes)))
                     if k >= min(len(ours), len(classes)) or ours[k] != classes[k])
        given, theirs = (repr(names[first]) if first < len(names) else "none" for names in (ours, classes))
        raise ConfigError(f"{source} ({len(ours)} names) disagree with the {len(classes)} classes {path} "
                          f"was exported with (class {first}: {given} given, {theirs} in the model); leave them "
                          "out to use the model's")
    if "keep_ratio" in cfg.given and bool(cfg.keep_ratio) != facts["keep_ratio"]:
        raise ConfigError(f"--keep_ratio={cfg.keep_ratio} disagrees with {path}, exported with "
                          f"keep_ratio={facts['keep_ratio']}; leave it out to use the model's")
    return path, classes, facts["keep_ratio"]


def image_record(path: str, meta: np.ndarray, boxes: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                 score_thr: float) -> dict:
    """One image's detections.json record from its selected detections: boxes (K, 5) [x1, y1, x2, y2, score] in its
    pixels, labels (K,) foreground indices 0..; `classes` = coco_classes (background first)."""
    order = [k for k in np.argsort(-boxes[:, 4], kind="stable") if boxes[k, 4] >= score_thr]
    indices = [int(labels[k]) + 1 for k in order]
    return {"file": path, "height": int(meta[0]), "width": int(meta[1]),
            "boxes": [[round(float(v), BOX_DECIMALS) for v in boxes[k, :4]] for k in order],
            "scores": [round(float(boxes[k, 4]), SCORE_DECIMALS) for k in order],
            "labels": indices,
            "names": [classes[i] if i < len(classes) else f"class {i}" for i in indices]}


def draw_record(record: dict, settings: PreprocessSettings, class_names: Sequence[str], path: str,
                exif_transpose: bool = False) -> None:
    """The record's detections drawn on its image file, in the frame the network saw (stored, or displayed with
    `exif_transpose`), into the new file `path` (never replacing one); when the file cannot be read so, on the
    network input scaled back."""
    picture = read_image_bgr(record["file"], exif_transpose)
    if picture is None or picture.shape[:2] != (record["height"], record["width"]):
        # its orientation was counted when it was read for the network
        picture = picture_for(None, *load_image(record["file"], settings, exif_transpose, OrientationNotes()))
    boxes = np.array([[*box, score] for box, score in zip(record["boxes"], record["scores"], strict=True)],
                     np.float32).reshape(-1, 5)
    save_png(draw_detections(picture, boxes, np.array(record["labels"]) - 1, class_names), path, replace=False)


def draw_pictures(records: Sequence[dict], settings: PreprocessSettings, class_names: Sequence[str],
                  out_dir: str, detections_path: str, exif_transpose: bool = False) -> None:
    """Each record's picture (its "picture" name in out_dir). WriteError naming the file, the reason and what is
    kept when one cannot be written: detections.json is already complete, the pictures before it stay."""
    for done, record in enumerate(records):
        try:
            draw_record(record, settings, class_names, os.path.join(out_dir, record["picture"]), exif_transpose)
        except WriteError as err:
            raise WriteError(f"{err}; kept: {detections_path} (complete, {len(records)} images) and {done} of "
                             f"{len(records)} pictures") from None
        except (InferError, OSError) as err:  # the image changed or went away since it was read
            print(f"WARNING: {err}; no picture {record['picture']}", file=sys.stderr, flush=True)


def score_threshold(cfg) -> float:
    """score_thr, or visualize_score_thr when score_thr is negative."""
    return float(cfg.score_thr if cfg.score_thr >= 0 else cfg.visualize_score_thr)


def detect_and_write(cfg, files: Sequence[str], skipped: list[str], exported: str, classes: Sequence[str],
                     keep_ratio: bool) -> list[dict]:
    """Build the network (or load the `exported` model), detect in `files`, write detections.json, then (draw) the
    pictures; `skipped`: the problem lines so far. Returns the records."""
    out_dir = cfg.detections_dir
    detect, batch, settings = exported_model_detector(exported, keep_ratio) if exported else checkpoint_detector(cfg)
    model = exported or cfg.checkpoint_path
    threshold = score_threshold(cfg)
    print(f"{len(files)} images, {model}, input {settings.canvas_h}x{settings.canvas_w}, batch {batch}, "
          f"score >= {threshold}", flush=True)

    records, pending, call_seconds = [], [], []
    progress = Progress(len(files))

    def run_pending() -> None:
        images = np.stack([image for _, image, _ in pending] + [pending[-1][1]] * (batch - len(pending)))
        metas = np.stack([meta for _, _, meta in pending] + [pending[-1][2]] * (batch - len(pending)))
        start = time.perf_counter()
        boxes, labels, masks = detect(images, metas)
        call_seconds.append(time.perf_counter() - start)
        for j, (path, _, meta) in enumerate(pending):
            kept, kept_labels = select_detections(boxes[j], labels[j], masks[j], cfg.eval_max_num)
            records.append(image_record(path, meta, kept, kept_labels, classes, threshold))
            print(f"{path}: {len(records[-1]['scores'])} detections ({progress.step()})", flush=True)
        pending.clear()

    for path in files:
        try:
            read_image(path, "--images")  # one line naming the file when it is missing, no image or undecodable
            image, meta = load_image(path, settings, cfg.exif_transpose)
        except (DataError, InferError, OSError) as err:
            skipped.append(str(err))
            print(f"WARNING: {err}; skipped ({progress.step()})", file=sys.stderr, flush=True)
            continue
        pending.append((path, image, meta))
        if len(pending) == batch:
            run_pending()
    if pending:
        run_pending()

    if skipped:
        print(f"skipped {len(skipped)} (missing or unreadable):\n  " + "\n  ".join(skipped), flush=True)
    if not records:
        raise InferError(f"none of the {len(files)} image files could be read ({'; '.join(skipped[:3])})")
    out_path = os.path.join(out_dir, DETECTIONS_FILE)
    if cfg.draw:  # named now, against the folder as it is: a picture never replaces a file
        names = picture_names([record["file"] for record in records], os.listdir(out_dir))
        for record, name in zip(records, names, strict=True):
            record["picture"] = name
        renamed = [name for record, name in zip(records, names, strict=True)
                   if name != picture_names([record["file"]])[0]]
        if renamed:
            more = f", ... ({len(renamed)} in all)" if len(renamed) > SHOWN_RENAMED else ""
            print(f"pictures under the next free name, theirs being taken (by a file in {out_dir} or another image "
                  f"of this run; nothing is replaced): {', '.join(renamed[:SHOWN_RENAMED])}{more}", flush=True)
    write_json_atomic(records, out_path, indent=1)
    print(f"detections of {len(records)} of {len(files)} image files written to {out_path}", flush=True)
    if cfg.draw:
        print(f"drawing {len(records)} pictures into {out_dir}/ ...", flush=True)
        draw_pictures(records, settings, classes[1:], out_dir, out_path, cfg.exif_transpose)
        print(f"pictures of {len(records)} images drawn to {out_dir}/ (named in {DETECTIONS_FILE}: \"picture\")",
              flush=True)
    first, steady = call_seconds[0], call_seconds[1:]
    timing = f"{sum(steady) / len(steady) / batch:.3f} s per image after the first call, " if steady else ""
    print(f"inference: {timing}first call {first:.1f} s (graph compilation included); {progress.status()}",
          flush=True)
    return records
