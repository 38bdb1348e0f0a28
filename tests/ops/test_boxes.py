"""Padded convolutions box by box: the boxes' geometry against a brute-force count, and the rule's
pick on a real layer shape against PyTorch."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from settings import conv_inputs
from torch_oracle import check_op, conv_reference

from convscope import ops
from convscope.backend import numpy_kernels
from convscope.backend.boxes import box_sizes, padded_share, padding_free_boxes
from convscope.ops._args import padding


def inside_taps(size, kernel, stride, dilate, pad, i):
    """The taps of output i that read the input, one by one."""
    return [h for h in range(kernel) if 0 <= stride * i + dilate * h - pad < size]


# (input size, kernel, stride, dilation, padding before and after): negative pads crop, as the
# rotated dE/dx's padding dil·(H'−1) − P does when P is larger
axis = st.tuples(st.integers(1, 9), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
                 st.integers(-2, 5))


@settings(max_examples=200, deadline=None)
@given(axes=st.lists(axis, min_size=1, max_size=3))
def test_boxes_cover_every_output_once_with_exactly_its_inside_taps(axes):
    sizes, kernels, strides, dilates, pads = zip(*axes)
    outputs = [max(1, 1 + (n + 2 * p - (d * (k - 1) + 1)) // s) for n, k, s, d, p in axes]
    seen = np.zeros(outputs, int)
    for box in padding_free_boxes(sizes, outputs, kernels, strides, dilates, pads):
        seen[box.outputs] += 1
        for position in itertools.product(*(range(s.start, s.stop) for s in box.outputs)):
            for a, i in enumerate(position):
                expected = inside_taps(sizes[a], kernels[a], strides[a], dilates[a], pads[a], i)
                assert list(range(box.taps[a].start, box.taps[a].stop)) == expected or (
                    box.empty and not expected)
        if not box.empty:  # the first tap of the first output reads `start`, inside the input
            for a in range(len(axes)):
                start = strides[a] * box.outputs[a].start + dilates[a] * box.taps[a].start - pads[a]
                assert start == box.start[a] and 0 <= start < sizes[a]
                # `window`: the input positions each output's first inside tap reads, then its taps from 0
                reads = [strides[a] * i + dilates[a] * box.taps[a].start - pads[a]
                         for i in range(box.outputs[a].start, box.outputs[a].stop)]
                assert list(range(sizes[a])[box.window[a]]) == reads
                assert box.window[len(axes) + a] == slice(0, box_sizes(box.taps)[a])
    assert (seen == 1).all()


@settings(max_examples=100, deadline=None)
@given(axes=st.lists(axis, min_size=1, max_size=3))
def test_padded_share_counts_the_products_on_padding(axes):
    sizes, kernels, strides, dilates, pads = zip(*axes)
    outputs = [max(1, 1 + (n + 2 * p - (d * (k - 1) + 1)) // s) for n, k, s, d, p in axes]
    inside = sum(np.prod([len(inside_taps(sizes[a], kernels[a], strides[a], dilates[a], pads[a], i))
                          for a, i in enumerate(position)])
                 for position in itertools.product(*map(range, outputs)))
    total = np.prod(outputs) * np.prod(kernels)
    assert padded_share(sizes, outputs, kernels, strides, dilates, pads) == pytest.approx(1 - inside / total)


def test_cifar10_conv3_boxes_are_five_runs_per_axis_and_skip_28_percent():
    boxes = padding_free_boxes((8, 8), (8, 8), (5, 5), (1, 1), (1, 1), (2, 2))
    assert len(boxes) == 25
    assert sorted({box_sizes(b.taps)[0] for b in boxes}) == [3, 4, 5]
    assert padded_share((8, 8), (8, 8), (5, 5), (1, 1), (1, 1), (2, 2)) == pytest.approx(1 - (34 / 40) ** 2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape, w_shape, pad, boxes", [
    ((2, 6, 5, 16), (3, 3, 16, 16), 1, True),  # the rule's boxes, forward and rotated dE/dx
    ((1, 4, 5, 4, 16), (3, 3, 3, 16, 24), (1, 0, 1, 1, 0, 2), True),
    ((2, 6, 5, 8), (3, 3, 8, 16), 1, False),  # 8 input channels: tiles, not boxes
])
def test_boxes_are_picked_from_16_channels_and_match_pytorch(x_shape, w_shape, pad, boxes, dtype,
                                                             monkeypatch):
    monkeypatch.setattr(numpy_kernels, "BOXES_MIN_SAVED", 0)  # these small batches save too little
    picks = []
    recorded = numpy_kernels.by_boxes

    def by_boxes(*args):
        picks.append(recorded(*args))
        return picks[-1]

    monkeypatch.setattr(numpy_kernels, "by_boxes", by_boxes)
    dims = len(x_shape) - 2
    pairs = padding("conv", "pad", pad, dims)
    inputs = list(conv_inputs(x_shape, w_shape, True, w_shape[-1]))
    check_op(ops.conv, ops.conv_backward, lambda x, w, b: conv_reference(x, w, b, pads=pairs), inputs,
             dtype=dtype, hyper={"pad": pad})
    assert picks and all(pick == boxes for pick in picks)


@pytest.mark.parametrize("x_shape, w_shape, pad, boxes", [
    ((128, 8, 8, 32), (5, 5, 32, 64), 2, True),  # CIFAR-10's conv3 at batch 128
    ((32, 8, 8, 32), (5, 5, 32, 64), 2, False),  # ... at batch 32: too little saved per box
    ((32, 14, 14, 14, 16), (3, 3, 3, 16, 32), 1, True),  # the 3D net's conv2 at batch 32
    ((4, 14, 14, 14, 16), (3, 3, 3, 16, 32), 1, False),  # ... at batch 4
    ((128, 16, 16, 8), (5, 5, 8, 16), 2, False),  # 8 input channels
    ((128, 16, 16, 32), (5, 5, 32, 32), 0, False),  # no padding
    ((128, 16, 16, 32), (5, 5, 32, 32), 2, True),  # CIFAR-10's conv2
])
def test_boxes_rule_weighs_the_products_saved_per_box(x_shape, w_shape, pad, boxes, monkeypatch):
    monkeypatch.setenv("CONVSCOPE_NUM_THREADS", "2")  # the parts are half the batch
    spatial = len(x_shape) - 2
    ones, pads = (1,) * spatial, ((pad, pad),) * spatial
    out_spatial = tuple(n + 2 * pad - k + 1 for n, k in zip(x_shape[1:-1], w_shape))
    assert numpy_kernels.by_boxes(x_shape, w_shape, out_spatial, ones, ones, pads, 1) == boxes
