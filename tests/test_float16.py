"""The Ascend precision path, run on the CPU: the network cast to float16 as train.py and eval.py do on Ascend
(`build_model(..., dtype=float16)`: `net.to_float(float16)`), built with MindSpore's own operators
(Kernels.MINDSPORE: the graph Ascend runs), in GRAPH_MODE, compared with what the original computed in float32 (the
fidelity goldens).

- Training: one step of the train-step cell on the training golden's batch (tests/test_fidelity_train.py) must
  compile and run; its six losses are finite and within 1e-3 relative of the float32 losses (float16 keeps 11
  significant bits, a unit roundoff of 4.9e-4: the losses are averages over thousands of anchors and RoIs, so the
  roundoff of single activations largely averages out; measured 2.4e-4 at most, on rcnn_loss); every parameter is
  finite after the step and every update points the way the float32 update does (cosine over the golden's sampled
  values >= 0.999, norm within 2 %; the layer2-4 offset convs, whose gradients go through the bilinear sample's
  position derivative, >= 0.99 and 10 %; measured 0.9997 / 0.4 % and 0.996 / 4.3 %).
- Inference: the backbone and FPN compute in float16 (their outputs are float16; the boxes come out float32) and
  the detections at 384x640 mostly agree with the original's float32 detections: at least 90 % of the
  best 128 matched with the same label, IoU >= 0.9 and |score difference| <= 0.01 (measured 128 of 128; 118 of 128
  within the float32 tolerance IoU >= 0.99, 1e-3).
The measured figures are printed (run with -s to see them).
"""

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from src.model_utils.config import get_config
from src.network_define import LOSS_TERMS
from tests.helpers.fidelity import (
    CONFIG_GPU,
    GOLDEN_INFER,
    GOLDEN_TRAIN,
    INFER_SIZE,
    TRAIN_OVERRIDES,
    StagesAndDetections,
    best_detections,
    kernels_and_mode,
    match_detections,
    one_training_step,
    reference_network,
)

pytestmark = pytest.mark.slow  # float16 graph compilations of the full network

ASCEND_GRAPH = ("mindspore", "graph")
LOSS_RTOL = 1e-3
OFFSET_CONVS = ("p_conv", "m_conv")
MIN_COSINE = {"offset convs": 0.99, "other": 0.999}
NORM_RTOL = {"offset convs": 0.1, "other": 0.02}
DET_MIN_IOU = 0.9
DET_SCORE_TOL = 0.01
DET_MIN_MATCHED = 0.9
STRICT_IOU, STRICT_SCORE_TOL = 0.99, 1e-3  # the float32 fidelity tolerance, for the report
STAGES = ("backbone_c2", "backbone_c3", "backbone_c4", "backbone_c5", "fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6")


@pytest.fixture(scope="module")
def step(reference_ckpt):
    golden = dict(np.load(GOLDEN_TRAIN))
    with kernels_and_mode(*ASCEND_GRAPH) as kernels:
        cfg = get_config([f"--config_path={CONFIG_GPU}"], **TRAIN_OVERRIDES)
        net = reference_network(cfg, reference_ckpt, kernels, dtype=ms.float16)
        net.set_train(True)
        return one_training_step(net, golden), golden


def test_float16_training_losses_are_finite_and_close_to_float32(step):
    record, golden = step
    assert np.all(np.isfinite(record.terms))
    deviation = np.abs(record.terms - golden["losses"]) / np.abs(golden["losses"])
    print("\nfloat16 losses, relative deviation from float32: "
          + ", ".join(f"{term} {dev:.1e}" for term, dev in zip(LOSS_TERMS, deviation, strict=True)))
    assert np.all(deviation <= LOSS_RTOL), dict(zip(LOSS_TERMS, deviation, strict=True))


def test_float16_training_step_updates_like_float32(step):
    record, golden = step
    assert not record.nonfinite, f"not finite after the float16 step: {record.nonfinite[:5]}"
    worst = {kind: (1.0, 0.0) for kind in MIN_COSINE}  # lowest cosine, largest norm deviation
    failures = []
    for name in golden["trainable_names"].tolist():
        kind = "offset convs" if any(part in name for part in OFFSET_CONVS) else "other"
        got, want = record.update_samples[name], golden[f"upd/{name}/val"].astype(np.float64)
        cosine = float(got @ want / max(np.linalg.norm(got) * np.linalg.norm(want), 1e-30))
        want_norm = float(golden[f"upd/{name}/norm"])
        norm_dev = abs(record.update_norms[name] - want_norm) / want_norm
        worst[kind] = (min(worst[kind][0], cosine), max(worst[kind][1], norm_dev))
        if cosine < MIN_COSINE[kind] or norm_dev > NORM_RTOL[kind]:
            failures.append((name, cosine, norm_dev))
    print("\nfloat16 step vs float32: " + "; ".join(f"{kind}: lowest cosine {cos:.4f}, largest norm deviation "
                                                    f"{dev:.1e}" for kind, (cos, dev) in worst.items()))
    assert not failures


def test_float16_inference_runs_in_float16_and_detections_mostly_agree(reference_ckpt):
    golden = dict(np.load(GOLDEN_INFER))
    height, width = INFER_SIZE
    with kernels_and_mode(*ASCEND_GRAPH) as kernels:
        cfg = get_config([f"--config_path={CONFIG_GPU}"], img_height=height, img_width=width, test_batch_size=1)
        net = reference_network(cfg, reference_ckpt, kernels, dtype=ms.float16)
        net.set_train(False)
        meta = Tensor(np.array([[height, width, 1.0, 1.0]], np.float32))
        backbone, fpn, bboxes, labels, masks = StagesAndDetections(net)(Tensor(golden["input"]), meta)
    # The convolutions ran in float16; the boxes come out in float32.
    assert [t.dtype for t in backbone + fpn] == [ms.float16] * (len(backbone) + len(fpn))
    assert bboxes.dtype == ms.float32
    deviations = [float(np.abs(t.asnumpy().reshape(-1)[golden[f"{stage}_idx"]] - golden[f"{stage}_val"]).max())
                  / float(golden[f"{stage}_std"]) for stage, t in zip(STAGES, backbone + fpn, strict=True)]
    outputs = bboxes.asnumpy()[0], labels.asnumpy()[0, :, 0], masks.asnumpy()[0, :, 0]
    assert np.all(np.isfinite(outputs[0][outputs[2]]))
    want = golden["det_boxes"], golden["det_scores"], golden["det_labels"]
    got = best_detections(*outputs, count=len(want[1]))
    match = match_detections(want, got, DET_MIN_IOU, DET_SCORE_TOL)
    strict = match_detections(want, got, STRICT_IOU, STRICT_SCORE_TOL)
    print("\nfloat16 features, largest |float16 - float32| / std: "
          + ", ".join(f"{stage} {dev:.1e}" for stage, dev in zip(STAGES, deviations, strict=True)))
    print(f"float16 detections: {match.matched}/{match.total} matched with IoU >= {DET_MIN_IOU}, |score diff| <= "
          f"{DET_SCORE_TOL} (lowest IoU {match.lowest_iou:.4f}, largest |score diff| {match.largest_score_diff:.1e});"
          f" {strict.matched}/{strict.total} within the float32 tolerance")
    assert match.matched >= DET_MIN_MATCHED * match.total, f"first unmatched: {match.first_unmatched}"
