"""Padded convolutions box by box (backend/boxes.py) against the padded im2col, in turns.

For each layer, times the forward and the backward (dE/dx, dE/df, dE/db) of convscope's NumPy conv
at batch 128 (32 for 3D volumes) twice in each round: once with every padded convolution forced
box by box, once with none, and prints the medians, the ratios (boxes / padded, below 1: boxes
faster), the share of the products that fall on padding zeros (`padded_share`) and whether
`by_boxes` picks boxes, for forward and for the rotated dE/dx. The layers are the lecture's
networks' padded convolutions and a few more shapes around the rule's thresholds; then a few
stride-1 transposed convolutions, whose forward is a rotated, heavily padded convolution.

With --sweep, CIFAR-10's conv2 and conv3 and the 3D conv2 over batch sizes instead, forward and
backward together, with the multiply-adds a box saves per batch part (what `by_boxes` weighs).

    python benchmarks/padding_boxes.py
    python benchmarks/padding_boxes.py --sweep
    CONVSCOPE_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/padding_boxes.py   # one core
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convscope import ops  # noqa: E402
from convscope.backend import numpy_kernels, parallel  # noqa: E402
from convscope.backend.boxes import padded_share, padding_free_boxes  # noqa: E402
from timing import interleaved_medians  # noqa: E402

# name, input (without the batch), filters, pad
LAYERS = [
    ("cifar10 conv2 16×16×32 5×5×32 pad 2", (16, 16, 32), (5, 5, 32, 32), 2),
    ("cifar10 conv3 8×8×32 5×5×64 pad 2", (8, 8, 32), (5, 5, 32, 64), 2),
    ("alexnet_small conv2 16×16×64 5×5×64 pad 2", (16, 16, 64), (5, 5, 64, 64), 2),
    ("3d conv2 14³×16 3×3×3×32 pad 1", (14, 14, 14, 16), (3, 3, 3, 16, 32), 1),
    ("48×48×32 3×3×64 pad 1", (48, 48, 32), (3, 3, 32, 64), 1),
    ("32×32×16 3×3×16 pad 1", (32, 32, 16), (3, 3, 16, 16), 1),
    ("16×16×16 5×5×32 pad 2", (16, 16, 16), (5, 5, 16, 32), 2),
    ("8×8×64 3×3×64 pad 1", (8, 8, 64), (3, 3, 64, 64), 1),
    ("4×4×128 3×3×128 pad 1", (4, 4, 128), (3, 3, 128, 128), 1),
    ("16×16×8 5×5×16 pad 2", (16, 16, 8), (5, 5, 8, 16), 2),
]


DEFAULT_PADDED, DEFAULT_CHANNELS = numpy_kernels.BOXES_MIN_PADDED, numpy_kernels.BOXES_MIN_CHANNELS
DEFAULT_SAVED = numpy_kernels.BOXES_MIN_SAVED


# stride-1 transposed convolutions, whose forward is the rotated convolution: name, input (without
# the batch; K channels), filters H'×W'×D×K, crop
TRANSPOSED = [
    ("8×8×64 → 8×8×32, 5×5, crop 2", (8, 8, 64), (5, 5, 32, 64), 2),
    ("16×16×32 → 16×16×32, 3×3, crop 1", (16, 16, 32), (3, 3, 32, 32), 1),
    ("6×6×64 → 8×8×32, 3×3, no crop", (6, 6, 64), (3, 3, 32, 64), 0),
]


def with_boxes(forced: bool, fn):
    """fn run with every padded convolution box by box (forced) or none."""
    def call():
        numpy_kernels.BOXES_MIN_PADDED = 0.0 if forced else 2.0
        numpy_kernels.BOXES_MIN_CHANNELS, numpy_kernels.BOXES_MIN_SAVED = 1, 0
        try:
            return fn()
        finally:
            numpy_kernels.BOXES_MIN_PADDED = DEFAULT_PADDED
            numpy_kernels.BOXES_MIN_CHANNELS, numpy_kernels.BOXES_MIN_SAVED = DEFAULT_CHANNELS, DEFAULT_SAVED

    return call


def rule(shape, w_shape, pad, batch) -> str:
    """'fwd/dx' picks of `by_boxes` for a stride-1 layer at `batch`, and the padded share."""
    spatial, kernel = shape[:-1], w_shape[:-2]
    ones, pads = (1,) * len(spatial), ((pad, pad),) * len(spatial)
    rotated = numpy_kernels.rotated_padding(kernel, pads, ones)
    fwd = numpy_kernels.by_boxes((batch, *shape), w_shape, spatial, ones, ones, pads, 1)
    dx = numpy_kernels.by_boxes((batch, *spatial, w_shape[-1]), w_shape, spatial, ones, ones, rotated, 1)
    share = padded_share(spatial, spatial, kernel, ones, ones, (pad,) * len(spatial))
    return f"{share:.3f} | {'boxes' if fwd else 'padded'} / {'boxes' if dx else 'padded'}"


def batch_of(shape) -> int:
    return 32 if len(shape) == 4 else 128


def timed_layer(shape, w_shape, pad, rng, *, transposed=False, batch=None) -> dict:
    """{(fwd or bwd, forced): median ms} of one layer, a convolution padded by `pad` or a transposed
    one cropped by it, with and without boxes, in turns."""
    batch = batch or batch_of(shape)
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    w = (rng.standard_normal(w_shape) * 0.05).astype(np.float32)
    b = np.zeros(w_shape[-2 if transposed else -1], np.float32)
    if transposed:
        forward, backward, hyper = ops.conv_transpose, ops.conv_transpose_backward, {"crop": pad}
    else:
        forward, backward, hyper = ops.conv, ops.conv_backward, {"pad": pad}
    dy = rng.standard_normal(forward(x, w, b, **hyper).shape, dtype=np.float32)
    calls = {}
    for forced in (False, True):
        calls["fwd", forced] = with_boxes(forced, lambda: forward(x, w, b, **hyper))
        calls["bwd", forced] = with_boxes(forced, lambda: backward(x, w, b, dy, **hyper))
    return {k: v * 1e3 for k, v in interleaved_medians(calls, repeats=15).items()}


def table_row(name, rule_text, ms) -> str:
    return (f"| {name} | {rule_text} | {ms['fwd', False]:.2f} | {ms['fwd', True]:.2f} | "
            f"{ms['fwd', True] / ms['fwd', False]:.2f} | {ms['bwd', False]:.2f} | {ms['bwd', True]:.2f} | "
            f"{ms['bwd', True] / ms['bwd', False]:.2f} |")


SWEEP = [("cifar10 conv3", (8, 8, 32), (5, 5, 32, 64), 2, (4, 16, 32, 64, 128)),
         ("cifar10 conv2", (16, 16, 32), (5, 5, 32, 32), 2, (8, 32, 64, 128)),
         ("3d conv2", (14, 14, 14, 16), (3, 3, 3, 16, 32), 1, (1, 4, 8, 32))]


def saved_per_box(shape, w_shape, pad, batch) -> float:
    """Multiply-adds one box saves in the largest batch part, as `by_boxes` weighs them."""
    spatial, kernel, ones = shape[:-1], w_shape[:-2], (1,) * (len(shape) - 1)
    pads = (pad,) * len(spatial)
    part = max(p.stop - p.start for p in parallel.batch_parts(batch))
    boxes = len(padding_free_boxes(spatial, spatial, kernel, ones, ones, pads))
    share = padded_share(spatial, spatial, kernel, ones, ones, pads)
    return share * part * math.prod(spatial) * math.prod(w_shape) / boxes


def sweep(rng) -> None:
    print("| layer | batch | saved per box and part (millions) | padded ms | boxes ms | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, shape, w_shape, pad, batches in SWEEP:
        for batch in batches:
            ms = timed_layer(shape, w_shape, pad, rng, batch=batch)
            padded, boxes = ms["fwd", False] + ms["bwd", False], ms["fwd", True] + ms["bwd", True]
            saved = saved_per_box(shape, w_shape, pad, batch) / 1e6
            print(f"| {name} | {batch} | {saved:.2f} | {padded:.2f} | {boxes:.2f} | {boxes / padded:.2f} |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", action="store_true", help="three layers over batch sizes instead")
    rng = np.random.default_rng(0)
    if parser.parse_args().sweep:
        sweep(rng)
        return
    print("| layer | padded share | rule (fwd / dx) | fwd padded ms | fwd boxes ms | ratio "
          "| bwd padded ms | bwd boxes ms | ratio |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, shape, w_shape, pad in LAYERS:
        ms = timed_layer(shape, w_shape, pad, rng)
        print(table_row(name, rule(shape, w_shape, pad, batch_of(shape)), ms), flush=True)
    print("\nStride-1 transposed convolutions (the forward is a rotated convolution padded by H'−1−crop):")
    print("| layer | | | fwd padded ms | fwd boxes ms | ratio | bwd padded ms | bwd boxes ms | ratio |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, shape, w_shape, crop in TRANSPOSED:
        ms = timed_layer(shape, w_shape, crop, rng, transposed=True)
        print(table_row(name, " | ", ms), flush=True)


if __name__ == "__main__":
    main()
