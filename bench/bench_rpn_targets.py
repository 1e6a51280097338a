"""Benchmark the RPN-side stages at a given image size (default 768x1280), GRAPH_MODE, as a table.

    GLOG_v=3 .venv/bin/python bench/bench_rpn_targets.py [--img_height 768 --img_width 1280] [--reps 3]
                                                         [--valid_gts 10] [--kernels cpu|mindspore]

Rows: the RPN assigner+sampler of one image (num_gts x num_bboxes IoU; `--valid_gts` real gts, the rest padding),
with the low-quality-match step vectorised (this port) and as the original's loop over the gts (one select per
gt); the training-time and test-time proposal generators (batch 2); the R-CNN sampler of one image.
Times in seconds: min (median) over --reps runs after one warm-up (which includes the graph compile).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import src  # noqa: E402, F401  (first: src/__init__.py sets OpenMP's wait policy before MindSpore loads libgomp)

# isort: split
import mindspore as ms  # noqa: E402
from mindspore import Tensor, ops  # noqa: E402
from mindspore import dtype as mstype  # noqa: E402

from bench.bench_common import add_kernels_option, print_table  # noqa: E402
from src.FasterRcnn.anchor_generator import multi_level_anchors  # noqa: E402
from src.FasterRcnn.bbox_assign_sample import BboxAssignSample, MaxIoUAssignRandomSample  # noqa: E402
from src.FasterRcnn.bbox_assign_sample_stage2 import BboxAssignSampleForRcnn  # noqa: E402
from src.FasterRcnn.box_ops import box_iou  # noqa: E402
from src.FasterRcnn.proposal_generator import Proposal  # noqa: E402
from src.FasterRcnn.settings import AnchorSettings, AssignerSettings, ProposalSettings  # noqa: E402
from src.model_utils.config import get_config  # noqa: E402
from src.ops import Kernels  # noqa: E402

BATCH = 2


class LoopAssignCore(MaxIoUAssignRandomSample):
    """The core with the low-quality step as a loop over the gts, one select per gt (the original's formulation)."""

    def assign(self, gt_bboxes, bboxes, valid_mask):
        overlaps = box_iou(bboxes, gt_bboxes)
        best_gt, best_iou = ops.ArgMaxWithValue(axis=0)(overlaps)
        _, gt_max_iou = ops.ArgMaxWithValue(axis=1)(overlaps)
        minus_one = ops.full_like(best_gt, -1, dtype=mstype.int32)
        assigned = ops.select(best_iou < self.neg_iou_thr, ops.zeros_like(minus_one), minus_one)
        assigned = ops.select(best_iou >= self.pos_iou_thr, best_gt.astype(mstype.int32) + 1, assigned)
        for j in range(self.num_gts):
            claims = ops.logical_and(gt_max_iou[j] >= self.min_pos_iou, overlaps[j] == gt_max_iou[j])
            assigned = ops.select(claims, ops.full_like(assigned, j + 1), assigned)
        return ops.select(valid_mask, assigned, minus_one)


def loop_assign_sample(settings: AssignerSettings) -> BboxAssignSample:
    sampler = BboxAssignSample(settings)
    sampler.core = LoopAssignCore.from_settings(settings, gts_as_candidates=False)
    return sampler


def timed(fn, reps):
    fn()  # warm-up / compile
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return f"{min(times):.3f} ({statistics.median(times):.3f})"


def sync(outputs):
    for out in outputs if isinstance(outputs, tuple) else (outputs,):
        if isinstance(out, tuple):
            sync(out)
        else:
            out.asnumpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img_height", type=int, default=768)
    parser.add_argument("--img_width", type=int, default=1280)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--valid_gts", type=int, default=10)
    add_kernels_option(parser)
    args = parser.parse_args()
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    cfg = get_config([], img_height=args.img_height, img_width=args.img_width)
    rpn_assigner = AssignerSettings.from_config(cfg, "rpn")
    rng = np.random.default_rng(0)

    level_anchors = multi_level_anchors(AnchorSettings.from_config(cfg))
    anchors = np.concatenate(level_anchors)
    h, w = cfg.img_height, cfg.img_width
    valid = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= w - 1) & (anchors[:, 3] <= h - 1)
    gts = np.zeros((cfg.num_gts, 4), np.float32)
    xy = rng.uniform(0, [w * 0.7, h * 0.7], (args.valid_gts, 2))
    gts[:args.valid_gts] = np.concatenate([xy, xy + rng.uniform(16, min(h, w) * 0.3, (args.valid_gts, 2))], 1)
    gt_valids = np.arange(cfg.num_gts) < args.valid_gts
    rpn_inputs = (Tensor(gts), Tensor(np.ones(cfg.num_gts, np.int32)), Tensor(valid), Tensor(anchors),
                  Tensor(gt_valids))
    rows = []
    for name, cell in (("RPN assign+sample, 1 image (vectorised)", BboxAssignSample(rpn_assigner)),
                       ("RPN assign+sample, 1 image (loop over gts)", loop_assign_sample(rpn_assigner))):
        rows.append((name, timed(lambda c=cell: sync(c(*rpn_inputs)), args.reps)))

    anchor_list = tuple(Tensor(a) for a in level_anchors)
    cls_maps = tuple(Tensor(rng.normal(0, 2, (BATCH, cfg.num_anchors, fh, fw)).astype(np.float32))
                     for fh, fw in cfg.feature_shapes)
    reg_maps = tuple(Tensor(rng.normal(0, 0.2, (BATCH, 4 * cfg.num_anchors, fh, fw)).astype(np.float32))
                     for fh, fw in cfg.feature_shapes)
    for training in (True, False):
        generator = Proposal(ProposalSettings.from_config(cfg, training=training), BATCH, Kernels(args.kernels))
        name = f"proposals, batch {BATCH} ({'train' if training else 'test'}: {generator.max_num} per image)"
        rows.append((name, timed(lambda g=generator: sync(g(cls_maps, reg_maps, anchor_list)), args.reps)))

    rcnn_assigner = AssignerSettings.from_config(cfg, "rcnn")
    num_proposals = rcnn_assigner.num_candidates
    proposals = np.concatenate([xy := rng.uniform(0, [w * 0.8, h * 0.8], (num_proposals, 2)),
                                xy + rng.uniform(8, 200, (num_proposals, 2))], 1).astype(np.float32)
    stage2 = BboxAssignSampleForRcnn(rcnn_assigner, add_gt_as_proposals=True)
    stage2_inputs = (Tensor(gts), Tensor(np.arange(cfg.num_gts, dtype=np.int32)),
                     Tensor(np.ones(num_proposals, bool)), Tensor(proposals), Tensor(gt_valids))
    rows.append(("R-CNN assign+sample, 1 image", timed(lambda: sync(stage2(*stage2_inputs)), args.reps)))
    print_table(f"RPN-side stages at {h}x{w} ({cfg.num_bboxes} anchors, {cfg.num_gts} gt slots), GRAPH_MODE, "
                f"seconds min (median) of {args.reps}", rows)


if __name__ == "__main__":
    main()
