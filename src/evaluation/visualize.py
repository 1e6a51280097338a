"""Drawing detections (boxes, class names, scores) on an image with OpenCV, for eval.py --visualize and infer.py."""
from __future__ import annotations

import errno
import os
from collections.abc import Sequence

import cv2
import numpy as np

from src.data.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from src.infra.errors import WriteError
from src.infra.fileio import atomic_path

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.45
LINE_THICKNESS = 2
TEXT_PADDING = 2  # pixels around a label's text
# os.link's errors on file systems that have no hard links (FAT, some network file systems)
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


def class_color(label: int) -> tuple[int, int, int]:
    """A fixed, well-separated BGR colour for a class index (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 180)
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def network_input_to_bgr(image_chw: np.ndarray, height: int, width: int) -> np.ndarray:
    """Undo the normalisation of a network input (3, H, W) and crop its top-left `height` x `width` content."""
    rgb = image_chw.transpose(1, 2, 0) * np.float32(IMAGENET_STD_RGB) + np.float32(IMAGENET_MEAN_RGB)
    rgb = np.clip(np.rint(rgb[:height, :width]), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def picture_for(source_bgr: np.ndarray | None, image_chw: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """The picture to draw an image's detections on: its source image (H, W, 3) BGR when it was read and has the
    size meta (4,) [orig_h, orig_w, scale_h, scale_w] records, else the network input (3, canvas_h, canvas_w)
    un-normalised and scaled back to that size."""
    height, width, scale_h, scale_w = (float(v) for v in meta)
    if source_bgr is not None and source_bgr.shape[:2] == (int(height), int(width)):
        return source_bgr
    content_h = min(int(round(height * scale_h)), image_chw.shape[1])
    content_w = min(int(round(width * scale_w)), image_chw.shape[2])
    return cv2.resize(network_input_to_bgr(image_chw, content_h, content_w), (int(width), int(height)),
                      interpolation=cv2.INTER_LINEAR)


def draw_detections(image_bgr: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                    class_names: Sequence[str]) -> np.ndarray:
    """A copy of `image_bgr` with each detection drawn: boxes (K, 5) [x1, y1, x2, y2, score] in its pixels,
    labels (K,) foreground indices (name = class_names[label]). Every box first, then every label on top of the
    boxes, both lowest score first, so that no box line crosses a label and the best label is never covered."""
    canvas = image_bgr.copy()
    order = np.argsort(boxes[:, 4], kind="stable")
    corners = [((int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))) for x1, y1, x2, y2, _ in boxes]
    for k in order:
        cv2.rectangle(canvas, *corners[k], class_color(int(labels[k])), LINE_THICKNESS)
    for k in order:
        label = int(labels[k])
        name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
        text = f"{name} {boxes[k, 4]:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(text, FONT, FONT_SCALE, 1)
        # the label sits on the box's top edge, moved inside the picture where the box touches its border
        top_left = corners[k][0]
        text_x = max(min(top_left[0], canvas.shape[1] - text_w - 2 * TEXT_PADDING), 0)
        text_y = max(top_left[1], text_h + baseline + 2 * TEXT_PADDING)
        cv2.rectangle(canvas, (text_x, text_y - text_h - baseline - 2 * TEXT_PADDING),
                      (text_x + text_w + 2 * TEXT_PADDING, text_y), class_color(label), cv2.FILLED)
        cv2.putText(canvas, text, (text_x + TEXT_PADDING, text_y - baseline - TEXT_PADDING), FONT, FONT_SCALE,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def save_png(image_bgr: np.ndarray, path: str, replace: bool = True) -> None:
    """Write a PNG, atomically. With replace=False an existing `path` is never replaced: the picture is linked into
    place only if no file has that name (WriteError, the file kept, when one has). An OSError (full disk, folder
    gone) becomes a WriteError naming `path` and the system's reason, with no temporary file left."""
    encoded, data = cv2.imencode(".png", image_bgr)
    if not encoded:
        raise WriteError(f"could not encode {path} as PNG")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # Python's write, not cv2.imwrite: the OS reason of a failure is kept
            f.write(data.tobytes())
        if not replace:
            _link_new(tmp, path)  # after it, atomic_path's rename of tmp onto its own link changes nothing


def _link_new(tmp: str, path: str) -> None:
    """Give the written file `tmp` the name `path` unless that name exists (a hard link never replaces)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise WriteError(f"{path} exists and was not written by this run: kept, not replaced") from None
    except OSError as err:
        if err.errno not in NO_HARD_LINKS:
            raise
        if os.path.lexists(path):  # a file system without hard links: checked, then renamed
            raise WriteError(f"{path} exists and was not written by this run: kept, not replaced") from None
