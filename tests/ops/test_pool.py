"""Pooling: numerical gradients (distinct values for max), PyTorch, first-maximum routing."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from settings import POOL_SETTINGS, distinct
from torch_oracle import check_op, pool_reference

from convscope import ConfigError, ops
from convscope.backend import numpy_kernels
from convscope.debug import gradcheck
from convscope.ops._args import padding


@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("name", POOL_SETTINGS)
def test_pool_gradient_matches_numerical(name, method):
    shape, hyper = POOL_SETTINGS[name]
    errors = gradcheck(ops.pool, ops.pool_backward, [distinct(shape)], method=method, **hyper)
    assert errors[0] < 1e-6, errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("name", POOL_SETTINGS)
def test_pool_matches_pytorch(name, method, dtype):
    shape, hyper = POOL_SETTINGS[name]
    dims = len(shape) - 2
    kernel = hyper["kernel"]
    stride = hyper.get("stride", kernel)
    pads = padding("pool", "pad", hyper.get("pad", 0), dims)

    def reference(x):
        return pool_reference(x, kernel=kernel, stride=stride, pads=pads, method=method)

    check_op(ops.pool, ops.pool_backward, reference, [distinct(shape)], dtype=dtype,
             hyper={"method": method, **hyper})


def test_max_pool_sends_the_gradient_to_the_first_maximum_only():
    x = np.array([[5.0, 5.0], [1.0, 5.0]]).reshape(1, 2, 2, 1)
    dx = ops.pool_backward(x, np.ones((1, 1, 1, 1)), kernel=2)
    assert dx.reshape(2, 2).tolist() == [[1.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize("name", POOL_SETTINGS)
def test_max_pool_routes_ties_to_the_first_maximum_as_pytorch_does(name):
    """Ties everywhere (a ReLU's zeros, rounded values): PyTorch's max pooling keeps the first
    maximum of each window (row-major), and so must every path of ours (overlapping windows go
    through the phase split)."""
    shape, hyper = POOL_SETTINGS[name]
    kernel = hyper["kernel"]
    stride = hyper.get("stride", kernel)
    pads = padding("pool", "pad", hyper.get("pad", 0), len(shape) - 2)
    x = np.maximum(np.round(np.random.default_rng(2).standard_normal(shape)), 0)
    assert (x == 0).mean() > 0.3

    def reference(xt):
        return pool_reference(xt, kernel=kernel, stride=stride, pads=pads, method="max")

    check_op(ops.pool, ops.pool_backward, reference, [x], dtype=np.float64, hyper=hyper)


def test_max_pool_backward_of_an_integer_input_routes_as_for_floats():
    """Integer images (uint8 pixels) pooled directly: the phase split, whose padding is NaN, is for
    floating-point inputs; integers keep the strided path, with the same routing."""
    x = np.random.default_rng(3).integers(0, 4, size=(2, 9, 9, 2)).astype(np.uint8)
    hyper = {"kernel": 3, "stride": 2, "pad": (0, 1, 0, 1)}
    dy = np.random.default_rng(4).standard_normal(ops.pool(x, **hyper).shape)
    np.testing.assert_array_equal(ops.pool_backward(x, dy, **hyper),
                                  ops.pool_backward(x.astype(np.float64), dy, **hyper))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.bool_])
def test_max_pool_of_an_integer_image_with_padding_equals_the_float_result(dtype):
    """Windows that start in the padding of an integer or boolean image (which has no −∞ to fill
    them with) take the maximum of their real cells, as for floats, forward and backward."""
    values = np.random.default_rng(12).integers(0, 100, size=(2, 9, 8, 3))
    x = values > 60 if dtype == np.bool_ else values.astype(dtype)
    assert 0 < x.mean() < 99
    hyper = {"kernel": 3, "stride": 2, "pad": 1}
    y = ops.pool(x, **hyper)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ops.pool(x.astype(np.float64), **hyper))
    dy = np.random.default_rng(13).standard_normal(y.shape)
    np.testing.assert_array_equal(ops.pool_backward(x, dy, **hyper),
                                  ops.pool_backward(x.astype(np.float64), dy, **hyper))


@pytest.mark.parametrize("dtype", [np.float32, np.complex64, np.int8, np.uint16, np.bool_])
def test_the_fill_of_padded_windows_is_never_a_maximum(dtype):
    """Windows starting in the padding are filled with `lowest` before their real cells are
    maxed in: whatever the dtype, it must lose against every value, the dtype's smallest too."""
    smallest = {"f": -np.inf, "c": complex(-np.inf, -np.inf), "b": False}.get(
        np.dtype(dtype).kind, np.iinfo(dtype).min if np.dtype(dtype).kind in "iu" else None)
    values = np.array([smallest, 0, 1], dtype=dtype)
    np.testing.assert_array_equal(np.maximum(np.array(numpy_kernels.lowest(dtype), dtype), values), values)


@pytest.mark.parametrize("kernel, stride", [(3, 2), (2, 2)])
def test_max_pool_window_of_minus_infinity_routes_to_its_first_real_cell(kernel, stride):
    """As PyTorch's max pooling with `padding` (not an explicit −∞ pad): a window whose real
    cells are all −∞ sends its gradient to the first of them, never to a padded cell."""
    x = np.full((1, 5, 5, 2), -np.inf)
    y = ops.pool(x, kernel=kernel, stride=stride, pad=1)
    dy = np.arange(1.0, y.size + 1).reshape(y.shape)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = F.max_pool2d(xt, kernel, stride, padding=1)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(ops.pool_backward(x, dy, kernel=kernel, stride=stride, pad=1, y=y),
                                  xt.grad.numpy().transpose(0, 2, 3, 1))


def _kernel_and_stride(name):
    shape, hyper = POOL_SETTINGS[name]
    kernel = np.broadcast_to(hyper["kernel"], len(shape) - 2).tolist()
    return kernel, np.broadcast_to(hyper.get("stride", kernel), len(kernel)).tolist()


@pytest.mark.parametrize("name", [name for name in POOL_SETTINGS  # the settings that are split
                                  if numpy_kernels.by_phases(*_kernel_and_stride(name))])
def test_split_into_phases_then_merging_gives_the_input_back(name):
    shape, hyper = POOL_SETTINGS[name]
    dims = len(shape) - 2
    kernel, stride = _kernel_and_stride(name)
    pads = padding("pool", "pad", hyper.get("pad", 0), dims)
    x = distinct(shape)
    out_spatial = [1 + (n + a + b - k) // s for n, (a, b), k, s in zip(shape[1:-1], pads, kernel, stride)]
    split = numpy_kernels.split_into_phases(x, kernel, stride, pads, out_spatial, np.nan, "test.phases")
    views = numpy_kernels.phase_views(split, kernel, stride, out_spatial)
    for offset, view in zip(np.ndindex(*kernel), views):
        for index in np.ndindex(*out_spatial):  # the offset's cell of window `index`, padded: NaN
            cell = [s * i + o - a for s, i, o, (a, _) in zip(stride, index, offset, pads)]
            real = all(0 <= c < n for c, n in zip(cell, shape[1:-1]))
            expected = x[(slice(None), *cell)] if real else np.full((shape[0], shape[-1]), np.nan)
            np.testing.assert_array_equal(view[(slice(None), *index)], expected)
    merged = numpy_kernels.merge_phases(split, stride, pads, np.full(x.shape, -1.0))
    extent = split.shape[1 + dims : -1]  # cells per phase: those at S·r + a − P_before, r < extent
    held = (slice(None), *(slice(0, min(n, s * e - a)) for n, s, e, (a, _) in
                           zip(shape[1:-1], stride, extent, pads)))
    beyond = np.ones(x.shape, dtype=bool)
    beyond[held] = False
    np.testing.assert_array_equal(merged[held], x[held])
    assert (merged[beyond] == 0).all()


@pytest.mark.parametrize("name", [*POOL_SETTINGS, "2x2-uneven"])
def test_max_pool_backward_given_the_maxima_equals_recomputing_them(name):
    """pool_backward(..., y=pool(x)) skips recomputing the maxima; with ties everywhere (a ReLU's
    zeros, rounded values) it must still route each window's gradient to its first maximum."""
    x_shape, hyper = POOL_SETTINGS.get(name, ((2, 9, 7, 3), {"kernel": 2}))
    rng = np.random.default_rng(1)
    x = np.maximum(np.round(rng.standard_normal(x_shape)), 0)
    y = ops.pool(x, **hyper)
    dy = rng.standard_normal(y.shape)
    reference = ops.pool_backward(x, dy, **hyper)
    assert (x == 0).mean() > 0.3
    np.testing.assert_array_equal(ops.pool_backward(x, dy, **hyper, y=y), reference)


def _with_ties_and_non_finite(shape, dtype, seed):
    """Rounded values after a ReLU (ties in most windows), with NaN, ±∞ and a window of −∞."""
    x = np.maximum(np.round(np.random.default_rng(seed).standard_normal(shape)), 0).astype(dtype)
    if x.dtype.kind == "f":
        x.flat[[0, 7, 19]] = [np.nan, np.inf, -np.inf]
        x[-1, :2, :2] = -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
@pytest.mark.parametrize(("shape", "kernel"), [
    ((3, 8, 6, 6), (2, 2)), ((3, 8, 6, 16), (2, 2)), ((2, 6, 6, 3), (3, 3)), ((2, 6, 6, 3), (2, 3)),
    ((2, 6, 6, 5), (1, 3)), ((2, 6, 6, 5), (3, 1)), ((2, 4, 6, 4, 16), (2, 3, 2)),
    ((2, 4, 4, 4, 40), (2, 2, 2)), ((1, 5, 5, 2), (5, 5)),
])
def test_max_pool_over_tiling_windows_by_rows_equals_the_strided_slices(shape, kernel, dtype, monkeypatch):
    """Windows that tile the input exactly are pooled by whole rows (`tiles_exactly`), and their
    backward goes by rows below 8 channels per window row (`routes_by_rows`): each must give the
    strided slices' result bit for bit, first maxima, NaN (routed nowhere) and −∞ windows included."""
    x = _with_ties_and_non_finite(shape, dtype, seed=len(shape) + shape[-1])
    pool = {"kernel": kernel}
    rows_taken = []
    for name in ("_max_over_window_rows", "_route_to_maxima_by_rows"):
        spy = getattr(numpy_kernels, name)
        monkeypatch.setattr(numpy_kernels, name, lambda *a, _f=spy, _n=name: rows_taken.append(_n) or _f(*a))
    y = ops.pool(x, **pool)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    dx, dx_given_y = ops.pool_backward(x, dy, **pool), ops.pool_backward(x, dy, **pool, y=y)
    routed_by_rows = shape[-1] < 8 * math.prod(kernel[:-1])
    assert rows_taken.count("_max_over_window_rows") == 2  # forward, and the backward without y
    assert rows_taken.count("_route_to_maxima_by_rows") == (2 if routed_by_rows else 0)
    monkeypatch.setattr(numpy_kernels, "tiles_exactly", lambda *args: False)
    np.testing.assert_array_equal(y, ops.pool(x, **pool))
    np.testing.assert_array_equal(dx, ops.pool_backward(x, dy, **pool))
    np.testing.assert_array_equal(dx_given_y, dx)


@pytest.mark.parametrize("block_floats", [1, 1 << 19])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
@pytest.mark.parametrize("name", [name for name, (shape, hyper) in POOL_SETTINGS.items() if min(
    np.broadcast_to(hyper["kernel"], len(shape) - 2)[[0, -1]]) > 1 and "tiling" not in name])
def test_max_pool_by_axes_equals_one_slice_per_window_cell(name, dtype, block_floats, monkeypatch):
    """Windows that do not tile the input are maxed over their leading axes first, then over the
    last, a block of samples at a time (one sample per block with block_floats = 1): the same
    maxima as one strided slice per window cell, ties, NaN, ±∞ and −∞ windows included."""
    shape, hyper = POOL_SETTINGS[name]
    x = _with_ties_and_non_finite(shape, dtype, seed=3)
    monkeypatch.setattr(numpy_kernels, "BY_AXES_FLOATS", block_floats)
    y = ops.pool(x, **hyper)
    monkeypatch.setattr(numpy_kernels, "_max_over_windows_by_axes", numpy_kernels._max_over_window_cells)
    np.testing.assert_array_equal(y, ops.pool(x, **hyper))


@pytest.mark.parametrize("method", ["max", "avg"])
def test_pool_backward_rejects_a_forward_output_of_the_wrong_shape(method):
    x = np.zeros((2, 4, 4, 3))
    with pytest.raises(ValueError, match="y must have shape"):
        ops.pool_backward(x, np.zeros((2, 2, 2, 3)), kernel=2, method=method, y=np.zeros((2, 3, 3, 3)))


def test_avg_pool_excludes_padded_cells_from_the_count():
    x = np.ones((1, 2, 2, 1))
    y = ops.pool(x, kernel=2, stride=1, pad=1, method="avg")
    assert np.array_equal(y, np.ones((1, 3, 3, 1)))  # a corner window holds 1 real cell, averaged as 1


def test_pool_stride_defaults_to_the_kernel():
    assert ops.pool(np.zeros((1, 28, 28, 6)), kernel=2).shape == (1, 14, 14, 6)


@pytest.mark.parametrize(
    ("hyper", "message"),
    [
        ({"kernel": 2, "method": "median"}, "method"),
        ({"kernel": 0}, "kernel"),
        ({"kernel": 2, "stride": 0}, "stride"),
        ({"kernel": 2, "pad": 2}, "smaller than the kernel"),
        ({"kernel": 9}, "empty"),
    ],
)
def test_pool_rejects_bad_hyper_parameters(hyper, message):
    with pytest.raises(ValueError, match=message):
        ops.pool(np.zeros((1, 8, 8, 2)), **hyper)


def test_pool_needs_the_channel_axis():
    with pytest.raises(ValueError, match=r"N×H×W×D.*x\[\.\.\., None\]"):
        ops.pool(np.zeros((1, 8, 8)), kernel=2)
    with pytest.raises(ConfigError):
        ops.pool_backward(np.zeros((1, 8, 8, 1)), np.zeros((1, 4, 4, 1)), kernel=2, method="min")


@settings(max_examples=40, deadline=None)
@given(
    size=st.tuples(st.integers(2, 9), st.integers(2, 9)),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    method=st.sampled_from(["max", "avg"]),
)
def test_pool_matches_pytorch_for_any_geometry(size, kernel, stride, pads, method):
    pairs = ((pads[0], pads[1]), (pads[2], pads[3]))
    hyper = {"kernel": kernel, "stride": stride, "pad": pads, "method": method}
    too_much_padding = any(max(p) >= k for p, k in zip(pairs, kernel))
    too_small = any(n + a + b < k for n, (a, b), k in zip(size, pairs, kernel))
    x = distinct((2, *size, 3))
    if too_much_padding or too_small:
        with pytest.raises(ValueError):
            ops.pool(x, **hyper)
        return

    def reference(xt):
        return pool_reference(xt, kernel=kernel, stride=stride, pads=pairs, method=method)

    check_op(ops.pool, ops.pool_backward, reference, [x], dtype=np.float64, hyper=hyper)
