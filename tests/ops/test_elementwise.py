"""Activations, LRN, batch norm, dropout, DropConnect, fully connected, losses and joins."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_oracle import TOLERANCE, check_op, relative_error, to_channels_first, to_channels_last

from convscope import ConfigError, ShapeError, ops
from convscope.debug import gradcheck

RNG = np.random.default_rng(7)
X = RNG.standard_normal((2, 5, 4, 6)) * 2  # N×H×W×D, away from ReLU's kink with high probability
X[np.abs(X) < 1e-3] = 0.5

ACTIVATIONS = {
    "relu": (ops.relu, ops.relu_backward, F.relu, {}),
    "leaky_relu": (ops.leaky_relu, ops.leaky_relu_backward, lambda t: F.leaky_relu(t, 0.1), {"slope": 0.1}),
    "elu": (ops.elu, ops.elu_backward, lambda t: F.elu(t, 0.7), {"alpha": 0.7}),
    "sigmoid": (ops.sigmoid, ops.sigmoid_backward, torch.sigmoid, {}),
    "tanh": (ops.tanh, ops.tanh_backward, torch.tanh, {}),
    "softplus": (ops.softplus, ops.softplus_backward, F.softplus, {}),
}


# batch 1 with odd sizes, 2D, 3D (N×T×H×W×D)
ACTIVATION_SHAPES = [(1, 3, 5, 2), (2, 5, 4, 6), (1, 2, 3, 4, 3)]


def _away_from_kinks(shape, seed=0):
    """Seeded N(0, 4) values with |x| ≥ 1e-3, so ε = 1e-6 steps never cross ReLU's kink at 0."""
    x = np.random.default_rng(seed).standard_normal(shape) * 2
    x[np.abs(x) < 1e-3] = 0.5
    return x


@pytest.mark.parametrize("shape", ACTIVATION_SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradient_matches_numerical(name, shape):
    forward, backward, _, hyper = ACTIVATIONS[name]
    assert gradcheck(forward, backward, [_away_from_kinks(shape)], **hyper)[0] < 1e-6


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", ACTIVATION_SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_pytorch(name, shape, dtype):
    forward, backward, reference, hyper = ACTIVATIONS[name]
    check_op(forward, backward, reference, [_away_from_kinks(shape)], dtype=dtype, hyper=hyper)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 5, 4, 6), (9, 200, 150, 1), (300, 30, 30, 1)])
def test_relu_is_the_maximum_with_zero_bit_for_bit(shape, dtype):
    """The NumPy ReLU takes the maximum with broadcast zeros, not the scalar 0 (a faster loop), in
    one piece or in parallel parts (the two largest shapes): NaN stays NaN, −0 and ∞ as NumPy's
    maximum gives them, and the result is a new writeable array."""
    x = np.random.default_rng(8).standard_normal(shape).astype(dtype)
    x.flat[:4] = [np.nan, -0.0, np.inf, -np.inf]
    y = ops.relu(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert np.array_equal(np.signbit(y), np.signbit(np.maximum(x, 0)))
    assert y.flags.writeable and y.flags.owndata and not np.shares_memory(y, x)
    y += 1  # a layer may add to its output in place
    np.testing.assert_array_equal(ops.relu(x), np.maximum(x, 0))  # the shared zeros stayed zeros


def test_activations_do_not_overflow_for_large_inputs():
    big = np.array([-1000.0, 1000.0])
    assert np.array_equal(ops.sigmoid(big), [0.0, 1.0])
    assert np.array_equal(ops.softplus(big), [0.0, 1000.0])
    assert np.all(np.isfinite(ops.elu_backward(big, np.ones(2))))


# LRN ------------------------------------------------------------------------------------------


def _lrn_by_definition(x, size, kappa, alpha, beta):
    """y_d = x_d (κ + α Σ_{d' ∈ [d − ⌊(size−1)/2⌋, d + ⌈(size−1)/2⌉]} x²_{d'})^−β, by loops."""
    y = np.empty_like(x)
    channels = x.shape[-1]
    for d in range(channels):
        lo, hi = max(0, d - (size - 1) // 2), min(channels, d + size // 2 + 1)
        y[..., d] = x[..., d] * (kappa + alpha * (x[..., lo:hi] ** 2).sum(-1)) ** (-beta)
    return y


@pytest.mark.parametrize("beta", [0.75, 0.6])  # AlexNet's 3/4 runs through square roots on NumPy
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
def test_lrn_matches_its_definition_and_numerical_gradient(size, beta):
    hyper = {"size": size, "kappa": 1.5, "alpha": 0.3, "beta": beta}
    assert relative_error(ops.lrn(X, **hyper), _lrn_by_definition(X, **hyper)) < 1e-14
    assert gradcheck(ops.lrn, ops.lrn_backward, [X], **hyper)[0] < 1e-6


LRN_INPUTS = {  # 7 channels in 3D, so that size 5 has full windows in the middle
    "2d": X * 5,
    "3d-batch1-odd": np.random.default_rng(11).standard_normal((1, 3, 4, 5, 7)) * 10,
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("size, beta", [(3, 0.75), (5, 0.75), (5, 0.6)])
@pytest.mark.parametrize("dims", LRN_INPUTS)
def test_lrn_matches_pytorch_with_alpha_times_size(dims, size, beta, dtype):
    """PyTorch divides α by the window size; convscope (MatConvNet) does not: α_torch = α·size.
    F.local_response_norm takes N×C×H×W and N×C×T×H×W alike."""
    kappa, alpha = 2.0, 1e-2

    def reference(t):
        return to_channels_last(F.local_response_norm(to_channels_first(t), size, alpha * size, beta, kappa))

    check_op(ops.lrn, ops.lrn_backward, reference, [LRN_INPUTS[dims]], dtype=dtype,
             hyper={"size": size, "kappa": kappa, "alpha": alpha, "beta": beta})


def test_lrn_defaults_are_alexnets_constants():
    assert np.allclose(ops.lrn(X), _lrn_by_definition(X, 5, 2.0, 1e-4, 0.75), rtol=1e-14)


def test_lrn_3d_gradient():
    x = RNG.standard_normal((1, 3, 2, 3, 5))
    assert gradcheck(ops.lrn, ops.lrn_backward, [x], size=3, alpha=0.5)[0] < 1e-6


# Batch normalisation -------------------------------------------------------------------------

GAMMA, BETA = RNG.standard_normal(6), RNG.standard_normal(6)


@pytest.mark.parametrize("shape", [(2, 5, 4, 6), (7, 6), (2, 3, 2, 2, 6)])
def test_batch_norm_gradient_matches_numerical(shape):
    x = RNG.standard_normal(shape) * 3 + 1
    errors = gradcheck(ops.batch_norm, ops.batch_norm_backward, [x, GAMMA, BETA], eps=1e-3)
    assert max(errors.values()) < 1e-6, errors


def test_batch_norm_with_fixed_moments_gradient_matches_numerical():
    moments = (RNG.standard_normal(6), RNG.random(6) + 0.5)
    errors = gradcheck(ops.batch_norm, ops.batch_norm_backward, [X, GAMMA, BETA], moments=moments)
    assert max(errors.values()) < 1e-6, errors


BATCH_NORM_INPUTS = {
    "2d": X,
    "3d-batch1-odd": np.random.default_rng(12).standard_normal((1, 3, 4, 5, 6)) * 3 + 1,
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("dims", BATCH_NORM_INPUTS)
def test_batch_norm_matches_pytorch_in_training_and_test_mode(dims, dtype):
    """F.batch_norm on the permuted tensor (N×D×H×W or N×D×T×H×W), per channel over the rest."""
    x = BATCH_NORM_INPUTS[dims]

    def train(x, g, b):
        return to_channels_last(F.batch_norm(to_channels_first(x), None, None, g, b, training=True, eps=1e-5))

    check_op(ops.batch_norm, ops.batch_norm_backward, train, [x, GAMMA, BETA], dtype=dtype)
    mean, var = RNG.standard_normal(6), RNG.random(6) + 0.5

    def test(x, g, b):
        y = F.batch_norm(to_channels_first(x), torch.tensor(mean.astype(dtype)),
                         torch.tensor(var.astype(dtype)), g, b, training=False, eps=1e-5)
        return to_channels_last(y)

    moments = (mean.astype(dtype), var.astype(dtype))
    check_op(ops.batch_norm, ops.batch_norm_backward, test, [x, GAMMA, BETA], dtype=dtype,
             hyper={"moments": moments})


def test_batch_norm_returns_the_batch_moments():
    _, (mean, var) = ops.batch_norm(X, GAMMA, BETA)
    assert np.allclose(mean, X.mean((0, 1, 2))) and np.allclose(var, X.var((0, 1, 2)))


# Dropout and DropConnect ---------------------------------------------------------------------


def test_dropout_drops_at_the_rate_and_keeps_the_expectation():
    x = np.ones((200, 10, 10, 5))
    y, mask = ops.dropout(x, rate=0.3, rng=np.random.default_rng(0))
    assert abs(1 - mask.mean() - 0.3) < 0.005
    assert np.array_equal(y[mask], np.full(mask.sum(), 1 / 0.7)) and np.all(y[~mask] == 0)
    assert abs(y.mean() - 1) < 0.01


def test_dropout_is_reproducible_from_the_seed_and_rate_zero_is_the_identity():
    a, _ = ops.dropout(X, rate=0.5, rng=np.random.default_rng(3))
    b, _ = ops.dropout(X, rate=0.5, rng=np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert np.array_equal(ops.dropout(X, rate=0.0, rng=np.random.default_rng(3))[0], X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dropout_matches_numerical_and_pytorch_with_the_same_mask(dtype):
    _, mask = ops.dropout(X, rate=0.4, rng=np.random.default_rng(1))

    def forward(x):
        y, m = ops.dropout(x, rate=0.4, rng=np.random.default_rng(1))
        assert np.array_equal(m, mask)
        return y

    def backward(x, dy):
        return ops.dropout_backward(dy, mask, rate=0.4)

    if dtype == np.float64:
        assert gradcheck(forward, backward, [X])[0] < 1e-6
    check_op(forward, backward, lambda t: t * torch.tensor(mask) / 0.6, [X], dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("w_shape", [(30, 4), (5, 3, 2, 4)])
def test_dropconnect_matches_numerical_and_pytorch(w_shape, dtype):
    x = RNG.standard_normal((3, 30)) if len(w_shape) == 2 else RNG.standard_normal((3, 5, 3, 2))
    w, b = RNG.standard_normal(w_shape), RNG.standard_normal(4)
    _, mask = ops.dropconnect(x, w, b, rate=0.5, rng=np.random.default_rng(2))
    assert abs(mask.mean() - 0.5) < 0.2

    def forward(x, w, b):
        y, m = ops.dropconnect(x, w, b, rate=0.5, rng=np.random.default_rng(2))
        assert np.array_equal(m, mask)
        return y

    def backward(x, w, b, dy):
        return ops.dropconnect_backward(x, w, b, dy, mask, rate=0.5)

    if dtype == np.float64:
        assert max(gradcheck(forward, backward, [x, w, b]).values()) < 1e-6

    def reference(xt, wt, bt):
        kept = (wt * torch.tensor(mask) / 0.5).reshape(-1, 4)
        return (xt.reshape(3, -1) @ kept + bt).reshape((3, *[1] * (x.ndim - 2), 4))

    check_op(forward, backward, reference, [x, w, b], dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropconnect_gradients_keep_the_weights_dtype(dtype):
    """1/(1 − rate) = 1/0.7 is not exact in float32: a scale computed in another precision shows."""
    x, w, b = (RNG.standard_normal(s).astype(dtype) for s in ((3, 6), (6, 4), (4,)))
    _, mask = ops.dropconnect(x, w, b, rate=0.3, rng=np.random.default_rng(2))
    dy = RNG.standard_normal((3, 4)).astype(dtype)
    dx, dw, db = ops.dropconnect_backward(x, w, b, dy, mask, rate=0.3)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    np.testing.assert_array_equal(dw, (x.T @ dy) * mask / dtype(0.7))


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rejects_a_rate_outside_0_1(rate):
    with pytest.raises(ConfigError, match="rate"):
        ops.dropout(X, rate=rate, rng=np.random.default_rng(0))


def test_dropout_needs_a_generator():
    with pytest.raises(ConfigError, match="default_rng"):
        ops.dropout(X, rate=0.5, rng=0)


# Fully connected -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("x_shape", "w_shape"),
    [((4, 12), (12, 5)), ((3, 4, 5, 2), (4, 5, 2, 6)), ((2, 2, 3, 2, 2), (2, 3, 2, 2, 3))],
)
def test_fully_connected_matches_numerical_and_pytorch(x_shape, w_shape, dtype):
    x, w, b = RNG.standard_normal(x_shape), RNG.standard_normal(w_shape), RNG.standard_normal(w_shape[-1])
    if dtype == np.float64:
        assert max(gradcheck(ops.fully_connected, ops.fully_connected_backward, [x, w, b]).values()) < 1e-6

    def reference(xt, wt, bt):
        y = xt.reshape(x_shape[0], -1) @ wt.reshape(-1, w_shape[-1]) + bt
        return y.reshape((x_shape[0], *[1] * (len(x_shape) - 2), w_shape[-1]))

    check_op(ops.fully_connected, ops.fully_connected_backward, reference, [x, w, b], dtype=dtype)


@pytest.mark.parametrize("to_array", [np.asarray, torch.from_numpy])
def test_fully_connected_bias_of_another_dtype_promotes_as_an_addition(to_array):
    """The bias is added in place (NumPy) or fused into the product (PyTorch's addmm) only where
    that keeps the result type of x·w + b."""
    x, w = RNG.standard_normal((4, 6)).astype(np.float32), RNG.standard_normal((6, 3)).astype(np.float32)
    b = RNG.standard_normal(3)
    for bias in (b, b.astype(np.float32)):
        y = ops.fully_connected(to_array(x), to_array(w), to_array(bias))
        expected = x @ w + bias
        assert str(y.dtype).endswith(str(expected.dtype))
        np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)  # float32 sums


def test_fully_connected_names_the_expected_input():
    with pytest.raises(ShapeError, match="N×4×5×2"):
        ops.fully_connected(np.zeros((3, 5, 4, 2)), np.zeros((4, 5, 2, 6)))
    with pytest.raises(ShapeError, match="flatten"):
        ops.fully_connected(np.zeros((3, 5, 4, 2)), np.zeros((40, 6)))


# Losses ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(8, 5), (2, 3, 4, 5)])
def test_softmax_log_loss_matches_numerical_and_pytorch(shape, weighted):
    x = RNG.standard_normal(shape) * 3
    labels = RNG.integers(0, 5, shape[:-1])
    weights = RNG.random(5) + 0.2 if weighted else None
    hyper = {"weights": weights}
    assert gradcheck(ops.softmax_log_loss, ops.softmax_log_loss_backward, [x, labels], **hyper)[0] < 1e-6

    for dtype in (np.float64, np.float32):
        def reference(xt, lt, dtype=dtype):
            w = None if weights is None else torch.tensor(weights.astype(dtype))
            logits = xt if xt.ndim == 2 else to_channels_first(xt)
            return F.cross_entropy(logits, torch.as_tensor(lt), weight=w)

        loss = check_op(ops.softmax_log_loss, ops.softmax_log_loss_backward, reference, [x, labels],
                        dtype=dtype, hyper=hyper)
        assert np.ndim(loss) == 0


def test_softmax_log_loss_at_uniform_logits_is_log_c():
    """The lecture's first sanity check: the initial loss is ln C for C classes."""
    assert np.isclose(ops.softmax_log_loss(np.zeros((4, 10)), np.arange(4)), np.log(10))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(5, 7), (1, 3, 5, 4), (2, 4, 3, 6)], ids=str)  # N×C, N×H×W×C
def test_softmax_matches_pytorch(shape, dtype):
    x = (np.random.default_rng(5).standard_normal(shape) * 3).astype(dtype)
    p = ops.softmax(x)
    assert p.dtype == dtype
    assert relative_error(p, torch.softmax(torch.tensor(x), dim=-1).numpy()) < TOLERANCE[dtype]


def test_softmax_sums_to_one_and_is_stable():
    p = ops.softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    assert np.allclose(p, [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize(
    ("labels", "message"),
    [(np.array([0, 5]), r"\[0, 5\)"), (np.array([0.0, 1.0]), "integer"), (np.array([0, 1, 2]), "shape")],
)
def test_softmax_log_loss_rejects_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        ops.softmax_log_loss(np.zeros((2, 5)), labels)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_l2_loss_matches_numerical_and_pytorch_and_masks_missing_keypoints(dtype):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 15, 2))
    target = rng.standard_normal((4, 15, 2))
    target[0, 3] = np.nan  # a missing keypoint
    mask = ~np.isnan(target)
    if dtype == np.float64:
        assert gradcheck(ops.l2_loss, ops.l2_loss_backward, [x, target], mask=mask)[0] < 1e-6

    def reference(xt, tt):
        m = torch.tensor(mask)
        return ((xt[m] - tt[m]) ** 2).mean()

    check_op(ops.l2_loss, ops.l2_loss_backward, reference, [x, target], dtype=dtype,
             hyper={"mask": mask})
    assert ops.l2_loss_backward(x, target, mask=mask)[0, 3].tolist() == [0.0, 0.0]


def test_l2_loss_without_mask_equals_mse_and_refuses_nan_targets():
    x, t = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    assert np.isclose(ops.l2_loss(x, t), F.mse_loss(torch.tensor(x), torch.tensor(t)).item(), rtol=1e-14)
    t[1, 1] = np.nan
    with pytest.raises(ConfigError, match="mask"):
        ops.l2_loss(x, t)


# Joins -----------------------------------------------------------------------------------------


def _concat2(a, b):
    return ops.concat([a, b])


def _concat2_backward(a, b, dy):
    return tuple(ops.concat_backward([a, b], dy))


def _add2(a, c):
    return ops.add([a, c])


def _add2_backward(a, c, dy):
    return tuple(ops.add_backward([a, c], dy))


# (forward, backward, PyTorch reference)
JOINS = {
    "flatten": (ops.flatten, ops.flatten_backward, lambda t: t.reshape(t.shape[0], -1)),
    "concat": (_concat2, _concat2_backward, lambda s, t: torch.cat([s, t], -1)),
    "add": (_add2, _add2_backward, torch.add),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("name", "shapes"),
    [
        ("flatten", [(2, 5, 4, 6)]),
        ("flatten", [(1, 3, 2, 5, 3)]),
        ("concat", [(2, 3, 3, 2), (2, 3, 3, 4)]),
        ("concat", [(1, 3, 2, 5, 1), (1, 3, 2, 5, 3)]),
        ("add", [(2, 3, 3, 2)] * 2),
        ("add", [(1, 3, 2, 5, 3)] * 2),
    ],
    ids=["flatten-2d", "flatten-3d-batch1", "concat-2d", "concat-3d-batch1", "add-2d", "add-3d-batch1"],
)
def test_joins_match_numerical_and_pytorch(name, shapes, dtype):
    forward, backward, reference = JOINS[name]
    rng = np.random.default_rng(14)
    inputs = [rng.standard_normal(shape) for shape in shapes]
    if dtype == np.float64:
        assert max(gradcheck(forward, backward, inputs).values()) < 1e-6
    check_op(forward, backward, reference, inputs, dtype=dtype)


def test_joins_reject_mismatched_inputs():
    with pytest.raises(ShapeError, match="identical"):
        ops.add([np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2, 4))])
    with pytest.raises(ShapeError, match="agree"):
        ops.concat([np.zeros((1, 2, 2, 3)), np.zeros((1, 3, 2, 4))])
