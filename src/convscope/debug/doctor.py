"""``convscope doctor``: the lecture's sanity checks and loss checks before a long run.

1. initial loss: with the regularisation parameter λ = 0, an untrained classifier that spreads
   its belief evenly over C classes has the loss −ln(1/C) = ln C (a regressor that predicts 0 has
   the mean of t²);
2. regularisation: raising λ raises the objective E = loss + (λ/2) Σ c_λ ‖ω‖²;
3. overfitting: the network drives the loss of a tiny subset (20 samples) to nearly 0;
4. gradient check: the whole network's backward against central differences in float64
   (:func:`convscope.debug.gradcheck` along random directions); on failure each layer is checked
   alone, to name the one whose derivative is wrong;
5. learning-rate range test: η grows geometrically from 1e-5 to 10 over a few dozen mini-batches;
   the recommended η is a tenth of the η at which the smoothed loss was lowest.

:func:`run_doctor` returns a :class:`DoctorReport`, whose :meth:`~DoctorReport.table` is what the
command prints.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from convscope.debug.netcheck import clone, layer_gradcheck, network_gradcheck, worst
from convscope.errors import ConfigError
from convscope.nn import Network
from convscope.train import Trainer, make_optimizer
from convscope.train.trainer import evaluate, feed, task_of

DOCTOR_FILE = "doctor.json"


@dataclass
class Check:
    """One check: passed or not, the measured numbers, what was expected, what to do if not."""

    name: str
    passed: bool
    measured: str
    expected: str
    advice: str
    seconds: float = 0.0

    def __post_init__(self):
        self.passed = bool(self.passed)  # a NumPy comparison's np.bool_ would not save as JSON


@dataclass
class DoctorReport:
    """The doctor's checks of one job, and the learning rate it recommends."""

    job: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    recommended_lr: float | None = None
    run_dir: str | None = None
    lr_range: dict | None = None  # the range test's {'lr', 'loss', 'smooth'} lists, for its plot
    configured_lr: float | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def rows(self) -> list[list[str]]:
        """[number, check, result, measured, expected] per check."""
        return [[str(i), c.name, "pass" if c.passed else "FAIL", c.measured, c.expected]
                for i, c in enumerate(self.checks, 1)]

    def table(self) -> str:
        """The checks as a text table, then what to do about each failure."""
        head = ["", "check", "result", "measured", "expected"]
        rows = [head, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [f"doctor: {self.job} ({self.seconds:.1f} s)"]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines += [f"check {i} failed: {c.advice}" for i, c in enumerate(self.checks, 1)
                  if not c.passed]
        verdict = "all checks passed" if self.passed else "some checks failed"
        lines.append(f"{verdict}; recommended learning rate "
                     + (f"{self.recommended_lr:.2g}" if self.recommended_lr else "none"))
        return "\n".join(lines)

    def save(self, path) -> Path:
        """Write the report as JSON (``doctor.json`` in a run folder)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> DoctorReport:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        info["checks"] = [Check(**c) for c in info["checks"]]
        return cls(**info)


@dataclass
class Job:
    """What the checks need: the network as initialised, the training data, its transforms and
    the optimiser's settings."""

    name: str
    net: Network
    x: np.ndarray
    y: np.ndarray
    transform: object
    target_transform: object
    optimizer: dict
    batch_size: int
    rng: np.random.Generator
    run_dir: Path | None = None

    def fresh(self) -> Network:
        """A copy of the network with the same initial parameters."""
        return clone(self.net)

    def subset(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n training samples drawn at random (seeded)."""
        idx = np.sort(self.rng.choice(len(self.x), size=min(n, len(self.x)), replace=False))
        return self.x[idx], self.y[idx]

    def evaluate(self, net, x, y) -> dict:
        return evaluate(net, x, y, transform=self.transform,
                        target_transform=self.target_transform)

    def trainer(self, net, data, **kw) -> Trainer:
        return Trainer(net, kw.pop("optimizer"), data, transform=self.transform,
                       target_transform=self.target_transform, progress=False,
                       log=_silent, keep_best=False, **kw)

    def make_optimizer(self, **changes):
        return make_optimizer(**{**self.optimizer, **changes})


def _silent(*_):
    pass


def job_from_config(config=None, *, data_dir=None, device=None) -> Job:
    """The doctor's job for a run config (a dict, a YAML path, or None: the default job, LeNet-5
    on the bundled MNIST subset)."""
    from convscope.train.config import DEFAULTS, load_config
    from convscope.train.run import prepare

    if config is None:
        config = dict(DEFAULTS)
    elif not isinstance(config, dict):
        config = load_config(config)
    if data_dir is not None:
        config = {**config, "data": {**config.get("data", {}), "data_dir": str(data_dir)}}
    if device is not None:
        config = {**config, "device": device, "cuda_graph": False}
    run = prepare(config, progress=False, log=_silent)
    x, y = run.trainer.train_data
    cfg = run.config
    name = f"{cfg['model']['name']} on {cfg['data']['name']} ({len(x)} images)"
    return Job(name, run.net, x, y, run.transforms.input, run.transforms.target,
               dict(cfg["optimizer"]), cfg["batch_size"], np.random.default_rng(cfg["seed"]),
               run.out_dir)


# -- the checks ----------------------------------------------------------------------------------
def expected_initial_loss(net, y_transformed) -> tuple[float, str]:
    """ln C for a classifier with C outputs; mean t² for a regressor (predicting 0)."""
    if task_of(net) == "classification":
        c = net.shapes[net.roles["prediction"]][-1]
        return math.log(c), f"ln C = {math.log(c):.3f} (C = {c})"
    t = np.asarray(y_transformed, dtype=np.float64)
    value = float(np.nanmean(t * t))
    return value, f"mean t² = {value:.3g} (prediction 0)"


def check_initial_loss(job: Job, n=256, tolerance=0.25) -> Check:
    """1: the initial loss at λ = 0 is within ``tolerance`` (relative) of its expected value."""
    x, y = job.subset(n)
    loss = job.evaluate(job.net, x, y)["loss"]
    target = job.target_transform(y) if job.target_transform else y
    expected, text = expected_initial_loss(job.net, target)
    passed = abs(loss - expected) <= tolerance * expected
    return Check("initial loss (λ = 0)", passed, f"{loss:.3f} on N={len(x)}",
                 f"{text} ± {100 * tolerance:.0f}%",
                 "the untrained network is not guessing evenly: check the loss layer and the "
                 "labels, the input preprocessing, and scale the last layer's initial weights "
                 "down (Xavier)")


def check_regularisation(job: Job, n=256) -> Check:
    """2: E(λ) = loss + (λ/2) Σ c_λ ‖ω‖² is larger at a raised λ than at λ = 0."""
    x, y = job.subset(n)
    loss = job.evaluate(job.net, x, y)["loss"]
    lam = max(10 * job.optimizer.get("weight_decay", 0.0), 1e-3)
    params = job.net.params()
    e0 = loss + job.make_optimizer(weight_decay=0.0).penalty(params)
    e1 = loss + job.make_optimizer(weight_decay=lam).penalty(params)
    return Check("regularisation raises the loss", e1 > e0,
                 f"E = {e0:.4f} at λ = 0, {e1:.4f} at λ = {lam:g}", "E(λ) > E(0)",
                 "weight decay does not reach the objective: check the parameters' decay "
                 "factors and the optimiser's penalty")


class _StopBelow:
    """Ends a Trainer run once the epoch's training loss is below ``target``."""

    def __init__(self, target):
        self.target = target

    def on_epoch_end(self, trainer, row):
        trainer.stopped_early = trainer.stopped_early or row["train_loss"] < self.target


def check_overfit(job: Job, n=20, steps=150, target=0.05) -> Check:
    """3: full-batch training on n samples (λ = 0) reaches a loss below ``target`` (for a
    regressor: below target × its initial loss)."""
    x, y = job.subset(n)
    net = job.fresh()
    start = job.evaluate(net, x, y)["loss"]
    if task_of(net) != "classification":
        target *= start
    optimizer = job.make_optimizer(weight_decay=0.0)
    trainer = job.trainer(net, (x, y), optimizer=optimizer, epochs=steps, batch_size=n,
                          callbacks=[_StopBelow(target / 2)])
    name, expected = f"overfit {len(x)} samples", f"loss < {target:.3g}"
    try:
        trainer.fit()
    except FloatingPointError:  # the trainer stops a run whose loss turned NaN or infinite
        return Check(name, False, f"loss {start:.3f} → diverged (NaN or ∞) at step "
                     f"{trainer.epoch + 1} with η = {optimizer.lr:g}", expected,
                     f"the loss diverged at the configured η = {optimizer.lr:g} held constant: "
                     f"lower it, or, if the run relies on a warm-up of η, expect this check to "
                     f"fail at the full η and trust the warm-up instead")
    end = job.evaluate(net, x, y)
    error = f", training error {100 * end['top1err']:.0f}%" if "top1err" in end else ""
    passed = end["loss"] < target and end.get("top1err", 0) == 0
    return Check(name, passed,
                 f"loss {start:.3f} → {end['loss']:.4f} in {trainer.epoch} steps{error}", expected,
                 "the network cannot even memorise a few samples: run the gradient check, raise "
                 "the learning rate, remove dropout and regularisation, and check that the "
                 "labels belong to the inputs")


def check_gradients(job: Job, n=2, directions=4, tolerance=1e-4) -> Check:
    """4: the whole network's backward in float64, in training mode (the backward SGD runs:
    batch norm on the batch's moments, dropout with fixed masks), agrees with central
    differences; on failure each layer is checked alone and the worst one is named."""
    x, y = job.subset(n)
    batch = feed(job.net, x, y, job.transform, job.target_transform)
    errors = network_gradcheck(job.net, batch, directions=directions, train=True)
    name, error = worst(errors)
    passed = error < tolerance
    measured = f"max relative error {error:.1e} ({name}), {len(errors)} inputs"
    if not passed:
        layer, layer_error = worst(layer_gradcheck(job.net, batch, directions=directions,
                                                   train=True))
        measured += f"; worst layer {layer!r} ({layer_error:.1e})"
    return Check("gradient check (float64)", passed, measured, f"< {tolerance:g}",
                 "a backward does not match its forward: the layer named is the first suspect; "
                 "check its derivative formula against a gradcheck of its op")


RANGE_BATCH = 128  # the range test's mini-batches: with 32, one noisy batch moved its minimum


def lr_range(job: Job, steps=60, low=1e-5, high=10.0, batch_size=None, beta=0.8) -> dict:
    """Train a fresh copy for ``steps`` mini-batches with η_b = low·(high/low)^(b/steps) and
    record the loss; stop when the smoothed loss exceeds 4× its minimum or turns NaN. Returns
    {'lr': [...], 'loss': [...], 'smooth': [...]}, smooth being the bias-corrected exponential
    average s_b = (β m_{b−1} + (1−β) ℓ_b)/(1 − β^b).

    Mini-batches of RANGE_BATCH samples, fewer when the training set holds fewer than
    ``steps``·RANGE_BATCH (at least 32, as before; then fewer steps). The main job's η* over
    eight draws of the samples: 0.0013–0.0025 with batches of 128; with 32 it flipped between
    0.0011–0.002 and 0.008–0.016, a single mini-batch's spike of the loss deciding where the
    smoothed minimum fell."""
    if batch_size is None:
        batch_size = max(32, min(RANGE_BATCH, len(job.x) // steps))
    x, y = job.subset(steps * batch_size)
    record = {"lr": [], "loss": [], "smooth": []}

    class Recorder:
        def on_batch_end(self, trainer, info):
            m = beta * (record.get("m", 0.0)) + (1 - beta) * info["loss"]
            record["m"] = m
            smooth = m / (1 - beta ** (len(record["lr"]) + 1))
            record["lr"].append(trainer.optimizer.lr)
            record["loss"].append(info["loss"])
            record["smooth"].append(smooth)
            if smooth > 4 * min(record["smooth"]):
                raise _Diverged

    trainer = job.trainer(job.fresh(), (x, y), optimizer=job.make_optimizer(),
                          epochs=1, batch_size=batch_size, callbacks=[Recorder()],
                          lr_schedule=lambda t: low * (high / low) ** t)
    try:
        trainer.fit()
    except (_Diverged, FloatingPointError):
        pass
    record.pop("m", None)
    return record


class _Diverged(Exception):
    pass


def recommend_lr(record) -> tuple[float | None, int | None]:
    """(η*, index of the lowest smoothed loss): η* is a tenth of the η at that minimum, None when
    the loss never fell below 90% of its start."""
    smooth = record["smooth"]
    if len(smooth) < 3:
        return None, None
    best = int(np.argmin(smooth))
    if smooth[best] >= 0.9 * smooth[0]:
        return None, best
    return record["lr"][best] / 10, best


def check_lr_range(job: Job, steps=60) -> tuple[Check, float | None, dict]:
    """5: the range test finds a learning rate at which the loss falls; (check, η*, the test's
    record)."""
    record = lr_range(job, steps=steps)
    lr, best = recommend_lr(record)
    configured = job.optimizer.get("lr")
    if lr is None:
        measured = f"the loss never fell (from {record['smooth'][0]:.3f}) over {len(record['lr'])} steps"
    else:
        measured = (f"η* = {lr:.2g}: loss {record['smooth'][0]:.3f} → {record['smooth'][best]:.3f} "
                    f"lowest at η = {record['lr'][best]:.2g}; configured η = {configured:g}")
    check = Check("learning-rate range test", lr is not None, measured,
                  "a fall of the loss; η* = η at the lowest loss / 10",
                  "no learning rate lowers the loss: fix the checks above first (gradient "
                  "check, overfitting), then look at the data and the labels")
    return check, lr, record


def run_doctor(config=None, *, data_dir=None, log=print, steps=60, device=None) -> DoctorReport:
    """Run the five checks on ``config`` (None: the default job) and return the report; each
    check is logged as it finishes."""
    start = time.perf_counter()
    try:
        job = job_from_config(config, data_dir=data_dir, device=device)
    except FileNotFoundError as e:
        raise ConfigError(f"doctor: {e}") from None
    report = DoctorReport(job.name, run_dir=str(job.run_dir),
                          configured_lr=job.optimizer.get("lr"))
    checks = [check_initial_loss, check_regularisation, check_overfit, check_gradients,
              lambda j: check_lr_range(j, steps=steps)]
    for fn in checks:
        t = time.perf_counter()
        check = fn(job)
        if isinstance(check, tuple):
            check, report.recommended_lr, report.lr_range = check
        check.seconds = time.perf_counter() - t
        report.checks.append(check)
        log(f"  {'pass' if check.passed else 'FAIL'}  {check.name}: {check.measured}")
    report.seconds = time.perf_counter() - start
    return report
