"""Output layers: softmax, the cross-entropy (softmax log) loss and the ℓ2 loss."""

from __future__ import annotations

import math

from convscope.backend import array_namespace, can_inspect_values, kernels
from convscope.errors import ConfigError, ShapeError, describe_shape
from convscope.ops._args import check_same_shape


def softmax(x):
    """p_{i,j,c} = exp(x_{i,j,c}) / Σ_{d=1}^{C} exp(x_{i,j,d}) along the last axis (stable: max shifted)."""
    xp = array_namespace(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def softmax_log_loss(x, labels, *, weights=None):
    """Cross-entropy loss on logits, the lecture's classification loss:

    ℓ_{i,j} = −x_{i,j,c} + log Σ_{d=1}^{C} exp{x_{i,j,d}},   c the label at (i, j)
    E = Σ ω_c ℓ / Σ ω_c over every labelled position (the N samples of an N×C input, or the
    N·H·W pixels of an N×H×W×C input), ω_c the weight of the position's class (1 without
    `weights`): the mean over N, weighted as PyTorch's cross_entropy.

    x: N×C or N×H×W×C logits; labels: integer class indices of shape N or N×H×W, in [0, C);
    weights: C per-class weights or None. Returns a 0-d array.
    """
    _check_classes("softmax_log_loss", x, labels, weights)
    return kernels(x).softmax_log_loss(x, labels, weights)


def softmax_log_loss_backward(x, labels, dy=1.0, *, weights=None):
    """dE/dx_{i,j,d} = dE/dy · ω_c (p_{i,j,d} − [d = c]) / Σ ω_c, p = softmax(x).

    Like ReLU, it runs each backend's fastest way: on PyTorch tensors, PyTorch's fused
    cross-entropy kernels (two kernels forward and three backward where the element-wise form
    launches about ten each on a GPU)."""
    _check_classes("softmax_log_loss_backward", x, labels, weights)
    _check_scalar("softmax_log_loss_backward", dy)
    return kernels(x).softmax_log_loss_backward(x, labels, dy, weights)


def l2_loss(x, target, *, mask=None):
    """ℓ2 (mean squared error) loss for regression, e.g. keypoints:

    E = (1/|M|) Σ_{m ∈ M} (x_m − t_m)²,   M the positions where `mask` is True (all without one)

    x, target: the same shape (N×K, N×K×2, N×H×W×D…). mask: a boolean array of that shape that
    drops missing targets; NaN targets (missing keypoints) need one: mask = ~isnan(target).
    """
    diff, count = _residuals("l2_loss", x, target, mask)
    return array_namespace(diff).sum(diff * diff) / count


def l2_loss_backward(x, target, dy=1.0, *, mask=None):
    """dE/dx_m = dE/dy · 2 (x_m − t_m) / |M| for m ∈ M, 0 for masked positions."""
    diff, count = _residuals("l2_loss_backward", x, target, mask)
    _check_scalar("l2_loss_backward", dy)
    return diff * (2 * dy) / count


def _check_scalar(op, dy):
    """A loss is one number, so its dE/dy is one number too (a float, or an array or tensor of one
    element)."""
    if math.prod(getattr(dy, "shape", ())) != 1:
        raise ShapeError(f"{op}: dy, the weight of this one-number loss in E, must be a scalar "
                         f"(a number or a one-element array); got shape {describe_shape(dy.shape)}")


def _check_classes(op, x, labels, weights) -> None:
    """ShapeError or ConfigError unless x holds C class scores per position, labels one integer
    class index in [0, C) per position (values read on the host only) and weights C entries."""
    if getattr(x, "ndim", 0) < 2:
        raise ShapeError(f"{op}: logits must be N×C or N×H×W×C, got {describe_shape(x.shape)}")
    if tuple(labels.shape) != tuple(x.shape[:-1]):
        raise ShapeError(
            f"{op}: labels must have shape {describe_shape(x.shape[:-1])} (one class index per "
            f"position of the {describe_shape(x.shape)} logits), got {describe_shape(labels.shape)}"
        )
    if "int" not in str(labels.dtype):
        raise ConfigError(f"{op}: labels must be integer class indices, got dtype {labels.dtype}")
    classes = x.shape[-1]
    unchecked = not labels.shape or not can_inspect_values(labels)
    if not unchecked and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ConfigError(
            f"{op}: labels must lie in [0, {classes}) for C = {classes} classes, "
            f"got values from {int(labels.min())} to {int(labels.max())}"
        )
    if weights is None:
        return
    if kernels(weights) is not kernels(x):
        raise ConfigError(f"{op}: weights must be the same kind of array as the logits "
                          f"({type(x).__name__}), got {type(weights).__name__}")
    if tuple(weights.shape) != (classes,):
        raise ShapeError(f"{op}: weights must have one entry per class, shape ({classes},)")


def _residuals(op, x, target, mask):
    """x − t with masked positions zeroed, and the number of positions |M| that count."""
    xp = array_namespace(x)
    if tuple(x.shape) != tuple(target.shape):
        raise ShapeError(
            f"{op}: prediction {describe_shape(x.shape)} and target {describe_shape(target.shape)} "
            f"must have the same shape"
        )
    if mask is None:
        if can_inspect_values(target) and bool(xp.any(xp.isnan(target))):
            raise ConfigError(
                f"{op}: the target holds NaN (missing values); pass mask=~isnan(target) to drop them"
            )
        return x - target, math.prod(x.shape)
    check_same_shape(op, "mask", x.shape, mask)
    count = xp.sum(mask, dtype=x.dtype)  # an array: reading it would stop a CUDA-graph capture
    if can_inspect_values(mask) and float(count) == 0:
        raise ConfigError(f"{op}: the mask drops every target; nothing is left to fit")
    # x − t is read only where the mask keeps t: a dropped target's NaN never reaches the loss
    return xp.where(mask, x - target, 0.0), count
