"""A parameter ω of a layer: its value, its gradient dE/dω, and its own learning-rate and
weight-decay factors (MatConvNet's ``learningRate`` and ``weightDecay`` per parameter)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Parameter:
    """One array of a layer.

    - ``lr_factor``: this parameter's step is η·lr_factor.
    - ``decay_factor``: its weight decay is λ·decay_factor (0 for biases by default, as MatConvNet).
    - ``frozen``: the optimiser leaves it unchanged (fine-tuning keeps the first layers fixed).
    - ``trainable``: False for state that is not learned by SGD (batch-norm running moments).
    """

    value: np.ndarray
    lr_factor: float = 1.0
    decay_factor: float = 1.0
    frozen: bool = False
    trainable: bool = True
    grad: np.ndarray | None = None

    @property
    def learnable(self) -> bool:
        """True when the optimiser updates this parameter."""
        return self.trainable and not self.frozen

    def factors(self) -> dict:
        """The JSON-able per-parameter settings (saved with the architecture)."""
        return {"lr_factor": self.lr_factor, "decay_factor": self.decay_factor,
                "frozen": self.frozen}

    def set_factors(self, lr_factor=None, decay_factor=None, frozen=None) -> None:
        """Update the settings given (None leaves one unchanged)."""
        if lr_factor is not None:
            self.lr_factor = float(lr_factor)
        if decay_factor is not None:
            self.decay_factor = float(decay_factor)
        if frozen is not None:
            self.frozen = bool(frozen)
