"""Checking and normalising the hyper-parameters shared by the spatial ops.

Stride, dilation and kernel sizes are an int or one value per spatial axis; padding (and the
transposed convolution's crop) is an int, one value per spatial axis, or (before, after) for each
spatial axis in order: (P_U, P_D, P_L, P_R) in 2D, (front, back, top, bottom, left, right) in 3D.
"""

from __future__ import annotations

import functools

from convscope.errors import ConfigError, ShapeError, describe_shape

SPATIAL_AXES = {4: 2, 5: 3}  # x.ndim -> number of spatial axes (N×H×W×D, N×T×H×W×D)


def spatial_dims(op: str, x) -> int:
    """Number of spatial axes of an N×H×W×D (2) or N×T×H×W×D (3) input, or a clear error."""
    dims = SPATIAL_AXES.get(getattr(x, "ndim", -1))
    if dims is None:
        raise ShapeError(
            f"{op}: expected a 2D batch N×H×W×D (4 axes) or a 3D batch N×T×H×W×D (5 axes), "
            f"got {describe_shape(getattr(x, 'shape', ()))}; add the channel axis D=1 for gray "
            f"images (x[..., None])"
        )
    return dims


def per_axis(op: str, name: str, value, dims: int, *, minimum: int) -> tuple[int, ...]:
    """An int or a sequence of `dims` ints, each >= minimum, as a tuple of length dims."""
    values = (value,) * dims if _is_int(value) else _as_tuple(value)
    if values is None or len(values) != dims or not all(_is_int(v) for v in values):
        raise ConfigError(f"{op}: {name} must be an int or {dims} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ConfigError(f"{op}: {name} must be >= {minimum} on every axis, got {value!r}")
    return tuple(int(v) for v in values)


def padding(op: str, name: str, value, dims: int) -> tuple[tuple[int, int], ...]:
    """Padding as ((before, after), ...) per spatial axis from an int, dims ints or 2·dims ints."""
    values = (value,) if _is_int(value) else _as_tuple(value)
    if values is None or not all(_is_int(v) for v in values) or len(values) not in (1, dims, 2 * dims):
        raise ConfigError(
            f"{op}: {name} must be an int, {dims} ints (one per spatial axis) or {2 * dims} ints "
            f"(before, after for each axis), got {value!r}"
        )
    if any(v < 0 for v in values):
        raise ConfigError(f"{op}: {name} must be non-negative, got {value!r}")
    values = tuple(int(v) for v in values)
    if len(values) == 1:
        return ((values[0], values[0]),) * dims
    if len(values) == dims:
        return tuple((v, v) for v in values)
    return tuple((values[2 * a], values[2 * a + 1]) for a in range(dims))


def output_size(size: int, kernel: int, stride: int, pad: tuple[int, int], dilate: int = 1) -> int:
    """H'' = 1 + floor((H − H'_eff + P_U + P_D) / S_H), H'_eff = dilate·(H' − 1) + 1."""
    extent = dilate * (kernel - 1) + 1
    return 1 + (size - extent + pad[0] + pad[1]) // stride


def output_shape(op, in_spatial, kernel, stride, pads, dilate) -> tuple[int, ...]:
    """Output spatial sizes, or a ShapeError naming the input and kernel when one is not positive."""
    out = tuple(
        output_size(n, k, s, p, d)
        for n, k, s, p, d in zip(in_spatial, kernel, stride, pads, dilate, strict=True)
    )
    if any(o < 1 for o in out):
        raise ShapeError(
            f"{op}: the output would be empty: input {'×'.join(map(str, in_spatial))}, "
            f"kernel {'×'.join(map(str, kernel))}, stride {stride}, padding {pads}, "
            f"dilation {dilate} give H''×W'' = {'×'.join(map(str, out))}; "
            f"use a smaller kernel or stride or more padding"
        )
    return out


def check_same_shape(op: str, name: str, expected, given) -> None:
    """ShapeError unless `given` has `expected`'s shape (e.g. dy against the forward's output)."""
    if tuple(given.shape) != tuple(expected):
        raise ShapeError(
            f"{op}: {name} must have shape {describe_shape(expected)}, "
            f"got {describe_shape(given.shape)}"
        )


def _as_tuple(value) -> tuple | None:
    """A sequence as a tuple; None for a single non-int (a float stride) or anything else."""
    try:
        return tuple(value)
    except TypeError:
        return None


def _is_int(v) -> bool:
    return not isinstance(v, bool | float) and (isinstance(v, int) or hasattr(v, "__index__"))


def cached_by_shape(arrays: int):
    """Memoise a geometry check `geometry(op, *arrays, *hyper)` that reads only its first `arrays`
    arguments' shapes (None allowed) and the hyper-parameters after them.

    A training loop repeats the same checks every step: on PyTorch tensors, where the kernels run
    asynchronously, they took about a tenth of a LeNet-5 step's host time. The hyper-parameters are
    keyed by their repr, which tells 1, 1.0, True and (1, 1.0) apart, so a stride of 1.0 or True is
    checked (and refused) even after a stride of 1 passed. Failures are not cached, so a bad call
    raises every time; arguments without a shape are checked without the cache.
    """
    def decorate(geometry):
        known = {}

        @functools.wraps(geometry)
        def check(op, *args):
            try:
                shapes = tuple(None if a is None else tuple(a.shape) for a in args[:arrays])
            except AttributeError:
                return geometry(op, *args)
            key = (op, shapes, repr(args[arrays:]))
            if key not in known:
                if len(known) >= 1024:
                    known.clear()
                stand_ins = (None if s is None else _Shape(s) for s in shapes)
                known[key] = geometry(op, *stand_ins, *args[arrays:])
            return known[key]

        return check

    return decorate


class _Shape:
    """An array's stand-in in a cached geometry check: its shape and number of axes."""

    __slots__ = ("shape", "ndim")

    def __init__(self, shape: tuple[int, ...]):
        self.shape, self.ndim = shape, len(shape)
