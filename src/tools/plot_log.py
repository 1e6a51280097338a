"""Training curves from train.py's logs: the loss terms against the global step and, where evaluated, AP and AP50.

    python -m src.tools.plot_log LOSS_LOG [--eval_log EVAL_LOG] --out curve.png

LOSS_LOG is either of train.py's logs:
- its standard output (`train/log` of the scripts): lines `epoch: 1/4 step: 2/100 | global step: 2 | total_loss: L |
  rpn_cls_loss: A rpn_reg_loss: B rcnn_cls_loss: C rcnn_reg_loss: D | ...`, every loss term (other lines ignored);
- `loss_<rank>.log`: lines `<seconds> epoch: E step: S total_loss: L` (S counts within the epoch), the total loss
  only; the global step is (E - 1) * steps per epoch + S, the steps per epoch being the largest S in the file.
A step logged twice (a resumed run repeats the interrupted epoch) keeps its last value.
EVAL_LOG: `eval_<rank>.log` of train.py --run_eval, lines `<seconds> epoch: E global_step: G AP: x AP50: y`.
A value that is not a number (`nan` and `inf` are numbers) is an error naming its file:line, except on a last line
without its line end: a log still being written (or cut off by a killed run) ends that way, so that line is skipped
with a warning.

The picture (PNG, written atomically): the losses on a log scale, each step faint and its running mean (over about
1/20 of the run) drawn over it; below, AP and AP50 at the evaluated steps.
"""
from __future__ import annotations

import argparse
import re
import sys

import numpy as np
from matplotlib.figure import Figure

from src.infra.errors import DataError
from src.infra.fileio import atomic_path
from src.infra.runtime import run_main

STDOUT_STEP = re.compile(r"\| global step: (\d+) \|")
LOSS_TERM = re.compile(r"\b(\w*loss): (\S+)")
LOSS_LOG_LINE = re.compile(r"^\s*\d+ epoch: (\d+) step: (\d+) total_loss: (\S+)\s*$")
EVAL_LOG_LINE = re.compile(r"^\s*\d+ epoch: (\d+) global_step: (\d+) AP: (\S+) AP50: (\S+)\s*$")
SMOOTHING_FRACTION = 20  # the running mean spans 1/20 of the logged steps (at least 1)
FIGURE_SIZE = (10.0, 6.5)  # inches, with the AP panel
DPI = 110

# {series name: (global steps (n,) int, values (n,) float)}
Series = dict[str, tuple[np.ndarray, np.ndarray]]


def _read_lines(path: str) -> list[tuple[str, str]]:
    """(where "file:line", text) of each line of `path`."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    return [(f"{path}:{number}", line) for number, line in enumerate(text.splitlines(), start=1)]


class _PartialLine(Exception):
    """The unfinished last line of a log that is still being written."""


def _numbers(where: str, fields: list[tuple[str, str]], partial: bool) -> list[float]:
    """The values of (name, text) fields of one line as floats ('nan' and 'inf' included); DataError naming `where`
    and the field for one that is not a number, or _PartialLine when `partial` (the file's last line, without a line
    end: cut off mid-write, skipped with a counted warning rather than refused)."""
    values = []
    for name, text in fields:
        try:
            values.append(float(text))
        except ValueError:
            if partial:
                raise _PartialLine from None
            raise DataError(f"{where}: {name}={text!r} is not a number") from None
    return values


def _warn_partial(path: str, skipped: int) -> None:
    if skipped:
        print(f"WARNING: {path}: its last line is unfinished (no line end; a run still writing, or cut off) and "
              "was skipped", file=sys.stderr, flush=True)


def _ends_unfinished(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) not in (b"\n", b"\r")
    except OSError:
        return False


def _as_series(points: dict[str, dict[int, float]]) -> Series:
    return {name: (np.array(sorted(values)), np.array([values[s] for s in sorted(values)], np.float64))
            for name, values in points.items()}


def parse_loss_log(path: str) -> Series:
    """The loss series of a train.py stdout log (every term) or of a loss_<rank>.log (total_loss); DataError naming
    the file when it has neither kind of line, or the file:line of a value that is not a number."""
    lines = _read_lines(path)
    unfinished = _ends_unfinished(path)
    last = len(lines) - 1
    terms: dict[str, dict[int, float]] = {}
    rows, skipped = [], 0
    for index, (where, line) in enumerate(lines):
        partial = unfinished and index == last
        try:
            step = STDOUT_STEP.search(line)
            if step:
                fields = LOSS_TERM.findall(line[step.end():])
                for (name, _), value in zip(fields, _numbers(where, fields, partial), strict=True):
                    terms.setdefault(name, {})[int(step.group(1))] = value
                continue
            match = LOSS_LOG_LINE.match(line)
            if match:
                (loss,) = _numbers(where, [("total_loss", match.group(3))], partial)
                rows.append((int(match.group(1)), int(match.group(2)), loss))
        except _PartialLine:
            skipped += 1
    _warn_partial(path, skipped)
    if terms:
        return _as_series(terms)
    if not rows:
        raise DataError(f"{path}: no loss lines (expected train.py's log, `... | global step: G | total_loss: L | "
                        "...`, or loss_<rank>.log, `<seconds> epoch: E step: S total_loss: L`)")
    steps_per_epoch = max(step for _, step, _ in rows)
    return _as_series({"total_loss": {(epoch - 1) * steps_per_epoch + step: loss for epoch, step, loss in rows}})


def parse_eval_log(path: str) -> Series:
    """AP and AP50 by global step from an eval_<rank>.log; DataError naming the file when it has no such line, or
    the file:line of a value that is not a number."""
    lines = _read_lines(path)
    unfinished = _ends_unfinished(path)
    points: dict[str, dict[int, float]] = {"AP": {}, "AP50": {}}
    skipped = 0
    for index, (where, line) in enumerate(lines):
        match = EVAL_LOG_LINE.match(line)
        if not match:
            continue
        try:
            ap, ap50 = _numbers(where, [("AP", match.group(3)), ("AP50", match.group(4))],
                                unfinished and index == len(lines) - 1)
        except _PartialLine:
            skipped += 1
            continue
        points["AP"][int(match.group(2))] = ap
        points["AP50"][int(match.group(2))] = ap50
    _warn_partial(path, skipped)
    if not points["AP"]:
        raise DataError(f"{path}: no evaluation lines (expected `<seconds> epoch: E global_step: G AP: x AP50: y`)")
    return _as_series(points)


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each value and the up to `window - 1` before it (NaN/Inf values left out)."""
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums[ends] - sums[starts]) / (counts[ends] - counts[starts])


def plot_curves(losses: Series, evaluations: Series | None, out_path: str, title: str = "") -> None:
    """Draw the loss series (and the evaluation series, when given) into a PNG at `out_path`, atomically."""
    panels = 2 if evaluations else 1
    figure = Figure(figsize=FIGURE_SIZE if panels == 2 else (FIGURE_SIZE[0], FIGURE_SIZE[1] * 0.62), dpi=DPI,
                    layout="constrained")
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False, height_ratios=[2, 1][:panels])[:, 0]
    loss_axes = axes[0]
    longest = max(len(steps) for steps, _ in losses.values())
    window = max(longest // SMOOTHING_FRACTION, 1)
    for index, (name, (steps, values)) in enumerate(losses.items()):
        color = f"C{index}"
        positive = np.where(values > 0, values, np.nan)  # a log axis cannot show 0 or below
        if window > 1:
            loss_axes.plot(steps, positive, color=color, alpha=0.25, linewidth=0.8)
        loss_axes.plot(steps, running_mean(positive, window), color=color, linewidth=1.6, label=name)
    loss_axes.set_yscale("log")
    loss_axes.set_ylabel("loss (log scale)" + (f"\nfaint: each step; line: mean of {window} steps" if window > 1
                                               else ""))
    loss_axes.grid(True, which="both", alpha=0.3)
    loss_axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    if title:
        loss_axes.set_title(title)
    if evaluations:
        ap_axes = axes[1]
        for name, (steps, values) in evaluations.items():
            ap_axes.plot(steps, values, marker="o", linewidth=1.4, label=name)
        ap_axes.set_ylabel("COCO AP (val)")
        top = max(float(np.nanmax(values)) for _, values in evaluations.values())
        ap_axes.set_ylim(0.0, min(1.0, max(top * 1.15, 0.05)))
        ap_axes.grid(True, alpha=0.3)
        ap_axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes[-1].set_xlabel("global step")
    with atomic_path(out_path) as tmp:
        figure.savefig(tmp, format="png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.tools.plot_log", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("loss_log", help="train.py's log (stdout) or loss_<rank>.log")
    parser.add_argument("--eval_log", default="", help="eval_<rank>.log of train.py --run_eval (optional)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)

    def plot() -> None:
        losses = parse_loss_log(args.loss_log)
        evaluations = parse_eval_log(args.eval_log) if args.eval_log else None
        plot_curves(losses, evaluations, args.out, title=args.loss_log)
        steps = max(len(s) for s, _ in losses.values())
        print(f"{args.out}: {', '.join(losses)} over {steps} steps"
              + (f"; AP at {len(evaluations['AP'][0])} evaluations" if evaluations else ""), flush=True)

    return run_main(plot, "plot_log")


if __name__ == "__main__":
    sys.exit(main())
