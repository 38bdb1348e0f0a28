"""gradcheck itself: it must pass right derivatives and catch wrong ones."""

import numpy as np
import pytest
import torch

from convscope import ops
from convscope.debug import gradcheck

RNG = np.random.default_rng(0)


def test_gradcheck_passes_a_correct_backward_for_every_parameter():
    x, w, b = RNG.standard_normal((2, 6, 6, 2)), RNG.standard_normal((3, 3, 2, 3)), RNG.standard_normal(3)
    errors = gradcheck(ops.conv, ops.conv_backward, [x, w, b], stride=2, pad=1)
    assert set(errors) == {0, 1, 2} and max(errors.values()) < 1e-6


def test_gradcheck_catches_a_wrong_derivative():
    def wrong_sigmoid_backward(x, dy):
        s = ops.sigmoid(x)
        return dy * s  # forgot the (1 − σ) factor

    assert gradcheck(ops.sigmoid, wrong_sigmoid_backward, [RNG.standard_normal((3, 4))])[0] > 0.1


def test_gradcheck_catches_a_wrong_filter_gradient_only():
    x, w = RNG.standard_normal((1, 5, 5, 2)), RNG.standard_normal((3, 3, 2, 2))

    def backward_with_transposed_filters(x, w, dy):
        dx, dw, _ = ops.conv_backward(x, w, None, dy)
        return dx, dw[::-1, ::-1]

    errors = gradcheck(ops.conv, backward_with_transposed_filters, [x, w])
    assert errors[0] < 1e-6 and errors[1] > 0.1


def test_random_direction_check_agrees_with_the_full_check():
    x = RNG.standard_normal((2, 8, 8, 3))
    good = gradcheck(ops.lrn, ops.lrn_backward, [x], directions=5, alpha=0.1)
    def off_by_one_percent(x, dy, **hyper):
        return ops.lrn_backward(x, dy, **hyper) * 1.01

    bad = gradcheck(ops.lrn, off_by_one_percent, [x], directions=5, alpha=0.1)
    assert good[0] < 1e-6 and bad[0] > 1e-3


def test_random_direction_check_passes_a_right_gradient_whatever_the_directions():
    # with this input one of the first directions is nearly orthogonal to dE/dx: relative to the
    # tiny projection alone, rounding noise read as a 2.6e-6 error for a correct backward
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3))
    for seed in range(4):
        error = gradcheck(ops.lrn, ops.lrn_backward, [x], directions=5, seed=seed, alpha=0.1)
        assert error[0] < 1e-6


def test_gradcheck_skips_integer_inputs_and_none_gradients():
    x, labels = RNG.standard_normal((4, 3)), np.array([0, 2, 1, 1])
    errors = gradcheck(ops.softmax_log_loss, ops.softmax_log_loss_backward, [x, labels])
    assert list(errors) == [0] and errors[0] < 1e-6


def test_gradcheck_works_on_torch_tensors():
    x = torch.randn(3, 4, dtype=torch.float32)
    assert gradcheck(ops.tanh, ops.tanh_backward, [x])[0] < 1e-6


def test_gradcheck_names_a_gradient_of_the_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        gradcheck(ops.relu, lambda x, dy: dy[:1], [RNG.standard_normal((3, 4))])


def test_kernels_never_hand_out_their_reused_buffers():
    """Scratch buffers are reused between calls; results must not be views of them."""
    w = RNG.standard_normal((3, 3, 2, 4))
    x1, x2 = RNG.standard_normal((2, 6, 6, 2)), RNG.standard_normal((2, 6, 6, 2))
    y1 = ops.conv(x1, w, pad=1)
    kept = y1.copy()
    dx1, dw1, _ = ops.conv_backward(x1, w, None, y1, pad=1)
    kept_dx, kept_dw = dx1.copy(), dw1.copy()
    ops.conv(x2, w, pad=1)
    ops.conv_backward(x2, w, None, y1, stride=1, pad=1)
    p1 = ops.pool(x1, kernel=2, pad=1)
    kept_p = p1.copy()
    ops.pool(x2, kernel=2, pad=1)
    assert np.array_equal(y1, kept) and np.array_equal(dx1, kept_dx) and np.array_equal(dw1, kept_dw)
    assert np.array_equal(p1, kept_p)


def _centred(x, b):
    """y = (x + b) − mean(x + b): b shifts every value alike and the centring takes it out again,
    so dE/db = 0 exactly (as for a convolution's bias before batch norm)."""
    s = x + b
    return s - s.mean()


def _centred_backward(x, b, dy, *, b_error=0.0):
    dx = dy - dy.mean()
    return dx, np.full_like(b, b_error)


@pytest.mark.parametrize("directions", [None, 3])
def test_a_true_zero_derivative_passes_and_a_small_wrong_one_does_not(directions):
    """Central differences of a zero derivative are rounding noise, ~1e-10 here: relative to
    itself that used to read as an error of 1 (the doctor failed every conv + batch-norm net)."""
    rng = np.random.default_rng(4)
    x, b = rng.standard_normal((6, 50)), rng.standard_normal(1)
    errors = gradcheck(_centred, _centred_backward, [x, b], directions=directions)
    assert errors[0] < 1e-8 and errors[1] == 0.0
    wrong = gradcheck(_centred, lambda x, b, dy: _centred_backward(x, b, dy, b_error=1e-5),
                      [x, b], directions=directions)
    assert wrong[1] > 0.99  # a derivative of 1e-5 where the truth is 0 is still caught
