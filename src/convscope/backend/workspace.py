"""Scratch buffers that are allocated once and reused by the NumPy kernels.

First touches of fresh pages are expensive (DESIGN.md: a 139 MB array cost 130–400 ms fresh against
50 ms reused), so the im2col columns, padded copies and column gradients live in per-thread buffers
that grow to the largest size asked for and are handed out as views. A buffer is only valid until
the next request of the same name on the same thread; kernels never return one to a caller.
"""

from __future__ import annotations

import math
import threading

import numpy as np

_local = threading.local()


def buffer(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape` backed by the reusable buffer `name`."""
    dtype = np.dtype(dtype)
    pool = _local.__dict__.setdefault("pool", {})
    size = math.prod(shape)
    flat = pool.get((name, dtype))
    if flat is None or flat.size < size:
        flat = np.empty(size, dtype=dtype)
        pool[(name, dtype)] = flat
    return flat[:size].reshape(shape)


def zeros(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """`buffer` filled with zeros."""
    out = buffer(name, shape, dtype)
    out.fill(0)
    return out


def release() -> None:
    """Drop this thread's buffers (e.g. after training, to give the memory back)."""
    _local.__dict__.pop("pool", None)
