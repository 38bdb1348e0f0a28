"""Splitting a batch across the CPU's cores, with BLAS on one thread.

NumPy's element-wise operations and copies run on one core, and OpenBLAS's own threads scale poorly
on the narrow products of a ConvNet's first layers and collapse when another process shares the
cores (a LeNet-5 conv2 step took 214 ms with two BLAS threads next to a busy process, 12 ms with
one). The NumPy kernels therefore cut the batch N into one contiguous part per core and run each
part on its own thread, the first on the caller's (NumPy releases the GIL in copies, ufuncs and
BLAS), and convscope sets
BLAS to one thread for the process when it is imported (a CIFAR-10 quick-net step: 390 ms with
two BLAS threads switched to one around each kernel, 225 ms with one BLAS thread throughout and
the batch in two parts, 300 ms with one thread and no parts). Samples are independent in
convolution and pooling, so the parts' results are slices of the whole; a filter gradient is the
sum of the parts'.

A worker woken while its caller runs may be queued on the caller's own core and start only when
the caller waits for it (the virtual machines measured here did that after every pause: LeNet-5's
pool1, forward + backward, ran its two halves one after the other). Each split call therefore
first forbids the workers the core the caller is on (`keep_off_callers_cpu`), which holds only
until the caller moves: with it, pool1 called alone, after a pause as in benchmarks/ops.py, went
from 1.25–1.49× PyTorch's time to 0.83–0.91×; a whole training step, whose kernels follow one
another with the workers awake, is unchanged.

CONVSCOPE_NUM_THREADS sets the number of parts (default: the number of cores; 1 turns splitting
off and leaves BLAS alone). A BLAS thread count the user set (OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS, MKL_NUM_THREADS) is respected.
"""

from __future__ import annotations

import contextvars
import ctypes
import functools
import os
import queue
import threading

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


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class _Worker:
    """A daemon thread running the tasks put in its inbox, each reporting to its own outbox.

    A task handed over through C-implemented queues costs about 13 µs there and back on this
    machine, against 33 µs for a ThreadPoolExecutor future; a split kernel call paid about 100 µs
    with both parts on a pool (LeNet-5 makes some twenty such calls per training step)."""

    def __init__(self, number: int):
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=f"convscope-{number}", daemon=True)
        self.thread.start()
        self.placement: tuple | None = None  # (the caller's core, workers) it was placed for

    def _run(self) -> None:
        _local.in_part = True
        while True:
            fn, part, index, outbox = self.inbox.get()
            try:
                outbox.put((index, True, fn(part)))
            except BaseException as error:  # handed to the caller, which raises it
                outbox.put((index, False, error))


_WORKERS: list[_Worker] = []
_WORKERS_LOCK = threading.Lock()
_local = threading.local()


def _workers(count: int) -> list[_Worker]:
    """At least `count` workers, started on first need."""
    with _WORKERS_LOCK:
        while len(_WORKERS) < count:
            _WORKERS.append(_Worker(len(_WORKERS) + 1))
        return _WORKERS[:count]


def _forget_workers() -> None:
    """In a forked child: the parent's workers did not come along; start new ones when needed."""
    global _WORKERS_LOCK
    _WORKERS.clear()
    _WORKERS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


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
    """[fn(part) for part in batch_parts(n)], the parts run concurrently: the first on the calling
    thread, the others on workers, each in a copy of the caller's context (NumPy's error state
    included: a worker's overflow warns, raises or stays silent as the caller's would). Inside a
    part (a kernel calling another) the parts run in turn."""
    parts = batch_parts(n)
    if len(parts) == 1 or getattr(_local, "in_part", False):
        return [fn(part) for part in parts]
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    workers = _workers(len(parts) - 1)
    keep_off_callers_cpu(workers)
    for index, (worker, part) in enumerate(zip(workers, parts[1:]), start=1):
        in_callers_context = contextvars.copy_context().run  # e.g. np.errstate, a context variable
        worker.inbox.put((functools.partial(in_callers_context, fn), part, index, outbox))
    results, failure = [None] * len(parts), None
    try:
        _local.in_part = True
        results[0] = fn(parts[0])
    except BaseException as error:
        failure = error
    finally:
        _local.in_part = False
        for _ in parts[1:]:  # every part finishes before its outputs are read or reused
            index, ok, value = outbox.get()
            results[index] = value
            failure = failure or (None if ok else value)
    if failure is not None:
        raise failure
    return results


def _cpu_getter():
    """glibc's sched_getcpu (the core the calling thread runs on now), or None without one."""
    try:
        return ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError, TypeError):  # not glibc, not Linux
        return None


_SCHED_GETCPU = _cpu_getter()


def keep_off_callers_cpu(workers: list[_Worker]) -> None:
    """Let the workers run on every core of this process but the caller's current one (one
    affinity change per worker each time the caller moves), so that a woken worker starts on
    another core at once; more workers than other cores may use every core. Best effort: nothing
    where the system has no such calls or refuses."""
    if _SCHED_GETCPU is None or not hasattr(os, "sched_setaffinity"):
        return
    placement = (_SCHED_GETCPU(), len(workers))
    moved = [worker for worker in workers if worker.placement != placement]
    if not moved or placement[0] < 0:
        return
    allowed = os.sched_getaffinity(0)
    others = allowed - {placement[0]}
    cores = others if len(others) >= len(workers) else allowed
    for worker in moved:
        worker.placement = placement
        try:
            os.sched_setaffinity(worker.thread.native_id, cores)
        except OSError:  # e.g. a container that forbids it: the workers go where the system puts them
            pass
