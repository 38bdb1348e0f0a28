"""Where a conv layer's time goes on one core, against PyTorch's whole layer.

For each conv row of benchmarks/ops.py, on one thread (CONVSCOPE_NUM_THREADS=1, BLAS and PyTorch on
one thread) at a batch part's size (--batch, default 64: what each of the two threads gets of a
batch of 128; 3D rows a quarter of it):

- convscope's forward + backward and PyTorch's, timed in turns (benchmarks/timing.py);
- convscope's forward + backward run for --seconds under py-spy (native frames, 200 samples a
  second: at 400 py-spy fell behind and stalled the process it sampled), and its samples
  inside the NumPy kernels sorted by the function they were in:
  - BLAS multiply-adds: OpenBLAS's sgemm kernel (and sgemv, and the beta scaling of C);
  - BLAS packing: OpenBLAS copying its operands into its own panel layout before multiplying
    (every product packs the im2col columns once more: one pass per 16–64 multiply-adds per number
    when the product is 16–64 wide);
  - column copies: im2col, the window views copied into the columns;
  - other NumPy work: products copied into y's boxes with the bias, the sums of the dE/df parts,
    zeroing, the padded copies;
  - the interpreter and the rest (OpenBLAS's driver code between its kernels among it).

The last column is the time of the BLAS multiply-adds alone over PyTorch's whole layer: what an
im2col + BLAS layer would take if nothing but its products cost anything. Where it is near 1, only
fewer or faster multiply-adds (not less overhead) can bring the layer below PyTorch's time.

    pip install py-spy          # a sampling profiler; not a dependency of convscope
    python benchmarks/where_time_goes.py [--batch 64] [--seconds 8] [--only cifar10]
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # before NumPy and convscope are imported (a test importing this keeps its own)
    os.environ["CONVSCOPE_NUM_THREADS"] = "1"
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ops as ops_rows  # noqa: E402  (benchmarks/ops.py: the layers and both contenders' steps)
from timing import interleaved_medians  # noqa: E402

CATEGORIES = ("BLAS multiply-adds", "BLAS packing", "column copies", "other NumPy work",
              "interpreter and the rest")


def category(frames: list[str]) -> str:
    """The category of one py-spy sample, a stack of frames from the outermost to the leaf."""
    leaf = frames[-1]
    if any(name in leaf for name in ("sgemm_kernel", "sgemv", "sgemm_beta")):
        return "BLAS multiply-adds"
    if "copy_" in leaf and "openblas" in leaf:  # sgemm_oncopy, _otcopy, _incopy, _itcopy
        return "BLAS packing"
    python = [f for f in frames if ".py:" in f]
    native = "libc" in leaf or "_multiarray_umath" in leaf
    if native and python and python[-1].startswith(("box_columns ", "im2col ")):
        return "column copies"
    return "other NumPy work" if native else "interpreter and the rest"  # and OpenBLAS's drivers


def shares(raw: str) -> dict:
    """{category: share} of the samples of a py-spy raw file that lie inside the NumPy kernels."""
    counts: Counter = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if any("numpy_kernels.py" in f for f in frames):
            counts[category(frames)] += int(n)
    total = sum(counts.values())
    return {name: counts[name] / total for name in CATEGORIES} if total else {}


def row_inputs(name: str, batch: int):
    """(kind, x, params, hyper) of the conv row `name` at `batch` (a quarter of it for volumes)."""
    _, kind, shape, hyper = next(row for row in ops_rows.LAYERS if row[0] == name)
    batch = batch if len(shape) == 3 else max(1, batch // ops_rows.VOLUME_BATCH_SHARE)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    w = rng.standard_normal((*hyper["kernel"], shape[-1], hyper["filters"]), dtype=np.float32) * 0.1
    return kind, x, (w, np.zeros(hyper["filters"], np.float32)), hyper


def loop(name: str, batch: int, seconds: float) -> None:
    """convscope's forward + backward of one row, again and again for `seconds` (py-spy's target)."""
    step = ops_rows.convscope_step(*row_inputs(name, batch))
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        step()


def profiled(name: str, batch: int, seconds: float) -> dict:
    """`shares` of one row's convscope step, sampled by py-spy in a child process."""
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "samples.txt"
        run = subprocess.run(["py-spy", "record", "--native", "--rate", "200", "--format", "raw",
                              "--output", str(raw), "--", sys.executable, __file__, "--loop", name,
                              "--batch", str(batch), "--seconds", str(seconds)],
                             capture_output=True, text=True)
        if run.returncode != 0 or not raw.exists():  # e.g. no permission to sample a process
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            sys.exit(f"where_time_goes: py-spy failed on {name!r}: {last}")
        return shares(raw.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0, help="py-spy's sampling time per row")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--only", default="", help="only the conv rows whose name contains this")
    parser.add_argument("--loop", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch < 1 or args.seconds <= 0 or args.repeats < 1:
        parser.error(f"--batch and --repeats must be at least 1 and --seconds above 0, got "
                     f"{args.batch}, {args.repeats} and {args.seconds}")
    if args.loop:
        return loop(args.loop, args.batch, args.seconds)
    if shutil.which("py-spy") is None:
        parser.error("py-spy is not on the PATH: pip install py-spy")
    torch.set_num_threads(1)
    rows = [name for name, kind, *_ in ops_rows.LAYERS if kind == "conv" and args.only in name]
    if not rows:
        parser.error(f"--only {args.only!r} matches no conv row of benchmarks/ops.py")
    print(f"one thread, batch {args.batch} (3D: {max(1, args.batch // ops_rows.VOLUME_BATCH_SHARE)}), "
          f"forward + backward; PyTorch {torch.__version__}, numpy {np.__version__}; convscope's time "
          f"by py-spy's samples inside the NumPy kernels ({args.seconds:.0f} s per row)")
    print("| layer | convscope ms | PyTorch ms | ratio | " + " | ".join(CATEGORIES)
          + " | multiply-adds alone / PyTorch |\n| --- |" + " ---: |" * (4 + len(CATEGORIES)))
    for name in rows:
        kind, x, params, hyper = row_inputs(name, args.batch)
        times = interleaved_medians({"ours": ops_rows.convscope_step(kind, x, params, hyper),
                                     "theirs": ops_rows.torch_step(kind, x, params, hyper)}, args.repeats)
        share = profiled(name, args.batch, args.seconds)
        ours, theirs = times["ours"], times["theirs"]
        cells = " | ".join(f"{share.get(c, 0) * 100:.0f} %" for c in CATEGORIES)
        floor = share.get("BLAS multiply-adds", 0) * ours / theirs
        print(f"| {name} | {ours * 1e3:.2f} | {theirs * 1e3:.2f} | {ours / theirs:.2f} | {cells} | "
              f"{floor:.2f} |", flush=True)


if __name__ == "__main__":
    main()
