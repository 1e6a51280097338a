"""Run export.py's MINDIR (or ONNX file) over a folder of images and write the C++ app's binary outputs
(scripts/run_infer_310.sh with DEVICE_TARGET=CPU or GPU).

    python -m src.tools.mindir_infer --mindir_path=M.mindir|M.onnx --dataset_path=IMAGES [--result_path=./result_Files]
        [--time_path=./time_Result] [--device_target=CPU] [--device_id=0] [--keep_ratio=true] [--exif_transpose=false]

The files it writes: src/deploy/mindir_app.py.
"""
from __future__ import annotations

import argparse
import sys

from src.deploy import mindir_app
from src.deploy.mindir_app import run
from src.infra.runtime import run_main, set_up_device
from src.model_utils.config import parse_bool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=mindir_app.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mindir_path", required=True, help="export.py's MINDIR, or its ONNX file (*.onnx)")
    parser.add_argument("--dataset_path", required=True, help="folder of images")
    parser.add_argument("--result_path", default="./result_Files")
    parser.add_argument("--time_path", default="./time_Result")
    parser.add_argument("--device_target", default="CPU", choices=["CPU", "GPU"])
    parser.add_argument("--device_id", type=int, default=0)
    parser.add_argument("--keep_ratio", type=parse_bool, default=True, help="as the model was trained (default true)")
    parser.add_argument("--exif_transpose", type=parse_bool, default=False,
                        help="read images in their displayed frame (EXIF orientation applied; default: stored frame)")
    args = parser.parse_args(argv)

    def infer() -> None:
        set_up_device(args.device_target, "GRAPH", args.device_id)
        run(args.mindir_path, args.dataset_path, args.result_path, args.time_path, args.keep_ratio,
            args.exif_transpose)

    return run_main(infer, "mindir_infer")


if __name__ == "__main__":
    sys.exit(main())
