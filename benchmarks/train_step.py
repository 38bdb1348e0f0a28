"""One full training step (forward, loss, backward, SGD-Nesterov update) of the zoo's lenet5 (MNIST,
28×28×1), keypoints_net2 (96×96×1) and cifar10_quick (32×32×3), timed in one run for:

- convscope-numpy: convscope's ops on NumPy arrays (CPU only);
- convscope-torch: the same network and hand-written backward on PyTorch tensors (PyTorch's kernels,
  no autograd), eager, and on a GPU also captured whole as a CUDA graph (convscope's
  ``--cuda-graph`` training; the graph columns appear by themselves with ``--device cuda``);
- pytorch: the same network as an nn.Module with autograd and torch.optim (benchmarks/
  torch_reference.py), eager, and on a GPU also as PyTorch's own whole-step CUDA graph (each call
  copying the batch into the graph's input tensors, as convscope's graph step and a training loop do).

Prints the median time per step and the ratio to PyTorch eager (below 1: faster than PyTorch); the
contenders take turns, repeat by repeat (benchmarks/timing.py).
CUDA timings use CUDA events. With --epoch, also one whole epoch of LeNet-5 on MNIST (60,000 images,
read with convscope.data from --data-dir; on the CPU convscope-numpy too, unless --no-numpy).
A row whose contenders would not fit in the free memory (the host's, or the GPU's on CUDA) is
printed as skipped, with the estimate: the keypoints net at batch 1024 needs more than 24 GB.

    python benchmarks/train_step.py                       # CPU: numpy, torch, pytorch
    python benchmarks/train_step.py --device cuda --epoch --data-dir local_data
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch_reference  # noqa: E402
from convscope import zoo  # noqa: E402
from convscope.train.optim import Nesterov  # noqa: E402
from convscope.train.step import CudaGraphStep, train_step  # noqa: E402
from timing import chained, cuda_time, interleaved_medians, wall_time  # noqa: E402

SHAPES = {"lenet5": (28, 28, 1), "keypoints_net2": (96, 96, 1), "cifar10_quick": (32, 32, 3)}
LR = {"lenet5": 1e-3, "keypoints_net2": 1e-5, "cifar10_quick": 1e-3}  # finite on random data


def batch(name, n, rng):
    """Random inputs N×H×W×D and targets (10 class labels, or 15×2 keypoints) for model `name`."""
    x = rng.standard_normal((n, *SHAPES[name]), dtype=np.float32)
    y = rng.standard_normal((n, 15, 2)).astype(np.float32) if name == "keypoints_net2" else (
        rng.integers(0, 10, n))
    return x, y


PEAK_PER_VALUE = 3  # a contender's peak memory per byte of one step's forward values (keypoints
# net, batch 128, peak resident growth: convscope-numpy 2.9, convscope-torch 2.7, PyTorch 1.8)


def forward_bytes(name) -> int:
    """Bytes of the forward values (activations) of one sample in zoo model `name`."""
    x, y = batch(name, 1, np.random.default_rng(0))
    values = zoo.create(name).forward({"input": x, "label": y}, train=True, rng=np.random.default_rng(0))
    return sum(getattr(v, "nbytes", 0) for v in values.values())


def free_bytes(device) -> int | None:
    """Memory free for the contenders: the GPU's on CUDA, else the host's MemAvailable (None
    where /proc/meminfo is missing)."""
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        with open("/proc/meminfo") as meminfo:
            kib = next(line.split()[1] for line in meminfo if line.startswith("MemAvailable:"))
        return int(kib) * 1024
    except (OSError, StopIteration):
        return None


def timed_by(device):
    """How one call is timed on `device`: CUDA events on a GPU, the wall clock on the CPU."""
    return cuda_time if device.startswith("cuda") else wall_time


def synchronised(fn, device, chain=1):
    """`chain` calls of fn back to back (timing.chained), then a wait for the GPU on CUDA (warm-up
    calls must finish before timing starts)."""
    calls = chained(fn, chain)

    def call():
        calls()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return call


def convscope_step(name, device, x, y, *, graph=False):
    """A call running one convscope training step of zoo model `name` on `device`."""
    net = zoo.create(name).to(device)
    optimizer = Nesterov(LR[name], 0.9)
    if device != "numpy":
        x, y = torch.from_numpy(x).to(device), torch.from_numpy(np.asarray(y)).to(device)
    if graph:
        step = CudaGraphStep(net, optimizer)
        return lambda: step(x, y)
    feed = {"input": x, "label": y}
    return lambda: train_step(net, optimizer, feed)


def pytorch_step(name, device, x, y, *, graph=False):
    """A call running one PyTorch (autograd + torch.optim) training step of the same network."""
    model, step = torch_reference.make(name, device, lr=LR[name])
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
    if device != "cpu":
        xt = xt.contiguous(memory_format=torch.channels_last)
    yt = torch.from_numpy(np.asarray(y)).to(device)
    if not graph:
        return lambda: step(xt, yt)
    static_x, static_y = xt.clone(), yt.clone()
    replay = captured(step, static_x, static_y)

    def call():
        # as convscope's CudaGraphStep and a training loop do: the batch into the graph's inputs
        static_x.copy_(xt)
        static_y.copy_(yt)
        replay()

    return call


def captured(step, x, y):
    """PyTorch's own whole-step CUDA graph (the recipe of its CUDA-graphs notes): three warm-up
    steps on a side stream, then one step recorded on the static tensors x, y. Returns the call
    that replays it."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step(x, y)
    torch.cuda.current_stream().wait_stream(stream)
    cuda_graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(cuda_graph):
        step(x, y)
    # The graph reads and writes x, y, the weights, their gradients and the optimiser's state by
    # address; the replay call keeps them alive. (Once freed, their memory went to the other
    # contenders' tensors, and the replays read garbage labels or faulted: an assert in nll_loss,
    # an illegal memory access.)
    kept = (step, x, y)

    def replay():
        cuda_graph.replay()
        return kept

    return replay


def run_table(args) -> None:
    rng = np.random.default_rng(0)
    cuda = args.device.startswith("cuda")
    columns = ["convscope-torch", "pytorch"]
    if cuda:
        columns = ["convscope-torch", "convscope-torch graph", "pytorch", "pytorch graph"]
    elif not args.no_numpy:
        columns = ["convscope-numpy", *columns]
    print(f"| model | batch | {' | '.join(c + ' ms' for c in columns)} | "
          f"{' | '.join(c + ' / pytorch' for c in columns if c != 'pytorch')} |")
    print("| --- | ---: |" + " ---: |" * (2 * len(columns) - 1))
    for name in args.models:
        for n in args.batches:
            need, free = len(columns) * PEAK_PER_VALUE * forward_bytes(name) * n, free_bytes(args.device)
            if free is not None and need > free:  # all contenders live at once, taking turns
                print(f"| {name} | {n} | skipped: the {len(columns)} contenders need about "
                      f"{need / 1e9:.0f} GB, {free / 1e9:.0f} GB is free |", flush=True)
                continue
            x, y = batch(name, n, rng)
            steps = {}
            for column in columns:
                graph = column.endswith("graph")
                if column.startswith("pytorch"):
                    fn = pytorch_step(name, args.device, x, y, graph=graph)
                else:
                    device = "numpy" if column == "convscope-numpy" else args.device
                    fn = convscope_step(name, device, x, y, graph=graph)
                steps[column] = synchronised(fn, args.device, args.chain)
            times = interleaved_medians(steps, args.repeats, warmup=3, timed=timed_by(args.device))
            times = {c: t / args.chain for c, t in times.items()}
            base = times["pytorch"]
            ms = " | ".join(f"{times[c] * 1e3:.3f}" for c in columns)
            ratios = " | ".join(f"{times[c] / base:.2f}" for c in columns if c != "pytorch")
            print(f"| {name} | {n} | {ms} | {ratios} |", flush=True)
            del steps  # before the next row measures the free memory


def run_epoch(args) -> None:
    """One epoch of LeNet-5 on the 60,000 MNIST training images at batch 128 (the last partial
    batch dropped), data already on the device, for convscope and PyTorch."""
    from convscope.data import load

    ds = load("mnist", "train", data_dir=args.data_dir)
    x = ((ds.x.astype(np.float32) - 33.318) / 78.567)
    y = ds.y
    n = len(x) // 128 * 128
    steps = [(x[s:s + 128], y[s:s + 128]) for s in range(0, n, 128)]
    epochs = {}
    variants = [("convscope-torch", args.device, False), ("pytorch", args.device, False)]
    if args.device.startswith("cuda"):
        variants += [("convscope-torch graph", args.device, True),
                     ("pytorch graph", args.device, True)]
    elif not args.no_numpy:
        variants.insert(0, ("convscope-numpy", "numpy", False))
    for label, device, graph in variants:
        epoch = _pytorch_epoch if label.startswith("pytorch") else _convscope_epoch
        epochs[label] = synchronised(epoch(device, steps, graph), args.device)
    # one warm-up epoch each (graphs are captured in it), then --epoch-repeats epochs in turns
    results = interleaved_medians(epochs, args.epoch_repeats, warmup=1, timed=timed_by(args.device))
    print(f"| LeNet-5, one MNIST epoch ({len(steps)} steps of 128), median of {args.epoch_repeats} | " +
          " | ".join(f"{k} {v:.2f} s" for k, v in results.items()) + " |")


def _convscope_epoch(device, steps, graph):
    net, optimizer = zoo.lenet5().to(device), Nesterov(LR["lenet5"], 0.9)
    data = steps if device == "numpy" else [
        (torch.from_numpy(x).to(device), torch.from_numpy(np.asarray(y)).to(device))
        for x, y in steps]
    if graph:
        step = CudaGraphStep(net, optimizer)
        return lambda: [step(x, y) for x, y in data]
    return lambda: [train_step(net, optimizer, {"input": x, "label": y}) for x, y in data]


def _pytorch_epoch(device, steps, graph):
    model, step = torch_reference.make("lenet5", device, lr=LR["lenet5"])
    data = [(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device),
             torch.from_numpy(np.asarray(y)).to(device)) for x, y in steps]
    if not graph:
        return lambda: [step(x, y) for x, y in data]
    static_x, static_y = data[0][0].clone(), data[0][1].clone()
    replay = captured(step, static_x, static_y)

    def epoch():
        for x, y in data:
            static_x.copy_(x)
            static_y.copy_(y)
            replay()

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--models", nargs="+", default=list(SHAPES))
    parser.add_argument("--batches", nargs="+", type=int, default=[128, 1024])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--chain", type=int, default=1,
                        help="steps per timed call, back to back as in a training loop (on a GPU "
                             "the host then launches a step while the last one runs); the table "
                             "gives the time per step")
    parser.add_argument("--no-numpy", action="store_true", help="skip convscope-numpy")
    parser.add_argument("--epoch", action="store_true", help="also time one MNIST epoch")
    parser.add_argument("--data-dir", default=None, help="folder holding mnist.npz (for --epoch)")
    parser.add_argument("--epoch-repeats", type=int, default=3,
                        help="timed epochs per contender, in turns (default 3; the median is shown)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True for every contender (cuDNN "
                             "times its algorithms once per shape and keeps the fastest)")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    card = torch.cuda.get_device_name() if args.device.startswith("cuda") else (
        platform.processor() or platform.machine())
    extra = f", cuDNN {torch.backends.cudnn.version()}" if args.device.startswith("cuda") else (
        f", {torch.get_num_threads()} threads")
    extra += ", cudnn.benchmark on" if args.cudnn_benchmark else ""
    print(f"train step, SGD-Nesterov; {card}; PyTorch {torch.__version__}{extra}; "
          f"numpy {np.__version__}; median of {args.repeats}"
          + (f" calls of {args.chain} steps each" if args.chain > 1 else ""))
    run_table(args)
    if args.epoch:
        run_epoch(args)


if __name__ == "__main__":
    main()
