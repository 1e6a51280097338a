"""Convert a torchvision ResNet-50 state dict (.pth) into a model-zoo named MindSpore checkpoint for --pre_trained.

    python -m src.tools.convert_backbone resnet50.pth OUT.ckpt

The conversion and its rules: src/checkpoint/from_torchvision.py.
"""
from __future__ import annotations

import argparse
import sys

from src.checkpoint import from_torchvision
from src.checkpoint.from_torchvision import convert_file
from src.infra.runtime import run_main


def build_parser() -> argparse.ArgumentParser:
    """The tool's command line: the .pth to read, the checkpoint to write."""
    parser = argparse.ArgumentParser(prog="python -m src.tools.convert_backbone", description=from_torchvision.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pth", help="torchvision ResNet-50 state dict (torch.save(model.state_dict(), PATH))")
    parser.add_argument("out", help="MindSpore checkpoint to write, for --pre_trained")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(lambda: convert_file(args.pth, args.out), "convert_backbone")


if __name__ == "__main__":
    sys.exit(main())
