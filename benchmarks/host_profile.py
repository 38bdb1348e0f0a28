"""Where the host's time goes in one eager training step (the lecture's networks are small enough
that on a GPU the eager step waits on Python and kernel launches, not on arithmetic).

For convscope-torch and for PyTorch (nn.Module, autograd, torch.optim) on `--device`:
- host ms per step: the wall time of launching `--steps` steps back to back, before the final
  synchronisation (on a GPU, the time the host needs when the GPU keeps up);
- kernels per step: the device kernels (on the CPU, the outermost ATen operators, views
  included) that torch.profiler sees;
- with --kernels, the device kernels of one step by name, with their count and time, for both;
- with --cprofile, the convscope step's Python functions by own time (cProfile);
- with --replay, where convscope-torch's host time goes: the PyTorch calls one step makes are
  recorded (a TorchFunctionMode) and replayed bare, all of them, then only those that make a new
  tensor (not a view or the input itself). Step − replay is convscope's own Python; replay −
  replay of the new-tensor calls is the views' cost (permutes and reshapes between layouts).

    python benchmarks/host_profile.py --device cuda --models lenet5 cifar10_quick
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_step import batch, convscope_step, pytorch_step  # noqa: E402


def synchronise(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def host_ms(fn, device, steps):
    """Median over 5 rounds of the per-step wall time of `steps` back-to-back calls, before the
    round's closing synchronisation."""
    rounds = []
    for _ in range(5):
        synchronise(device)
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        rounds.append((time.perf_counter() - start) / steps)
        synchronise(device)
    return 1e3 * float(np.median(rounds))


def kernel_names(fn, device, steps=5) -> dict:
    """{name: (count per step, µs per step)} of the device kernels (CPU: the ATen operators not
    called by another, autograd's included) that torch.profiler records in `steps` steps; the time
    is the kernels' own on the device (on the CPU, the operators' wall time)."""
    cuda = device.startswith("cuda")
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        synchronise(device)
    if cuda:
        events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                  and not getattr(e, "is_user_annotation", False)]  # torch.optim's step range
    else:
        events = [e for e in prof.events() if e.name.startswith("aten::") and not (
            e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::"))]
    counts, micros = Counter(), Counter()
    for e in events:
        counts[e.name] += 1 / steps
        micros[e.name] += e.time_range.elapsed_us() / steps
    return {name: (counts[name], micros[name]) for name, _ in micros.most_common()}


def python_profile(fn, steps=50, top=30):
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(steps):
        fn()
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


class _Recorder(TorchFunctionMode):
    """Records (function, args, kwargs, makes a new tensor) for every PyTorch call returning
    tensors (shape and stride queries are left out: they are not dispatched operators)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tensors = [t for t in (out if isinstance(out, (tuple, list)) else (out,))
                   if isinstance(t, torch.Tensor)]
        if tensors:
            inputs = {a.untyped_storage().data_ptr() for a in _flat(args, kwargs)}
            new = any(t.untyped_storage().data_ptr() not in inputs for t in tensors)
            in_place = getattr(func, "__name__", "").endswith("_")
            self.calls.append((func, args, kwargs, new or in_place))
        return out


def _flat(args, kwargs):
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (tuple, list)):
            yield from (t for t in a if isinstance(t, torch.Tensor))


def replay_rows(fn, device, steps):
    """(calls per step, new-tensor calls, host ms replaying all, host ms replaying new-tensor
    calls) for one recorded step of fn."""
    recorder = _Recorder()
    with recorder:
        fn()
    synchronise(device)
    every = [(f, a, k) for f, a, k, _ in recorder.calls]
    making = [(f, a, k) for f, a, k, new in recorder.calls if new]

    def replay(calls):
        def run():
            for f, a, k in calls:
                f(*a, **k)
        return run

    return (len(every), len(making), host_ms(replay(every), device, steps),
            host_ms(replay(making), device, steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["lenet5", "cifar10_quick"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--kernels", action="store_true", help="list each step's kernels by name")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--replay", action="store_true",
                        help="split convscope-torch's host time: its Python, views, PyTorch calls")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"host time per eager step, batch {args.batch}; {args.device}; PyTorch {torch.__version__}")
    print("| model | contender | host ms | kernels |")
    print("| --- | --- | ---: | ---: |")
    for name in args.models:
        x, y = batch(name, args.batch, rng)
        fns = {"convscope-torch": convscope_step(name, args.device, x, y),
               "pytorch": pytorch_step(name, args.device, x, y)}
        listed = {}
        for label, fn in fns.items():
            for _ in range(5):
                fn()
            ms = host_ms(fn, args.device, args.steps)
            listed[label] = kernel_names(fn, args.device)
            count = sum(c for c, _ in listed[label].values())
            print(f"| {name} | {label} | {ms:.3f} | {count:.0f} |", flush=True)
        if args.kernels:
            for label, kernels in listed.items():
                total = sum(t for _, t in kernels.values())
                print(f"{name}, {label}: kernels per step by name, {total:.0f} µs in all")
                print("  count      µs  name")
                for kernel, (count, micros) in kernels.items():
                    print(f"  {count:5.1f} {micros:7.1f}  {kernel[:100]}")
        if args.cprofile:
            print(python_profile(fns["convscope-torch"]), flush=True)
        if args.replay:
            fn = fns["convscope-torch"]
            step = host_ms(fn, args.device, args.steps)
            calls, making, every_ms, making_ms = replay_rows(fn, args.device, args.steps)
            print(f"{name}, convscope-torch step {step:.3f} ms: {calls} PyTorch calls, {making} "
                  f"making new tensors; replayed bare {every_ms:.3f} ms, new-tensor calls only "
                  f"{making_ms:.3f} ms; convscope's Python {step - every_ms:.3f} ms, views "
                  f"{every_ms - making_ms:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
