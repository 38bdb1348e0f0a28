"""Statistics of one array of a layer: what the monitor records per layer and per step.

Every function takes a NumPy array (or anything ``np.asarray`` accepts) or a PyTorch tensor and
returns plain Python numbers or lists, so that a record is JSON as it is. Sums over whole arrays
(norms, RMS, the NaN checks) run where a tensor is and read one number back; statistics of
distributions (moments, histograms, zero and dead fractions) are taken on the host.
"""

from __future__ import annotations

import cmath
import math

import numpy as np

from convscope.backend.devices import is_torch_array, to_numpy

SATURATION = {"Sigmoid": (0.01, 0.99), "Tanh": (-0.99, 0.99)}
"""The flat tails of the squashing activations: σ(x) ≤ 0.01 or ≥ 0.99, |tanh x| ≥ 0.99, where the
derivative σ(1 − σ) or 1 − tanh² is below 0.01 and the gradient all but stops."""


def sample(a, limit: int, rng) -> np.ndarray:
    """At most ``limit`` entries of ``a`` drawn uniformly (with replacement) by ``rng``, as a flat
    array; all of them when there are no more. Moments and histograms of a large activation are
    estimated from such a sample, so that monitoring stays cheap."""
    flat = to_numpy(a).reshape(-1)
    if flat.size <= limit:
        return flat
    return flat[rng.integers(0, flat.size, limit)]


def _float(a) -> np.ndarray:
    return to_numpy(a).astype(np.float64).reshape(-1)


def moments(a) -> tuple[float, float]:
    """(mean, standard deviation) of all entries: μ = (1/n) Σ a_i, σ = √((1/n) Σ (a_i − μ)²)."""
    a = _float(a)
    return float(a.mean()), float(a.std())


def norm(a) -> float:
    """The Frobenius norm ‖a‖ = √(Σ a_i²)."""
    return norm_of([a])


def rms(a) -> float:
    """The root mean square ‖a‖/√n: a layer's gradient on a scale that does not grow with its
    size, so that layers of different sizes compare."""
    return rms_of([a])


def norm_of(arrays) -> float:
    """‖ω‖ = √(Σ_i ω_i²) over the entries of all ``arrays`` (a layer's filters and biases)."""
    return math.sqrt(sum_of_squares(arrays))


def rms_of(arrays) -> float:
    """‖ω‖/√n over the n entries of all ``arrays``; 0 when there are none."""
    arrays = _arrays(arrays)
    n = sum(math.prod(a.shape) for a in arrays)
    return math.sqrt(sum_of_squares(arrays) / n) if n else 0.0


def _arrays(values) -> list:
    """Tensors as they are, anything else as a NumPy array."""
    return [a if is_torch_array(a) else np.asarray(a) for a in values]


def sum_of_squares(arrays) -> float:
    """Σ |a_i|² over every entry of ``arrays``, accumulated in float64 without joining or widening
    whole arrays: PyTorch tensors where they are, read back as one number (the keypoints net's fc1
    is 7.7 million weights, on a GPU); NumPy arrays a block at a time."""
    arrays = _arrays(arrays)
    tensors = [a for a in arrays if is_torch_array(a)]
    total = sum(_host_squares(a) for a in arrays if not is_torch_array(a))
    if tensors:
        import torch

        def squares(t):  # widened inside the kernel: no float64 copy of t
            wide = torch.complex128 if t.dtype.is_complex else torch.float64
            return torch.linalg.vector_norm(t, dtype=wide) ** 2

        total += _summed_on_device(tensors, squares)
    return float(total)


def _summed_on_device(tensors, per_tensor) -> float:
    """Σ over ``tensors`` of ``per_tensor(t)`` (a 0-d tensor), added on the first tensor's device
    and read back as one number: each read makes a GPU's host wait, so one per statistic."""
    import torch

    device = tensors[0].device
    return float(torch.stack([per_tensor(t).to(device) for t in tensors]).sum())


SQUARES_BLOCK = 1 << 20  # entries widened to float64 at a time


def _host_squares(a: np.ndarray) -> float:
    flat = a.reshape(-1)
    wide = np.complex128 if flat.dtype.kind == "c" else np.float64
    return sum(float(np.vdot(b, b).real) for b in
               (flat[i:i + SQUARES_BLOCK].astype(wide) for i in range(0, flat.size, SQUARES_BLOCK)))


def zero_fraction(a) -> float:
    """The fraction of entries exactly 0 (after a ReLU: the units that are off)."""
    a = to_numpy(a)
    return float(np.count_nonzero(a == 0) / a.size) if a.size else 0.0


def dead_fraction(a) -> float:
    """The fraction of channels d (the last axis) whose outputs y_{i,j,d} are 0 at every position
    for every sample of the batch. A ReLU that never fires passes no gradient, dE/dx = dE/dy ·
    [x > 0] = 0, so nothing reaches the filter d before it: a dead unit. Positions do not count
    alone: a filter is shared by every position, and one that fires somewhere still learns (a
    trained LeNet-5's conv2 has 60 % of its 10×10×16 positions at 0 on a batch of MNIST digits,
    mostly the empty margins, but 19 % of its filters dead). For fully connected outputs (N×K,
    N×1×1×K) the channels are the units."""
    a = to_numpy(a)
    if a.ndim < 2 or not a.size:
        return 0.0
    return float(np.mean(np.all(a.reshape(-1, a.shape[-1]) == 0, axis=0)))


def saturated_fraction(a, kind: str) -> float | None:
    """The fraction of outputs of a sigmoid or tanh layer in its flat tails (:data:`SATURATION`);
    None for other layer types."""
    if kind not in SATURATION:
        return None
    low, high = SATURATION[kind]
    a = to_numpy(a)
    return float(np.count_nonzero((a <= low) | (a >= high)) / a.size) if a.size else 0.0


def histogram(a, bins: int = 20) -> dict:
    """Counts of the finite entries in ``bins`` equal bins between their minimum and maximum:
    ``{"counts": [...], "edges": [...]}`` (bins + 1 edges)."""
    a = _float(a)
    a = a[np.isfinite(a)]
    if not a.size:
        return {"counts": [0] * bins, "edges": [0.0] * (bins + 1)}
    low, high = float(a.min()), float(a.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(a, bins=bins, range=(low, high))
    return {"counts": counts.tolist(), "edges": edges.tolist()}


def all_finite(a) -> bool:
    """True when no entry is NaN or ±Inf (see :func:`all_finite_together`)."""
    return all_finite_together([a])


def all_finite_together(arrays) -> bool:
    """True when no entry of any of ``arrays`` is NaN or ±Inf. Cheap first: the sum of finite
    arrays is finite unless it overflows, and only then is every entry tested. Each array is summed
    in float64, where no sum of finite float32 values overflows (a float64 sum may, which is
    expected, not a warning). PyTorch tensors are summed where they are and the sums added there:
    one number crosses to the host for all of them, not every array (the probe checks a network's
    gradients in every step; on a GPU the keypoints net's fc1 alone is 31 MB, and each read back
    makes the host wait for the GPU)."""
    floats = [a for a in arrays if _is_floating(a)]
    tensors = [a for a in floats if is_torch_array(a)]
    if tensors and not _finite_sum(tensors):
        return False
    return all(_finite_on_host(to_numpy(a)) for a in floats if not is_torch_array(a))


def _is_floating(a) -> bool:
    if is_torch_array(a):
        return a.dtype.is_floating_point or a.dtype.is_complex
    return np.asarray(a).dtype.kind in "fc"


def _finite_sum(tensors) -> bool:
    """Whether the float64 sum of every tensor's entries is finite, or, where it is not, every
    entry still is (an overflow of the sum); read back as one number."""
    import torch

    def total(t):
        return (torch.view_as_real(t) if t.dtype.is_complex else t).sum(dtype=torch.float64)

    if math.isfinite(_summed_on_device(tensors, total)):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _finite_on_host(a: np.ndarray) -> bool:
    wide = np.float64 if a.dtype.kind == "f" and a.dtype.itemsize < 8 else None
    with np.errstate(over="ignore", invalid="ignore"):
        total = complex(np.sum(a, dtype=wide))
    return cmath.isfinite(total) or bool(np.isfinite(a).all())


def update_ratio(before, after) -> float | None:
    """The update-to-weight ratio ‖Δω‖/‖ω‖ = ‖ω_after − ω_before‖/‖ω_before‖ of one SGD step (a
    healthy step is about 1e-3), over a layer's parameter arrays; None when ‖ω‖ = 0."""
    before, after = _arrays(before), _arrays(after)
    scale = norm_of(before)
    if scale <= 0:
        return None
    pairs = [(a, b) if is_torch_array(a) == is_torch_array(b) else (to_numpy(a), to_numpy(b))
             for a, b in zip(after, before, strict=True)]
    return norm_of([a - b for a, b in pairs]) / scale
