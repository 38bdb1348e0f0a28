"""The training monitor: per-layer statistics of activations and gradients every K batches,
warnings that name the layer, and a stop at the first NaN or Inf.

    monitor = Monitor().attach(trainer)      # or Trainer(..., callbacks=[Monitor()])
    trainer.fit()

Every K-th batch (default: 4 times per epoch) it writes one JSON line per layer to
``OUT/monitor.jsonl`` (``pandas.read_json(path, lines=True)`` reads it as a table)::

    step epoch batch t lr loss layer type
    act_mean act_std act_zero act_dead act_saturated act_hist       activations y of the layer
    grad_mean grad_std grad_rms grad_hist                           dE/dy at its output
    w_norm w_grad_norm w_grad_rms update_ratio                      ‖ω‖, ‖dE/dω‖, ‖Δω‖/‖ω‖
    warnings                                                        what :mod:`rules` found

where t = epoch + b/B is the time in epochs, ``act_zero`` the fraction of zeros after a ReLU,
``act_dead`` the fraction of its channels (filters) that are 0 at every position of the whole
batch, ``act_saturated`` the fraction of a sigmoid's or tanh's outputs in its flat tails, and the
update ratio is that of the optimiser step just taken (ω is snapshotted one batch earlier). Every
batch, the :class:`Probe` checks each forward value and each gradient for NaN and Inf and stops
the run at the first one, before the update, naming the layer (a step that overflowed the
weights is named by the next forward pass); after the last update of an epoch it checks the
parameters, so that such a step stops the run before the checkpoint can save it. ``step``
counts the batches of the whole run (epoch·B + b), so a resumed run continues the numbering.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from convscope.backend.devices import copy_array
from convscope.debug import stats
from convscope.debug.probe import Probe
from convscope.debug.rules import Thresholds, warnings_for

MONITOR_FILE = "monitor.jsonl"
ZERO_TYPES = ("ReLU",)
SAMPLE = 4096


def _learnable(layer) -> list:
    return [p for p in layer.params.values() if p.learnable]


def activation_stats(y, kind: str, bins: int, rng, limit=SAMPLE) -> dict:
    """Mean, standard deviation, histogram of a layer's output y (from a sample of ``limit``
    entries); the fraction of zeros and of dead units after a ReLU; the fraction of saturated
    outputs of a sigmoid or tanh."""
    part = stats.sample(y, limit, rng)
    mean, std = stats.moments(part)
    row = {"act_mean": mean, "act_std": std, "act_hist": stats.histogram(part, bins)}
    if kind in ZERO_TYPES:
        row["act_zero"], row["act_dead"] = stats.zero_fraction(part), stats.dead_fraction(y)
    saturated = stats.saturated_fraction(part, kind)
    if saturated is not None:
        row["act_saturated"] = saturated
    return row


def gradient_stats(dy, bins: int, rng, limit=SAMPLE) -> dict:
    """Mean, standard deviation, RMS and histogram of dE/dy at a layer's output (from a sample of
    ``limit`` entries)."""
    part = stats.sample(dy, limit, rng)
    mean, std = stats.moments(part)
    return {"grad_mean": mean, "grad_std": std, "grad_rms": stats.rms(part),
            "grad_hist": stats.histogram(part, bins)}


def weight_stats(params, before) -> dict:
    """‖ω‖, ‖dE/dω‖, RMS dE/dω over a layer's learnable parameters, and ‖Δω‖/‖ω‖ against the
    values ``before`` the last step (None: not known)."""
    grads = [p.grad for p in params if p.grad is not None]
    row = {"w_norm": stats.norm_of([p.value for p in params]),
           "w_grad_norm": stats.norm_of(grads) if grads else None,
           "w_grad_rms": stats.rms_of(grads) if grads else None, "update_ratio": None}
    if before is not None:
        row["update_ratio"] = stats.update_ratio(before, [p.value for p in params])
    return row


def layer_rows(net, values, grads, before=None, *, bins=20, rng=None) -> list[dict]:
    """One record per layer (losses excepted), in execution order: the statistics of its output,
    of the gradient at its output, and of its weights. ``before``: {layer: [parameter arrays]}
    as they were before the last step; ``rng`` draws the samples of large arrays."""
    rng = rng if rng is not None else np.random.default_rng(0)
    rows = []
    for name in net.order():
        node = net.nodes[name]
        layer = node.layer
        if layer.loss or node.output not in values:
            continue
        kind = type(layer).__name__
        row = {"layer": name, "type": kind, **activation_stats(values[node.output], kind, bins, rng)}
        if node.output in grads:
            row.update(gradient_stats(grads[node.output], bins, rng))
        params = _learnable(layer)
        if params:
            row.update(weight_stats(params, (before or {}).get(name)))
        rows.append(row)
    return rows


def peak_lr(schedule, epochs, points=100) -> float:
    """η_max = max_t η(t) of a learning-rate schedule over the run, t ∈ [0, epochs] sampled at
    ``points`` + 1 times: its start, or the end of a warm-up."""
    return max(float(schedule(epochs * i / points)) for i in range(points + 1))


def snapshot(net) -> dict:
    """Copies of every layer's learnable parameter values, {layer: [arrays]}, where they are (on a
    GPU: no copy to the host, the update ratio is taken there)."""
    return {name: [copy_array(p.value) for p in _learnable(layer)]
            for name, layer in net.layers.items() if _learnable(layer)}


class Monitor:
    """A Trainer callback that monitors gradients and activations across layers and epochs.

    - ``out_dir``: where ``monitor.jsonl`` goes (default: the trainer's ``out_dir``; None keeps
      the records in ``records`` only).
    - ``every``: K, monitor every K-th batch (default: ``per_epoch`` times per epoch).
    - ``thresholds``: when a statistic becomes a warning (:class:`~convscope.debug.rules.Thresholds`).
    - ``log``: where warnings are printed (default: the trainer's log); each (kind, layer) once.
    - ``seed``: the monitor's own generator, which samples large arrays (the trainer's stays
      untouched, so a monitored run trains exactly as an unmonitored one).

    :attr:`seconds` is the time it spent: statistics, files and the NaN checks of every batch.
    """

    def __init__(self, out_dir=None, *, every=None, per_epoch=4, bins=20,
                 thresholds=None, log=None, seed=0):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.every, self.per_epoch, self.bins = every, per_epoch, bins
        self.thresholds, self.log = thresholds or Thresholds(), log
        self.rng = np.random.default_rng(seed)
        self.records: list[dict] = []
        self.warnings: list[dict] = []
        self.step, self._seconds = 0, 0.0
        self.probe: Probe | None = None
        self._before = None
        self._said: set = set()
        self._trainer = None
        self._batches, self._peak_lr, self._opened = 1, 0.0, False

    # -- wiring --------------------------------------------------------------------------------
    def attach(self, trainer) -> Monitor:
        """Add the monitor to ``trainer``'s callbacks and start checking its network now."""
        if self not in trainer.callbacks:
            trainer.callbacks.append(self)
        self._start(trainer)
        return self

    def on_fit_begin(self, trainer, info=None) -> None:
        """Trainer hook before the first batch (see :meth:`attach`); a resumed trainer starts at
        step epoch·B."""
        self._start(trainer)
        self.step = trainer.epoch * self._batches
        self._peak_lr = peak_lr(trainer.lr_schedule, trainer.epochs)
        self._open()

    def _start(self, trainer) -> None:
        if self._trainer is trainer:
            return
        self._trainer = trainer
        self.out_dir = self.out_dir or trainer.out_dir
        self.log = self.log or trainer.log
        self._batches = math.ceil(len(trainer.train_data[0]) / trainer.batch_size)
        self.every = self.every or max(1, self._batches // self.per_epoch)
        self.step = trainer.epoch * self._batches
        self._peak_lr = peak_lr(trainer.lr_schedule, trainer.epochs)
        self.probe = Probe(trainer.net, on_failure=self._failure).install()
        self.probe.where = self._where

    def _where(self) -> str:
        """'epoch E, batch b' of the batch in progress ('epoch E, validation' after the last)."""
        epoch = self._trainer.epoch
        b = self.step - epoch * self._batches
        return f"epoch {epoch + 1}, " + (f"batch {b + 1}" if b < self._batches else "validation")

    def detach(self) -> None:
        """Stop checking the network (restores its own forward and backward)."""
        if self.probe is not None:
            self.probe.remove()

    @property
    def path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / MONITOR_FILE

    # -- hooks ---------------------------------------------------------------------------------
    def on_batch_end(self, trainer, info) -> None:
        start = time.perf_counter()
        self._start(trainer)
        step, k = trainer.epoch * self._batches + info["batch"], self.every
        self.step = step
        if info["batch"] == self._batches - 1:  # before the epoch's checkpoint can save it
            self.probe.check_params()
        self.step = step + 1
        if step % k == k - 1:
            self._record(trainer, info, step)
        self._before = snapshot(trainer.net) if (step + 1) % k == k - 1 else None
        self._seconds += time.perf_counter() - start

    @property
    def seconds(self) -> float:
        return self._seconds + (self.probe.seconds if self.probe is not None else 0.0)

    def _record(self, trainer, info, step) -> None:
        head = {"step": step, "epoch": info["epoch"] + 1, "batch": info["batch"] + 1,
                "t": info["epoch"] + (info["batch"] + 1) / self._batches,
                "lr": trainer.optimizer.lr, "loss": info["loss"]}
        rows = layer_rows(trainer.net, self.probe.values, self.probe.grads, self._before,
                          bins=self.bins, rng=self.rng)
        found = warnings_for(rows, self.thresholds,
                             trainer.optimizer.lr / self._peak_lr if self._peak_lr > 0 else 1.0)
        for row in rows:
            row["warnings"] = [w["message"] for w in found if w["layer"] == row["layer"]]
        self._write([{**head, **row} for row in rows])
        for w in found:
            self._say(w, step)

    def _say(self, warning, step) -> None:
        self.warnings.append({**warning, "step": step})
        key = (warning["kind"], warning["layer"])
        if key not in self._said:
            self._said.add(key)
            self.log(f"warning: {warning['message']}")

    def _failure(self, culprit) -> None:
        layer = culprit.layer or culprit.variable
        message = f"non-finite: {culprit.describe()}"
        self._write([{"step": self.step, "layer": layer, "nonfinite": culprit.phase,
                      "variable": culprit.variable, "warnings": [message]}])
        self._say({"kind": "nonfinite", "layer": layer, "message": message}, self.step)
        checkpoint = self.out_dir and self.out_dir / "checkpoint.safetensors"
        if checkpoint and checkpoint.exists():
            self.log(f"the last good checkpoint is {checkpoint}")

    def _open(self) -> None:
        """Once: create ``monitor.jsonl``, empty when the run starts at epoch 0 (a resumed run
        appends). Not on :meth:`attach`, which may come before :meth:`Trainer.resume`."""
        if self._opened or self.path is None:
            return
        self._opened = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._trainer is None or self._trainer.epoch == 0:
            self.path.write_text("", encoding="utf-8")

    def _write(self, rows) -> None:
        """Append ``rows`` to the records and to ``monitor.jsonl``, which the first write of a run
        that starts at epoch 0 empties first (a resumed run appends)."""
        self.records += rows
        if self.path is not None:
            self._open()
            with self.path.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)


def read_monitor(path) -> list[dict]:
    """The records of a ``monitor.jsonl`` file (a run folder or the file), in order."""
    path = Path(path)
    if path.is_dir():
        path = path / MONITOR_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
