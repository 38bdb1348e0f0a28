"""Fully connected layer: a convolution with a filter as large as its input."""

from __future__ import annotations

from convscope.backend import kernels
from convscope.errors import ShapeError, describe_filters, describe_shape
from convscope.ops import _args
from convscope.ops.conv import bias_gradient


def fully_connected(x, w, b=None):
    """Fully connected layer, the lecture's convolution with H' = H, W' = W:

    y_{1,1,k} = b_k + Σ_{h=1}^{H} Σ_{w=1}^{W} Σ_{d=1}^{D} f_{h,w,d,k} · x_{h,w,d}

    x: N×H×W×D with w: H×W×D×K gives y: N×1×1×K (3D: N×T×H×W×D with T×H×W×D×K gives
    N×1×1×1×K); x: N×M with w: M×K gives y = x·w + b, N×K. b: K or None. Both forms are one
    matrix product of the flattened input (N × HWD) with the filters (HWD × K).
    """
    output = _checked_output_shape("fully_connected", x, w, b)
    return kernels(x).affine(_flat_input(x), _flat_filters(w), b).reshape(output)


def fully_connected_backward(x, w, b, dy, *, input_grad=True):
    """Derivatives of `fully_connected` given dE/dy: (dE/dx, dE/df, dE/db).

    dE/dx_{h,w,d} = Σ_k f_{h,w,d,k} · dE/dy_k,   dE/df_{h,w,d,k} = Σ_n x_{h,w,d} · dE/dy_k,
    dE/db_k = Σ_n dE/dy_k; in matrix form dx = dy·wᵀ, dw = xᵀ·dy. With input_grad=False, dE/dx
    is None (not computed).
    """
    expected = _checked_output_shape("fully_connected_backward", x, w, b)
    _args.check_same_shape("fully_connected_backward", "dy", expected, dy)
    dy_flat = dy.reshape(x.shape[0], w.shape[-1])
    k = kernels(x)
    dx = k.matrix_product(dy_flat, _flat_filters(w).T).reshape(x.shape) if input_grad else None
    dw = k.matrix_product(_flat_input(x).T, dy_flat).reshape(w.shape)
    return dx, dw, bias_gradient(dy_flat, b)


def _flat_input(x):
    """N×H×W×D (or N×M) as the N × HWD matrix."""
    return x.reshape(x.shape[0], -1)


def _flat_filters(w):
    """H×W×D×K (or M×K) as the HWD × K matrix."""
    return w.reshape(-1, w.shape[-1])


@_args.cached_by_shape(arrays=3)
def _checked_output_shape(op, x, w, b):
    """The output shape N×1×1×K (or N×K), after checking that x, w and b fit together."""
    if getattr(x, "ndim", 0) < 2 or getattr(w, "ndim", 0) < 2:
        raise ShapeError(f"{op}: x must be N×M or N×H×W×D and w M×K or H×W×D×K")
    if w.ndim == 2:
        if x.ndim != 2:
            raise ShapeError(
                f"{op}: a weight matrix {describe_filters(w.shape)} needs a flattened N×M input, "
                f"got {describe_shape(x.shape)}; flatten it first (ops.flatten) or give the "
                f"filters as H×W×D×K"
            )
        expected = (w.shape[0],)
    else:
        expected = tuple(w.shape[:-1])
    if x.ndim != w.ndim or tuple(x.shape[1:]) != expected:
        raise ShapeError(
            f"{op}: filters {describe_filters(w.shape)} need an input of shape "
            f"N×{'×'.join(map(str, expected))}, got {describe_shape(x.shape)}"
        )
    if b is not None and tuple(b.shape) != (w.shape[-1],):
        raise ShapeError(f"{op}: bias must have shape ({w.shape[-1]},), got {tuple(b.shape)}")
    return _output_shape(x, w)


def _output_shape(x, w):
    return (x.shape[0], *([1] * (x.ndim - 2)), w.shape[-1])
