"""Drawing detections (boxes, class names, scores) on an image with OpenCV, for eval.py --visualize and infer.py, and
the training pipeline's ground truth (python -m src.tools.browse)."""
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
DASH = 6  # pixels of a dashed line's strokes and gaps
CROWD_COLOR = (160, 160, 160)  # BGR grey of crowd boxes
LEGEND_MIN_SCALE = 0.3  # smallest font scale of a legend line
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
    order = np.argsort(boxes[:, 4], kind="stable")
    colors = [class_color(int(label)) for label in labels]
    texts = [f"{class_name(class_names, int(label))} {box[4]:.2f}" for box, label in zip(boxes, labels, strict=True)]
    return draw_labelled_boxes(image_bgr, boxes[order, :4], [colors[k] for k in order], [texts[k] for k in order])


def class_name(class_names: Sequence[str], label: int) -> str:
    """class_names[label], or `class <label>` outside the list."""
    return class_names[label] if 0 <= label < len(class_names) else f"class {label}"


def dashed_rectangle(canvas: np.ndarray, top_left: tuple[int, int], bottom_right: tuple[int, int],
                     color: tuple[int, int, int], dash: int = DASH) -> None:
    """A rectangle of `dash`-pixel strokes with `dash`-pixel gaps, drawn into `canvas`."""
    (x1, y1), (x2, y2) = top_left, bottom_right
    for start, end in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(end[0] - start[0]), abs(end[1] - start[1]))
        for offset in range(0, length + 1, 2 * dash):
            a, b = offset / max(length, 1), min(offset + dash, length) / max(length, 1)
            point_a = (int(round(start[0] + a * (end[0] - start[0]))), int(round(start[1] + a * (end[1] - start[1]))))
            point_b = (int(round(start[0] + b * (end[0] - start[0]))), int(round(start[1] + b * (end[1] - start[1]))))
            cv2.line(canvas, point_a, point_b, color, LINE_THICKNESS)


def draw_labelled_boxes(image_bgr: np.ndarray, boxes: np.ndarray, colors: Sequence[tuple[int, int, int]],
                        texts: Sequence[str], dashed: Sequence[bool] | None = None) -> np.ndarray:
    """A copy of `image_bgr` with boxes (K, 4) [x1, y1, x2, y2] in its pixels drawn in `colors` (dashed where
    `dashed`), then each box's text on a patch of its colour on its top edge, in the order given (the last on
    top)."""
    canvas = image_bgr.copy()
    corners = [((int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))) for x1, y1, x2, y2 in boxes]
    dashed = dashed if dashed is not None else [False] * len(corners)
    for corner, color, dash in zip(corners, colors, dashed, strict=True):
        if dash:
            dashed_rectangle(canvas, *corner, color)
        else:
            cv2.rectangle(canvas, *corner, color, LINE_THICKNESS)
    for corner, color, text in zip(corners, colors, texts, strict=True):
        (text_w, text_h), baseline = cv2.getTextSize(text, FONT, FONT_SCALE, 1)
        # the label sits on the box's top edge, moved inside the picture where the box touches its border
        top_left = corner[0]
        text_x = max(min(top_left[0], canvas.shape[1] - text_w - 2 * TEXT_PADDING), 0)
        text_y = max(top_left[1], text_h + baseline + 2 * TEXT_PADDING)
        cv2.rectangle(canvas, (text_x, text_y - text_h - baseline - 2 * TEXT_PADDING),
                      (text_x + text_w + 2 * TEXT_PADDING, text_y), color, cv2.FILLED)
        cv2.putText(canvas, text, (text_x + TEXT_PADDING, text_y - baseline - TEXT_PADDING), FONT, FONT_SCALE,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def draw_ground_truth(image_chw: np.ndarray, boxes: np.ndarray, labels: np.ndarray, valid: np.ndarray,
                      class_names: Sequence[str]) -> tuple[np.ndarray, str]:
    """The training pipeline's output for one image as a picture: the network input (3, H, W) un-normalised, its
    boxes (G, 4) on the canvas with labels (G,) (indices into class_names, background 0; -1 padding) and valid (G,):
    trained-on boxes in their class's colour (as detections of that class), crowd boxes (invalid, not padding)
    dashed grey, padding rows not drawn. Returns (picture (H, W, 3) BGR, its legend line)."""
    picture = network_input_to_bgr(image_chw, *image_chw.shape[1:])
    real = labels >= 0
    crowd = real & ~valid
    shown = np.flatnonzero(real)
    colors = [class_color(int(labels[k]) - 1) if valid[k] else CROWD_COLOR for k in shown]
    texts = [class_name(class_names, int(labels[k])) + ("" if valid[k] else " (crowd)") for k in shown]
    picture = draw_labelled_boxes(picture, boxes[shown], colors, texts, [not valid[k] for k in shown])
    legend = (f"gt: {int(np.count_nonzero(real & valid))} trained on | {int(np.count_nonzero(crowd))} crowd (dashed "
              f"grey) | {int(np.count_nonzero(~real))} padding (not drawn)")
    return picture, legend


def draw_legend(picture: np.ndarray, text: str) -> np.ndarray:
    """`text` in white on a dark strip at the bottom left of `picture` (in place), its font shrunk to fit the
    width (down to LEGEND_MIN_SCALE); returns the picture."""
    scale = FONT_SCALE
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, 1)
    if text_w + 2 * TEXT_PADDING > picture.shape[1]:
        scale = max(LEGEND_MIN_SCALE, scale * (picture.shape[1] - 2 * TEXT_PADDING) / text_w)
        (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, 1)
    bottom = picture.shape[0]
    cv2.rectangle(picture, (0, bottom - text_h - baseline - 2 * TEXT_PADDING),
                  (text_w + 2 * TEXT_PADDING, bottom), (32, 32, 32), cv2.FILLED)
    cv2.putText(picture, text, (TEXT_PADDING, bottom - baseline - TEXT_PADDING), FONT, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return picture


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
