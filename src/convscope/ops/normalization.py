"""Normalisation layers: local response normalisation (LRN) and batch normalisation."""

from __future__ import annotations

import math

from convscope.backend import array_namespace, kernels
from convscope.errors import ConfigError, ShapeError, describe_shape
from convscope.ops import _args


def lrn(x, *, size=5, kappa=2.0, alpha=1e-4, beta=0.75):
    """Local response normalisation across channels at each spatial location:

    y_{i,j,d} = x_{i,j,d} · (κ + α Σ_{d' ∈ G(d)} x²_{i,j,d'})^{−β}

    G(d) = [d − ⌊(size−1)/2⌋, d + ⌈(size−1)/2⌉] ∩ [1, D], `size` channels centred on d (for even
    sizes MatConvNet's window, one more channel after). α is not divided by the window size
    (MatConvNet's vl_nnnormalize; PyTorch's local_response_norm uses α/size). Defaults are
    AlexNet's constants. x, y: N×H×W×D or N×T×H×W×D (channels last). On NumPy arrays the window
    sums are one product with a band matrix, so an infinite or NaN x_{i,j,d'} makes every output
    at (i, j) NaN, not only those whose window holds d'.
    """
    _check_lrn("lrn", x, size)
    return x * kernels(x).negative_power(_lrn_scale(x, size, kappa, alpha), beta)


def lrn_backward(x, dy, *, size=5, kappa=2.0, alpha=1e-4, beta=0.75):
    """Derivative of `lrn` given dE/dy:

    dE/dx_{i,j,c} = dE/dy_{i,j,c} s_c^{−β} − 2αβ x_{i,j,c} Σ_{d: c ∈ G(d)} dE/dy_{i,j,d} x_{i,j,d} s_d^{−β−1},
    with s_d = κ + α Σ_{d' ∈ G(d)} x²_{i,j,d'}; c ∈ G(d) ⟺ d lies in the mirrored window of c.
    """
    _check_lrn("lrn_backward", x, size)
    _args.check_same_shape("lrn_backward", "dy", x.shape, dy)
    k = kernels(x)
    s = _lrn_scale(x, size, kappa, alpha)
    s_beta = k.negative_power(s, beta)
    cross = k.channel_window_sum(dy * x * s_beta / s, *reversed(_lrn_window(size)))
    return dy * s_beta - (2 * alpha * beta) * x * cross


def _lrn_window(size):
    """(channels before, channels after) of the window G(d)."""
    return (size - 1) // 2, size // 2


def _lrn_scale(x, size, kappa, alpha):
    """s_d = κ + α Σ_{d' ∈ G(d)} x²_{d'}."""
    return kappa + alpha * kernels(x).channel_window_sum(x * x, *_lrn_window(size))


def _check_lrn(op, x, size):
    """x is a channels-last N×H×W×D or N×T×H×W×D batch and the window a positive int, or an error
    naming `op` (lrn or lrn_backward)."""
    _args.spatial_dims(op, x)
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"{op}: size must be a positive int (channels in the window), got {size!r}")


def batch_norm(x, gamma, beta, *, eps=1e-5, moments=None):
    """Batch normalisation per channel d (the last axis), over the batch and all spatial positions:

    μ_d = mean_{n,i,j} x_{i,j,d},  σ²_d = mean_{n,i,j} (x_{i,j,d} − μ_d)²   (biased, the batch's)
    x̂_{i,j,d} = (x_{i,j,d} − μ_d) / √(σ²_d + ε),   y_{i,j,d} = γ_d x̂_{i,j,d} + β_d

    Returns (y, (μ, σ²)). With `moments=(μ, σ²)` given (test mode, e.g. running averages) those
    are used instead of the batch's. gamma, beta: D each.
    """
    mean, var = _moments("batch_norm", x, gamma, beta, moments)
    return gamma * ((x - mean) / _sqrt(var + eps)) + beta, (mean, var)


def batch_norm_backward(x, gamma, beta, dy, *, eps=1e-5, moments=None):
    """Derivatives of `batch_norm` given dE/dy: (dE/dx, dE/dγ, dE/dβ).

    dE/dβ_d = Σ dE/dy_{·,d},   dE/dγ_d = Σ dE/dy_{·,d} x̂_{·,d}
    training (batch moments): dE/dx = γ/√(σ²+ε) · (dE/dy − mean(dE/dy) − x̂ · mean(dE/dy · x̂)),
    the means over n, i, j of channel d; with fixed `moments`: dE/dx = γ/√(σ²+ε) · dE/dy.
    """
    mean, var = _moments("batch_norm_backward", x, gamma, beta, moments)
    _args.check_same_shape("batch_norm_backward", "dy", x.shape, dy)
    xp = array_namespace(x, dy)
    inv_std = 1 / _sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    axes = tuple(range(x.ndim - 1))
    dbeta = xp.sum(dy, axis=axes)
    dgamma = xp.sum(dy * x_hat, axis=axes)
    if moments is not None:
        return dy * (gamma * inv_std), dgamma, dbeta
    count = math.prod(x.shape[:-1])
    dx = (gamma * inv_std) * (dy - dbeta / count - x_hat * (dgamma / count))
    return dx, dgamma, dbeta


def _moments(op, x, gamma, beta, moments):
    if getattr(x, "ndim", 0) < 2:
        raise ShapeError(f"{op}: expected channels-last input N×…×D, got {describe_shape(x.shape)}")
    channels = x.shape[-1]
    for name, p in (("gamma", gamma), ("beta", beta)):
        if tuple(p.shape) != (channels,):
            raise ShapeError(
                f"{op}: {name} must have shape ({channels},) for D = {channels} "
                f"(x {describe_shape(x.shape)}), got {tuple(p.shape)}"
            )
    if moments is not None:
        mean, var = moments
        return mean, var
    xp = array_namespace(x)
    axes = tuple(range(x.ndim - 1))
    mean = xp.mean(x, axis=axes)
    centred = x - mean
    return mean, xp.mean(centred * centred, axis=axes)


def _sqrt(a):
    return array_namespace(a).sqrt(a)
