"""Dropout and DropConnect: regularisers that zero random units or weights while training."""

from __future__ import annotations

import numpy as np

from convscope.backend import asarray_like
from convscope.errors import ConfigError, ShapeError, describe_filters, describe_shape
from convscope.ops.fully_connected import fully_connected, fully_connected_backward


def dropout(x, *, rate, rng):
    """Dropout layer (inverted): y = x ⊙ m / (1 − rate), m_{i,j,d} ~ Bernoulli(1 − rate).

    Each unit is dropped (set to zero) with probability `rate` while training; kept units are
    scaled by 1/(1 − rate) so that E[y] = x and test time is the identity. rng: a
    numpy.random.Generator (the mask is drawn on the CPU from it, so runs are reproducible on
    every backend). Returns (y, mask), mask a boolean array of x's shape (True = kept).
    """
    _check_rate("dropout", rate)
    mask = asarray_like(_keep_mask(rng, x.shape, rate), x)
    return x * mask / (1 - rate), mask


def dropout_backward(dy, mask, *, rate):
    """dE/dx = dE/dy ⊙ m / (1 − rate)."""
    _check_rate("dropout_backward", rate)
    if tuple(mask.shape) != tuple(dy.shape):
        raise ShapeError(
            f"dropout_backward: mask {describe_shape(mask.shape)} and dy "
            f"{describe_shape(dy.shape)} must have the same shape"
        )
    return dy * mask / (1 - rate)


def dropconnect(x, w, b, *, rate, rng):
    """DropConnect on a fully connected layer: y = x · (f ⊙ M) / (1 − rate) + b.

    Each weight f_{m,k} (or f_{h,w,d,k}) is dropped with probability `rate`; M ~ Bernoulli(1 − rate)
    has w's shape and is shared by the mini-batch; kept weights are scaled by 1/(1 − rate) so test
    time uses f itself. Shapes as `fully_connected`. Returns (y, mask).
    """
    _check_rate("dropconnect", rate)
    mask = asarray_like(_keep_mask(rng, w.shape, rate), w)
    return fully_connected(x, w * mask / (1 - rate), b), mask


def dropconnect_backward(x, w, b, dy, mask, *, rate):
    """(dE/dx, dE/df, dE/db): dx = dy · (f ⊙ M)ᵀ / (1 − rate), df = (xᵀ · dy) ⊙ M / (1 − rate)."""
    _check_rate("dropconnect_backward", rate)
    if tuple(mask.shape) != tuple(w.shape):
        raise ShapeError(
            f"dropconnect_backward: mask {describe_filters(mask.shape)} must have the weights' "
            f"shape {describe_filters(w.shape)}"
        )
    dx, dw, db = fully_connected_backward(x, w * mask / (1 - rate), b, dy)
    return dx, dw * mask / (1 - rate), db  # bool mask first: the gradients keep w's dtype


def _keep_mask(rng, shape, rate):
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(
            f"dropout: rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng.random(tuple(shape), dtype=np.float32) >= rate


def _check_rate(op, rate):
    if not 0 <= rate < 1:
        raise ConfigError(f"{op}: rate is the probability of dropping, in [0, 1); got {rate!r}")
