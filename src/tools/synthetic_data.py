"""Write the embedded synthetic data set (COCO layout plus TXT label files).

    python -m src.tools.synthetic_data --out DIR --num_train N --num_val M --seed S

What it holds: src/data/synthetic.py.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from src.data import synthetic
from src.data.synthetic import generate
from src.model_utils.config import get_config


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=synthetic.__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (the COCO root)")
    parser.add_argument("--num_train", type=int, default=200, help="training images")
    parser.add_argument("--num_val", type=int, default=50, help="validation images")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    args = parser.parse_args(argv)
    if args.num_train < 0 or args.num_val < 0 or args.seed < 0:
        parser.error("--num_train, --num_val and --seed must be non-negative")
    paths = generate(args.out, args.num_train, args.num_val, args.seed, get_config([]).coco_classes)
    print(f"synthetic data set: {args.num_train} train + {args.num_val} val images in {args.out}")
    for name, path in paths.items():
        print(f"  {name}: {path}")


if __name__ == "__main__":
    main()
