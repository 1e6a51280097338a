"""Convert a torchvision ResNet-50 state dict (.pth) into a MindSpore checkpoint named as the model zoo's ResNet-50,
which `train.py --pre_trained` loads into the backbone (src/backbone_loader.py).

    python -m src.convert_backbone resnet50.pth OUT.ckpt

Names, torchvision -> model zoo: BatchNorm `weight`, `bias`, `running_mean`, `running_var` -> `gamma`, `beta`,
`moving_mean`, `moving_variance`; `layerN.0.downsample.0|1` -> `layerN.0.down_sample_layer.0|1`; convolutions keep
theirs (`conv2` is the 3x3; the loader puts layer2-4's into the deformable blocks' `defconv.conv.weight`). The
classifier `fc.*` and the BatchNorm counters `num_batches_tracked` are ignored. Every value must have the shape of
the backbone parameter it loads into (the ResNet-50 of the config); a key of another network is an error.

Both networks are ResNet v1.5 (stride in the 3x3) with BatchNorm eps 1e-5. The stem BatchNorm maps directly: the
original builds it with affine=False, which in MindSpore only freezes its gamma and beta; they are parameters, held
by checkpoints and applied, so torchvision's weight and bias need no folding into the statistics. What differs is
the stem max-pool's padding (TF "SAME" here, 1 on each side in torchvision): the windows agree only where the
stem's output has odd sides (input sides 4k+1); at the usual sizes (multiples of 32) this port pools one pixel
further down and right.

torch is imported only when a file is converted (a dev dependency, requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import pickle
import re
import sys

import mindspore as ms
import numpy as np

from src.backbone_loader import target_name
from src.errors import CheckpointError
from src.FasterRcnn.resnet import ResNetFea
from src.FasterRcnn.settings import BackboneSettings
from src.fileio import atomic_path, os_reason
from src.model_utils.config import get_config
from src.network_checkpoint import name_listing
from src.ops import Kernels
from src.runtime import run_main

# The first bytes of torch.save's files: a zip archive (PyTorch >= 1.6), or a pickle (protocol 2+) before that.
TORCH_ZIP_MAGIC = b"PK\x03\x04"
TORCH_LEGACY_MAGIC = b"\x80"
IGNORED = re.compile(r"^fc\.|\.num_batches_tracked$")  # the ImageNet classifier; BatchNorm's update counter
_BN_LEAF = re.compile(r"^(.*(?:\.|^)(?:bn\d|down_sample_layer\.1))\.(weight|bias|running_mean|running_var)$")
_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_DCN_OFFSET_MASK = (".defconv.p_conv.", ".defconv.m_conv.")  # DCN offset/mask convs: torchvision has none


def model_zoo_name(key: str) -> str:
    """The model zoo's ResNet-50 name for torchvision state-dict `key` (not an ignored one)."""
    name = key.replace(".downsample.", ".down_sample_layer.")
    match = _BN_LEAF.match(name)
    return f"{match.group(1)}.{_BN_NAMES[match.group(2)]}" if match else name


def backbone_shapes(cfg=None) -> dict[str, tuple[int, ...]]:
    """Shape of each parameter of the config's ResNet-50 backbone (ResNetFea names; `cfg` default: the default
    config), the DCN offset/mask convs left out."""
    cfg = cfg if cfg is not None else get_config([])
    stages = BackboneSettings.from_config(cfg)
    # the stage sizes only: the training options' initialisation would run a kernel (train.py calls this before it
    # sets the device)
    backbone = ResNetFea(BackboneSettings(stages.layer_nums, stages.in_channels, stages.out_channels),
                         kernels=Kernels.MINDSPORE)
    return {p.name: tuple(p.shape) for p in backbone.get_parameters()
            if not any(part in p.name for part in _DCN_OFFSET_MASK)}


def convert_state_dict(state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
                       source: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """(model-zoo name -> float32 value, ignored torchvision keys) for torchvision ResNet-50 `state` (read from
    `source`); `shapes`: the backbone's parameter shapes (`backbone_shapes`). CheckpointError naming `source` and the
    keys when a key has no backbone parameter, a shape differs or a backbone parameter is not in `state`."""
    converted, ignored, unknown, mis_shaped, found = {}, [], [], [], set()
    for key, value in state.items():
        if IGNORED.search(key):
            ignored.append(key)
            continue
        name = model_zoo_name(key)
        target = target_name(name, "", shapes)
        if target is None:
            unknown.append(key)
            continue
        found.add(target)
        if tuple(value.shape) != shapes[target]:
            mis_shaped.append(f"{key} {tuple(value.shape)} (backbone {target} {shapes[target]})")
        else:
            converted[name] = np.asarray(value, np.float32)
    missing = sorted(set(shapes) - found)
    problems = [f"{what}: {name_listing(names)}" for what, names in (
        ("keys of no ResNet-50 backbone parameter", unknown), ("another shape", mis_shaped),
        ("backbone parameters it lacks", missing)) if names]
    if problems:
        raise CheckpointError(f"{source} is not a torchvision ResNet-50 state dict: " + "; ".join(problems))
    return converted, ignored


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state-dict file as numpy arrays; CheckpointError naming the file otherwise."""
    try:
        import torch  # noqa: PLC0415  (a dev dependency, needed only here)
    except ImportError:
        raise CheckpointError(f"{path}: reading a PyTorch file needs torch (pip install -r requirements-dev.txt)") \
            from None
    try:
        with open(path, "rb") as f:
            head = f.read(len(TORCH_ZIP_MAGIC))
    except OSError as err:
        raise CheckpointError(f"{path}: not a readable PyTorch file ({os_reason(err)})") from None
    if not head.startswith((TORCH_ZIP_MAGIC, TORCH_LEGACY_MAGIC)):
        raise CheckpointError(f"{path}: not a PyTorch state dict file (torch.save writes a zip archive or, before "
                              "PyTorch 1.6, a pickle; this file is neither)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False, i.e. running the file's code: not for a file that should
        # hold only tensors
        raise CheckpointError(f"{path}: not a PyTorch state dict file (it holds objects other than tensors and "
                              "containers, which are not loaded)") from None
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch file ({detail})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor, torch.save(model.state_dict(), ...)), "
                              f"got {type(state).__name__}")
    return {key: value.detach().float().numpy() if value.is_floating_point() else value.numpy()
            for key, value in state.items()}


def convert_file(pth_path: str, out_path: str) -> dict[str, list[str]]:
    """Convert torchvision ResNet-50 `pth_path` into the MindSpore checkpoint `out_path` (written atomically) and
    print the report; returns {"converted": model-zoo names, "ignored": torchvision keys}."""
    converted, ignored = convert_state_dict(read_torch_state_dict(pth_path), backbone_shapes(), pth_path)
    with atomic_path(out_path) as tmp:
        ms.save_checkpoint([{"name": name, "data": ms.Tensor(value)} for name, value in converted.items()], tmp)
    counters = [key for key in ignored if key.endswith("num_batches_tracked")]
    others = [key for key in ignored if key not in counters]
    print(f"{pth_path} -> {out_path}: {len(converted)} converted, {len(ignored)} ignored "
          f"({', '.join(others + ([f'{len(counters)} x num_batches_tracked'] if counters else []))})", flush=True)
    return {"converted": list(converted), "ignored": ignored}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pth", help="torchvision ResNet-50 state dict (torch.save(model.state_dict(), PATH))")
    parser.add_argument("out", help="MindSpore checkpoint to write, for --pre_trained")
    args = parser.parse_args(argv)
    return run_main(lambda: convert_file(args.pth, args.out), "convert_backbone")


if __name__ == "__main__":
    sys.exit(main())
