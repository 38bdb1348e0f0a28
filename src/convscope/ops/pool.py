"""Pooling layer (max and average), 2D and 3D."""

from __future__ import annotations

from convscope.backend import kernels
from convscope.errors import ConfigError
from convscope.ops import _args

METHODS = ("max", "avg")


def pool(x, *, kernel, stride=None, pad=0, method="max"):
    """Pooling layer over H'×W' patches of each channel.

    max: y_{i,j,d} = max_{1≤h≤H', 1≤w≤W'} x_{S·i+h, S·j+w, d}   (padded cells are −∞)
    avg: y_{i,j,d} = 1/|p| Σ_{h,w} x_{S·i+h, S·j+w, d}, where |p| counts the patch's cells that lie
         inside the input: padded cells are excluded from the count (PyTorch's
         count_include_pad=False), so a border window averages only real pixels.

    x: N×H×W×D (or N×T×H×W×D); y: N×H''×W''×D, H'' = 1 + floor((H − H' + P_U + P_D) / S_H).
    kernel H'×W': int or one per spatial axis; stride S defaults to the kernel (non-overlapping);
    pad: int, one per axis, or (before, after) per axis.
    """
    geometry = _pool_geometry("pool", x, kernel, stride, pad, method)
    kernel_, stride_, pads, out = geometry
    k = kernels(x)
    run = k.max_pool if method == "max" else k.avg_pool
    return run(x, kernel_, stride_, pads, out)


def pool_backward(x, dy, *, kernel, stride=None, pad=0, method="max", y=None):
    """dE/dx of `pool` given dE/dy (N×H''×W''×D).

    max: dE/dx_{p,d} = Σ_{windows (i,j) whose first maximum (row-major in the patch) is at p}
         dE/dy_{i,j,d}   (ties go to the first maximum only, as PyTorch does)
    avg: dE/dx_{p,d} = Σ_{windows (i,j) containing p} dE/dy_{i,j,d} / |p_{i,j}|

    y (optional, beyond the contract): the forward's output pool(x, ...), which the Pool layer
    passes. Max pooling then skips finding the maxima again: on NumPy it compares x with y, on
    PyTorch tensors it takes the positions that forward found (kept with y, and used only while x
    is unchanged, else found anew).
    """
    kernel_, stride_, pads, out = _pool_geometry("pool_backward", x, kernel, stride, pad, method)
    out_shape = (x.shape[0], *out, x.shape[-1])
    _args.check_same_shape("pool_backward", "dy", out_shape, dy)
    if y is not None:
        _args.check_same_shape("pool_backward", "y", out_shape, y)
    k = kernels(x)
    if method == "avg":
        return k.avg_pool_backward(x, dy, kernel_, stride_, pads)
    return k.max_pool_backward(x, dy, kernel_, stride_, pads, y=y)


@_args.cached_by_shape(arrays=1)
def _pool_geometry(op, x, kernel, stride, pad, method):
    dims = _args.spatial_dims(op, x)
    if method not in METHODS:
        raise ConfigError(f"{op}: method must be one of {METHODS}, got {method!r}")
    kernel_ = _args.per_axis(op, "kernel", kernel, dims, minimum=1)
    stride_ = kernel_ if stride is None else _args.per_axis(op, "stride", stride, dims, minimum=1)
    pads = _args.padding(op, "pad", pad, dims)
    if any(max(p) >= k for p, k in zip(pads, kernel_)):
        raise ConfigError(
            f"{op}: padding {pad!r} must be smaller than the kernel {kernel!r} on every axis, "
            f"or some windows would hold only padding"
        )
    out = _args.output_shape(op, x.shape[1:-1], kernel_, stride_, pads, (1,) * dims)
    return kernel_, stride_, pads, out
