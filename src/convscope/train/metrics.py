"""Metrics of a prediction against its targets: top-k error for classification, RMSE for
regression. Each is a sum over the batch, so a mean over an epoch is Σ sums / N."""

from __future__ import annotations

import numpy as np

from convscope.backend.devices import to_numpy


def scores(prediction) -> np.ndarray:
    """The N×C class scores of a prediction (N×C, or N×1×1×C from a fully connected layer)."""
    return prediction.reshape(prediction.shape[0], -1)


def topk_errors(prediction, labels, k: int) -> int:
    """How many samples do not have their label among the k highest scores (top-k errors)."""
    s = scores(prediction)
    k = min(k, s.shape[1])
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    return int(np.sum(~np.any(top == np.asarray(labels)[:, None], axis=1)))


def squared_error(prediction, target) -> tuple[float, int]:
    """(Σ (x − t)², number of known targets) over the non-NaN targets."""
    t = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    x = scores(prediction).astype(np.float64)
    known = ~np.isnan(t)
    return float(np.sum((x[known] - t[known]) ** 2)), int(known.sum())


def metric_names(task: str, outputs: int) -> list[str]:
    """What :meth:`Meter.result` reports for a ``task`` whose prediction holds ``outputs`` values
    per sample: loss and top-1 error (and top-5 error with more than 5 classes), or loss and RMSE."""
    if task == "classification":
        return ["loss", "top1err"] + (["top5err"] if outputs > 5 else [])
    return ["loss", "rmse"]


class Meter:
    """Accumulates loss and task metrics over the batches of an epoch.

    Classification gives ``loss``, ``top1err`` and, with more than 5 classes, ``top5err``
    (fractions); regression gives
    ``loss`` and ``rmse`` = √(Σ (x − t)² / #known) in target units times ``scale`` (pixels when the
    targets were scaled by 1/scale).
    """

    def __init__(self, task: str, scale: float = 1.0):
        self.task, self.scale = task, scale
        self.n, self.classes = 0, 0
        self.sums = {"loss": 0.0, "top1err": 0.0, "top5err": 0.0, "se": 0.0, "known": 0}

    def add(self, loss, prediction, target) -> None:
        loss, prediction, target = float(loss), to_numpy(prediction), to_numpy(target)
        n = len(prediction)
        self.n += n
        self.sums["loss"] += float(loss) * n
        if self.task == "classification":
            self.classes = scores(prediction).shape[1]
            self.sums["top1err"] += topk_errors(prediction, target, 1)
            self.sums["top5err"] += topk_errors(prediction, target, 5)
        else:
            se, known = squared_error(prediction, target)
            self.sums["se"] += se
            self.sums["known"] += known

    @property
    def loss(self) -> float:
        return self.sums["loss"] / max(self.n, 1)

    def result(self) -> dict:
        """The epoch's metrics: loss and top-1/top-5 error, or loss and RMSE."""
        n = max(self.n, 1)
        values = {"loss": self.loss, "top1err": self.sums["top1err"] / n,
                  "top5err": self.sums["top5err"] / n,
                  "rmse": self.scale * float(np.sqrt(self.sums["se"] / max(self.sums["known"], 1)))}
        return {name: values[name] for name in metric_names(self.task, self.classes)}
