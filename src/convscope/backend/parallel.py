"""Splitting a batch across the CPU's cores, with BLAS on one thread.

NumPy's element-wise operations and copies run on one core, and OpenBLAS's own threads scale poorly
on the narrow products of a ConvNet's first layers and collapse when another process shares the
cores (a LeNet-5 conv2 step took 214 ms with two BLAS threads next to a busy process, 12 ms with
one). The NumPy kernels therefore cut the batch N into one contiguous part per core and run each
part on its own thread (NumPy releases the GIL in copies, ufuncs and BLAS), and convscope sets
BLAS to one thread for the process when it is imported (a CIFAR-10 quick-net step: 390 ms with
two BLAS threads switched to one around each kernel, 225 ms with one BLAS thread throughout and
the batch in two parts, 300 ms with one thread and no parts). Samples are independent in
convolution and pooling, so the parts' results are slices of the whole; a filter gradient is the
sum of the parts'.

CONVSCOPE_NUM_THREADS sets the number of parts (default: the number of cores; 1 turns splitting
off and leaves BLAS alone). A BLAS thread count the user set (OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS, MKL_NUM_THREADS) is respected.
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
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _executor() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(thread_count(), thread_name_prefix="convscope")
    return _POOL


def one_blas_thread() -> bool:
    """Limit BLAS to one thread for the whole process (threadpoolctl), unless batches are not split
    (CONVSCOPE_NUM_THREADS=1), the user chose a BLAS thread count, or threadpoolctl is missing."""
    if thread_count() == 1 or any(v in os.environ for v in BLAS_THREAD_VARIABLES):
        return False
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    import numpy  # noqa: F401  (loads NumPy's BLAS, which threadpoolctl only sees once loaded)

    threadpool_limits(limits=1, user_api="blas")
    return True


def batch_parts(n: int) -> list[slice]:
    """Contiguous slices of range(n), one per thread, none smaller than MIN_PART samples."""
    parts = max(1, min(thread_count(), n // MIN_PART))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def over_batch(fn, n: int) -> list:
    """[fn(part) for part in batch_parts(n)], the parts run concurrently."""
    parts = batch_parts(n)
    if len(parts) == 1:
        return [fn(parts[0])]
    return list(_executor().map(fn, parts))
