"""Image files in their stored frame (the pixels as encoded: what the original reads) or their displayed frame (the
EXIF orientation applied, as photo viewers and labelling tools show them).

EXIF orientation (tag 0x0112): 1 = stored as displayed; 2..8 = mirrored and/or turned by a multiple of 90 degrees.
A JPEG stored 400x300 (W x H) with orientation 6 is displayed 300x400, turned 90 degrees clockwise; boxes labelled
on it are in the displayed frame. The config key `exif_transpose` (default False: the stored frame, as the original)
chooses the frame everywhere images are read; images whose tag is not 1 are counted and named either way.

Also: reading an image file for the MindRecord conversion and infer.py (`read_image`: one DataError line naming an
unusable file), and finding the image files that infer.py's --images and --images_from name.
"""
from __future__ import annotations

import atexit
import glob
import os
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from src.infra.errors import ConfigError, DataError
from src.infra.fileio import os_reason

ORIENTATION_TAG = 0x0112
STORED_FRAME_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
NAMED = 5  # images named in a warning
IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}
# What a folder contributes (files given by name or pattern are tried whatever their extension).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")  # the formats `read_image` reads
GLOB_CHARACTERS = "*?["

# orientation -> stored (H, W, ...) array to its displayed frame (PIL's ImageOps.exif_transpose operations)
_TO_DISPLAYED: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],                 # mirrored left-right
    3: lambda a: a[::-1, ::-1],              # turned 180 degrees
    4: lambda a: a[::-1],                    # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),           # transposed (mirrored along the main diagonal)
    6: lambda a: np.rot90(a, -1),            # turned 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed (mirrored along the other diagonal)
    8: lambda a: np.rot90(a, 1),             # turned 90 degrees counter-clockwise
}


def exif_orientation(path: str) -> int:
    """The EXIF orientation (1..8) of an image file, read from its header only; 1 when it has none, another value
    or the file cannot be read (the callers report unreadable files themselves)."""
    try:
        with Image.open(path) as image:
            if image.format == "PNG" and "exif" not in image.info:
                return 1  # PIL would decode the whole picture to look for a late eXIf chunk
            value = image.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError):
        return 1
    return value if isinstance(value, int) and value in _TO_DISPLAYED else 1


def to_displayed(image: np.ndarray, orientation: int) -> np.ndarray:
    """A stored-frame image (H, W) or (H, W, C) in the displayed frame of EXIF `orientation` (contiguous)."""
    return np.ascontiguousarray(_TO_DISPLAYED.get(orientation, _TO_DISPLAYED[1])(image))


def decode_bgr(data: bytes, orientation: int = 1) -> np.ndarray | None:
    """Encoded image bytes -> BGR uint8 (H, W, 3) in the stored frame, turned to the displayed frame of
    `orientation` (1: unchanged); None when the bytes cannot be decoded."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), STORED_FRAME_FLAGS)
    return None if image is None else to_displayed(image, orientation)


def read_image_bgr(path: str, apply_orientation: bool) -> np.ndarray | None:
    """An image file as BGR uint8 (H, W, 3): in its stored frame, or with `apply_orientation` in its displayed frame
    (EXIF orientation applied); None when it cannot be read or decoded (as cv2.imread)."""
    image = cv2.imread(path, STORED_FRAME_FLAGS)
    if image is None or not apply_orientation:
        return image
    return to_displayed(image, exif_orientation(path))


class OrientationNotes:
    """The images read whose EXIF orientation is not 1: counted, the first NAMED named, for one line."""

    def __init__(self) -> None:
        self.count = 0
        self.names: list[str] = []

    def note(self, name: str, orientation: int) -> None:
        if orientation != 1:
            self.count += 1
            if len(self.names) < NAMED:
                self.names.append(name)

    def line(self, applied: bool) -> str | None:
        """The warning (stored frame used) or note (displayed frame used) for the images noted; None if none."""
        if not self.count:
            return None
        images = f"{self.count} images have an EXIF orientation other than 1 (first: {', '.join(self.names)})"
        if applied:
            return f"note: {images}: turned to their displayed frame (exif_transpose=True)"
        return f"WARNING: {images}: stored frame used; set exif_transpose=True to use the displayed frame"


_AT_EXIT: dict[bool, OrientationNotes] = {}  # by exif_transpose: images of callers that keep no notes of their own


def notes_reported_at_exit(applied: bool) -> OrientationNotes:
    """Notes whose line is printed when the process ends (for callers reading one image at a time)."""
    if not _AT_EXIT:
        atexit.register(_report_at_exit)
    return _AT_EXIT.setdefault(applied, OrientationNotes())


def _report_at_exit() -> None:
    for applied, notes in _AT_EXIT.items():
        line = notes.line(applied)
        if line:
            print(line, flush=True)


def read_image(path: str, where: str, exif_transpose: bool = False,
               notes: OrientationNotes | None = None) -> tuple[bytes, int, int]:
    """The encoded bytes of an image file and its (height, width) in the stored frame; DataError naming the file if
    unusable. With `exif_transpose` an image whose EXIF orientation is not 1 comes back in its displayed frame,
    re-encoded as PNG. `notes` counts the images with such an orientation."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{where}: image not found: {path}") from None
    except OSError as err:
        raise DataError(f"{where}: cannot read image {path}: {err.strerror}") from None
    if not any(data.startswith(magic) for magic in IMAGE_MAGIC):
        raise DataError(f"{where}: {path} is not a {'/'.join(sorted(set(IMAGE_MAGIC.values())))} image")
    orientation = exif_orientation(path)
    decoded = decode_bgr(data, orientation if exif_transpose else 1)
    if decoded is None:
        raise DataError(f"{where}: cannot decode image {path}")
    if notes is not None:
        notes.note(os.path.basename(path), orientation)
    if exif_transpose and orientation != 1:
        data = cv2.imencode(".png", decoded)[1].tobytes()
    return data, decoded.shape[0], decoded.shape[1]


def entry_images(entry: str) -> tuple[list[str], str]:
    """The image files one --images entry names (a folder's by name, a pattern's by name) and, when it names
    none, why. An existing file is that file whatever its name holds."""
    if os.path.isdir(entry):
        found = sorted(os.path.join(entry, name) for name in os.listdir(entry)
                       if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
                       and os.path.isfile(os.path.join(entry, name)))
        return found, "a folder without image files (" + ", ".join(IMAGE_EXTENSIONS) + ")"
    if os.path.isfile(entry):
        return [entry], ""
    if any(c in entry for c in GLOB_CHARACTERS):
        return sorted(path for path in glob.glob(entry) if os.path.isfile(path)), "a pattern that matches no file"
    return [], "no such file or folder"


def find_images(spec: str) -> tuple[list[str], list[str]]:
    """The image files of a comma-separated list of files, folders and glob patterns, in the order given (a
    folder's and a pattern's files by name, each file once), and one problem line per entry that gives none.
    A `spec` that names an existing file as a whole is that one file (its name may hold commas)."""
    if os.path.isfile(spec):
        return [spec], []
    files, problems = [], []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        found, why = entry_images(entry)
        if not found:
            problems.append(f"{entry}: {why}")
        files += [path for path in found if path not in files]
    return files, problems


def read_image_list(list_path: str) -> tuple[list[str], list[str]]:
    """The image files of an --images_from list: one path per line exactly as written (no splitting, no patterns;
    any bytes a file name can hold), blank lines ignored; a folder gives its image files. Returns the files (each
    once) and one problem line `LIST:LINE: path: why` per line that gives none. ConfigError when the list itself
    cannot be read."""
    try:
        with open(list_path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ConfigError(f"--images_from={list_path!r}: cannot read the list: {os_reason(err)}") from None
    files, problems = [], []
    for number, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        line = raw.removesuffix(b"\r")
        if not line.strip():
            continue
        path = os.fsdecode(line)  # undecodable bytes kept as they are (surrogateescape), as the file system has them
        if os.path.isdir(path) or os.path.isfile(path):
            found, why = entry_images(path)
        else:
            found, why = [], "no such file or folder"
        if not found:
            problems.append(f"{list_path}:{number}: {path}: {why}")
        files += [p for p in found if p not in files]
    return files, problems
