"""The torchvision reference of bench_vs_torchvision.py: torchvision's Faster R-CNN R50-FPN with modulated deformable
3x3 convolutions in layer2-4, timed on the CPU; runs in its own venv (`make bench-torchvision-venv`), imports only
torch, torchvision and numpy, prints one json line.

    .venv-torchvision/bin/python bench/torchvision_reference.py [--img_height 768] [--img_width 1280]
        [--train_batch 2] [--infer_batch 1] [--steps 3] [--warmup 1] [--only train|infer] [--threads N] [--from_scratch]

The network: `fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)`, 81 classes, its RPN/RoI defaults
(2000/1000 proposals in training/evaluation, 512 RoIs per image in training), every 3x3 conv of layer2-4 (13, the
bottlenecks' conv2) replaced by `torchvision.ops.deform_conv2d` with one 27-channel offset/mask conv (18 offsets +
9 mask logits through a sigmoid, 3x3 with the layer's stride, no bias, zero-initialised), as this project's DCN.
Backbone freezing as this project's default config (the original's): the stem and layer1 take no gradient and
every BatchNorm is a FrozenBatchNorm2d (torchvision's own choice with a pretrained backbone); `--from_scratch` keeps
what the function builds without weights instead (BatchNorm2d on batch statistics, every layer trainable), as this
project's from-scratch config. The transform's min_size/max_size are the image's sides, so torchvision does not
resize (checked; the sides must be multiples of 32). Training: SGD (momentum 0.9, lr 0.001) on noise images with
4 random boxes each; inference: eval mode under torch.inference_mode. Times are medians over --steps after
--warmup (and one untimed first call); torch runs with --threads intra-op threads (default: this process's CPUs).
Json fields: train_s_per_step (seconds per step of --train_batch images), infer_s_per_image (seconds per image,
batches of --infer_batch), peak_rss_gb (the process's peak resident set, GB = 2**30 bytes), threads, versions.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.detection import fasterrcnn_resnet50_fpn
from torchvision.ops import FrozenBatchNorm2d, deform_conv2d

NUM_CLASSES = 81  # COCO's 80 + background, as this project's default config
NUM_TAPS = 9  # 3x3 kernel
GTS_PER_IMAGE, GT_MIN_SIDE, GT_MAX_SIDE_FRACTION = 4, 32, 0.5  # random boxes, as bench/bench_train.py's


class ModulatedDeformConv3x3(nn.Module):
    """Modulated deformable 3x3 conv (DCNv2, no bias) in place of a bottleneck's conv2, its weight kept."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.stride = conv.stride
        self.weight = conv.weight
        self.offset_mask = nn.Conv2d(conv.in_channels, 3 * NUM_TAPS, 3, conv.stride, 1, bias=False)
        nn.init.zeros_(self.offset_mask.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset_mask = self.offset_mask(x)
        return deform_conv2d(x, offset_mask[:, :2 * NUM_TAPS], self.weight, stride=self.stride, padding=(1, 1),
                             mask=offset_mask[:, 2 * NUM_TAPS:].sigmoid())


def _freeze_batch_norms(module: nn.Module) -> None:
    """Every BatchNorm2d below `module` replaced by a FrozenBatchNorm2d with its statistics and affine."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batch_norms(child)


def build_model(height: int, width: int, from_scratch: bool) -> nn.Module:
    """Faster R-CNN R50-FPN with DCN in layer2-4 for images of exactly height x width (see the module docstring)."""
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
                                    min_size=min(height, width), max_size=max(height, width))
    body = model.backbone.body
    for layer in (body.layer2, body.layer3, body.layer4):
        for block in layer:
            block.conv2 = ModulatedDeformConv3x3(block.conv2)
    if not from_scratch:
        _freeze_batch_norms(model.backbone.body)
        for module in (body.conv1, body.layer1):
            module.requires_grad_(False)
    model.eval()
    with torch.inference_mode():
        images, _ = model.transform([torch.zeros(3, height, width)])
    if images.image_sizes != [(height, width)] or tuple(images.tensors.shape[-2:]) != (height, width):
        raise SystemExit(f"torchvision's transform makes {height}x{width} into {images.image_sizes[0]} (padded to "
                         f"{tuple(images.tensors.shape[-2:])}); use sides that are multiples of 32")
    return model


def random_targets(batch: int, height: int, width: int, rng: np.random.Generator) -> list[dict[str, torch.Tensor]]:
    """GTS_PER_IMAGE random boxes (x1, y1, x2, y2 in pixels) and labels 1..80 per image."""
    targets = []
    for _ in range(batch):
        w = rng.uniform(GT_MIN_SIDE, GT_MAX_SIDE_FRACTION * width, GTS_PER_IMAGE)
        h = rng.uniform(GT_MIN_SIDE, GT_MAX_SIDE_FRACTION * height, GTS_PER_IMAGE)
        x1, y1 = rng.uniform(0, width - w - 1), rng.uniform(0, height - h - 1)
        boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)
        targets.append({"boxes": torch.from_numpy(boxes),
                        "labels": torch.from_numpy(rng.integers(1, NUM_CLASSES, GTS_PER_IMAGE))})
    return targets


def median_seconds(run_once: Callable[[], object], warmup: int, steps: int) -> float:
    """Median seconds of `steps` timed calls after one first call and `warmup` untimed calls."""
    for _ in range(1 + warmup):
        run_once()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run_once()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_training(model: nn.Module, batch: int, height: int, width: int, warmup: int, steps: int) -> float:
    """Median seconds of one SGD step (forward, losses, backward, update) on `batch` images."""
    rng = np.random.default_rng(0)
    images = [torch.rand(3, height, width) for _ in range(batch)]
    targets = random_targets(batch, height, width, rng)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9)
    model.train()

    def step() -> None:
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return median_seconds(step, warmup, steps)


def time_inference(model: nn.Module, batch: int, height: int, width: int, warmup: int, steps: int) -> float:
    """Median seconds per image of eval-mode calls on batches of `batch` images."""
    images = [torch.rand(3, height, width) for _ in range(batch)]
    model.eval()

    def call() -> None:
        with torch.inference_mode():
            model(images)

    return median_seconds(call, warmup, steps) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img_height", type=int, default=768)
    parser.add_argument("--img_width", type=int, default=1280)
    parser.add_argument("--train_batch", type=int, default=2)
    parser.add_argument("--infer_batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps/calls (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps/calls after the first one")
    parser.add_argument("--only", choices=("train", "infer"), default=None)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch intra-op threads (default: this process's CPUs, %(default)s)")
    parser.add_argument("--from_scratch", action="store_true",
                        help="BatchNorm2d on batch statistics and every layer trainable (torchvision without weights)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.img_height, args.img_width, args.from_scratch)
    result = {"bench": "torchvision", "img": [args.img_height, args.img_width]}
    if args.only != "infer":
        result["train_batch"] = args.train_batch
        result["train_s_per_step"] = round(time_training(model, args.train_batch, args.img_height, args.img_width,
                                                         args.warmup, args.steps), 3)
    if args.only != "train":
        result["infer_batch"] = args.infer_batch
        result["infer_s_per_image"] = round(time_inference(model, args.infer_batch, args.img_height, args.img_width,
                                                           args.warmup, args.steps), 3)
    result.update(peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
                  threads=torch.get_num_threads(), from_scratch=args.from_scratch,
                  torch=torch.__version__, torchvision=torchvision.__version__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
