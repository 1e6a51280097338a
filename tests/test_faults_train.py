"""train.py under faults a user meets: a second run in a folder a live run holds, a full disk, a --pre_trained file
of another network, Ctrl-C, TXT image paths outside image_dir. Each case is a real train.py process (128x192
images, 4 training images = 2 steps per epoch): its exit status, its one error line, and the files before and after
(sha256 snapshots).
"""
import os
import re
import signal
import subprocess
import sys
import time

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from tests.helpers.processes import ENV, ROOT, error_lines, run_script, small_filesystem, snapshot
from tests.helpers.training import tiny_train_args, train_command, with_sigint_default

pytestmark = pytest.mark.slow  # train.py end to end in subprocesses

LOSS_LINE = re.compile(r"^\d+ epoch: (\d+) step: (\d+) total_loss: (\S+)$")
# A process that takes train.py's lock on a folder and waits (killed with -9 below: the lock file stays behind).
HOLD = ("import sys, time; from src.infra.run_lock import hold_folder; "
        "hold_folder(sys.argv[1], 'train-rank0', 'train.py'); print('held', flush=True); time.sleep(600)")


def _wait_for(predicate, process, timeout=300, what=""):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"the run ended ({process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _read(path) -> str:
    try:
        return open(path, encoding="utf-8").read()
    except OSError:
        return ""


def _losses(path) -> list[tuple[int, int]]:
    lines = open(path, encoding="utf-8").read().splitlines()
    parsed = [LOSS_LINE.match(line) for line in lines]
    assert all(parsed), lines
    return [(int(m.group(1)), int(m.group(2))) for m in parsed]


def test_a_second_run_in_a_held_folder_is_refused_and_a_killed_runs_lock_is_taken_over(data_root, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    lock = work / ".train-rank0.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(work)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # SIGKILL: no clean-up runs, the lock file stays
    holder.wait()
    assert f"pid {holder.pid}" in lock.read_text()

    args = tiny_train_args(data_root, tmp_path / "mindrecord", "--epoch_size=1")
    with open(tmp_path / "first.out", "w") as out, open(tmp_path / "first.err", "w") as err:
        first = subprocess.Popen(train_command() + args, cwd=work, env=ENV, stdout=out, stderr=err)
    try:
        _wait_for(lambda: f"pid {first.pid}" in _read(lock), first, what="the first run to take the lock")
        work_before, inputs_before = snapshot(work), snapshot(data_root)
        second = run_script("train.py", args, cwd=work, timeout=300)
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        assert "Traceback" not in second.stderr
        (line,) = error_lines(second.stderr)
        assert line.startswith("train.py: error: ") and f"pid {first.pid}" in line and str(work) in line, line
        assert snapshot(work) == work_before and snapshot(data_root) == inputs_before
        assert first.poll() is None  # still running, undisturbed
        assert first.wait(timeout=600) == 0, _read(tmp_path / "first.err")[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert _losses(work / "loss_0.log") == [(1, 1), (1, 2)]  # the first run's two steps, nobody else's
    assert sorted(os.listdir(work / "save_ckpt" / "ckpt_0")) == ["faster_rcnn-1_2.ckpt"]  # locks released
    assert int(ms.load_checkpoint(str(work / "save_ckpt" / "ckpt_0" / "faster_rcnn-1_2.ckpt"))["step_num"]) == 2
    assert not lock.exists()


def test_a_full_disk_stops_training_with_one_line_and_leaves_nothing_behind(data_root, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    try:
        with small_filesystem(tmp_path / "ckpts", 2048) as mount:
            args = tiny_train_args(data_root, tmp_path / "mindrecord", "--epoch_size=1",
                                   f"--save_checkpoint_path={mount}")
            # At start: 2 MB free where a checkpoint needs ~490 MB -> refused before any work.
            refused = run_script("train.py", args, cwd=work, timeout=300)
            assert refused.returncode == 2, refused.stderr[-2000:]
            (line,) = error_lines(refused.stderr)
            assert "save_checkpoint_path" in line and "MB free, at least 488 MB needed" in line, line
            assert os.listdir(work) == [] and os.listdir(mount) == []
            assert not (tmp_path / "mindrecord").exists()

            # The check turned off: training starts and the first checkpoint does not fit.
            done = run_script("train.py", args, cwd=work, timeout=600, env=dict(ENV, FASTER_RCNN_MIN_FREE_MB="0"))
            assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
            assert "Traceback" not in done.stderr and "CRITICAL" not in done.stderr, done.stderr[-3000:]
            (line,) = error_lines(done.stderr)
            target = os.path.join(mount, "ckpt_0", "faster_rcnn-1_2.ckpt")
            assert line == (f"train.py: error: could not write checkpoint {target}: No space left on device; "
                            "training stopped after global step 2; last good checkpoint: none"), line
            assert os.listdir(mount) == []  # no pending, partial or library temporary; the empty folder removed
            assert sorted(os.listdir(work)) == ["loss_0.log"]
    except PermissionError as err:
        pytest.skip(str(err))


def test_a_pretrained_checkpoint_of_another_network_is_refused_before_any_work(data_root, tmp_path):
    other = tmp_path / "dense.ckpt"
    ms.save_checkpoint(nn.Dense(4, 3), str(other))
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(tmp_path)
    done = run_script("train.py", tiny_train_args(data_root, tmp_path / "mindrecord", f"--pre_trained={other}"),
                      cwd=work, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (line,) = error_lines(done.stderr)
    # 265 = the ResNet-50's parameters: conv1 + bn1 (5), 16 bottlenecks x 3 (conv + 4 BatchNorm) = 240,
    # 4 down-sampling conv + BatchNorm = 20.
    assert line == (f"train.py: error: --pre_trained '{other}' does not hold this network's ResNet-50 backbone: 0 of "
                    "its 265 parameters found (the file has 2 entries: bias, weight; missing: conv1.weight, "
                    "bn1.moving_mean, bn1.moving_variance, bn1.gamma, bn1.beta, layer1.0.conv1.weight, "
                    "layer1.0.bn1.moving_mean, layer1.0.bn1.moving_variance, ... (257 more)); expected a model-zoo "
                    "ResNet-50 checkpoint (conv1.weight, bn1.gamma, layer1.0.conv1.weight, ...) or a Faster R-CNN-DCN "
                    "one (backbone.conv1.weight, ...); 'none' trains from scratch"), line
    assert os.listdir(work) == [] and snapshot(tmp_path) == before  # no MindRecord, no lock, nothing


def test_ctrl_c_stops_after_the_step_names_the_last_good_checkpoint_and_exits_130(data_root, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    folder = work / "save_ckpt" / "ckpt_0"
    args = tiny_train_args(data_root, tmp_path / "mindrecord", "--epoch_size=50")
    with open(tmp_path / "run.out", "w") as out, open(tmp_path / "run.err", "w") as err:
        # as in a terminal: a run started ignoring SIGINT keeps ignoring it
        run = subprocess.Popen(with_sigint_default(train_command() + args), cwd=work, env=ENV, stdout=out,
                               stderr=err)
    try:
        _wait_for((folder / "faster_rcnn-1_2.ckpt").exists, run, what="the first checkpoint")
        run.send_signal(signal.SIGINT)
        status = run.wait(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    stderr = _read(tmp_path / "run.err")
    assert status == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = error_lines(stderr)
    match = re.fullmatch(r"train\.py: error: interrupted by SIGINT after global step (\d+); last good checkpoint: "
                         r"(save_ckpt/ckpt_0/faster_rcnn-(\d+)_2\.ckpt)", line)
    assert match, line
    step, named, epoch = int(match.group(1)), work / match.group(2), int(match.group(3))
    assert step < 100  # stopped long before the 50 epochs
    # Every checkpoint of the run is complete and named; nothing hidden (pending, partial, lock) is left.
    names = sorted(os.listdir(folder))
    assert all(re.fullmatch(r"faster_rcnn-\d+_2\.ckpt", name) for name in names), names
    assert f"faster_rcnn-{epoch}_2.ckpt" == max(names, key=lambda n: int(n.split("-")[1].split("_")[0]))
    params = ms.load_checkpoint(str(named))
    assert int(params["step_num"]) == 2 * epoch
    assert all(np.all(np.isfinite(v.asnumpy())) for v in params.values() if v.asnumpy().dtype.kind == "f")
    steps = _losses(work / "loss_0.log")
    assert len(steps) == step and steps[-1] == ((step - 1) // 2 + 1, (step - 1) % 2 + 1)
    assert sorted(os.listdir(work)) == ["loss_0.log", "save_ckpt"]


def test_txt_image_paths_outside_image_dir_are_refused_with_file_and_line(data_root, tmp_path):
    labels = tmp_path / "labels.txt"
    first = sorted(os.listdir(data_root / "train2017"))[0]
    labels.write_text(f"train2017/{first} 10,10,50,50,1,0\n../elsewhere/{first} 10,10,50,50,1,0\n")
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(tmp_path)
    args = tiny_train_args(data_root, tmp_path / "mindrecord", "--dataset=txt", f"--anno_path={labels}",
                           f"--image_dir={data_root}")
    done = run_script("train.py", args, cwd=work, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = error_lines(done.stderr)
    assert line == (f"train.py: error: {labels}:2: image path '../elsewhere/{first}' leads outside image_dir (paths "
                    "are relative to image_dir; set allow_outside_paths=True to accept absolute and '..' paths)"), line
    assert os.listdir(work) == [] and snapshot(tmp_path) == before


def test_the_checkpoint_size_estimate_counts_the_networks_parameters():
    from src.engine.trainer import checkpoint_bytes  # noqa: PLC0415
    from src.FasterRcnn import build_model  # noqa: PLC0415  heavy; only this test builds the network
    from src.model_utils.config import get_config  # noqa: PLC0415
    from src.ops import Kernels  # noqa: PLC0415

    for config in ("default_config_cpu.yaml", "demo_config.yaml"):
        cfg = get_config([f"--config_path={ROOT}/{config}"])
        count = sum(int(np.prod(p.shape)) for p in build_model(cfg, kernels=Kernels.MINDSPORE).get_parameters())
        assert checkpoint_bytes(cfg.num_classes) == count * 3 * 4, config
