"""Run an exported Faster R-CNN-DCN model, export.py's MINDIR with MindSpore's Python runtime (`mindspore.load` +
`nn.GraphCell`) or its ONNX file with onnxruntime (src/deploy/exported.py).

The CPU/GPU counterpart of the Ascend C++ app (ascend310_infer/): same inputs, same files.

    python -m src.tools.mindir_infer --mindir_path=M.mindir|M.onnx --dataset_path=IMAGES [--result_path=./result_Files]
        [--time_path=./time_Result] [--device_target=CPU] [--device_id=0] [--keep_ratio=true] [--exif_transpose=false]

Every image file of --dataset_path (name order) goes through the evaluation pipeline's preprocessing
(src/data/transforms.py) for the MINDIR's input size; each output k of an image is written as raw bytes to
`<result_path>/<file name up to its first dot>_<k>.bin` (k = 0 boxes+scores float32 (N, 5), 1 labels int32
(N, 1), 2 masks bool (N, 1)); the average latency per call goes to `<time_path>/test_perform_static.txt`.
A MINDIR exported with batch B > 1 gets B images per call (the last call completed with repeats, not written).
`read_raw_outputs` reads one image's files back (postprogress.py), from this script or from the C++ app.
"""
from __future__ import annotations

import os
import time

import numpy as np
from mindspore.dataset import vision

from src.data.image_files import OrientationNotes, exif_orientation, notes_reported_at_exit, to_displayed
from src.data.transforms import PreprocessSettings, preprocess_eval
from src.deploy.exported import exported_detector
from src.infra.errors import InferError
from src.infra.fileio import atomic_path, write_text_atomic
from src.infra.progress import Progress

NO_BOXES = np.zeros((0, 6), np.int32)
LATENCY_FILE = "test_perform_static.txt"


def list_images(folder: str) -> list[str]:
    """Regular, non-hidden files of `folder`, sorted by name (as the C++ app)."""
    if not os.path.isdir(folder):
        raise InferError(f"image folder not found: {folder!r}")
    files = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                   if not name.startswith(".") and os.path.isfile(os.path.join(folder, name)))
    if not files:
        raise InferError(f"no image files in {folder}")
    return files


def file_stem(path: str) -> str:
    """The file name up to its first dot (`val2017/000000000139.jpg` -> `000000000139`)."""
    return os.path.basename(path).split(".")[0]


def load_image(path: str, settings: PreprocessSettings, exif_transpose: bool = False,
               notes: OrientationNotes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode (MindSpore's decoder, as the evaluation pipeline) and preprocess one image file, in its stored frame
    or with `exif_transpose` its displayed frame (src/data/image_files.py): returns image (3, H, W) float32 and
    meta (4,) float32 [orig_h, orig_w, scale_h, scale_w] (orig: the frame used). Images whose EXIF orientation is not 1
    are counted in `notes` (default: a line printed when the process ends)."""
    with open(path, "rb") as f:
        data = np.frombuffer(f.read(), np.uint8)
    try:
        decoded = vision.Decode()(data)
    except (RuntimeError, ValueError) as err:
        raise InferError(f"cannot decode image {path}: {str(err).splitlines()[0]}") from None
    orientation = exif_orientation(path)
    (notes or notes_reported_at_exit(exif_transpose)).note(os.path.basename(path), orientation)
    if exif_transpose:
        decoded = to_displayed(decoded, orientation)
    image, meta = preprocess_eval(decoded, NO_BOXES, settings)[:2]
    return image, meta


def write_outputs(result_dir: str, stem: str, outputs: list[np.ndarray]) -> None:
    """Raw bytes of each output array to `<result_dir>/<stem>_<k>.bin` (each written atomically)."""
    for k, array in enumerate(outputs):
        with atomic_path(os.path.join(result_dir, f"{stem}_{k}.bin")) as tmp:
            np.ascontiguousarray(array).tofile(tmp)


def read_raw_outputs(result_dir: str, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's network outputs as the inference apps write them: `<stem>_0.bin` boxes+scores (N, 5) float16
    (Ascend) or float32, `<stem>_1.bin` labels (N,) int32, `<stem>_2.bin` masks (N,) bool.

    N is taken from the mask file (one byte per candidate) and the box precision from the boxes file's size;
    ValueError naming the file when a file is missing or its size does not fit.
    """
    paths = [os.path.join(result_dir, f"{stem}_{k}.bin") for k in range(3)]
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"inference output not found: {path}")
    masks = np.fromfile(paths[2], dtype=np.bool_)
    count = len(masks)
    labels = np.fromfile(paths[1], dtype=np.int32)
    if len(labels) != count:
        raise ValueError(f"{paths[1]}: {len(labels)} int32 labels but {paths[2]} holds {count} masks")
    box_bytes = os.path.getsize(paths[0])
    box_dtypes = {count * 5 * np.dtype(t).itemsize: t for t in (np.float16, np.float32)}
    if count == 0 or box_bytes not in box_dtypes:
        raise ValueError(f"{paths[0]}: {box_bytes} bytes is not {count} boxes of 5 float16 or float32 values")
    boxes = np.fromfile(paths[0], dtype=box_dtypes[box_bytes]).astype(np.float32).reshape(count, 5)
    return boxes, labels, masks


def run(mindir_path: str, dataset_path: str, result_path: str, time_path: str, keep_ratio: bool = True,
        exif_transpose: bool = False) -> int:
    """Infer every image of `dataset_path` (in the displayed frame with `exif_transpose`); returns the number of
    images written."""
    files = list_images(dataset_path)
    stems = [file_stem(f) for f in files]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise InferError(f"{dataset_path}: several files share the name stem {clashes[:3]} (results are named by it)")
    detect, batch, (height, width) = exported_detector(mindir_path)
    settings = PreprocessSettings(canvas_h=height, canvas_w=width, keep_ratio=keep_ratio, flip_ratio=0.0,
                                  expand_ratio=0.0, num_gts=1)
    os.makedirs(result_path, exist_ok=True)
    os.makedirs(time_path, exist_ok=True)
    print(f"loaded {mindir_path}: batch {batch}, input {height}x{width}; {len(files)} images", flush=True)

    latencies = []
    notes = OrientationNotes()
    progress = Progress(len(files))
    for first in range(0, len(files), batch):
        chunk = files[first:first + batch]
        prepared = [load_image(f, settings, exif_transpose, notes) for f in chunk]
        prepared += [prepared[-1]] * (batch - len(chunk))
        images = np.stack([p[0] for p in prepared])
        metas = np.stack([p[1] for p in prepared])
        start = time.time()
        outputs = list(detect(images, metas))
        latencies.append(time.time() - start)
        for j, path in enumerate(chunk):
            write_outputs(result_path, file_stem(path), [o[j] for o in outputs])
        print(f"Predict {', '.join(os.path.basename(f) for f in chunk)}: {latencies[-1]:.3f} s "
              f"({progress.step(len(chunk))})", flush=True)

    if notes.line(exif_transpose):
        print(notes.line(exif_transpose), flush=True)
    average_ms = 1000.0 * sum(latencies) / len(latencies)
    line = f"NN inference cost average time: {average_ms:.3f} ms of infer_count {len(latencies)}"
    print(line, flush=True)
    write_text_atomic(os.path.join(time_path, LATENCY_FILE), line + "\n")
    return len(files)
