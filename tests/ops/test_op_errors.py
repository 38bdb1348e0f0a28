"""Invalid input raises a ShapeError (or ConfigError) that names the op, what was expected and what
was given, never NumPy's or PyTorch's own broadcast error, and never silently broadcasts."""

import numpy as np
import pytest
import torch

from convscope import ConfigError, ShapeError, ops

ACTIVATION_BACKWARDS = [ops.relu_backward, ops.leaky_relu_backward, ops.elu_backward,
                        ops.sigmoid_backward, ops.tanh_backward, ops.softplus_backward]


def _raised(error, call) -> str:
    with pytest.raises(error) as raised:
        call()
    return str(raised.value)


# Activations: dy must have x's shape --------------------------------------------------------------


@pytest.mark.parametrize("backward", ACTIVATION_BACKWARDS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("x_shape", "dy_shape"), [
    ((2, 3), (1, 3)),  # broadcastable: would silently give a 2×3 dE/dx
    ((2, 3), (2, 4)),  # not broadcastable: NumPy's own error named no op
    ((2, 5, 4, 6), (2, 5, 4, 1)),
], ids=["broadcastable", "mismatched", "images"])
@pytest.mark.parametrize("kind", ["numpy", "torch", "torch-meta"])
def test_activation_backward_rejects_a_dy_of_another_shape(backward, x_shape, dy_shape, kind):
    if kind == "numpy":
        x, dy = np.ones(x_shape), np.ones(dy_shape)
    else:  # meta tensors have shapes but no values: the check reads neither values nor the device
        device = "meta" if kind == "torch-meta" else "cpu"
        x, dy = torch.ones(x_shape, device=device), torch.ones(dy_shape, device=device)
    message = _raised(ShapeError, lambda: backward(x, dy))
    assert message.startswith(f"{backward.__name__}:")
    assert "×".join(map(str, x_shape)) in message and "×".join(map(str, dy_shape)) in message


@pytest.mark.parametrize("backward", ACTIVATION_BACKWARDS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_activation_backward_still_accepts_a_dy_of_xs_shape(backward, kind):
    x, dy = np.full((2, 3), 0.5), np.ones((2, 3))
    if kind == "torch":
        x, dy = torch.from_numpy(x), torch.from_numpy(dy)
    assert tuple(backward(x, dy).shape) == (2, 3)


# Convolution: channel mismatches and empty outputs name the input and the filters ----------------


@pytest.mark.parametrize(("call", "op"), [
    (lambda: ops.conv(np.zeros((2, 7, 7, 2)), np.zeros((3, 3, 3, 4))), "conv"),
    (lambda: ops.conv_backward(np.zeros((2, 7, 7, 2)), np.zeros((3, 3, 3, 4)), None,
                               np.zeros((2, 5, 5, 4))), "conv_backward"),
    (lambda: ops.conv_transpose(np.zeros((2, 7, 7, 2)), np.zeros((3, 3, 3, 4))), "conv_transpose"),
    (lambda: ops.conv_transpose_backward(np.zeros((2, 7, 7, 2)), np.zeros((3, 3, 3, 4)), None,
                                         np.zeros((2, 9, 9, 3))), "conv_transpose_backward"),
], ids=["conv", "conv_backward", "conv_transpose", "conv_transpose_backward"])
def test_channel_mismatch_names_the_input_and_filter_shapes(call, op):
    message = _raised(ShapeError, call)
    assert message.startswith(f"{op}:")
    assert "2×7×7×2 (N×H×W×D)" in message and "3×3×3×4 (H'×W'×D×K)" in message


@pytest.mark.parametrize("op", ["conv_transpose", "conv_transpose_backward"])
def test_conv_transpose_empty_output_names_the_input_and_filter_shapes(op):
    x, w = np.zeros((1, 2, 2, 3)), np.zeros((1, 1, 5, 3))  # H_out = (2 − 1)·1 + 1 − 1 − 1 = 0

    def call():
        if op == "conv_transpose":
            return ops.conv_transpose(x, w, crop=1)
        return ops.conv_transpose_backward(x, w, None, np.zeros((1, 2, 2, 5)), crop=1)

    message = _raised(ShapeError, call)
    assert message.startswith(f"{op}:")
    assert "1×2×2×3 (N×H×W×D)" in message and "1×1×5×3 (H'×W'×D×K)" in message
    assert "0×0" in message and "crop" in message


# LRN: errors name the op that was called; inputs are N×H×W×D or N×T×H×W×D -------------------------


def test_lrn_backward_errors_name_lrn_backward():
    x = np.ones((2, 5, 4, 6))
    message = _raised(ConfigError, lambda: ops.lrn_backward(x, x, size=0))
    assert message.startswith("lrn_backward:")
    assert _raised(ConfigError, lambda: ops.lrn(x, size=0)).startswith("lrn:")
    message = _raised(ShapeError, lambda: ops.lrn_backward(np.ones(6), np.ones(6)))
    assert message.startswith("lrn_backward:")


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_lrn_backward_dy_mismatch_states_both_shapes(kind):
    x, dy = np.ones((2, 5, 4, 6)), np.ones((2, 5, 4, 5))
    if kind == "torch":
        x, dy = torch.from_numpy(x), torch.from_numpy(dy)
    message = _raised(ShapeError, lambda: ops.lrn_backward(x, dy))
    assert message.startswith("lrn_backward:")
    assert "2×5×4×6" in message and "2×5×4×5" in message


@pytest.mark.parametrize("shape", [(2, 4, 6), (2, 6), (2, 1, 3, 4, 5, 6)])
@pytest.mark.parametrize("op", ["lrn", "lrn_backward"])
def test_lrn_requires_a_2d_or_3d_batch(shape, op):
    x = np.ones(shape)
    call = (lambda: ops.lrn(x)) if op == "lrn" else (lambda: ops.lrn_backward(x, x))
    message = _raised(ShapeError, call)
    assert message.startswith(f"{op}:")
    assert "N×H×W×D" in message and "N×T×H×W×D" in message and "×".join(map(str, shape)) in message


# Joins and losses: dE/dy of the wrong shape is named, never sliced or broadcast ------------------


@pytest.mark.parametrize(("call", "op", "shapes"), [
    (lambda: ops.concat_backward([np.ones((2, 3)), np.ones((2, 2))], np.ones((2, 4))),
     "concat_backward", ("2×5", "2×4")),
    (lambda: ops.add_backward([np.ones((2, 3)), np.ones((2, 3))], np.ones((1, 3))),
     "add_backward", ("2×3", "1×3")),
    (lambda: ops.flatten_backward(np.ones((2, 3, 3, 1)), np.ones((2, 8))),
     "flatten_backward", ("2×9", "2×8")),
    (lambda: ops.l2_loss_backward(np.ones((2, 3)), np.zeros((2, 3)), mask=np.ones((2, 2), bool)),
     "l2_loss_backward", ("2×3", "2×2")),
], ids=["concat", "add", "flatten", "l2-mask"])
def test_joins_and_losses_name_a_gradient_of_the_wrong_shape(call, op, shapes):
    message = _raised(ShapeError, call)
    assert message.startswith(f"{op}:") and all(s in message for s in shapes)


@pytest.mark.parametrize("backward", [
    lambda dy: ops.softmax_log_loss_backward(np.ones((2, 3)), np.array([0, 1]), dy=dy),
    lambda dy: ops.l2_loss_backward(np.ones((2, 3)), np.zeros((2, 3)), dy=dy),
], ids=["softmax_log_loss_backward", "l2_loss_backward"])
def test_loss_backward_takes_a_scalar_dy(backward):
    message = _raised(ShapeError, lambda: backward(np.ones(3)))
    assert "scalar" in message and "3" in message
    for dy in (2.0, np.float32(2.0), np.array(2.0)):
        assert np.allclose(np.asarray(backward(dy)), 2 * np.asarray(backward(1.0)))
