"""The fidelity fixture's reference weights: deterministic, well-conditioned values for every parameter.

Each parameter's value depends only on its checkpoint name, shape and a salt, by the RECIPE of the fidelity
fixture (the original network was run on these weights to produce tests/data/golden_384x640.npz):
z = standard normal float32 draws from numpy's default_rng(crc32(name) + salt), then by the name's last part
  moving_mean 0.1 z | moving_variance 1 + 0.1 |z| | gamma 1 + 0.1 z (x 0.2 inside ".bn3.") | beta, bias 0.1 z
  | conv weight (out, in, kh, kw) z sqrt(gain / (in kh kw)) | dense weight (in, out) z sqrt(gain / in),
with gain 0.01 rpn_cls, 0.001 rpn_reg, 0.001 reg_scores, 0.5 cls_scores, 1 p_conv/m_conv, 1 shared_fc,
2 any other weight.

Usage (from the repository root): python -m tests.helpers.reference_ckpt OUT.ckpt [--salt N]
"""
from __future__ import annotations

import argparse
import os
import zlib

import numpy as np

from src.infra.fileio import atomic_path

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")  # tests/data
PARAMS_TSV = os.path.join(DATA_DIR, "original_params.tsv")

# First matching name fragment decides a weight's variance gain (small for the prediction layers).
_GAINS = (("rpn_cls", 0.01), ("rpn_reg", 0.001), ("reg_scores", 0.001), ("cls_scores", 0.5),
          ("p_conv", 1.0), ("m_conv", 1.0), ("shared_fc", 1.0))
_DEFAULT_GAIN = 2.0


def read_param_table(path: str = PARAMS_TSV) -> list[tuple[str, tuple[int, ...], str, bool]]:
    """Rows of original_params.tsv: (name, shape, dtype, requires_grad)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["name", "shape", "dtype", "requires_grad"]:
            raise ValueError(f"{path}:1: unexpected header {header}")
        for line_no, line in enumerate(f, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 4 or fields[3] not in ("True", "False"):
                raise ValueError(f"{path}:{line_no}: expected name, shape, dtype, True|False; got {fields}")
            shape = tuple(int(d) for d in fields[1].split("x"))
            rows.append((fields[0], shape, fields[2], fields[3] == "True"))
    return rows


def _gain(name: str) -> float:
    for fragment, gain in _GAINS:
        if fragment in name:
            return gain
    return _DEFAULT_GAIN


def reference_value(name: str, shape: tuple[int, ...], salt: int = 0) -> np.ndarray:
    """The recipe's float32 value for one parameter."""
    z = np.random.default_rng(zlib.crc32(name.encode()) + salt).standard_normal(shape, dtype=np.float32)
    leaf = name.split(".")[-1]
    if leaf == "moving_mean":
        return 0.1 * z
    if leaf == "moving_variance":
        return 1.0 + 0.1 * np.abs(z)
    if leaf == "gamma":
        factor = 0.2 if ".bn3." in name else 1.0
        return factor * (1.0 + 0.1 * z)
    if leaf in ("beta", "bias"):
        return 0.1 * z
    if leaf == "weight" and len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        return z * np.float32(np.sqrt(_gain(name) / fan_in))
    if leaf == "weight" and len(shape) == 2:
        return z * np.float32(np.sqrt(_gain(name) / shape[0]))
    raise ValueError(f"the reference recipe has no rule for {name} {shape}")


def reference_params(salt: int = 0, path: str = PARAMS_TSV) -> dict[str, np.ndarray]:
    """name -> value for every parameter of the original network."""
    return {name: reference_value(name, shape, salt) for name, shape, _, _ in read_param_table(path)}


def write_reference_ckpt(out_path: str, salt: int = 0) -> str:
    """Write the reference checkpoint (atomically)."""
    import mindspore as ms  # noqa: PLC0415 (keeps `read_param_table` usable without MindSpore)

    items = [{"name": name, "data": ms.Tensor(value)} for name, value in reference_params(salt).items()]
    with atomic_path(out_path) as tmp:
        ms.save_checkpoint(items, tmp)
    return out_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="checkpoint to write")
    parser.add_argument("--salt", type=int, default=0)
    args = parser.parse_args()
    write_reference_ckpt(args.out, args.salt)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
