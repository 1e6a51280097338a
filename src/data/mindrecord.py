"""The project's MindRecord sets: where they live, when one is complete, and writing one from a COCO or TXT set.

One row per image, fields `image` (the encoded file's bytes), `annotation` int32 (n, 6) [x1, y1, x2, y2, label,
iscrowd] (source pixels truncated to integers, label = index in the classes) and `image_id` int64 (the COCO
image id; for TXT the 1-based position of the image's line among the non-blank lines). Training sets are written
as 8 files (`<prefix>0` ... `<prefix>7`), evaluation sets as one (`<prefix>`), each with its `.db` index, as the
original. Beside them `<file to open>.json` (e.g. `FasterRcnn.mindrecord0.json`) records the files' sizes, the
source, the classes, the conversion's counts and the label <-> category id map (`label_map`); it is written last,
so a set without it (an interrupted run, or one written by the original) is never taken for complete and is
rebuilt. A network class index k (0-based, no background) is label k + 1, i.e. COCO category
`label_map(file)[k + 1]["id"]`. An image without a usable (non-crowd) box is a background image, as in the original:
it keeps its crowd rows, or gets NO_BOX_ROW when it has none (all of its gts invalid: every anchor and RoI negative);
a training set leaves such images out with `skip_background_images`; both are counted.

The json also lists the boxes the conversion dropped as degenerate (`dropped_boxes`: [image id, index of the box
among the image's annotations]) and the images skipped as missing or unreadable (`skipped_images`: ids), so that the
evaluation leaves them out of the ground truth too (src/evaluation/evaluator.py). With `exif_transpose` an
image whose EXIF orientation is not 1 is stored in its displayed frame, re-encoded as PNG (lossless), with its displayed
size (src/data/image_files.py); without it such images are stored as they are and counted in a warning.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from mindspore.mindrecord import FileWriter

from src.data.image_files import OrientationNotes, read_image
from src.data.settings import DataSettings
from src.data.sources import ImageRecord, read_coco_records, read_txt_records
from src.infra.errors import DataError
from src.infra.fileio import write_json_atomic

TRAIN_FILE_NUM = 8          # the original's shard count for training sets
EVAL_FILE_NUM = 1
DEFAULT_SUBDIR = "FASTERRCNN_MINDRECORD"   # under the data root when mindrecord_dir is empty (the scripts')
WAIT_POLL_SECONDS = 5       # ranks other than 0 poll this often for rank 0's MindRecord (the original's)
WRITE_BATCH_ROWS = 32
SCHEMA = {
    "image": {"type": "bytes"},
    "annotation": {"type": "int32", "shape": [-1, 6]},
    "image_id": {"type": "int64"},
}
SCHEMA_NAME = "fasterrcnn_json"
SIDECAR_FORMAT = "faster_rcnn_dcn mindrecord 2"
# An image without any box: one crowd row of label 0 (the original's create_coco_label), an invalid gt in training
NO_BOX_ROW = np.array([[0, 0, 0, 0, 0, 1]], dtype=np.int32)


def mindrecord_directory(settings: DataSettings) -> str:
    """settings.mindrecord_dir, or `<coco_root>/FASTERRCNN_MINDRECORD` (COCO), or beside the annotation file (TXT,
    or COCO without coco_root: the training json's folder, else the validation json's)."""
    if settings.mindrecord_dir:
        return settings.mindrecord_dir
    given_json = settings.train_anno_path or settings.val_anno_path
    if settings.is_coco and (settings.coco_root or not given_json):
        root = settings.coco_root
    else:
        root = os.path.dirname(os.path.abspath(given_json if settings.is_coco else settings.anno_path))
    return os.path.join(root, DEFAULT_SUBDIR)


def mindrecord_file(directory: str, prefix: str, file_num: int) -> str:
    """The file MindDataset opens: `<prefix>0` for a multi-file set, `<prefix>` for a single file."""
    return os.path.join(directory, prefix + ("0" if file_num > 1 else ""))


def sidecar_path(mindrecord: str) -> str:
    """The json beside a set: `<file to open>.json` (e.g. `FasterRcnn.mindrecord0.json`)."""
    return mindrecord + ".json"


def read_sidecar(mindrecord: str) -> dict | None:
    """The json of the set opened by `mindrecord`, or None if absent or unreadable."""
    try:
        with open(sidecar_path(mindrecord), encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return content if isinstance(content, dict) and content.get("format") == SIDECAR_FORMAT else None


def is_mindrecord_complete(mindrecord: str, source: dict | None = None) -> bool:
    """True if the set opened by `mindrecord` was fully written (every file of its json at its recorded size)
    and, when `source` is given, from that source."""
    content = read_sidecar(mindrecord)
    if content is None:
        return False
    directory = os.path.dirname(mindrecord)
    for name, size in content.get("files", {}).items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return False
    return source is None or content.get("source") == source


def label_map(mindrecord: str) -> dict[int, dict]:
    """label -> {"id": category id, "name": class name} of a complete set (from its json)."""
    content = read_sidecar(mindrecord)
    if content is None:
        raise DataError(f"no label map beside {mindrecord} (expected the json create_mindrecord writes)")
    return {cat["label"]: {"id": cat["id"], "name": cat["name"]} for cat in content["categories"]}


NAMED_IMAGES = 5  # skipped images named in the summary line; the rest counted


def named(paths: list[str]) -> str:
    """` (a, b, c and 4 more)` for the summary line: the first NAMED_IMAGES of `paths`; '' for none."""
    if not paths:
        return ""
    more = len(paths) - NAMED_IMAGES
    return f" ({', '.join(paths[:NAMED_IMAGES])}{f' and {more} more' if more > 0 else ''})"


@dataclass
class ConversionSummary:
    """What a conversion wrote and what it left out (counted, never silently)."""

    images_in_source: int = 0
    images_written: int = 0
    images_background: int = 0      # written without a usable box (crowd rows only, or NO_BOX_ROW)
    images_without_box: int = 0     # without a usable box, left out of a training set (skip_background_images)
    images_missing: int = 0         # skipped with skip_bad_images
    images_unreadable: int = 0      # skipped with skip_bad_images
    images_over_num_gts: int = 0    # more boxes than num_gts: the pipeline keeps num_gts of them
    boxes_clipped: int = 0          # partly outside the image
    boxes_degenerate: int = 0       # empty after clipping to the image and truncation to integers: dropped
    boxes_crowd: int = 0            # kept, marked not valid
    images_oriented: int = 0        # EXIF orientation other than 1 (turned to the displayed frame with exif_transpose)
    # the skipped images' paths (in source order), named in the summary line, not stored in the json's counts
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The counts alone (the json's `summary`)."""
        return {key: value for key, value in asdict(self).items() if isinstance(value, int)}

    def line(self, path: str) -> str:
        return (f"MindRecord {path}: {self.images_written} of {self.images_in_source} images written, "
                f"{self.images_background} of them background images (no usable box); left out "
                f"{self.images_without_box} without a usable box, {self.images_missing} missing"
                f"{named(self.missing)}, {self.images_unreadable} unreadable{named(self.unreadable)}; "
                f"boxes: {self.boxes_clipped} clipped to the image, "
                f"{self.boxes_degenerate} degenerate dropped, {self.boxes_crowd} crowd (not trained on); "
                f"{self.images_over_num_gts} images with more boxes than num_gts")


def usable_rows(boxes: np.ndarray, height: int, width: int, summary: ConversionSummary,
                dropped: list[int] | None = None) -> np.ndarray:
    """(n, 6) float rows -> int32 rows clipped to the image, degenerate ones dropped (counted in `summary`, their
    row indices appended to `dropped`)."""
    clipped = boxes.copy()
    clipped[:, 0:4:2] = np.clip(boxes[:, 0:4:2], 0, width)
    clipped[:, 1:4:2] = np.clip(boxes[:, 1:4:2], 0, height)
    summary.boxes_clipped += int(np.any(clipped[:, :4] != boxes[:, :4], axis=1).sum())
    rows = clipped.astype(np.int32)  # truncation, as the original stores its boxes
    keep = (rows[:, 2] > rows[:, 0]) & (rows[:, 3] > rows[:, 1])
    summary.boxes_degenerate += int((~keep).sum())
    if dropped is not None:
        dropped.extend(int(i) for i in np.flatnonzero(~keep))
    rows = rows[keep]
    summary.boxes_crowd += int((rows[:, 5] != 0).sum())
    return rows


def _progress(done: int, total: int, label: str, state: dict) -> None:
    if state.get("done") == done:
        return
    state["done"] = done
    percent = 100 * done // max(total, 1)
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{label}: {done}/{total} ({percent}%)" + ("\n" if done == total else ""))
    elif percent // 10 != state.get("decile") or done == total:
        state["decile"] = percent // 10
        sys.stderr.write(f"{label}: {done}/{total} ({percent}%)\n")
    sys.stderr.flush()


@dataclass
class LeftOut:
    """What a conversion left out, for the evaluation to say (degenerate boxes as [image id, box index in the
    image]: they stay ground truth there) and to leave out (skipped image ids), and the first images with an EXIF
    orientation other than 1, for the warning when the set is reused."""

    dropped_boxes: list[list[int]]
    skipped_images: list[int]
    oriented_names: list[str]


def _rows_to_write(records: list[ImageRecord], is_training: bool, skip_bad_images: bool, num_gts: int,
                   summary: ConversionSummary, left_out: LeftOut, exif_transpose: bool = False,
                   skip_background_images: bool = False):
    """Yield MindRecord rows: images checked, boxes cleaned; the counts go into `summary`, what was left out
    into `left_out`. An image without a usable (non-crowd) box is a background image, written with its crowd rows
    or NO_BOX_ROW (the original's), or left out of a training set with `skip_background_images`."""
    summary.images_in_source = len(records)
    notes = OrientationNotes()
    for record in records:
        try:
            data, height, width = read_image(record.path, record.where, exif_transpose, notes)
        except DataError:
            if not skip_bad_images:
                raise
            if os.path.isfile(record.path):
                summary.images_unreadable += 1
                summary.unreadable.append(record.path)
            else:
                summary.images_missing += 1
                summary.missing.append(record.path)
            left_out.skipped_images.append(int(record.image_id))
            continue
        dropped: list[int] = []
        rows = usable_rows(record.boxes, height, width, summary, dropped)
        left_out.dropped_boxes.extend([int(record.image_id), i] for i in dropped)
        if not np.any(rows[:, 5] == 0):
            if is_training and skip_background_images:
                summary.images_without_box += 1
                continue
            summary.images_background += 1
            if len(rows) == 0:
                rows = NO_BOX_ROW
        summary.images_over_num_gts += int(len(rows) > num_gts)
        summary.images_written += 1
        yield {"image": data, "annotation": rows, "image_id": np.int64(record.image_id)}
    summary.images_oriented = notes.count
    left_out.oriented_names.extend(notes.names)


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's content (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_source(settings: DataSettings, is_training: bool) -> dict:
    """The source (files, split, classes, the annotation file's SHA-256); `images_fingerprint` adds the images. A
    complete set is reused only for the same source."""
    if settings.needs_coco_root(is_training) and not os.path.isdir(settings.coco_root):
        raise DataError(f"coco_root is not a directory: {settings.coco_root!r} (config key coco_root)")
    anno_file, image_root = settings.source_files(is_training)
    kind = "coco" if settings.is_coco else "txt"
    if not os.path.isfile(anno_file):
        keys = settings.annotation_keys(is_training)
        raise DataError(f"annotation file not found: {anno_file!r} (config keys {keys})")
    source = {"dataset": kind, "annotation_file": os.path.abspath(anno_file),
              "annotation_sha256": file_sha256(anno_file), "image_root": os.path.abspath(image_root),
              "is_training": bool(is_training), "classes": list(settings.classes),
              "exif_transpose": settings.exif_transpose}
    if is_training:  # evaluation sets keep every image
        source["skip_background_images"] = settings.skip_background_images
    return source


def images_fingerprint(records: list[ImageRecord]) -> str:
    """A digest of every image file's path, size and modification time (an image replaced in place changes it)."""
    digest = hashlib.sha256()
    for record in records:
        try:
            stat = os.stat(record.path)
            digest.update(f"{record.path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{record.path}\0missing\n".encode())
    return digest.hexdigest()


# Why a set is rebuilt, by the source entry that differs.
_CHANGES = {
    "annotation_sha256": "the annotation file's content changed",
    "images": "an image file changed (size or modification time)",
    "classes": "the classes (coco_classes) changed",
    "dataset": "the data set kind changed",
    "annotation_file": "another annotation file",
    "image_root": "another image folder",
    "is_training": "training and evaluation sets differ",
    "exif_transpose": "exif_transpose changed (the frame images are stored in)",
    "skip_background_images": "skip_background_images changed (training images without a usable box)",
}


def rebuild_reasons(previous: dict | None, source: dict) -> list[str]:
    """Why the set described by `previous` (its json's source) is not the one `source` asks for."""
    if previous is None:
        return ["no complete set"]
    reasons = [why for key, why in _CHANGES.items() if previous.get(key) != source.get(key)]
    return reasons or ["it was written by another version of this code"]


def read_records(source: dict, allow_outside_paths: bool = False) -> tuple[list[ImageRecord], list[dict]]:
    """The source's image records and its categories [{label, id, name}] (label = index in the classes); TXT image
    paths outside the image folder are refused unless `allow_outside_paths`."""
    classes = source["classes"]
    if source["dataset"] == "coco":
        records, labels = read_coco_records(source["annotation_file"], source["image_root"], classes)
        categories = [{"label": label, "id": cat_id, "name": classes[label]}
                      for cat_id, label in sorted(labels.items(), key=lambda item: item[1])]
    else:
        records = read_txt_records(source["annotation_file"], source["image_root"], classes, allow_outside_paths)
        categories = [{"label": i, "id": i, "name": name} for i, name in enumerate(classes) if i > 0]
    return records, categories


def write_mindrecord(rows, directory: str, prefix: str, file_num: int, total: int, sidecar: dict,
                     summary: ConversionSummary) -> str:
    """Write `rows` (dicts of SCHEMA) as a MindRecord set, then its json; returns the file to open.

    The set is written in a temporary folder and moved into `directory`; the json (the mark of a complete
    set) is removed first and written last, so an interruption at any point leaves no set taken as complete.
    """
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, f".{prefix}.partial-*")):
        shutil.rmtree(stale, ignore_errors=True)
    partial = os.path.join(directory, f".{prefix}.partial-{os.getpid()}")
    os.makedirs(partial)
    target = mindrecord_file(directory, prefix, file_num)
    try:
        writer = FileWriter(os.path.join(partial, prefix), shard_num=file_num, overwrite=True)
        writer.add_schema(SCHEMA, SCHEMA_NAME)
        batch, done, state = [], 0, {}
        for row in rows:
            batch.append(row)
            if len(batch) == WRITE_BATCH_ROWS:
                writer.write_raw_data(batch)
                done += len(batch)
                batch = []
                _progress(done, total, f"writing {prefix}", state)
        if batch:
            writer.write_raw_data(batch)
            done += len(batch)
        if done == 0:
            raise DataError(f"no usable image: {summary.line(target)}")
        writer.commit()
        _progress(total, total, f"writing {prefix}", state)
        if os.path.exists(sidecar_path(target)):
            os.remove(sidecar_path(target))
        names = sorted(os.listdir(partial))
        for name in names:
            os.replace(os.path.join(partial, name), os.path.join(directory, name))
        content = dict(sidecar, format=SIDECAR_FORMAT, num_rows=done, summary=summary.counts(),
                       files={name: os.path.getsize(os.path.join(directory, name)) for name in names})
        write_json_atomic(content, sidecar_path(target), indent=1)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _print_orientation_line(sidecar: dict | None, applied: bool) -> None:
    """The line about the set's images with an EXIF orientation other than 1 (from its json), if it has any."""
    if not sidecar:
        return
    notes = OrientationNotes()
    notes.count = int(sidecar.get("summary", {}).get("images_oriented", 0))
    notes.names = list(sidecar.get("oriented_names", []))
    line = notes.line(applied)
    if line:
        print(line, flush=True)


def create_mindrecord(settings: DataSettings, prefix: str, is_training: bool, rank_id: int | None = None,
                      file_num: int | None = None) -> str:
    """The MindRecord of the data set's training or evaluation split (`settings.source_files`), written on first use
    into `mindrecord_directory(settings)`; returns the file to open.

    A complete set from the same source (annotation content, every image's size and modification time, classes)
    is reused; otherwise it is rebuilt, saying why. Only rank 0 (`rank_id`, default settings.rank_id) writes; other
    ranks wait for it. Missing or unreadable images stop the conversion with their name, or with
    `settings.skip_bad_images` are skipped and counted; a one-line summary is printed.
    """
    rank = settings.rank_id if rank_id is None else rank_id
    file_num = file_num or (TRAIN_FILE_NUM if is_training else EVAL_FILE_NUM)
    directory = mindrecord_directory(settings)
    target = mindrecord_file(directory, prefix, file_num)
    source = describe_source(settings, is_training)
    records, categories = read_records(source, settings.allow_outside_paths)
    source["images"] = images_fingerprint(records)
    if is_mindrecord_complete(target, source):
        print(f"Reusing MindRecord {target}", flush=True)
        _print_orientation_line(read_sidecar(target), source["exif_transpose"])
        return target
    if rank != 0:
        print(f"rank {rank}: waiting for rank 0 to write {target}", flush=True)
        while not is_mindrecord_complete(target, source):
            time.sleep(WAIT_POLL_SECONDS)
        return target
    previous = read_sidecar(target)
    if previous is not None:
        reasons = rebuild_reasons(previous.get("source"), source)
        print(f"Rebuilding MindRecord {target}: {'; '.join(reasons)}", flush=True)
    print("Create Mindrecord. It may take some time.", flush=True)
    summary = ConversionSummary()
    left_out = LeftOut([], [], [])
    rows = _rows_to_write(records, is_training, settings.skip_bad_images, settings.num_gts, summary, left_out,
                          source["exif_transpose"], source.get("skip_background_images", False))
    # left_out's lists fill while write_mindrecord consumes `rows`, before it writes the json
    sidecar = {"open": os.path.basename(target), "source": source, "classes": list(settings.classes),
               "categories": categories, "dropped_boxes": left_out.dropped_boxes,
               "skipped_images": left_out.skipped_images, "oriented_names": left_out.oriented_names}
    write_mindrecord(rows, directory, prefix, file_num, len(records), sidecar, summary)
    print(summary.line(target), flush=True)
    _print_orientation_line(read_sidecar(target), source["exif_transpose"])
    print(f"Create Mindrecord Done, at {directory}", flush=True)
    return target
