"""Reshaping and joining layers for DAGs: flatten, concatenation along channels, and sums."""

from __future__ import annotations

import math

from convscope.backend import array_namespace
from convscope.errors import ShapeError, describe_shape
from convscope.ops._args import check_same_shape


def flatten(x):
    """y_{n,m} = x_{n,i,j,d} with m = (i·W + j)·D + d: N×H×W×D → N×(HWD), channels fastest."""
    return x.reshape(x.shape[0], -1)


def flatten_backward(x, dy):
    """dE/dx = dE/dy reshaped to x's shape N×H×W×D."""
    check_same_shape("flatten_backward", "dy", (x.shape[0], _features(x)), dy)
    return dy.reshape(x.shape)


def concat(xs, axis=-1):
    """y = [x¹, x², …] stacked along `axis` (default the channels: D = D¹ + D² + …)."""
    _check_join("concat", xs, axis)
    return array_namespace(*xs).concat(list(xs), axis=axis)


def concat_backward(xs, dy, axis=-1):
    """dE/dxˢ = the slice of dE/dy that xˢ filled along `axis`; returns a list, one per input."""
    _check_join("concat_backward", xs, axis)
    joined = list(xs[0].shape)
    joined[axis] = sum(x.shape[axis] for x in xs)
    check_same_shape("concat_backward", "dy", joined, dy)
    grads, start = [], 0
    for x in xs:
        index = [slice(None)] * dy.ndim
        index[axis] = slice(start, start + x.shape[axis])
        grads.append(dy[tuple(index)])
        start += x.shape[axis]
    return grads


def add(xs):
    """y = Σ_s xˢ (inputs of identical shape, e.g. a residual connection)."""
    _check_sum("add", xs)
    y = xs[0]
    for x in xs[1:]:
        y = y + x
    return y


def add_backward(xs, dy):
    """dE/dxˢ = dE/dy for every input; returns a list holding dy once per input (not copies)."""
    _check_sum("add_backward", xs)
    check_same_shape("add_backward", "dy", xs[0].shape, dy)
    return [dy] * len(xs)


def _features(x):
    return math.prod(x.shape[1:])


def _check_join(op, xs, axis):
    if not xs:
        raise ShapeError(f"{op}: needs at least one input")
    ndim = xs[0].ndim
    axis = axis % ndim
    for x in xs[1:]:
        others = [s for a, s in enumerate(x.shape) if a != axis]
        first = [s for a, s in enumerate(xs[0].shape) if a != axis]
        if x.ndim != ndim or others != first:
            raise ShapeError(
                f"{op}: inputs must agree on every axis but {axis}: "
                f"{describe_shape(xs[0].shape)} vs {describe_shape(x.shape)}"
            )


def _check_sum(op, xs):
    if not xs:
        raise ShapeError(f"{op}: needs at least one input")
    for x in xs[1:]:
        if tuple(x.shape) != tuple(xs[0].shape):
            raise ShapeError(
                f"{op}: inputs must have identical shapes, got {describe_shape(xs[0].shape)} "
                f"and {describe_shape(x.shape)}"
            )
