"""Convolution and deconvolution: numerical gradients (float64) and PyTorch (float32/64)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from settings import CONV_SETTINGS, TRANSPOSE_SETTINGS, conv_inputs
from torch_oracle import check_op, conv_reference, conv_transpose_reference

from convscope import ConfigError, ShapeError, ops
from convscope.backend import numpy_kernels
from convscope.debug import gradcheck
from convscope.ops._args import padding

# The NumPy kernels choose among equivalent computations by size (tiles of the last axis against
# banded filters; dE/dx as a rotated convolution or by col2im; padded convolutions box by box). The
# small test shapes would only reach some of them, so the PyTorch comparisons run under every choice
# forced.
BOXES = {"BOXES_MIN_CHANNELS": 1, "BOXES_MIN_PADDED": 0.0, "BOXES_MIN_SAVED": 0}
STRATEGIES = {
    "chosen": {},
    "untiled": {"TILE_FILTERS": 0, "FORWARD_TILE_FILTERS": 0},
    "widest-tiles": {"TILE_FILTERS": 10**6, "TILE_CHANNELS": 10**6, "FORWARD_TILE_FILTERS": 10**6,
                     "WIDE_ENOUGH": 10**6},
    "dx-rotated": {"ROTATED_MIN_CHANNELS": 1, "COL2IM_MIN_FILTERS": 10**6},
    "dx-col2im": {"ROTATED_MIN_CHANNELS": 10**6, "ROTATED_FEW_CHANNELS": 10**6},
    "boxes": {**BOXES, "ROTATED_MIN_CHANNELS": 1, "COL2IM_MIN_FILTERS": 10**6},
    "boxes-dx-col2im": {**BOXES, "ROTATED_MIN_CHANNELS": 10**6, "ROTATED_FEW_CHANNELS": 10**6},
}


@pytest.fixture(params=STRATEGIES)
def strategy(request, monkeypatch):
    for name, value in STRATEGIES[request.param].items():
        monkeypatch.setattr(numpy_kernels, name, value)
    return request.param


@pytest.mark.parametrize("name", CONV_SETTINGS)
def test_conv_gradients_match_numerical(name):
    x_shape, w_shape, bias, hyper = CONV_SETTINGS[name]
    errors = gradcheck(ops.conv, ops.conv_backward, conv_inputs(x_shape, w_shape, bias, w_shape[-1]), **hyper)
    assert len(errors) == (3 if bias else 2)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", CONV_SETTINGS)
def test_conv_matches_pytorch(name, dtype, strategy):
    x_shape, w_shape, bias, hyper = CONV_SETTINGS[name]
    dims = len(x_shape) - 2
    pads = padding("conv", "pad", hyper.get("pad", 0), dims)

    def reference(x, w, b):
        return conv_reference(
            x, w, b, stride=hyper.get("stride", 1), pads=pads,
            dilate=hyper.get("dilate", 1), groups=hyper.get("groups", 1),
        )

    inputs = list(conv_inputs(x_shape, w_shape, bias, w_shape[-1]))
    check_op(ops.conv, ops.conv_backward, reference, inputs, dtype=dtype, hyper=hyper)


@pytest.mark.parametrize("kernel, channels, filters, pad, strategy_for_dx", [
    (2, 32, 128, (1, 1, 0, 0), "col2im"),  # a long product dy · fᵀ, 4 scatter additions
    (3, 32, 128, (1, 1, 0, 0), "rotated"),
    (3, 8, 16, (1, 1, 1, 1), "rotated"),  # few channels, fewer than 4 filters per channel
    (3, 8, 32, (1, 1, 1, 1), "col2im"),  # 4 filters per channel
    (5, 8, 16, (0, 0, 0, 0), "col2im"),  # a valid 5×5 convolution: dE/dx has 2.5× dE/dy's positions
    (3, 4, 8, (1, 1, 1, 1), "col2im"),  # too few channels
])
def test_conv_input_gradient_strategy_is_chosen_by_shape_and_matches_pytorch(
        kernel, channels, filters, pad, strategy_for_dx, monkeypatch):
    """dE/dx goes by the rotated convolution (with dE/df from the same columns) or by col2im as
    `rotated_is_faster` says; both as PyTorch."""
    chosen = []
    strategies = {"_conv_backward_data_col2im": "col2im", "_backward_from_dy_columns": "rotated"}
    for name, strategy in strategies.items():
        original = getattr(numpy_kernels, name)

        def recorded(*args, original=original, strategy=strategy, **kwargs):
            chosen.append(strategy)
            return original(*args, **kwargs)

        monkeypatch.setattr(numpy_kernels, name, recorded)
    x, w, b = conv_inputs((2, 7, 6, channels), (kernel, kernel, channels, filters), True, filters)
    pads = padding("conv", "pad", pad, 2)
    check_op(ops.conv, ops.conv_backward, lambda *t: conv_reference(*t, pads=pads),
             [x, w, b], dtype=np.float64, hyper={"pad": pad})
    assert chosen == [strategy_for_dx]


@pytest.mark.parametrize("name", TRANSPOSE_SETTINGS)
def test_conv_transpose_gradients_match_numerical(name):
    x_shape, w_shape, bias, hyper = TRANSPOSE_SETTINGS[name]
    groups = hyper.get("groups", 1)
    inputs = conv_inputs(x_shape, w_shape, bias, w_shape[-2] * groups)
    errors = gradcheck(ops.conv_transpose, ops.conv_transpose_backward, inputs, **hyper)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", TRANSPOSE_SETTINGS)
def test_conv_transpose_matches_pytorch(name, dtype, strategy):
    x_shape, w_shape, bias, hyper = TRANSPOSE_SETTINGS[name]
    groups = hyper.get("groups", 1)
    crops = padding("conv_transpose", "crop", hyper.get("crop", 0), len(x_shape) - 2)

    def reference(x, w, b):
        return conv_transpose_reference(
            x, w, b, stride=hyper.get("stride", 1), crops=crops,
            dilate=hyper.get("dilate", 1), groups=groups,
        )

    inputs = list(conv_inputs(x_shape, w_shape, bias, w_shape[-2] * groups))
    check_op(ops.conv_transpose, ops.conv_transpose_backward, reference, inputs, dtype=dtype, hyper=hyper)


def test_conv_transpose_is_the_adjoint_of_conv():
    """⟨conv(x, f), y⟩ = ⟨x, conv_transpose(y, f)⟩ for the same filter array, stride and pad = crop
    (with sizes where the stride divides H − H' + P_U + P_D, so no input row is left over)."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 9, 11, 3)), rng.standard_normal((3, 3, 3, 5))
    hyper = {"stride": 2, "dilate": 1}
    forward = ops.conv(x, w, pad=(1, 1, 0, 2), **hyper)
    y = rng.standard_normal(forward.shape)
    back = ops.conv_transpose(y, w, crop=(1, 1, 0, 2), **hyper)
    assert back.shape == x.shape
    assert np.isclose(np.vdot(forward, y), np.vdot(x, back), rtol=1e-12)


def test_conv_output_size_formula():
    """H'' = 1 + floor((H − H' + P_U + P_D) / S_H), e.g. CIFAR-10's 32×32×3 with 5×5×3×32, pad 2."""
    x, w = np.zeros((1, 32, 32, 3), np.float32), np.zeros((5, 5, 3, 32), np.float32)
    assert ops.conv(x, w, pad=2).shape == (1, 32, 32, 32)
    assert ops.conv(x, w, stride=2).shape == (1, 14, 14, 32)
    assert ops.conv(x, w, pad=(0, 1, 2, 3), stride=(3, 2)).shape == (1, 10, 17, 32)


def test_fully_connected_is_conv_with_a_filter_as_large_as_the_input():
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((3, 4, 5, 2)), rng.standard_normal((4, 5, 2, 6)), rng.standard_normal(6)
    assert np.allclose(ops.fully_connected(x, w, b), ops.conv(x, w, b), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "hyper", "message"),
    [
        ((2, 8, 8), (3, 3, 1, 4), {}, "N×H×W×D"),
        ((2, 8, 8, 3), (3, 3, 2, 4), {}, "D = 3"),
        ((2, 4, 4, 3), (5, 5, 3, 4), {}, "empty"),
        ((2, 8, 8, 3), (3, 3, 3, 4), {"stride": 0}, "stride"),
        ((2, 8, 8, 3), (3, 3, 3, 4), {"pad": (1, 2, 3)}, "pad"),
        ((2, 8, 8, 4), (3, 3, 2, 3), {"groups": 2}, "groups"),
        ((2, 8, 8, 3), (3, 3, 4), {}, "filters"),
    ],
)
def test_conv_rejects_bad_input_with_a_named_error(x_shape, w_shape, hyper, message):
    with pytest.raises(ValueError, match=message) as raised:
        ops.conv(np.zeros(x_shape), np.zeros(w_shape), **hyper)
    assert "conv" in str(raised.value)


def test_conv_backward_rejects_a_dy_of_the_wrong_shape():
    x, w = np.zeros((2, 8, 8, 3)), np.zeros((3, 3, 3, 4))
    with pytest.raises(ShapeError, match="dy must have shape 2×6×6×4"):
        ops.conv_backward(x, w, None, np.zeros((2, 6, 6, 3)))


@pytest.mark.parametrize("strategy_name", ["chosen", "boxes"])
@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    channels=st.integers(1, 4),
    filters=st.integers(1, 4),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilate=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pads=st.tuples(*[st.integers(0, 3)] * 4),
    groups=st.sampled_from([1, 2]),
)
def test_conv_matches_pytorch_for_any_geometry(batch, size, channels, filters, kernel, stride, dilate, pads,
                                               groups, strategy_name):
    channels, filters = channels * groups, filters * groups
    w_shape = (*kernel, channels // groups, filters)
    extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilate)]
    if any(n + pads[2 * a] + pads[2 * a + 1] < e for a, (n, e) in enumerate(zip(size, extents))):
        with pytest.raises(ShapeError):
            ops.conv(np.zeros((batch, *size, channels)), np.zeros(w_shape), pad=pads, dilate=dilate,
                     groups=groups)
        return
    hyper = {"stride": stride, "pad": pads, "dilate": dilate, "groups": groups}

    def reference(x, w, b):
        pairs = ((pads[0], pads[1]), (pads[2], pads[3]))
        return conv_reference(x, w, b, stride=stride, pads=pairs, dilate=dilate, groups=groups)

    inputs = list(conv_inputs((batch, *size, channels), w_shape, True, filters))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in STRATEGIES[strategy_name].items():
            patch.setattr(numpy_kernels, name, value)
        check_op(ops.conv, ops.conv_backward, reference, inputs, dtype=np.float64, hyper=hyper)


@pytest.mark.parametrize(
    ("forward_backward", "inputs", "hyper"),
    [
        (ops.conv_backward, conv_inputs((2, 7, 8, 3), (3, 3, 3, 4), True, 4), {"stride": 2, "pad": 1}),
        (ops.conv_transpose_backward, conv_inputs((2, 4, 5, 3), (3, 3, 2, 3), True, 2), {"stride": 2}),
        (ops.fully_connected_backward, conv_inputs((3, 4, 5, 2), (4, 5, 2, 6), True, 6), {}),
    ],
)
def test_input_grad_false_skips_only_dx(forward_backward, inputs, hyper):
    forward = {ops.conv_backward: ops.conv, ops.conv_transpose_backward: ops.conv_transpose,
               ops.fully_connected_backward: ops.fully_connected}[forward_backward]
    dy = np.ones_like(forward(*inputs, **hyper))
    full = forward_backward(*inputs, dy, **hyper)
    partial = forward_backward(*inputs, dy, input_grad=False, **hyper)
    assert partial[0] is None
    assert np.array_equal(partial[1], full[1]) and np.array_equal(partial[2], full[2])


def test_geometry_checks_are_memoised_and_still_reject_bad_calls_every_time():
    """The shape checks are cached by shape and hyper-parameters; a failing check is never cached."""
    from convscope.ops.conv import _conv_geometry

    x, w = np.zeros((2, 7, 7, 3)), np.zeros((3, 3, 3, 4))
    first = _conv_geometry("conv", x, w, None, 2, (1, 0, 1, 0), 1, 1)
    assert _conv_geometry("conv", np.ones((2, 7, 7, 3)), w, None, 2, (1, 0, 1, 0), 1, 1) is first
    assert first[-1] == (3, 3)  # 1 + (7 + 1 − 3) // 2
    assert _conv_geometry("conv", x, w, None, 2, [1, 0, 1, 0], 1, 1) == first  # a list: not cached
    for _ in range(2):
        with pytest.raises(ShapeError, match="channels"):
            ops.conv(np.zeros((2, 7, 7, 2)), w)
    ops.conv(x, w, stride=1, groups=1)
    for bad in ({"stride": 1.0}, {"stride": True}, {"stride": (1, 1.0)}):  # equal to 1, not ints
        with pytest.raises(ConfigError, match="stride"):
            ops.conv(x, w, **bad)


@pytest.mark.parametrize(("call", "named"), [
    (lambda: ops.conv(np.zeros((2, 7, 7, 2)), np.zeros((3, 3, 3, 4))), r"filters 3×3×3×4 \(H'×W'×D×K\)"),
    (lambda: ops.conv(np.zeros((2, 5, 7, 7, 2)), np.zeros((3, 3, 3, 3, 4))), r"3×3×3×3×4 \(T'×H'×W'×D×K\)"),
    (lambda: ops.conv_transpose(np.zeros((2, 7, 7, 2)), np.zeros((3, 3, 3, 4))), r"3×3×3×4 \(H'×W'×D×K\)"),
    (lambda: ops.fully_connected(np.zeros((2, 4, 4, 3)), np.zeros((4, 4, 2, 5))), r"4×4×2×5 \(H'×W'×D×K\)"),
    (lambda: ops.fully_connected(np.zeros((2, 4, 4, 3)), np.zeros((48, 5))), r"48×5 \(M×K\)"),
], ids=["conv", "conv-3d", "conv_transpose", "fully_connected-filters", "fully_connected-matrix"])
def test_shape_errors_name_filter_axes_as_filters(call, named):
    """A filter bank's shape is spelled H'×W'×D×K in errors, not as a batch N×H×W×D."""
    with pytest.raises(ShapeError, match=named):
        call()


@pytest.mark.parametrize("x_shape, w_shape, pad, tiled", [
    ((2, 28, 28, 1), (5, 5, 1, 6), 2, True),  # LeNet-5's conv1: tiles of 7 with a 5-wide kernel
    ((2, 12, 12, 1), (3, 3, 1, 32), 0, False),  # a gray 3×3 layer: offset-major, whole rows
    ((2, 8, 8, 3), (3, 3, 3, 6), 1, True),  # several channels: col2im keeps the forward's tiles
])
def test_col2im_of_a_gray_layer_drops_narrow_tiles_and_matches_pytorch(x_shape, w_shape, pad, tiled,
                                                                       monkeypatch):
    """dE/dx of one channel per group goes by col2im without tiles unless they are wide and the
    kernel is 5 or more wide (`col2im_tile`); either way it is PyTorch's."""
    used = []
    original = numpy_kernels.tiled_geometry
    monkeypatch.setattr(numpy_kernels, "tiled_geometry",
                        lambda *args: used.append(args[-1]) or original(*args))
    x, w, b = conv_inputs(x_shape, w_shape, True, w_shape[-1])
    dy = np.ones(ops.conv(x, w, b, pad=pad).shape)
    used.clear()
    numpy_kernels.conv_backward_data(dy, w, x.shape, (1, 1), ((pad, pad),) * 2, (1, 1), 1)
    assert (used[-1] > 1) == tiled
    check_op(ops.conv, ops.conv_backward, lambda *t: conv_reference(*t, pads=((pad, pad),) * 2),
             [x, w, b], dtype=np.float64, hyper={"pad": pad})


@pytest.mark.parametrize(("shape", "pads"), [
    ((3, 28, 28, 1), ((2, 2), (2, 2))),  # margins 23 %: the whole buffer is zeroed
    ((2, 40, 41, 3), ((1, 0), (0, 1))),  # margins 5 %: only they are
    ((2, 30, 30, 30, 2), ((1, 0), (0, 0), (0, 1))),
    ((2, 9, 9, 2), ((-1, 2), (0, -2))),  # negative amounts crop
])
def test_pad_spatial_zeroes_a_reused_buffer_either_way(shape, pads):
    """The padded copy lives in a reused buffer: whichever way it is zeroed (all of it, or only
    the margins when they are under a tenth of it), nothing of an earlier use may show through."""
    x = np.random.default_rng(9).standard_normal(shape)
    crop = tuple(slice(max(-a, 0), n - max(-b, 0)) for n, (a, b) in zip(shape[1:-1], pads))
    grow = [(0, 0), *((max(a, 0), max(b, 0)) for a, b in pads), (0, 0)]
    expected = np.pad(x[(slice(None), *crop)], grow)
    numpy_kernels.workspace.buffer("test.pad", (expected.size,), x.dtype)[:] = np.nan  # garbage
    np.testing.assert_array_equal(numpy_kernels.pad_spatial(x, pads, "test.pad"), expected)


@pytest.mark.parametrize(("shape", "bias_dtype"), [
    ((3, 7, 5, 6), np.float32), ((2, 300, 300, 2), np.float32), ((4, 9, 16), np.float64),
    ((5, 3), np.float32),
])
def test_add_bias_in_lines_equals_broadcasting(shape, bias_dtype):
    """add_bias adds b tiled along lines of y (up to BIAS_LINE numbers; the second shape crosses
    it): the same numbers as broadcasting, in place, also on a non-contiguous y."""
    rng = np.random.default_rng(10)
    y, b = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape[-1]).astype(bias_dtype)
    expected = y.copy()
    expected += b  # broadcast, computed in the wider dtype and cast back, as y += b is
    assert numpy_kernels.add_bias(y, b) is y
    np.testing.assert_array_equal(y, expected)
    strided = np.zeros((*shape[:-1], 2 * shape[-1]), np.float32)[..., ::2]
    numpy_kernels.add_bias(strided, b)
    np.testing.assert_array_equal(strided, np.broadcast_to(b, shape).astype(np.float32))


@pytest.mark.parametrize("shape", [(64, 28, 28, 6), (3, 300, 300, 2), (5, 7, 3)])
def test_bias_gradient_by_lines_is_the_column_sum(shape):
    """dE/db sums a large dE/dy as lines of its last axes, then adds their K-wide columns: the
    column sum of the N·H''·W'' × K matrix, to float32 rounding (float64 exactly)."""
    dy = np.random.default_rng(11).standard_normal(shape)
    expected = dy.reshape(-1, shape[-1]).sum(axis=0)
    np.testing.assert_allclose(numpy_kernels.bias_gradient(dy), expected, rtol=1e-12, atol=1e-10)
    scale = np.abs(dy).reshape(-1, shape[-1]).sum(axis=0)  # rounding grows with the sum of |dy|
    error = np.abs(numpy_kernels.bias_gradient(dy.astype(np.float32)) - expected)
    assert (error <= 1e-6 * scale).all(), error / scale
