"""A diagnosis from the loss curves after a run, with the numbers that led to it.

- learning rate too high: the loss became NaN or Inf, rose above its start (explodes), or went up
  and down without falling (oscillates);
- learning rate too low: the loss fell only a little and nearly linearly (the drop of the first
  half of the run about equals the drop of the second: no sign of convergence);
- high bias (the lecture's model check): training and validation error both high;
- high variance: validation error far above training error (a large gap).

The remedies are the lecture's: for high variance more training data (data augmentation), a
smaller set of features, a larger regularisation parameter, more dropout; for high bias a larger
set of features, a deeper architecture; for the learning rate, a high rate at first, then lower.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

VARIANCE_ADVICE = ("more training data (data augmentation), a smaller set of features, a larger "
                   "regularisation parameter, more dropout")
BIAS_ADVICE = "a larger set of features, a deeper (or wider) architecture, longer training"


@dataclass
class Finding:
    """One diagnosis: ``kind`` (lr_too_high, lr_too_low, high_bias, high_variance, ok), what was
    seen (with its numbers) and what to do."""

    kind: str
    message: str
    advice: str

    def __str__(self) -> str:
        return f"{self.kind.replace('_', ' ')}: {self.message}" + (
            f" → {self.advice}" if self.advice else "")


def read_metrics(path) -> list[dict]:
    """The rows of a ``metrics.csv`` (a run folder or the file) with numbers as floats."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def loss_series(history, records=()) -> tuple[list[float], str]:
    """The training loss over time: per monitored step when the monitor recorded at least five
    steps (one value per step), else per epoch; and which it is."""
    steps = {}
    for r in records:
        if "loss" in r and "step" in r:
            steps[r["step"]] = r["loss"]
    if len(steps) >= 5:
        return [steps[s] for s in sorted(steps)], "monitored steps"
    return [row["train_loss"] for row in history if "train_loss" in row], "epochs"


def _lr_too_high(losses, where, error) -> Finding | None:
    advice = "lower the learning rate (by 3–10×), or warm it up and decay it"
    if error is not None or any(not math.isfinite(v) for v in losses):
        what = str(error) if error is not None else "the training loss became NaN or Inf"
        return Finding("lr_too_high", f"the loss diverged: {what}", advice)
    if len(losses) < 2:
        return None
    first, peak, last = losses[0], max(losses[1:]), losses[-1]
    if peak > 1.5 * first or last > 1.1 * first:
        return Finding("lr_too_high", f"the loss exploded: {first:.4g} at the start, up to "
                                      f"{peak:.4g}, {last:.4g} at the end (over {where})", advice)
    ups = sum(b > a for a, b in zip(losses, losses[1:]))
    if len(losses) >= 6 and ups >= 0.4 * (len(losses) - 1) and last > 0.9 * first:
        return Finding("lr_too_high", f"the loss oscillates: it rose in {ups} of "
                                      f"{len(losses) - 1} steps and ended at {last:.4g} from "
                                      f"{first:.4g} (over {where})", advice)
    return None


def _lr_too_low(losses, where) -> Finding | None:
    if len(losses) < 4:
        return None
    half = len(losses) // 2
    first, mid, last = losses[0], losses[half], losses[-1]
    early, late = first - mid, mid - last
    fall = (first - last) / first if first else 0.0
    if early > 0 and late > 0 and 0.5 < early / late < 2 and fall < 0.5:
        return Finding("lr_too_low", f"the loss fell slowly and nearly linearly: {first:.4g} → "
                                     f"{mid:.4g} → {last:.4g} (−{100 * fall:.0f}% over {where}, "
                                     f"first half −{early:.3g}, second half −{late:.3g})",
                       "raise the learning rate (3–10×); the range test of `convscope doctor` "
                       "recommends one")
    return None


def _error_key(row) -> str | None:
    for key in ("top1err", "rmse"):
        if f"train_{key}" in row:
            return key
    return None


def _bias_variance(row, bias_error) -> list[Finding]:
    key = _error_key(row)
    if key is None:
        return []
    train, val = row[f"train_{key}"], row.get(f"val_{key}")
    unit = "%" if key == "top1err" else " px"
    scale = 100 if key == "top1err" else 1

    def show(v):
        return f"{scale * v:.2f}{unit}"

    out = []
    if val is not None and isinstance(val, float):
        gap = val - train
        if gap > max(0.5 * train, 0.02 if key == "top1err" else 0.0):
            out.append(Finding("high_variance", f"validation error {show(val)} against training "
                                                f"error {show(train)} (gap {show(gap)})",
                               VARIANCE_ADVICE))
    if bias_error is not None and train > bias_error and not out:
        both = f" and validation error {show(val)}" if isinstance(val, float) else ""
        out.append(Finding("high_bias", f"training error {show(train)}{both}, both above "
                                        f"{show(bias_error)}", BIAS_ADVICE))
    return out


def diagnose(history, records=(), *, error=None, bias_error=None) -> list[Finding]:
    """Diagnose a run from its epoch ``history`` (the rows of ``metrics.csv``), the monitor's
    ``records`` (optional: a finer loss curve), and the ``error`` that stopped it, if any
    (a NaN). ``bias_error``: the training error above which the model is said to underfit
    (default 5% for classification; none for regression, whose error has units)."""
    losses, where = loss_series(history, records)
    if error is None:
        error = next((f"{r['warnings'][0]}" for r in records if "nonfinite" in r), None)
    high = _lr_too_high(losses, where, error)
    if high is not None:
        return [high]
    findings = [f for f in [_lr_too_low(losses, where)] if f is not None]
    if history:
        last = history[-1]
        if bias_error is None and _error_key(last) == "top1err":
            bias_error = 0.05
        findings += _bias_variance(last, bias_error)
    if not findings:
        findings.append(Finding("ok", f"no sign of trouble in the loss curves ({len(losses)} "
                                      f"points over {where})", ""))
    return findings
