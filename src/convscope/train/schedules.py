"""Schedules for the learning rate η and the momentum α, as functions of training time t.

t counts epochs and runs continuously (t = epoch + batch/batches_per_epoch), so smooth schedules
move every iteration and stepped ones (``step``, ``list``) change at epoch boundaries. Each
schedule is a small callable ``value = s(t)``; ``start`` (η0 or α0) defaults to the optimiser's
value when a config leaves it out.
"""

from __future__ import annotations

import abc
import math

from convscope.errors import ConfigError


class Schedule(abc.ABC):
    """Base class: ``s(t)`` gives the value at time t (epochs)."""

    def __init__(self, start):
        self.start = float(start)

    @abc.abstractmethod
    def __call__(self, t: float) -> float:
        """The value at time t (in epochs, fractional within an epoch)."""


class Constant(Schedule):
    """η_t = η0."""

    def __call__(self, t):
        return self.start


class Step(Schedule):
    """η_t = η0 · γ^⌊t / step⌋ (divide by 1/γ every ``step`` epochs)."""

    def __init__(self, start, step=10, gamma=0.1):
        super().__init__(start)
        self.step, self.gamma = int(step), float(gamma)
        if self.step < 1:
            raise ConfigError(f"step schedule: step must be >= 1 epoch, got {step}")

    def __call__(self, t):
        return self.start * self.gamma ** math.floor(t / self.step)


class InverseTime(Schedule):
    """The lecture's 1/t decay η = η0' / (t + κ), written with η0' = η0·κ so that η at t = 0 is η0:

        η_t = η0 · κ / (t + κ).
    """

    def __init__(self, start, kappa=10.0):
        super().__init__(start)
        self.kappa = float(kappa)
        if self.kappa <= 0:
            raise ConfigError(f"inverse schedule: kappa must be > 0, got {kappa}")

    def __call__(self, t):
        return self.start * self.kappa / (t + self.kappa)


class Exponential(Schedule):
    """The lecture's exponential decay η_t = η0 · e^(−κ t)."""

    def __init__(self, start, kappa=0.1):
        super().__init__(start)
        self.kappa = float(kappa)

    def __call__(self, t):
        return self.start * math.exp(-self.kappa * t)


class Linear(Schedule):
    """A linear ramp from ``start`` at epoch 0 to ``end`` at the last epoch (``epochs`` − 1), then
    constant: the facial-keypoints net4/net5 (η 0.03 → 0.0001, α 0.9 → 0.999), as
    ``numpy.linspace(start, end, epochs)`` evaluated between epochs too."""

    def __init__(self, start, end, epochs):
        super().__init__(start)
        self.end, self.epochs = float(end), int(epochs)

    def __call__(self, t):
        frac = min(t / max(self.epochs - 1, 1), 1.0)
        return self.start + (self.end - self.start) * frac


class Cosine(Schedule):
    """Cosine annealing: η_t = η_end + (η0 − η_end) · (1 + cos(π t / T)) / 2 for t ≤ T epochs."""

    def __init__(self, start, epochs, end=0.0):
        super().__init__(start)
        self.end, self.epochs = float(end), int(epochs)

    def __call__(self, t):
        frac = min(t / max(self.epochs, 1), 1.0)
        return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * frac))


class PerEpoch(Schedule):
    """A value per epoch, η_t = values[⌊t⌋] (the last one repeats after the list ends)."""

    def __init__(self, values):
        values = [float(v) for v in values]
        if not values:
            raise ConfigError("list schedule: values must not be empty")
        super().__init__(values[0])
        self.values = values

    def __call__(self, t):
        return self.values[min(int(math.floor(t)), len(self.values) - 1)]


class WarmUp(Schedule):
    """Warm-up: a linear ramp from ``start_factor``·s(W) to s(W) over the first W epochs, then
    the wrapped schedule s."""

    def __init__(self, inner: Schedule, epochs=1.0, start_factor=0.1):
        super().__init__(inner(0.0))
        self.inner, self.warm, self.start_factor = inner, float(epochs), float(start_factor)

    def __call__(self, t):
        if t >= self.warm:
            return self.inner(t)
        frac = t / self.warm
        return (self.start_factor + (1 - self.start_factor) * frac) * self.inner(self.warm)


SCHEDULES = {"constant": Constant, "step": Step, "inverse": InverseTime,
             "exponential": Exponential, "linear": Linear, "cosine": Cosine, "list": PerEpoch}


def make_schedule(spec, *, start, epochs) -> Schedule:
    """A schedule from its config: ``None`` (constant), a list of per-epoch values, a type name
    (``"cosine"``) or a mapping ``{"type": ..., options...}``; ``warmup: W`` (epochs) in the
    mapping wraps it in :class:`WarmUp`.

    ``start`` (the optimiser's η or α) and ``epochs`` (the run's length) fill in what is left out.
    """
    if spec is None:
        return Constant(start)
    if isinstance(spec, (list, tuple)):
        return PerEpoch(spec)
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"schedule: expected a mapping or a list, got {spec!r}")
    options = dict(spec)
    kind = options.pop("type", "constant")
    warmup = options.pop("warmup", None)
    if kind not in SCHEDULES:
        raise ConfigError(f"schedule: unknown type {kind!r}; known: {', '.join(SCHEDULES)}")
    cls = SCHEDULES[kind]
    if cls is not PerEpoch:
        options.setdefault("start", start)
    if cls in (Linear, Cosine):
        options.setdefault("epochs", epochs)
    try:
        schedule = cls(**options)
        return WarmUp(schedule, epochs=warmup) if warmup else schedule
    except (TypeError, ValueError) as e:  # a missing option, or one that is not a number
        raise ConfigError(f"schedule {kind!r}: {e}") from None
