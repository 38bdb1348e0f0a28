"""Numerical gradient check of any op's or layer's hand-written backward."""

from __future__ import annotations

import numpy as np

from convscope.backend import asarray_like, is_torch_array
from convscope.errors import ConfigError

ROUNDING_ULPS = 32  # a central difference of rounding alone: up to 32·u·Σ|dy ⊙ f|/ε


def gradcheck(forward, backward, inputs, *, dy=None, eps=1e-6, directions=None, seed=0, **hyper):
    """Compare `backward` with central differences of the projected output ⟨dy, f(x)⟩ in float64.

    forward(*inputs, **hyper) returns the output y (or a tuple whose first element is y, as
    `batch_norm`); backward(*inputs, dy, **hyper) returns one gradient per input (a single array
    is the gradient of the first input; None marks an input with no gradient, e.g. labels).
    With E(x) = Σ dy ⊙ f(x), each gradient must equal dE/dx, which is estimated as
    (E(x + ε e_i) − E(x − ε e_i)) / 2ε for every element i, or, with `directions=k`, along k random
    unit directions v: (E(x + ε v) − E(x − ε v)) / 2ε against ⟨dE/dx, v⟩ (for large inputs),
    relative to the larger of the two and of ‖dE/dx‖/√n, a random projection's typical size.
    An input whose numerical and analytic derivatives are both within what rounding alone makes
    of a central difference, ROUNDING_ULPS · u · Σ|dy ⊙ f(x)| / ε (u = 2⁻⁵²), has error 0: a true
    derivative of 0 (a convolution's bias before batch norm) is estimated as rounding noise, which
    relative to itself would read as an error of 1.

    dy defaults to a seeded standard normal array of y's shape (1 for a scalar output), drawn, as
    the random directions are, from `seed`. Every other keyword is a hyper-parameter passed to
    both functions; `dy`, `eps`, `directions` and `seed` are gradcheck's own, so an op with a
    hyper-parameter of one of those names takes it through a closure (lambda *a: op(*a, seed=3)).
    Inputs are converted to float64 (NumPy arrays or PyTorch tensors); integer inputs are passed
    unchanged.
    Returns {input index: max relative error}, the error of one input being
    max_i |g_num,i − g_i| / max(max_i |g_num,i|, max_i |g_i|) (0 when both are within rounding).
    """
    rng = np.random.default_rng(seed)
    inputs = [_as_float64(x) for x in inputs]
    y = _output(forward(*inputs, **hyper))
    if dy is None:
        dy = 1.0 if _is_scalar(y) else asarray_like(rng.standard_normal(tuple(y.shape)), y)
    grads = backward(*inputs, dy, **hyper)
    if not isinstance(grads, tuple | list):
        grads = (grads,)
    if len(grads) > len(inputs):
        raise ConfigError(f"gradcheck: backward returned {len(grads)} gradients for {len(inputs)} inputs")

    def objective() -> float:
        return float((dy * _output(forward(*inputs, **hyper))).sum())

    rounding = ROUNDING_ULPS * np.finfo(np.float64).eps * float(abs(dy * y).sum()) / eps

    errors = {}
    for index, (x, grad) in enumerate(zip(inputs, grads)):
        if grad is None or not _is_float(x):
            continue
        grad = _numpy(grad).astype(np.float64)
        if grad.shape != tuple(x.shape):
            raise ConfigError(
                f"gradcheck: backward's gradient {index} has shape {grad.shape}, its input "
                f"{tuple(x.shape)}"
            )
        if directions is None:
            errors[index] = _relative_error(_numerical_gradient(objective, x, eps), grad, rounding)
        else:
            errors[index] = _directional_error(objective, x, grad, eps, directions, rng, rounding)
    return errors


def _numerical_gradient(objective, x, eps) -> np.ndarray:
    flat = x.reshape(-1)
    numerical = np.empty(flat.shape[0])
    for i in range(flat.shape[0]):
        original = float(flat[i])
        flat[i] = original + eps
        plus = objective()
        flat[i] = original - eps
        minus = objective()
        flat[i] = original
        numerical[i] = (plus - minus) / (2 * eps)
    return numerical.reshape(tuple(x.shape))


def _directional_error(objective, x, grad, eps, directions, rng, rounding) -> float:
    """The worst over the directions of |d_num − ⟨g, v⟩| / max(|d_num|, |⟨g, v⟩|, ‖g‖/√n): a
    random unit direction's projection is typically ‖g‖/√n (n elements), and one that happens to
    be nearly orthogonal to g is not allowed to turn rounding noise into a large relative error;
    0 for a direction where that denominator is itself within `rounding`."""
    original = x * 1
    worst = 0.0
    typical = float(np.linalg.norm(grad)) / np.sqrt(max(grad.size, 1))
    for _ in range(directions):
        v = rng.standard_normal(grad.shape)
        v /= np.linalg.norm(v)
        step = asarray_like(eps * v, x)
        x[...] = original + step
        plus = objective()
        x[...] = original - step
        minus = objective()
        x[...] = original
        numerical, analytic = (plus - minus) / (2 * eps), float(np.vdot(grad, v))
        scale = max(abs(numerical), abs(analytic), typical)
        worst = max(worst, abs(numerical - analytic) / scale if scale > rounding else 0.0)
    return float(worst)  # a Python float, as the elementwise check's: reports are saved as JSON


def _relative_error(numerical, analytic, rounding) -> float:
    scale = max(np.max(np.abs(numerical)), np.max(np.abs(analytic)))
    if scale <= rounding:  # both derivatives zero, as far as central differences can tell
        return 0.0
    return float(np.max(np.abs(numerical - analytic)) / scale)


def _output(y):
    return y[0] if isinstance(y, tuple) else y


def _is_scalar(y) -> bool:
    return not hasattr(y, "shape") or tuple(y.shape) == ()


def _is_float(x) -> bool:
    return "float" in str(getattr(x, "dtype", ""))


def _as_float64(x):
    if not _is_float(x):
        return x
    if is_torch_array(x):
        import torch

        return x.detach().to(torch.float64).clone()
    return np.array(x, dtype=np.float64)


def _numpy(a) -> np.ndarray:
    if is_torch_array(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)
