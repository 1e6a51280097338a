"""A training set's non-crowd boxes with their image's size, read as the MindRecord conversion reads them (the
annotations by src/data/sources.py, the boxes clipped, truncated and filtered by `usable_rows`), with the size from
each image file's header (no decoding); and the anchor fit report (src/data/anchor_fit.py) printed by the
command-line tool and once after train.py converts a training set.
"""
from __future__ import annotations

import os
import sys

from PIL import Image

from src.data.anchor_fit import FitSettings, ImageBoxes, report_lines
from src.data.image_files import exif_orientation
from src.data.mindrecord import (
    TRAIN_FILE_NUM,
    ConversionSummary,
    create_mindrecord,
    describe_source,
    mindrecord_directory,
    mindrecord_file,
    read_records,
    sidecar_path,
    usable_rows,
)
from src.data.settings import DataSettings

TURNED = (5, 6, 7, 8)  # EXIF orientations whose displayed frame swaps height and width
REPORT_TOOL = "python -m src.tools.anchor_report"


def image_size(path: str, exif_transpose: bool) -> tuple[int, int] | None:
    """(height, width) of an image file from its header, in the frame the conversion stores it (displayed with
    `exif_transpose`); None when it cannot be read."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError):
        return None
    if exif_transpose and exif_orientation(path) in TURNED:
        return width, height
    return height, width


def read_training_boxes(data: DataSettings) -> tuple[list[ImageBoxes], int]:
    """The training set's images with their non-crowd boxes in source pixels, as the conversion keeps them, and the
    number of images whose file could not be read (left out)."""
    source = describe_source(data, is_training=True)
    records, _ = read_records(source, data.allow_outside_paths)
    images, unreadable, summary = [], 0, ConversionSummary()
    for record in records:
        size = image_size(record.path, data.exif_transpose)
        if size is None:
            unreadable += 1
            continue
        rows = usable_rows(record.boxes, *size, summary)
        images.append(ImageBoxes(*size, rows[rows[:, 5] == 0, :4]))
    return images, unreadable


def print_report(data: DataSettings, fit: FitSettings, short: bool = False) -> None:
    """The anchor fit report of the training set (src/data/anchor_fit.py) on stdout."""
    images, unreadable = read_training_boxes(data)
    if unreadable:
        print(f"WARNING: {unreadable} training images could not be read: left out of the anchor fit",
              file=sys.stderr, flush=True)
    lines = report_lines(images, fit, short=short)
    if short:
        lines.append(f"(the whole report, with a histogram: {REPORT_TOOL} with train.py's arguments)")
    print("\n".join(lines), flush=True)


def _sidecar_stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def training_mindrecord(data: DataSettings, fit: FitSettings, prefix: str, rank: int) -> str:
    """`create_mindrecord` of the training set, as train.py builds it; when this call (rank 0) wrote the set, the
    short anchor fit report follows the conversion's summary."""
    sidecar = sidecar_path(mindrecord_file(mindrecord_directory(data), prefix, TRAIN_FILE_NUM))
    before = _sidecar_stamp(sidecar)
    mindrecord = create_mindrecord(data, prefix, is_training=True, rank_id=rank)
    if rank == 0 and _sidecar_stamp(sidecar_path(mindrecord)) != before:
        print_report(data, fit, short=True)
    return mindrecord
