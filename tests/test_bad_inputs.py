"""Every entry point and launcher with each bad input a user is likely to give: exit status 2 (1 only for a training
run that had to stop), one `<program>: error: ...` line naming the key, file or value, no traceback, and nothing
written: the working folder stays empty and the inputs are unchanged.

Each case is a real process (the launchers and `python <script>.py` as users run them); all fail before any network
is built, so each takes the interpreter's start-up and MindSpore's import (~2 s).
"""
import json
import os

import pytest

from tests.helpers.processes import run_script, snapshot

pytestmark = pytest.mark.slow  # every case is a process of its own

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT)


@pytest.fixture(scope="module")
def inputs(synthetic_data, tmp_path_factory):
    """A small COCO-layout data set and the bad files of the cases, in a folder of their own."""
    root = tmp_path_factory.mktemp("inputs")
    synthetic_data(root / "coco", num_train=2, num_val=2, seed=5)
    (root / "mindrecord").mkdir()
    (root / "junk.ckpt").write_bytes(b"not a checkpoint")
    (root / "truncated.json").write_text('{"images": [{"id": 1, "file_name": "a.jpg"')
    (root / "no_images.json").write_text(json.dumps({"annotations": [], "categories": []}))
    first = sorted(os.listdir(root / "coco" / "train2017"))[0]
    (root / "labels.txt").write_text(f"train2017/{first} 10,10,50,x,1\n")
    (root / "results").mkdir()
    return root


def python(script):
    return script  # run_script runs `python <ROOT>/<script>`


def launcher(name):
    return f"scripts/{name}"  # run_script runs `bash <ROOT>/scripts/<name>`


VAL = "{in}/coco/annotations/instances_val2017.json"
DATA = ["--coco_root={in}/coco", "--mindrecord_dir={in}/mindrecord"]

# (command, arguments ({in}: the inputs folder), exit status, the error line's beginning, a part of the rest)
CASES = [
    # the command line
    (python("train.py"), ["--foo=1"], 2, "train.py: error: unrecognized arguments: --foo=1", "not a key"),
    (python("eval.py"), ["--img_width=abc"], 2, "eval.py: error: argument --img_width: expected an integer",
     "'abc'"),
    (python("train.py"), ["--img_width=200"], 2, "train.py: error: img_width=200:", "multiple of 32"),
    (python("export.py"), ["--file_format=PNG"], 2, "export.py: error: argument --file_format: invalid choice",
     "MINDIR"),
    (python("infer.py"), ["--score_thr=high"], 2, "infer.py: error: argument --score_thr: expected a number",
     "'high'"),
    (python("postprogress.py"), ["--num_classes=3"], 2, "postprogress.py: error: num_classes=3 but coco_classes",
     "names"),
    (python("train.py"), ["--loss_spike_factor=-1", *DATA], 2, "train.py: error: loss_spike_factor=-1", ">= 0"),
    (python("train.py"), ["--config_path={in}/missing.yaml"], 2, "train.py: error:", "missing.yaml"),
    # a device this installation lacks
    (python("train.py"), ["--device_target=Ascend", *DATA], 2,
     "train.py: error: device_target=Ascend is not available", "--device_target=CPU"),
    (python("eval.py"), ["--device_target=GPU", "--checkpoint_path={in}/junk.ckpt"], 2,
     "eval.py: error: device_target=GPU is not available", "install MindSpore for GPU"),
    (python("export.py"), ["--device_target=GPU", "--ckpt_file={in}/junk.ckpt"], 2,
     "export.py: error: device_target=GPU is not available", "install MindSpore for GPU"),
    (python("export.py"), ["--file_format=AIR", "--ckpt_file={in}/junk.ckpt"], 2,
     "export.py: error: --file_format=AIR is supported only with --device_target=Ascend", "MINDIR"),
    (python("infer.py"), ["--device_target=GPU", "--checkpoint_path={in}/junk.ckpt", "--images={in}/coco/val2017"],
     2, "infer.py: error: device_target=GPU is not available", "GPU"),
    # checkpoints
    (python("train.py"), ["--pre_trained={in}/none.ckpt", *DATA], 2, "train.py: error: --pre_trained", "no such file"),
    (python("train.py"), ["--pre_trained={in}/junk.ckpt", *DATA], 2, "train.py: error: --pre_trained",
     "not a readable MindSpore checkpoint"),
    (python("train.py"), ["--pre_trained=none", "--resume={in}/junk.ckpt", *DATA], 2, "train.py: error: --resume",
     "not a readable MindSpore checkpoint"),
    (python("eval.py"), ["--checkpoint_path={in}/none.ckpt"], 2, "eval.py: error: checkpoint file not found",
     "checkpoint_path"),
    (python("eval.py"), ["--checkpoint_path={in}/junk.ckpt", f"--anno_path={VAL}", *DATA], 2, "eval.py: error:",
     "not a readable MindSpore checkpoint"),
    (python("export.py"), ["--ckpt_file={in}/none.ckpt"], 2, "export.py: error: checkpoint file not found",
     "ckpt_file"),
    (python("export.py"), ["--ckpt_file={in}/junk.ckpt", "--file_name=out"], 2, "export.py: error:",
     "not a readable MindSpore checkpoint"),
    (python("infer.py"), ["--checkpoint_path={in}/junk.ckpt", "--images={in}/coco/val2017"], 2, "infer.py: error:",
     "not a readable MindSpore checkpoint"),
    (python("infer.py"), ["--mindir={in}/junk.ckpt", "--images={in}/coco/val2017"], 2, "infer.py: error:",
     "junk.ckpt"),
    # annotations and images
    (python("eval.py"), ["--checkpoint_path={in}/junk.ckpt", "--anno_path={in}/truncated.json", *DATA], 2,
     "eval.py: error:", "truncated.json"),
    (python("postprogress.py"), ["--anno_path={in}/no_images.json", "--result_path={in}/results"], 2,
     "postprogress.py: error:", "no_images.json: no images"),
    (python("postprogress.py"), [f"--anno_path={VAL}", "--result_path={in}/no_results"], 2,
     "postprogress.py: error: result folder not found", "--result_path"),
    (python("train.py"), ["--pre_trained=none", "--dataset=txt", "--anno_path={in}/labels.txt",
                          "--image_dir={in}/coco", "--mindrecord_dir={in}/mindrecord"], 2,
     "train.py: error:", "labels.txt:1"),
    (python("train.py"), ["--pre_trained=none", "--coco_root={in}/nowhere", "--mindrecord_dir={in}/mindrecord"], 2,
     "train.py: error:", "nowhere"),
    (python("infer.py"), ["--checkpoint_path={in}/junk.ckpt", "--images={in}/nothing_here"], 2, "infer.py: error:",
     "nothing_here"),
    # the launchers
    (launcher("run_standalone_train_cpu.sh"), [], 2, "run_standalone_train_cpu.sh: error: expected 2 to 3", "Usage"),
    (launcher("run_standalone_train_cpu.sh"), ["{in}/none.ckpt", "{in}/coco"], 2,
     "run_standalone_train_cpu.sh: error: PRETRAINED_MODEL=", "is not a file"),
    (launcher("run_standalone_train_ascend.sh"), ["none", "{in}/coco"], 2,
     "run_standalone_train_ascend.sh: error: device_target=Ascend is not available", "Usage"),
    (launcher("run_standalone_train_gpu.sh"), ["none", "{in}/coco", "0"], 2,
     "run_standalone_train_gpu.sh: error: device_target=GPU is not available", "Usage"),
    (launcher("run_distribute_train_cpu.sh"), ["two", "none", "{in}/coco"], 2,
     "run_distribute_train_cpu.sh: error: DEVICE_NUM=two is not a positive integer", "Usage"),
    (launcher("run_eval_cpu.sh"), [VAL, "{in}/none.ckpt", "{in}/coco"], 2,
     "run_eval_cpu.sh: error: CHECKPOINT_PATH=", "is not a file"),
    (launcher("run_eval_gpu.sh"), [VAL, "{in}/junk.ckpt", "{in}/coco", "0"], 2,
     "run_eval_gpu.sh: error: device_target=GPU is not available", "Usage"),
    (launcher("run_eval_ascend.sh"), [VAL, "{in}/junk.ckpt", "{in}/coco"], 2,
     "run_eval_ascend.sh: error: device_target=Ascend is not available", "Usage"),
    (launcher("run_infer_310.sh"), ["{in}/junk.ckpt", "{in}/coco/val2017", VAL, "0", "GPU"], 2,
     "run_infer_310.sh: error: device_target=GPU is not available", "Usage"),
]


def _case_id(case):
    command, args, _, start, _ = case
    return f"{os.path.basename(command)}:{' '.join(a.split('/')[-1] for a in args)}"


@pytest.mark.parametrize("command, args, status, start, detail", CASES, ids=[_case_id(c) for c in CASES])
def test_a_bad_input_is_one_line_and_changes_nothing(inputs, tmp_path, command, args, status, start, detail):
    before = snapshot(inputs)
    args = [a.replace("{in}", str(inputs)) for a in args]
    done = run_script(command, args, cwd=tmp_path, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == status, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(start), done.stderr[-3000:]
    assert detail in done.stderr, done.stderr[-3000:]
    assert os.listdir(tmp_path) == [], "written to the working folder"
    assert snapshot(inputs) == before, "an input was created, changed or removed"


def test_debug_gives_the_traceback(tmp_path):
    done = run_script("train.py", ["--img_width=200", "--debug=True"], cwd=tmp_path, timeout=300)
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("img_width=200: the network needs a positive multiple of 32")
