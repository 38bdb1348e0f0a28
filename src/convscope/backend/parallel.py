"""Splitting a batch across the CPU's cores, with BLAS on one thread per part.

NumPy's element-wise operations and copies run on one core, and OpenBLAS's own threads scale poorly
on the narrow products of a ConvNet's first layers and collapse when another process shares the
cores (a LeNet-5 conv2 step took 214 ms with two BLAS threads next to a busy process, 12 ms with
one). The NumPy kernels therefore cut the batch N into one contiguous part per core and run each
part on its own thread (NumPy releases the GIL in copies, ufuncs and BLAS), with BLAS limited to
one thread meanwhile. Samples are independent in convolution and pooling, so the parts' results
are slices of the whole; a filter gradient is the sum of the parts'.

CONVSCOPE_NUM_THREADS sets the number of parts (default: the number of cores; 1 turns it off).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

MIN_PART = 8  # samples per part, below which splitting costs more than it saves


def thread_count() -> int:
    """Parts a batch is split into: CONVSCOPE_NUM_THREADS, else the cores this process may use."""
    value = os.environ.get("CONVSCOPE_NUM_THREADS")
    if value:
        return max(1, int(value))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_POOL: ThreadPoolExecutor | None = None
_BLAS = None


def _executor() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(thread_count(), thread_name_prefix="convscope")
    return _POOL


def _one_blas_thread():
    """A context in which BLAS runs on one thread (threadpoolctl), or None without threadpoolctl."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        except ImportError:
            _BLAS = False
    return _BLAS.limit(limits=1, user_api="blas") if _BLAS else None


def batch_parts(n: int) -> list[slice]:
    """Contiguous slices of range(n), one per thread, none smaller than MIN_PART samples."""
    parts = max(1, min(thread_count(), n // MIN_PART))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def over_batch(fn, n: int) -> list:
    """[fn(part) for part in batch_parts(n)], the parts run concurrently with one BLAS thread each."""
    parts = batch_parts(n)
    if len(parts) == 1:
        return [fn(parts[0])]
    limit = _one_blas_thread()
    if limit is None:
        return list(_executor().map(fn, parts))
    with limit:
        return list(_executor().map(fn, parts))
