"""The optimizer part of train.py's step alone (gradient clipping as TrainOneStepCell does it, then SGD with the
config's lr schedule, momentum, weight decay and loss scale) over the network's trainable parameters, before and
after config overrides, one update of each in turn, as a table.

    GLOG_v=3 .venv/bin/python bench/bench_optimizer.py [--config_path demo_config.yaml] [--steps 20]
                                                       --compare KEY=VALUE [KEY=VALUE ...]

Each side gets its own copy of the parameters (the network's shapes, float32) and fixed random gradients; the
network itself is not run (`bench_train.py --compare` times the whole step, at several GB per side). The last line
is one json object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import src  # noqa: E402, F401  (first: src/__init__.py sets OpenMP's wait policy before MindSpore loads libgomp)

# isort: split
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops  # noqa: E402

from bench.bench_common import peak_rss_mb, print_table  # noqa: E402
from src.engine.trainer import build_optimizer  # noqa: E402
from src.FasterRcnn import build_model  # noqa: E402
from src.infra.runtime import set_up_device  # noqa: E402
from src.model_utils.config import get_config  # noqa: E402
from src.network_define import clip_by_global_norm  # noqa: E402
from src.ops import Kernels  # noqa: E402

STEPS_PER_EPOCH = 100  # the demo's (only the learning-rate table's length depends on it)


class Update(nn.Cell):
    """TrainOneStepCell's update: clip the gradients' global norm (when the config clips), then the optimizer."""

    def __init__(self, optimizer: nn.Optimizer, scaled_clip_norm: float):
        super().__init__()
        self.optimizer = optimizer
        self.scaled_clip_norm = scaled_clip_norm

    def construct(self, grads):
        if self.scaled_clip_norm > 0:
            grads = clip_by_global_norm(grads, self.scaled_clip_norm)
        return self.optimizer(grads)


class Holder(nn.Cell):
    """A cell holding copies of `params` (names prefixed), for an optimizer of its own."""

    def __init__(self, params, prefix: str):
        super().__init__()
        self.params = ParameterTuple(Parameter(Tensor(p.asnumpy()), name=f"{prefix}.{p.name}") for p in params)


def build_update(cfg, params, prefix: str) -> tuple[Update, tuple[Tensor, ...]]:
    """The update of one side and its fixed gradients (scaled by the config's loss scale, as the backward's are)."""
    holder = Holder(params, prefix)
    optimizer = build_optimizer(cfg, holder, STEPS_PER_EPOCH, device_num=1)
    rng = np.random.default_rng(0)
    grads = tuple(Tensor(rng.standard_normal(p.shape).astype(np.float32) * 1e-3 * cfg.loss_scale)
                  for p in holder.trainable_params())
    return Update(optimizer, float(cfg.grad_clip_norm) * float(cfg.loss_scale)), grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_path", default="demo_config.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed updates of each side (median reported)")
    parser.add_argument("--compare", nargs="+", metavar="KEY=VALUE", required=True)
    args = parser.parse_args()
    if any("=" not in item for item in args.compare):
        parser.error(f"--compare takes KEY=VALUE items, got {args.compare}")
    set_up_device("CPU", "GRAPH")
    argvs = {"before": [f"--config_path={args.config_path}"],
             "after": [f"--config_path={args.config_path}"] + [f"--{item}" for item in args.compare]}
    cfg = get_config(argvs["before"])
    params = build_model(cfg, kernels=Kernels.MINDSPORE).trainable_params()
    sides = {name: build_update(get_config(argv), params, name) for name, argv in argvs.items()}
    times = {name: [] for name in sides}
    for update, grads in sides.values():  # compile, one untimed update
        ops.depend(Tensor(0), update(grads)).asnumpy()
    for _ in range(args.steps):
        for name, (update, grads) in sides.items():
            start = time.perf_counter()
            ops.depend(Tensor(0), update(grads)).asnumpy()
            times[name].append(time.perf_counter() - start)
    before, after = (float(np.median(times[name])) for name in ("before", "after"))
    count = sum(int(np.prod(p.shape)) for p in params)
    print_table(f"clipping + optimizer over {len(params)} parameters ({count / 1e6:.1f} M values), before / after "
                f"{' '.join(args.compare)}, alternating", [
                    ("before: update (median)", f"{before * 1000:.1f} ms"),
                    ("after: update (median)", f"{after * 1000:.1f} ms"),
                    ("saved per step", f"{(before - after) * 1000:.1f} ms"),
                    ("peak RSS", f"{peak_rss_mb():.0f} MB"),
                ])
    print(json.dumps({"bench": "optimizer_compare", "compare": args.compare, "before_ms": round(before * 1000, 1),
                      "after_ms": round(after * 1000, 1), "parameters": len(params)}))


if __name__ == "__main__":
    main()
