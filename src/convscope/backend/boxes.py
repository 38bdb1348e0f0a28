"""Output boxes of a padded convolution whose windows share the same taps inside the input.

With padding, the windows at the border of y_{i,j,k} = b_k + Σ_{h,w,d} f_{h,w,d,k} · x_{S·i+dil·h−P, …}
reach into the zeros: along one axis, output i only meets the input with the taps h of

    ⌈(P − S·i)/dil⌉ ≤ h ≤ ⌊(H − 1 + P − S·i)/dil⌋,  0 ≤ h < H'.

Consecutive outputs with the same range of taps form a run (along each axis: the first outputs one
by one, the interior as one run, the last outputs one by one), and the product of one run per axis
is a box of outputs whose windows all hold the same block of filter taps and no padding. Computed
box by box, from the unpadded input and the filters of those taps only, a convolution skips every
product with a padding zero: the CIFAR-10 net's 5×5 conv3 on 8×8 inputs (pad 2) spends 28 % of its
multiply-adds on them, its conv2 on 16×16 14 %, the 3D net's 3×3×3 conv2 on 14×14×14 (pad 1) 14 %.

Pure geometry: the kernels that compute box by box are in numpy_kernels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from itertools import product


@dataclass(frozen=True)
class Box:
    """Outputs `outputs` (one slice per spatial axis) whose windows meet the input only in the taps
    `taps` (one slice per axis, empty where a window lies wholly in the padding); unless the box
    is `empty`, the first of those taps of the first output reads input position `start` (per axis,
    inside the input).

    `window` indexes the box's windows in the view of the whole kernel's windows from every input
    position, [a, …, h, …] = x[a + dil·h, …]: per axis the positions its outputs' first taps read
    (every S-th from `start`), then per axis its taps counted from the first. Made once with the
    box, it spares each call the interpreter work of building it (numpy_kernels' `box_products`)."""

    outputs: tuple[slice, ...]
    taps: tuple[slice, ...]
    start: tuple[int, ...]
    window: tuple[slice, ...]

    @property
    def empty(self) -> bool:
        """Whether the windows of these outputs lie wholly in the padding (they see no input)."""
        return any(t.stop <= t.start for t in self.taps)


def tap_range(size: int, kernel: int, stride: int, dilate: int, pad: int, i: int) -> tuple[int, int]:
    """[first, stop) of the taps h of output i that read the input, 0 ≤ S·i + dil·h − P < size."""
    first = max(0, -((stride * i - pad) // dilate))
    stop = min(kernel, (size - 1 + pad - stride * i) // dilate + 1)
    return first, max(first, stop)


def axis_runs(size: int, outputs: int, kernel: int, stride: int, dilate: int, pad: int) -> list[tuple]:
    """Runs (outputs slice, taps slice, input start) of consecutive outputs along one axis whose
    windows read the same taps; `pad` is the padding before the first input."""
    runs: list[tuple] = []
    for i in range(outputs):
        first, stop = tap_range(size, kernel, stride, dilate, pad, i)
        if runs and (runs[-1][1].start, runs[-1][1].stop) == (first, stop):
            runs[-1] = (slice(runs[-1][0].start, i + 1), runs[-1][1], runs[-1][2])
        else:
            runs.append((slice(i, i + 1), slice(first, stop), stride * i + dilate * first - pad))
    return runs


def padding_free_boxes(in_spatial, out_spatial, kernel, stride, dilate, pads_before) -> tuple[Box, ...]:
    """The boxes of outputs, one run per axis (`axis_runs`), that together cover every output once."""
    return _boxes(*(tuple(a) for a in (in_spatial, out_spatial, kernel, stride, dilate, pads_before)))


@functools.lru_cache(maxsize=256)  # a network asks for the same few geometries at every step
def _boxes(in_spatial, out_spatial, kernel, stride, dilate, pads_before) -> tuple[Box, ...]:
    per_axis = [axis_runs(*geometry) for geometry in zip(in_spatial, out_spatial, kernel, stride, dilate,
                                                         pads_before)]
    return tuple(_box(runs, stride) for runs in product(*per_axis))


def _box(runs, stride) -> Box:
    """The box of one run (outputs, taps, start) per axis."""
    outputs, taps, start = (tuple(r[i] for r in runs) for i in range(3))
    reads = (slice(a, a + s * (n - 1) + 1, s) for a, s, n in zip(start, stride, box_sizes(outputs)))
    return Box(outputs, taps, start, (*reads, *(slice(0, n) for n in box_sizes(taps))))


def padded_share(in_spatial, out_spatial, kernel, stride, dilate, pads_before) -> float:
    """The share of a padded convolution's multiply-adds whose input is a padding zero."""
    return _padded_share(*(tuple(a) for a in (in_spatial, out_spatial, kernel, stride, dilate, pads_before)))


@functools.lru_cache(maxsize=256)
def _padded_share(in_spatial, out_spatial, kernel, stride, dilate, pads_before) -> float:
    inside = 1.0
    for size, outputs, k, s, d, p in zip(in_spatial, out_spatial, kernel, stride, dilate, pads_before):
        taps = sum(b - a for a, b in (tap_range(size, k, s, d, p, i) for i in range(outputs)))
        inside *= taps / (outputs * k)
    return 1.0 - inside


def box_sizes(slices) -> tuple[int, ...]:
    """The lengths of a box's slices (outputs or taps)."""
    return tuple(s.stop - s.start for s in slices)
