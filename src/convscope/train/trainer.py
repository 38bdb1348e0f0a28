"""The :class:`Trainer`: epochs of shuffled mini-batches of SGD on a network's objective.

Per epoch: a permutation of the training set from the trainer's generator; per mini-batch of B
samples, forward in training mode, back-propagation of dE/d(objective) = 1, one optimiser step
with η and α from their schedules at t = epoch + b/batches; then training metrics (from the
batches as they were trained), validation metrics (test mode), the objective
E = loss + (λ/2) Σ c_λ ‖ω‖², early stopping with patience on a monitored metric, the best model
kept, and a checkpoint written atomically. All randomness (shuffling, dropout) comes from one
``numpy.random.Generator`` whose state is in the checkpoint, so :meth:`Trainer.resume` continues
a run to exactly the weights an uninterrupted run reaches.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from convscope.errors import ConfigError, ShapeError
from convscope.nn import SoftmaxLogLoss
from convscope.nn.files import atomic_write
from convscope.train.checkpoint import load_checkpoint, save_checkpoint
from convscope.train.metrics import Meter, metric_names
from convscope.train.schedules import Constant
from convscope.train.step import CudaGraphStep

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"
METRICS = "metrics.csv"


def _identity(x):
    return x


class Trainer:
    """Train ``net`` with ``optimizer`` on ``train`` = (x, y).

    - ``val``: (x, y) evaluated in test mode after every epoch (optional).
    - ``transform``: applied to every input batch (preprocessing, e.g. uint8 → standardised
      float); ``target_transform`` to every target batch (keypoint scaling).
    - ``augment``: ``augment(x, y, rng) -> (x, y)`` on each raw training batch, drawing from the
      trainer's generator (:mod:`convscope.data.augment`).
    - ``lr_schedule``, ``momentum_schedule``: callables of t (epochs); default constant.
    - ``patience``: stop after this many epochs without improvement of ``monitor`` (default
      ``val_objective`` when there is a validation set; patience with neither is a ConfigError, as
      is a monitor naming no metric of :meth:`metric_names`); ``keep_best`` restores the best
      weights.
    - ``out_dir``: where ``checkpoint.safetensors`` (every epoch), ``best.safetensors`` and
      ``metrics.csv`` go (nothing is written without it).
    - ``callbacks``: objects with ``on_batch_end(trainer, info)`` and/or
      ``on_epoch_end(trainer, row)``.
    - ``progress``: show a tqdm bar (default: only when stdout is a terminal).
    """

    def __init__(self, net, optimizer, train, *, val=None, epochs=10, batch_size=64, seed=0,
                 lr_schedule=None, momentum_schedule=None, transform=None,
                 target_transform=None, target_scale=1.0, augment=None, out_dir=None, patience=None,
                 monitor=None, keep_best=True, callbacks=(), progress=None, log=None,
                 cuda_graph=False):
        self.net, self.optimizer = net, optimizer
        self.train_data, self.val_data = self._check_data("train", train), None
        if val is not None:
            self.val_data = self._check_data("val", val)
        if epochs < 1 or batch_size < 1:
            raise ConfigError(f"Trainer: epochs and batch_size must be >= 1, got {epochs}, "
                              f"{batch_size}")
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.rng = np.random.default_rng(seed)
        self.lr_schedule = lr_schedule or Constant(optimizer.lr)
        self.momentum_schedule = momentum_schedule
        self.transform = transform or _identity
        self.target_transform = target_transform or _identity
        self.augment = augment
        self.task = task_of(net)
        self.target_scale = target_scale
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.monitor = monitor or ("val_objective" if self.val_data else None)
        self.patience, self.keep_best = patience, keep_best
        self._check_monitor()
        self.callbacks = list(callbacks)
        self.progress = sys.stdout.isatty() if progress is None else progress
        self.log = log or (tqdm.write if self.progress else print)
        self.epoch, self.history = 0, []
        self.best, self.best_epoch, self.bad_epochs = math.inf, None, 0
        self._best_state = None
        self.stopped_early = False
        self._graph_step = CudaGraphStep(net, optimizer) if cuda_graph else None

    @staticmethod
    def _check_data(split, data):
        x, y = data
        if len(x) != len(y) or len(x) == 0:
            raise ShapeError(f"Trainer: {split} data has {len(x)} inputs and {len(y)} targets")
        return x, y

    def metric_names(self) -> list[str]:
        """The columns of an epoch's row (of ``history`` and ``metrics.csv``)."""
        outputs = math.prod(self.net.shapes[self.net.roles["prediction"]])
        task = [*metric_names(self.task, outputs), "objective"]
        splits = ["train", "val"] if self.val_data is not None else ["train"]
        return ["epoch", "lr", *(f"{s}_{m}" for s in splits for m in task), "seconds"]

    def _check_monitor(self) -> None:
        """A ConfigError before any training when ``monitor`` names no metric of this run, or when
        ``patience`` is given with nothing to watch (no validation set and no ``monitor``)."""
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(
                self.patience, (int, np.integer)) or self.patience < 1):
            raise ConfigError(f"Trainer: patience must be a positive number of epochs, got "
                              f"{self.patience!r}")
        if self.monitor is None:
            if self.patience is not None:
                raise ConfigError("Trainer: patience needs a metric to watch: give a validation "
                                  "set (val=) or monitor= (e.g. 'train_objective')")
            return
        names = self.metric_names()
        if self.monitor not in names:
            raise ConfigError(f"Trainer: monitor {self.monitor!r} is not a metric of this run; "
                              f"metrics are {', '.join(names)}")

    # -- one batch, one epoch ----------------------------------------------------------------
    def _feed(self, x, y):
        return feed(self.net, x, y, self.transform, self.target_transform)

    def _set_hyper(self, t: float) -> None:
        self.optimizer.lr = self.lr_schedule(t)
        if self.momentum_schedule is not None:
            self.optimizer.momentum = self.momentum_schedule(t)

    def train_epoch(self) -> dict:
        """One pass over the shuffled training set; returns the training metrics."""
        x, y = self.train_data
        roles = self.net.roles
        order = self.rng.permutation(len(x))
        starts = range(0, len(x), self.batch_size)
        meter = Meter(self.task, self.target_scale)
        bar = tqdm(total=len(x), desc=f"epoch {self.epoch + 1}/{self.epochs}", unit="img",
                   disable=not self.progress, leave=False, file=sys.stdout)
        for b, s in enumerate(starts):
            idx = np.sort(order[s:s + self.batch_size])
            self._set_hyper(self.epoch + b / len(starts))
            xb, yb = x[idx], y[idx]
            if self.augment is not None:
                xb, yb = self.augment(xb, yb, self.rng)
            values = self._step(self._feed(xb, yb), len(idx), b, bar)
            loss = float(values[roles["objective"]])
            meter.add(loss, values[roles["prediction"]], values[roles["label"]])
            bar.set_postfix_str(f"loss {meter.loss:.4f}", refresh=False)   # tqdm shows img/s
            bar.update(len(idx))
            self._call("on_batch_end", {"epoch": self.epoch, "batch": b, "loss": loss,
                                        "values": values})
        bar.close()
        return meter.result()

    @np.errstate(over="ignore", invalid="ignore", divide="ignore")
    def _step(self, feed, size, batch, bar) -> dict:
        """Forward, loss check, backward and update of one batch; returns the forward's values.
        NumPy's overflow and invalid-value warnings are off here: a non-finite number reaches the
        loss by the next batch at the latest, and _check_loss stops the run naming the batch and
        the fix (the user's callbacks run outside, with the warnings as the user set them)."""
        roles = self.net.roles
        if self._graph_step is not None and size == self.batch_size:
            values = self._graph_step(feed[roles["input"]], feed[roles["label"]])
            self._check_loss(float(values[roles["objective"]]), batch, bar, "after")
            return values
        values = self.net.forward(feed, train=True, rng=self.rng)
        self._check_loss(float(values[roles["objective"]]), batch, bar, "before")
        self.net.backward({roles["objective"]: 1.0}, input_grads=False)
        self.optimizer.step(self.net.params())
        return values

    def _check_loss(self, loss, batch, bar, when) -> None:
        """A FloatingPointError naming the batch when the loss is NaN or infinite."""
        if not math.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"epoch {self.epoch + 1}, batch {batch + 1}: the loss is "
                                     f"{loss} (the weights are those {when} this batch); "
                                     f"lower the learning rate (now {self.optimizer.lr:g})")

    def evaluate(self, x, y, *, batch_size=256) -> dict:
        """Test-mode metrics on (x, y): loss, objective and top-1/top-5 error or RMSE."""
        result = evaluate(self.net, x, y, transform=self.transform,
                          target_transform=self.target_transform, scale=self.target_scale,
                          batch_size=batch_size)
        result["objective"] = result["loss"] + self.optimizer.penalty(self.net.params())
        return result

    # -- the run -----------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train from the current epoch to ``epochs`` (or an early stop); returns the history."""
        self._call("on_fit_begin", {"epoch": self.epoch})
        while self.epoch < self.epochs and not self.stopped_early:
            start = time.perf_counter()
            lr = self.lr_schedule(self.epoch)
            train = self.train_epoch()
            train["objective"] = train["loss"] + self.optimizer.penalty(self.net.params())
            row = {"epoch": self.epoch + 1, "lr": lr}
            row.update({f"train_{k}": v for k, v in train.items()})
            if self.val_data is not None:
                row.update({f"val_{k}": v for k, v in self.evaluate(*self.val_data).items()})
            row["seconds"] = time.perf_counter() - start
            self.epoch += 1
            self.history.append(row)
            self.log(format_row(row))
            self._track_best(row)  # after the row: an early stop's message follows its epoch
            self._save()
            self._call("on_epoch_end", row)
        if self.keep_best and self._best_state is not None:
            self.net.load_state_dict(self._best_state)
        return self.history

    def _track_best(self, row) -> None:
        if self.monitor is None:
            return
        if self.monitor not in row:
            raise ConfigError(f"Trainer: monitor {self.monitor!r} is not a metric; metrics "
                              f"are {sorted(row)}")
        if row[self.monitor] < self.best:
            self.best, self.best_epoch, self.bad_epochs = row[self.monitor], row["epoch"], 0
            self._best_state = {k: v.copy() for k, v in self.net.state_dict().items()}
            if self.out_dir is not None:
                self.net.save(self.out_dir / BEST)
        else:
            self.bad_epochs += 1
            if self.patience is not None and self.bad_epochs >= self.patience:
                self.stopped_early = True
                self.log(f"early stop: {self.monitor} has not improved for {self.patience} "
                         f"epochs (best {self.best:.4f} at epoch {self.best_epoch})")

    def _call(self, hook, info) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, info)

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        """The trainer's JSON-able state (what a checkpoint stores besides the arrays)."""
        return {"epoch": self.epoch, "history": self.history, "rng": self.rng.bit_generator.state,
                "best": self.best if math.isfinite(self.best) else None,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "stopped_early": self.stopped_early}

    def _save(self) -> None:
        if self.out_dir is None:
            return
        save_checkpoint(self.out_dir / CHECKPOINT, self.net, self.optimizer, self.state())
        atomic_write(self.out_dir / METRICS, metrics_csv(self.history).encode())

    def resume(self, path=None) -> Trainer:
        """Restore the network, optimiser, generator and history from the last checkpoint
        (``out_dir/checkpoint.safetensors`` or ``path``, with the best weights from the
        ``best.safetensors`` beside it); then :meth:`fit` continues the run."""
        path = Path(path) if path is not None else self._checkpoint_path()
        state = load_checkpoint(path, self.net, self.optimizer)
        self.rng.bit_generator.state = state["rng"]
        self.epoch, self.history = state["epoch"], state["history"]
        self.best = math.inf if state["best"] is None else state["best"]
        self.best_epoch, self.bad_epochs = state["best_epoch"], state["bad_epochs"]
        self.stopped_early = state["stopped_early"]
        best = path.parent / BEST
        if self.best_epoch is not None and self.keep_best:
            if not best.exists():
                raise ConfigError(f"resume: {path} records a best epoch ({self.best_epoch}) but "
                                  f"{best} is missing: put it beside the checkpoint, or resume "
                                  f"with keep_best=False")
            from convscope.nn.network import Network
            self._best_state = Network.load(best).state_dict()
        return self

    def _checkpoint_path(self) -> Path:
        if self.out_dir is None:
            raise ConfigError("resume: the trainer has no out_dir to find a checkpoint in")
        path = self.out_dir / CHECKPOINT
        if not path.exists():
            raise ConfigError(f"resume: no checkpoint at {path}")
        return path


def task_of(net) -> str:
    """'classification' when the objective is a softmax log-loss, else 'regression'."""
    objective = net.roles["objective"]
    node = next((n for n in net.nodes.values() if n.output == objective), None)
    if node is None:
        raise ConfigError(f"the network has no objective variable {objective!r}")
    return "classification" if isinstance(node.layer, SoftmaxLogLoss) else "regression"


def feed(net, x, y, transform=_identity, target_transform=_identity) -> dict:
    """The network's feed for inputs x and targets y, each through its transform."""
    target = y if target_transform is None else target_transform(y)
    return {net.roles["input"]: (transform or _identity)(x), net.roles["label"]: target}


def evaluate(net, x, y, *, transform=_identity, target_transform=_identity, scale=1.0,
             batch_size=256) -> dict:
    """Test-mode loss and top-1/top-5 error (classification) or RMSE (regression) on (x, y)."""
    roles = net.roles
    meter = Meter(task_of(net), scale)
    for s in range(0, len(x), batch_size):
        values = net.forward(feed(net, x[s:s + batch_size], y[s:s + batch_size], transform,
                                  target_transform))
        meter.add(values[roles["objective"]], values[roles["prediction"]], values[roles["label"]])
    return meter.result()


def format_row(row: dict) -> str:
    """One line per epoch: 'epoch 3  lr 0.05  train_loss 0.0712  ...'."""
    parts = [f"epoch {row['epoch']}"]
    parts += [f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch",)]
    return "  ".join(parts)


def metrics_csv(history: list[dict]) -> str:
    """The history as CSV text, one row per epoch."""
    if not history:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()
