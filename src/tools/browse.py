"""See the training data as the network receives it: the ground truth of N training images drawn on the network's
input, after the training pipeline (MindRecord -> src/dataset.py: resize, flip, expand and any other augmentation
the config turns on).

    python -m src.tools.browse --config_path=CFG --num_images=N --out=DIR [--coco_root=DIR | --dataset=other
        --anno_path=FILE --image_dir=DIR] [--key=value ...]

The MindRecord is built, or reused, as train.py does it. Pictures `DIR/browse_000.png`, `browse_001.png`, ... have
the network's input size (img_height x img_width, the padding included): trained-on boxes in their class's colour
(the colour of that class's detections in infer.py's pictures) with the class name, crowd boxes dashed grey (not
trained on), padding rows not drawn; a legend line at the bottom counts each kind, and is printed per picture. A
name that a file in DIR already has is not replaced: the picture takes the next free `-2`, `-3`, ... suffix.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from src.deploy.detect_images import picture_names
from src.engine.trainer import build_dataset
from src.evaluation.visualize import draw_ground_truth, draw_legend, save_png
from src.infra.errors import ConfigError
from src.infra.fileio import check_output_dir
from src.infra.runtime import run_main
from src.model_utils.config import classes_from_data, get_config

PROGRAM = "browse"
PICTURE_STEM = "browse_{:03d}"


def browse(cfg, num_images: int, out_dir: str) -> list[str]:
    """Draw the first `num_images` rows of the training pipeline into `out_dir`; returns the pictures' paths."""
    if num_images < 1:
        raise ConfigError(f"--num_images={num_images}: expected a positive number of images")
    check_output_dir(out_dir, "--out")
    dataset, _ = build_dataset(cfg.replace(batch_size=1), rank=0, device_num=1)
    count = min(num_images, dataset.get_dataset_size())
    if count < num_images:
        print(f"the training set has {count} images: drawing {count}", flush=True)
    os.makedirs(out_dir, exist_ok=True)
    names = picture_names([PICTURE_STEM.format(i) for i in range(count)], os.listdir(out_dir))
    paths = []
    rows = dataset.create_dict_iterator(output_numpy=True, num_epochs=1)
    for name, row in zip(names, rows, strict=False):
        picture, legend = draw_ground_truth(row["image"][0], row["box"][0], row["label"][0], row["valid_num"][0],
                                            cfg.coco_classes)
        path = os.path.join(out_dir, name)
        save_png(draw_legend(picture, legend), path, replace=False)
        print(f"{path}: {legend}", flush=True)
        paths.append(path)
    print(f"{len(paths)} training images as the network receives them ({cfg.img_height}x{cfg.img_width}) drawn "
          f"into {out_dir}/", flush=True)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False, allow_abbrev=False)
    parser.add_argument("--num_images", type=int, default=8, help="training images to draw (default 8)")
    parser.add_argument("--out", default="browse", help="folder of the pictures (default ./browse)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if "-h" in rest or "--help" in rest:
        parser.print_help()
    return run_main(lambda: browse(classes_from_data(get_config(rest), is_training=True), args.num_images, args.out),
                    PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
