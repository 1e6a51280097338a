"""eval.py, src/tools/plot_log.py and src/tools/convert_backbone.py when the output folder or the input is the
problem, as real processes: exit status, exactly one `<program>: error:` line, no traceback, and the folders before and
after.

The eval.py cases mount a small tmpfs as the working folder (where mAP.log and the results go): a read-only one is
refused before the network is built; one that fills up at the end gives one line, keeps the printed figures and
leaves no temporary file.
"""
import fractions
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers.processes import ENV, ROOT, error_lines, run_script, small_filesystem, snapshot
from tests.helpers.reference_ckpt import write_reference_ckpt

pytestmark = pytest.mark.slow  # every case is a process of its own

COCO_DIR = os.path.join(ROOT, "tests", "data", "preprocess", "coco")
SMALL = ["--device_target=CPU", "--run_mode=PYNATIVE", "--img_height=128", "--img_width=192", "--test_batch_size=2"]
NO_FREE_SPACE_MINIMUM = dict(ENV, FASTER_RCNN_MIN_FREE_MB="0")


def one_error(done) -> str:
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    errors = error_lines(done.stderr)
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The 2-image COCO set, its evaluation MindRecord folder, the reference weights and a junk checkpoint."""
    root = tmp_path_factory.mktemp("inputs")
    shutil.copytree(COCO_DIR, root / "coco")
    write_reference_ckpt(str(root / "reference.ckpt"))
    (root / "junk.ckpt").write_bytes(b"not a checkpoint")
    return root


def eval_args(inputs, checkpoint):
    return [*SMALL, f"--checkpoint_path={inputs / checkpoint}", f"--coco_root={inputs / 'coco'}",
            f"--anno_path={inputs / 'coco' / 'annotations' / 'instances_val2017.json'}",
            f"--mindrecord_dir={inputs / 'mindrecord'}"]


def test_eval_into_a_read_only_folder_stops_before_the_network(inputs, tmp_path):
    before = snapshot(inputs)
    try:
        with small_filesystem(tmp_path / "out", 64, read_only=True) as out:
            # a junk checkpoint: had the network been built, loading it would be the error
            done = run_script("eval.py", eval_args(inputs, "junk.ckpt"), cwd=out)
            assert os.listdir(out) == []
    except PermissionError as err:
        pytest.skip(str(err))
    assert done.returncode == 2, done.stderr[-3000:]
    line = one_error(done)
    assert line.startswith("eval.py: error: the output folder (of mAP.log and the other evaluation files): "
                           f"cannot write into '{tmp_path / 'out'}': Read-only file system"), line
    assert "Start Eval!" not in done.stdout
    assert snapshot(inputs) == before


def test_a_second_eval_into_the_folder_of_a_live_one_is_refused(inputs, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from src.infra.run_lock import hold_folder; "
                               f"hold_folder({str(tmp_path)!r}, 'eval', 'eval.py'); print('held', flush=True); "
                               "time.sleep(60)"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = run_script("eval.py", eval_args(inputs, "junk.ckpt"), cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2
    line = one_error(done)
    assert line.startswith(f"eval.py: error: {str(tmp_path)!r} is in use by a run that is still going (eval.py, pid "
                           f"{holder.pid}, started "), line
    assert "Start Eval!" not in done.stdout


def test_eval_on_a_disk_that_fills_up_keeps_the_figures_and_leaves_no_temporary(inputs, tmp_path):
    try:
        # one page: enough for the start (the folder check, the run's lock file), not for the results json
        with small_filesystem(tmp_path / "out", 4) as out:
            done = run_script("eval.py", eval_args(inputs, "reference.ckpt"), cwd=out, env=NO_FREE_SPACE_MINIMUM)
            left = sorted(os.listdir(out))
    except PermissionError as err:
        pytest.skip(str(err))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    line = one_error(done)
    assert line == (f"eval.py: error: could not write {tmp_path / 'out' / 'results.pkl.bbox.json'}: No space left on "
                    "device; the figures are printed above; none of the files was written")
    assert left == []  # no `.partial-` file, and the lock is gone with the run
    summary = [row for row in done.stdout.splitlines() if row.lstrip().startswith("Average")]
    assert len(summary) == 12, done.stdout[-3000:]  # COCOeval's summary reached the screen
    assert "per class (area all" in done.stdout


# ---------------------------------------------------------------------------------------------------------------
# src/tools/plot_log.py and src/checkpoint/from_torchvision.py
STEP = ("epoch: 1/1 step: {s}/3 | global step: {s} | total_loss: {loss} | rpn_cls_loss: 0.5 rpn_reg_loss: 0.1 "
        "rcnn_cls_loss: 0.3 rcnn_reg_loss: 0.1 | 2.00 s/step\n")


def test_plot_log_names_the_line_of_a_value_that_is_not_a_number(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(STEP.format(s=1, loss="2.5") + STEP.format(s=2, loss="abc") + STEP.format(s=3, loss="nan"))
    before = snapshot(tmp_path)
    done = run_script("-m src.tools.plot_log", [log, "--out", tmp_path / "curve.png"], cwd=tmp_path)
    assert done.returncode == 2
    assert one_error(done) == f"plot_log: error: {log}:2: total_loss='abc' is not a number"
    assert snapshot(tmp_path) == before


def test_plot_log_skips_the_unfinished_last_line_of_a_live_log(tmp_path):
    log = tmp_path / "loss_0.log"
    # a training still writing its log: the last line is cut off mid-number, without its line end
    log.write_text("21 epoch: 1 step: 1 total_loss: 2.5\n23 epoch: 1 step: 2 total_loss: 2.0\n"
                   "25 epoch: 1 step: 3 total_loss: 1.5e")
    done = run_script("-m src.tools.plot_log", [log, "--out", tmp_path / "curve.png"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert error_lines(done.stderr) == []
    assert f"WARNING: {log}: its last line is unfinished" in done.stderr
    assert "total_loss over 2 steps" in done.stdout
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")


def test_convert_backbone_refuses_random_bytes_without_the_unsafe_advice(tmp_path):
    junk = tmp_path / "resnet50.pth"
    junk.write_bytes(bytes(range(7, 256)) * 40)
    before = snapshot(tmp_path)
    done = run_script("-m src.tools.convert_backbone", [junk, tmp_path / "out.ckpt"], cwd=tmp_path)
    assert done.returncode == 2
    line = one_error(done)
    assert line.startswith(f"convert_backbone: error: {junk}: not a PyTorch state dict file"), line
    assert "weights_only" not in done.stdout + done.stderr
    assert snapshot(tmp_path) == before


def test_convert_backbone_refuses_a_pickle_of_other_objects_without_the_unsafe_advice(tmp_path):
    torch = pytest.importorskip("torch")
    wrapped = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra": fractions.Fraction(1, 3)}, wrapped)
    done = run_script("-m src.tools.convert_backbone", [wrapped, tmp_path / "out.ckpt"], cwd=tmp_path)
    assert done.returncode == 2
    assert one_error(done).startswith(f"convert_backbone: error: {wrapped}: not a PyTorch state dict file (it holds "
                                      "objects other than tensors")
    assert "weights_only" not in done.stdout + done.stderr
    assert not (tmp_path / "out.ckpt").exists()
