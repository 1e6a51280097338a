"""Image files in their stored frame (the pixels as encoded: what the original reads) or their displayed frame (the
EXIF orientation applied, as photo viewers and labelling tools show them).

EXIF orientation (tag 0x0112): 1 = stored as displayed; 2..8 = mirrored and/or turned by a multiple of 90 degrees.
A JPEG stored 400x300 (W x H) with orientation 6 is displayed 300x400, turned 90 degrees clockwise; boxes labelled
on it are in the displayed frame. The config key `exif_transpose` (default False: the stored frame, as the original)
chooses the frame everywhere images are read; images whose tag is not 1 are counted and named either way.
"""
from __future__ import annotations

import atexit
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112
STORED_FRAME_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
NAMED = 5  # images named in a warning

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
