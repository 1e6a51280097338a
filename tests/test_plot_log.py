"""src/tools/plot_log.py on small synthetic logs in the formats train.py writes: the parsed series are the logged
values, the picture is a readable PNG, a file without loss lines is one clear error."""
import cv2
import numpy as np
import pytest

from src.infra.errors import DataError
from src.tools.plot_log import main, parse_eval_log, parse_loss_log, running_mean

# train.py's stdout (LossCallBack): 2 epochs of 3 steps, among lines of other output
STDOUT_LOG = """Start training: epochs 1..2 of 2, 3 steps each, 1 device(s), CPU, BatchNorm on moving statistics
epoch: 1/2 step: 1/3 | global step: 1 | total_loss: 2.50000 | rpn_cls_loss: 0.70000 rpn_reg_loss: 0.05000 \
rcnn_cls_loss: 1.70000 rcnn_reg_loss: 0.05000 | 20.00 s/step ETA 0:01:40
epoch: 1/2 step: 2/3 | global step: 2 | total_loss: 2.00000 | rpn_cls_loss: 0.60000 rpn_reg_loss: 0.04000 \
rcnn_cls_loss: 1.30000 rcnn_reg_loss: 0.06000 | 2.00 s/step ETA 0:00:08
Evaluating the weights of epoch 1 (global step 3) ...
epoch: 1/2 step: 3/3 | global step: 3 | total_loss: 1.50000 | rpn_cls_loss: 0.50000 rpn_reg_loss: 0.03000 \
rcnn_cls_loss: 0.90000 rcnn_reg_loss: 0.07000 | 2.00 s/step ETA 0:00:06
epoch: 2/2 step: 1/3 | global step: 4 | total_loss: 1.00000 | rpn_cls_loss: 0.40000 rpn_reg_loss: 0.02000 \
rcnn_cls_loss: 0.50000 rcnn_reg_loss: 0.08000 | 2.00 s/step ETA 0:00:04
"""
# loss_0.log of a run of 3 steps per epoch interrupted in epoch 2 and resumed from the epoch-1 checkpoint: the resumed
# process logs epoch 2 again from its step 1
LOSS_LOG = """21 epoch: 1 step: 1 total_loss: 2.50000
23 epoch: 1 step: 2 total_loss: 2.00000
25 epoch: 1 step: 3 total_loss: 1.50000
27 epoch: 2 step: 1 total_loss: 9.00000
20 epoch: 2 step: 1 total_loss: 1.00000
22 epoch: 2 step: 2 total_loss: 0.80000
24 epoch: 2 step: 3 total_loss: 0.70000
"""
EVAL_LOG = """130 epoch: 1 global_step: 3 AP: 0.10000 AP50: 0.25000
260 epoch: 2 global_step: 6 AP: 0.22000 AP50: 0.45000
"""


def series(parsed, name):
    steps, values = parsed[name]
    return steps.tolist(), values.tolist()


def test_stdout_log_gives_every_loss_term_by_global_step(tmp_path):
    path = tmp_path / "log"
    path.write_text(STDOUT_LOG)
    parsed = parse_loss_log(str(path))
    assert list(parsed) == ["total_loss", "rpn_cls_loss", "rpn_reg_loss", "rcnn_cls_loss", "rcnn_reg_loss"]
    assert series(parsed, "total_loss") == ([1, 2, 3, 4], [2.5, 2.0, 1.5, 1.0])
    assert series(parsed, "rcnn_cls_loss") == ([1, 2, 3, 4], [1.7, 1.3, 0.9, 0.5])
    assert series(parsed, "rcnn_reg_loss") == ([1, 2, 3, 4], [0.05, 0.06, 0.07, 0.08])


def test_loss_log_steps_become_global_and_a_repeated_step_keeps_its_last_value(tmp_path):
    path = tmp_path / "loss_0.log"
    path.write_text(LOSS_LOG)
    parsed = parse_loss_log(str(path))
    assert list(parsed) == ["total_loss"]
    assert series(parsed, "total_loss") == ([1, 2, 3, 4, 5, 6], [2.5, 2.0, 1.5, 1.0, 0.8, 0.7])


def test_eval_log_gives_ap_and_ap50_by_global_step(tmp_path):
    path = tmp_path / "eval_0.log"
    path.write_text(EVAL_LOG)
    parsed = parse_eval_log(str(path))
    assert series(parsed, "AP") == ([3, 6], [0.1, 0.22])
    assert series(parsed, "AP50") == ([3, 6], [0.25, 0.45])


def test_running_mean_leaves_out_non_finite_values():
    values = np.array([1.0, 3.0, np.nan, 5.0, 7.0])
    np.testing.assert_allclose(running_mean(values, 2), [1.0, 2.0, 3.0, 5.0, 6.0])


@pytest.mark.parametrize("with_eval", [False, True])
def test_the_picture_is_a_png_of_the_expected_size(tmp_path, capsys, with_eval):
    (tmp_path / "log").write_text(STDOUT_LOG)
    (tmp_path / "eval_0.log").write_text(EVAL_LOG)
    out = tmp_path / "curves" / "loss_curve.png"
    argv = [str(tmp_path / "log"), "--out", str(out)] + (["--eval_log", str(tmp_path / "eval_0.log")] if with_eval
                                                          else [])
    assert main(argv) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    picture = cv2.imread(str(out))
    assert picture.shape[1] == 1100 and picture.shape[0] == (715 if with_eval else 443)  # inches x 110 dpi
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 20  # curves, text, not a blank canvas
    assert sorted(p.name for p in out.parent.iterdir()) == ["loss_curve.png"]  # no temporary file left
    assert "total_loss, rpn_cls_loss" in capsys.readouterr().out


def test_a_file_without_loss_lines_is_named(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("nothing to see\n")
    with pytest.raises(DataError, match="notes.txt: no loss lines"):
        parse_loss_log(str(path))
    assert main([str(path), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plot_log: error: ") and "notes.txt: no loss lines" in err and "Traceback" not in err
    assert main([str(tmp_path / "missing.log"), "--out", str(tmp_path / "x.png")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
