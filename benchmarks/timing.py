"""Timing for the benchmarks: the contenders take turns, repeat by repeat.

The 2-core development VM is shared and noisy (a table timed contender after contender moved by
up to ±30 % between runs): when each round times every contender in turn, a burst of load slows
all of them alike and the ratios hold still even when the milliseconds don't.

No contender may be timed on the heels of another: after each parallel region PyTorch's OpenMP
threads keep spinning for a few milliseconds, taking the cores from whatever runs next (LeNet-5's
pool1 in NumPy: 4.2 ms alone, 8.1 ms straight after a PyTorch call, 5.4 ms after one more untimed
call of its own). So each turn first pauses PAUSE seconds, for the spinning to stop, then makes one
untimed call, to wake the contender's own threads as a training loop keeps them awake, and times
the next.
"""

from __future__ import annotations

import statistics
import time

PAUSE = 0.01  # seconds: longer than the OpenMP threads of the previous contender spin


def chained(fn, chain: int):
    """A call running fn `chain` times back to back, as the layers of a training step follow each
    other: the timed call after each pause then measures warm threads (convscope's NumPy kernels
    hand half of each batch to a worker thread, which a pause lets fall asleep: LeNet-5's pool1,
    forward + backward, 4.9–5.3 ms timed singly, 2.5 ms in chains of 5; PyTorch 3.4–3.5 ms
    either way. Most of that was the woken worker queued on its caller's core; since the
    thirteenth session it is kept off that core and pool1 takes 2.5–3.0 ms singly)."""
    def call():
        for _ in range(chain):
            fn()

    return call


def wall_time(fn) -> float:
    """Seconds one call of fn takes, by the wall clock."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cuda_time(fn) -> float:
    """Seconds one call of fn takes on the GPU, by CUDA events."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def interleaved_medians(fns: dict, repeats: int, *, warmup: int = 2, timed=wall_time) -> dict:
    """{name: median seconds} of each call in fns, timed in turns: warm-up calls first, then
    `repeats` rounds in which every call, after a pause, runs twice in a row and the second run is
    timed."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(PAUSE)
            fn()
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}
