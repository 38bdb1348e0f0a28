"""Time convscope's conv, pool and LRN (forward + backward) against PyTorch CPU on the lecture's layers.

Each row is one layer of LeNet-5 (28×28×1), the facial-keypoints net2 (96×96×1) or the CIFAR-10
quick net (32×32×3) at batch 128, or of the zoo's 3D net convnet3d (28×28×28×1 volumes of the
medical set) at a quarter of that batch: convscope's forward then its hand-written backward on NumPy
(channels-last), against PyTorch's forward then autograd backward (NCHW, its native layout) for the
same layer, in the same process, the two taking turns (benchmarks/timing.py). Max pooling's backward
is given the forward's output, as convscope's Pool layer gives it (PyTorch's keeps the forward's
argmax positions). The CIFAR-10 pools, padded by one cell after, are PyTorch's ceil_mode pools
(the same windows, no padded copy). Prints medians and the ratio convscope / PyTorch (below 1:
faster).

With --rates the conv rows also get each contender's arithmetic rate, GFLOP/s of the three
products (forward, dE/dx and dE/df, each 2·M·H'W'·D·K flops), beside the rate of one large square
float32 matrix product on all cores (NumPy's BLAS): how far from the machine's peak each runs.

With --split the conv rows also get the forward's ratio (each forward timed alone, PyTorch's
recording for autograd as in training) and the backward's (the whole less the forward): where
the time is lost.

    python benchmarks/ops.py [--batch 128] [--repeats 15] [--only lenet5] [--chain 5] [--rates]
    python benchmarks/ops.py --split --only conv
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from convscope import ops  # noqa: E402
from convscope.backend.parallel import thread_count  # noqa: E402
from timing import chained, interleaved_medians, wall_time  # noqa: E402

# name, kind, input H×W×D, hyper-parameters (filters H'×W'×K for conv)
LAYERS = [
    ("lenet5 conv1 5×5×1×6 pad 2", "conv", (28, 28, 1), {"kernel": (5, 5), "filters": 6, "pad": 2}),
    ("lenet5 pool1 2×2", "max", (28, 28, 6), {"kernel": 2}),
    ("lenet5 conv2 5×5×6×16", "conv", (14, 14, 6), {"kernel": (5, 5), "filters": 16}),
    ("lenet5 pool2 2×2", "max", (10, 10, 16), {"kernel": 2}),
    ("keypoints conv1 3×3×1×32", "conv", (96, 96, 1), {"kernel": (3, 3), "filters": 32}),
    ("keypoints pool1 2×2", "max", (94, 94, 32), {"kernel": 2}),
    ("keypoints conv2 2×2×32×64", "conv", (47, 47, 32), {"kernel": (2, 2), "filters": 64}),
    ("keypoints pool2 2×2", "max", (46, 46, 64), {"kernel": 2}),
    ("keypoints conv3 2×2×64×128", "conv", (23, 23, 64), {"kernel": (2, 2), "filters": 128}),
    ("keypoints pool3 2×2", "max", (22, 22, 128), {"kernel": 2}),
    ("cifar10 conv1 5×5×3×32 pad 2", "conv", (32, 32, 3), {"kernel": (5, 5), "filters": 32, "pad": 2}),
    ("cifar10 pool1 max 3×3 s2", "max", (32, 32, 32), {"kernel": 3, "stride": 2, "pad": (0, 1, 0, 1)}),
    ("cifar10 lrn 5 (alexnet)", "lrn", (16, 16, 32), {"size": 5}),
    ("cifar10 conv2 5×5×32×32 pad 2", "conv", (16, 16, 32), {"kernel": (5, 5), "filters": 32, "pad": 2}),
    ("cifar10 pool2 avg 3×3 s2", "avg", (16, 16, 32), {"kernel": 3, "stride": 2, "pad": (0, 1, 0, 1)}),
    ("cifar10 conv3 5×5×32×64 pad 2", "conv", (8, 8, 32), {"kernel": (5, 5), "filters": 64, "pad": 2}),
    ("3d conv1 3×3×3×1×16 pad 1", "conv", (28, 28, 28, 1), {"kernel": (3, 3, 3), "filters": 16, "pad": 1}),
    ("3d pool1 2×2×2", "max", (28, 28, 28, 16), {"kernel": 2}),
    ("3d conv2 3×3×3×16×32 pad 1", "conv", (14, 14, 14, 16), {"kernel": (3, 3, 3), "filters": 32, "pad": 1}),
    ("3d pool2 2×2×2", "max", (14, 14, 14, 32), {"kernel": 2}),
]
VOLUME_BATCH_SHARE = 4  # 3D rows run at batch / 4


def convscope_step(kind, x, params, hyper):
    """Forward then backward of one layer, with dE/dy = y (any array of y's shape)."""
    if kind == "conv":
        w, b = params
        pad = hyper.get("pad", 0)
        return lambda: ops.conv_backward(x, w, b, ops.conv(x, w, b, pad=pad), pad=pad)
    if kind == "lrn":
        return lambda: ops.lrn_backward(x, ops.lrn(x, size=hyper["size"]), size=hyper["size"])
    pool = {"kernel": hyper["kernel"], "stride": hyper.get("stride"), "pad": hyper.get("pad", 0),
            "method": kind}

    def run():
        y = ops.pool(x, **pool)
        return ops.pool_backward(x, y, **pool, y=y if kind == "max" else None)  # as the Pool layer

    return run


def forward_only(who, x, params, hyper):
    """A conv row's forward alone: convscope's (``who == "ours"``) or PyTorch's, as the steps run it."""
    if who == "ours":
        return lambda: ops.conv(x, *params, pad=hyper.get("pad", 0))
    return torch_conv(x, params, hyper)[0]


def torch_conv(x, params, hyper):
    """PyTorch's convolution of a conv row on NCHW tensors recording for autograd: (a call running
    the forward, the tensors it differentiates by)."""
    xt = torch.tensor(np.ascontiguousarray(np.moveaxis(x, -1, 1)), requires_grad=True)
    w, b = params
    wt = torch.tensor(np.ascontiguousarray(np.moveaxis(w, (-1, -2), (0, 1))), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    conv, pad = (F.conv3d if x.ndim == 5 else F.conv2d), hyper.get("pad", 0)
    return (lambda: conv(xt, wt, bt, padding=pad)), (xt, wt, bt)


def torch_step(kind, x, params, hyper):
    """The same layer in PyTorch (NCHW), forward then autograd backward with dE/dy = y; the
    gradients are returned (torch.autograd.grad), not added into .grad, since convscope's backward
    also returns new arrays (accumulating cost PyTorch up to 10 % on the pooling rows)."""
    spatial = x.ndim - 2
    if kind == "conv":
        forward, inputs = torch_conv(x, params, hyper)

        def run():
            y = forward()
            torch.autograd.grad(y, inputs, y.detach())

        return run
    xt = torch.tensor(np.ascontiguousarray(np.moveaxis(x, -1, 1)), requires_grad=True)
    if kind == "lrn":
        def run():
            y = F.local_response_norm(xt, hyper["size"], 1e-4 * hyper["size"], 0.75, 2.0)
            torch.autograd.grad(y, xt, y.detach())

        return run
    kernel, stride = hyper["kernel"], hyper.get("stride") or hyper["kernel"]
    pool = {(2, "max"): F.max_pool2d, (2, "avg"): F.avg_pool2d, (3, "max"): F.max_pool3d}[spatial, kind]
    if hyper.get("pad", 0) not in (0, (0, 1, 0, 1)):
        raise ValueError(f"no PyTorch pooling for pad={hyper['pad']} here: add it to torch_step")
    if hyper.get("pad", 0) == (0, 1, 0, 1):  # one cell after: PyTorch's ceil_mode windows, no copy
        def run():
            y = pool(xt, kernel, stride, ceil_mode=True)
            torch.autograd.grad(y, xt, y.detach())

        return run

    def run():
        y = pool(xt, kernel, stride)
        torch.autograd.grad(y, xt, y.detach())

    return run


def conv_flops(batch, shape, hyper) -> float:
    """Flops of a conv row's forward and two backward products: 3 · 2·M·(H'W'·D)·K."""
    pad, kernel = hyper.get("pad", 0), hyper["kernel"]
    positions = math.prod(n + 2 * pad - k + 1 for n, k in zip(shape[:-1], kernel))
    return 3 * 2 * batch * positions * math.prod(kernel) * shape[-1] * hyper["filters"]


def square_product_rate(size=2048) -> float:
    """GFLOP/s of one size×size float32 product with BLAS on every core (best of 6 calls)."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    with threadpool_limits(limits=thread_count(), user_api="blas"):  # convscope set it to one
        best = min(wall_time(lambda: a @ a) for _ in range(6))
    return 2 * size**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--chain", type=int, default=1,
                        help="forward + backward calls per timed call, back to back (default 1)")
    parser.add_argument("--rates", action="store_true",
                        help="add GFLOP/s columns for the conv rows and the square-product peak")
    parser.add_argument("--split", action="store_true",
                        help="add each conv row's forward ratio and backward ratio (the forward "
                        "timed alone, the backward as the whole less it)")
    parser.add_argument("--only", default="", help="time only the rows whose name contains this "
                        "(e.g. lenet5, 'conv2', 3d)")
    args = parser.parse_args()
    rows = [row for row in LAYERS if args.only in row[0]]
    if not rows:
        parser.error(f"--only {args.only!r} matches no row; the rows are: "
                     + ", ".join(name for name, *_ in LAYERS))
    rng = np.random.default_rng(0)
    print(f"convscope ops vs PyTorch {torch.__version__} CPU ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}, {platform.processor() or platform.machine()}, batch {args.batch}, "
          f"forward + backward, median of {args.repeats}"
          + (f" calls of {args.chain} back to back" if args.chain > 1 else ""))
    if args.rates:
        print(f"one 2048×2048 float32 product, BLAS on every core: {square_product_rate():.0f} GFLOP/s")
    rates = " convscope GFLOP/s | PyTorch GFLOP/s |" if args.rates else ""
    split = " forward ratio | backward ratio |" if args.split else ""
    print(f"| layer | convscope ms | PyTorch ms | ratio |{rates}{split}\n| --- | ---: | ---: | ---: |"
          + " ---: | ---: |" * (args.rates + args.split))
    for name, kind, shape, hyper in rows:
        batch = args.batch if len(shape) == 3 else max(1, args.batch // VOLUME_BATCH_SHARE)
        x = rng.standard_normal((batch, *shape), dtype=np.float32)
        params = ()
        if kind == "conv":
            w = rng.standard_normal((*hyper["kernel"], shape[-1], hyper["filters"]), dtype=np.float32) * 0.1
            params = (w, np.zeros(hyper["filters"], np.float32))
        steps = {"ours": convscope_step(kind, x, params, hyper), "theirs": torch_step(kind, x, params, hyper)}
        if args.split and kind == "conv":
            steps |= {f"{who} forward": forward_only(who, x, params, hyper) for who in ("ours", "theirs")}
        times = interleaved_medians({name: chained(step, args.chain) for name, step in steps.items()},
                                    args.repeats)
        ours, theirs = times["ours"] / args.chain, times["theirs"] / args.chain
        label = name if batch == args.batch else f"{name} (batch {batch})"
        rates = ""
        if args.rates:
            flops = conv_flops(batch, shape, hyper) if kind == "conv" else None
            rates = (" — | — |" if flops is None
                     else f" {flops / ours / 1e9:.0f} | {flops / theirs / 1e9:.0f} |")
        split = ""
        if args.split:
            forward = [times.get(f"{who} forward") for who in ("ours", "theirs")]
            split = (" — | — |" if None in forward else
                     f" {forward[0] / forward[1]:.2f} |"
                     f" {(times['ours'] - forward[0]) / (times['theirs'] - forward[1]):.2f} |")
        print(f"| {label} | {ours * 1e3:.2f} | {theirs * 1e3:.2f} | {ours / theirs:.2f} |{rates}{split}",
              flush=True)


if __name__ == "__main__":
    main()
