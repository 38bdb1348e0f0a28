"""Timing for the benchmarks: the contenders take turns, repeat by repeat.

The 2-core development VM is shared and noisy (a table timed contender after contender moved by
up to ±30 % between runs): when each round times every contender in turn, a burst of load slows
all of them alike and the ratios hold still even when the milliseconds don't. Each turn starts
with an untimed call, so that no contender is timed on the heels of another: right after a
PyTorch call its OpenMP threads still spin for a while, and a NumPy layer timed then took up to
twice as long (LeNet-5's pool1: 2.0–2.3× PyTorch timed straight after it, 1.3–1.8× after a
pause).
"""

from __future__ import annotations

import statistics
import time


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
    `repeats` rounds in which every call runs twice in a row and the second run is timed."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()  # settles what the previous contender left running
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}
