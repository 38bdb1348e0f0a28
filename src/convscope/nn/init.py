"""Initialisers: where the weights ω start before SGD moves them.

Every initialiser is ``f(shape, rng, dtype) -> array``. For a filter bank f ∈ R^{H'×W'×D×K}
(stored ``w[h, w, d, k]``) or a fully connected matrix w ∈ R^{M×K}, the fan-in is the number of
inputs one output unit sees, n_in = H'·W'·D (or M), and the fan-out n_out = H'·W'·K (or K).
A fully connected layer on an H×W×D input stores its weight as H×W×D×K, the lecture's convolution
with a filter as large as its input, and gets a convolution's fans: n_out = H·W·K, as MatConvNet
counts it (PyTorch's nn.Linear, seeing an M×K matrix, counts K: Xavier's weights come out smaller
here, e.g. LeNet-5's fc1 std 0.024 against 0.062; the zoo's networks were tuned with these).
Biases start at zero unless a layer is told otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from convscope.errors import ConfigError


def fans(shape) -> tuple[int, int]:
    """(n_in, n_out) of a weight of shape (..., D, K): n_in = D·∏ kernel, n_out = K·∏ kernel."""
    if len(shape) < 2:
        raise ConfigError(f"initialiser: weights need at least 2 axes, got shape {tuple(shape)}")
    kernel = math.prod(shape[:-2])
    return kernel * shape[-2], kernel * shape[-1]


def _normal(shape, rng, dtype, sigma):
    return (sigma * rng.standard_normal(shape)).astype(dtype)


def _uniform(shape, rng, dtype, a):
    return rng.uniform(-a, a, size=shape).astype(dtype)


def gaussian(shape, rng, dtype=np.float32, *, sigma=0.01):
    """ω ~ N(0, σ²): the classical fixed-σ Gaussian (MatConvNet's examples use σ = 0.01)."""
    return _normal(shape, rng, dtype, sigma)


def uniform(shape, rng, dtype=np.float32, *, scale=0.05):
    """ω ~ U(−a, a) with a = ``scale``."""
    return _uniform(shape, rng, dtype, scale)


def xavier(shape, rng, dtype=np.float32):
    """Xavier/Glorot (uniform): ω ~ U(−a, a), a = √(6 / (n_in + n_out)), so Var ω = 2/(n_in+n_out)."""
    n_in, n_out = fans(shape)
    return _uniform(shape, rng, dtype, math.sqrt(6.0 / (n_in + n_out)))


def he(shape, rng, dtype=np.float32):
    """He/Kaiming (normal): ω ~ N(0, 2/n_in), keeping the variance through ReLU layers."""
    return _normal(shape, rng, dtype, math.sqrt(2.0 / fans(shape)[0]))


def lecun(shape, rng, dtype=np.float32):
    """LeCun (normal): ω ~ N(0, 1/n_in), for tanh/sigmoid/SELU-like units."""
    return _normal(shape, rng, dtype, math.sqrt(1.0 / fans(shape)[0]))


def zeros(shape, rng=None, dtype=np.float32):
    """ω = 0 (the default for biases and batch-norm β)."""
    return np.zeros(shape, dtype=dtype)


def ones(shape, rng=None, dtype=np.float32):
    """ω = 1 (batch-norm γ)."""
    return np.ones(shape, dtype=dtype)


INITIALIZERS = {
    "gaussian": gaussian,
    "uniform": uniform,
    "xavier": xavier,
    "glorot": xavier,
    "he": he,
    "kaiming": he,
    "lecun": lecun,
    "zeros": zeros,
    "ones": ones,
}


def initialize(spec, shape, rng, dtype=np.float32):
    """Draw an array of ``shape`` by ``spec``: a name (``"he"``) or ``{"type": "gaussian", "sigma": σ}``.

    >>> initialize({"type": "gaussian", "sigma": 0.1}, (5, 5, 1, 20), np.random.default_rng(0)).shape
    (5, 5, 1, 20)
    """
    options = dict(spec) if isinstance(spec, dict) else {"type": spec}
    name = options.pop("type", None)
    if name not in INITIALIZERS:
        known = ", ".join(sorted(INITIALIZERS))
        raise ConfigError(f"unknown initialiser {name!r}; known: {known}")
    try:
        return INITIALIZERS[name](tuple(shape), rng, dtype, **options)
    except TypeError as e:
        raise ConfigError(f"initialiser {name!r}: bad options {options}: {e}") from None
