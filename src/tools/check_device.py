"""`python -m src.tools.check_device DEVICE_TARGET` exits 0 when this MindSpore can run DEVICE_TARGET, else prints
why (one line) and exits 2: the launchers (scripts/*.sh) check this before they start a run in the background.
"""
from __future__ import annotations

import sys

from src.infra.errors import USAGE_STATUS
from src.infra.runtime import check_device, run_main


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m src.tools.check_device DEVICE_TARGET", file=sys.stderr)
        return USAGE_STATUS
    return run_main(lambda: check_device(argv[0]), "device check", debug=lambda: False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
