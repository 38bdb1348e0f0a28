"""Checks on a CUDA GPU before its timings are trusted (run by benchmarks/gpu_run.sh):

1. training steps of the zoo's networks on CUDA tensors give the NumPy weights (float64);
2. the whole-step CUDA graph (CudaGraphStep) gives the eager step's weights (float32, TF32 off).

The op-by-op comparison of CUDA tensors with NumPy is tests/ops/test_torch_backend.py run with
CONVSCOPE_TEST_DEVICE=cuda. Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from convscope import zoo
from convscope.train.optim import Nesterov
from convscope.train.step import CudaGraphStep, train_step

SHAPES = {"lenet5": (28, 28, 1), "keypoints_net2": (96, 96, 1), "cifar10_quick": (32, 32, 3)}


def batches(name, n, count, rng):
    x = rng.standard_normal((count, n, *SHAPES[name]))
    if name == "keypoints_net2":
        y = rng.standard_normal((count, n, 15, 2)) * 0.1
    else:
        y = rng.integers(0, 10, (count, n))
    return x, y


def relative_difference(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k])) / max(np.max(np.abs(a[k])), 1e-30)) for k in a)


def weights_after(name, device, data, dtype, *, graph=False):
    net = zoo.create(name, dtype=dtype, seed=7).to(device)
    optimizer = Nesterov(1e-4 if name == "keypoints_net2" else 0.01, 0.9, weight_decay=5e-4)
    step = CudaGraphStep(net, optimizer, warmup=2) if graph else None
    for x, y in zip(*data):
        x = x.astype(dtype)
        y = y.astype(dtype) if y.dtype.kind == "f" else y
        if device != "numpy":
            x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        if step is not None:
            step(x, y)
        else:
            train_step(net, optimizer, {"input": x, "label": y})
    if device != "numpy":
        torch.cuda.synchronize()
    return net.state_dict()


def main() -> int:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rng = np.random.default_rng(0)
    failed = False
    print(f"device: {torch.cuda.get_device_name()}, PyTorch {torch.__version__}, "
          f"cuDNN {torch.backends.cudnn.version()}")
    for name in SHAPES:
        data = batches(name, 16, 6, rng)
        on_numpy = weights_after(name, "numpy", data, np.float64)
        on_cuda = weights_after(name, "cuda", data, np.float64)
        error = relative_difference(on_numpy, on_cuda)
        ok = error < 1e-9
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: 6 steps float64, CUDA vs NumPy weights, "
              f"max relative difference {error:.2e} (< 1e-9)")
        eager = weights_after(name, "cuda", data, np.float32)
        graphed = weights_after(name, "cuda", data, np.float32, graph=True)
        error = relative_difference(eager, graphed)
        ok = error < 1e-4
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: 6 steps float32, CUDA graph vs eager weights, "
              f"max relative difference {error:.2e} (< 1e-4)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
