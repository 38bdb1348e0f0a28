"""Optimisers against their update rules; schedules against their formulas."""

import math

import numpy as np
import pytest

from convscope import ConfigError
from convscope.nn import Parameter
from convscope.train import make_optimizer, make_schedule


def _param(value, grad, **factors):
    p = Parameter(np.array(value, dtype=np.float64), **factors)
    p.grad = np.array(grad, dtype=np.float64)
    return p


def test_momentum_follows_the_lecture_update():
    opt = make_optimizer("momentum", lr=0.1, momentum=0.9)
    p = _param([1.0, 2.0], [0.5, -1.0])
    v = np.zeros(2)
    w = p.value.copy()
    for _ in range(3):
        v = 0.9 * v - 0.1 * p.grad
        w = w + v
        opt.step({"w": p})
    np.testing.assert_allclose(p.value, w)


def test_nesterov_equals_the_look_ahead_form():
    """Sutskever's form: v ← αv − η∇E(θ + αv), θ ← θ + v; we step φ = θ + αv."""
    a = np.array([[3.0, 0.5], [0.5, 1.0]])

    def grad(w):
        return a @ w

    theta, v = np.array([1.0, -2.0]), np.zeros(2)
    opt = make_optimizer("nesterov", lr=0.05, momentum=0.9)
    p = _param(theta.copy(), np.zeros(2))
    for _ in range(5):
        v = 0.9 * v - 0.05 * grad(theta + 0.9 * v)
        theta = theta + v
        p.grad = grad(p.value)
        opt.step({"w": p})
    np.testing.assert_allclose(p.value, theta + 0.9 * v)


def test_weight_decay_factors_and_frozen_parameters():
    opt = make_optimizer("sgd", lr=0.1, weight_decay=0.01)
    w = _param([2.0], [0.0])
    b = _param([2.0], [0.0], decay_factor=0.0)
    fast = _param([2.0], [1.0], lr_factor=2.0, decay_factor=0.0)
    frozen = _param([2.0], [1.0], frozen=True)
    opt.step({"w": w, "b": b, "fast": fast, "frozen": frozen})
    np.testing.assert_allclose(w.value, 2.0 - 0.1 * 0.01 * 2.0)
    assert b.value[0] == 2.0 and frozen.value[0] == 2.0
    np.testing.assert_allclose(fast.value, 2.0 - 0.2)
    assert opt.penalty({"w": w, "b": b}) == pytest.approx(0.5 * 0.01 * w.value[0] ** 2)
    assert opt.penalty({"w": w, "frozen": frozen}) == pytest.approx(0.5 * 0.01 * w.value[0] ** 2)


def test_adam_first_step_is_lr_times_sign():
    opt = make_optimizer("adam", lr=0.01)
    p = _param([1.0, 1.0], [3.0, -0.2])
    opt.step({"w": p})
    np.testing.assert_allclose(p.value, [0.99, 1.01], rtol=1e-6)


def test_adam_counts_steps_per_parameter_so_a_layer_unfrozen_late_starts_at_one():
    """With one global t, the first update of a layer unfrozen after 50 steps was
    η·(0.1 g/(1 − 0.9⁵¹))/√(0.001 g²/(1 − 0.999⁵¹)) ≈ 0.71 η instead of Adam's η (and 3.2 η from
    t = 1000 on); PyTorch counts steps per parameter."""
    opt = make_optimizer("adam", lr=0.01)
    early = _param([1.0], [0.5])
    late = _param([1.0], [0.5], frozen=True)
    for _ in range(50):
        opt.step({"early": early, "late": late})
    late.frozen = False
    opt.step({"early": early, "late": late})
    np.testing.assert_allclose(late.value, [0.99], rtol=1e-6)
    assert opt.steps == {"early": 51, "late": 1} and opt.t == 51
    again = make_optimizer("adam", lr=0.01)
    again.load_state_arrays(opt.state_arrays(), opt.hyper())  # a checkpoint keeps the counts
    assert again.steps == opt.steps


@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"])
def test_every_optimiser_minimises_a_quadratic(kind):
    lr = {"sgd": 0.1, "adagrad": 0.5}.get(kind, 0.05)
    opt = make_optimizer(kind, lr=lr)
    p = _param([3.0, -2.0], [0.0, 0.0])
    for _ in range(300):
        p.grad = p.value * np.array([1.0, 4.0])
        opt.step({"w": p})
    assert np.abs(p.value).max() < 0.05, kind


def test_optimiser_state_round_trips():
    opt = make_optimizer("adam", lr=0.01)
    p = _param([1.0], [1.0])
    opt.step({"w": p})
    other = make_optimizer("adam", lr=0.5)
    other.load_state_arrays(opt.state_arrays(), opt.hyper())
    assert other.lr == 0.01 and other.t == 1
    np.testing.assert_array_equal(other.state["w"]["m"], opt.state["w"]["m"])


def test_unknown_optimiser_option_is_named():
    with pytest.raises(ConfigError, match="momentm"):
        make_optimizer("momentum", momentm=0.9)


@pytest.mark.parametrize(("spec", "t", "expected"), [
    (None, 7.5, 0.1),
    ({"type": "step", "step": 3, "gamma": 0.5}, 6.9, 0.1 * 0.25),
    ({"type": "inverse", "kappa": 4}, 4.0, 0.1 * 4 / 8),
    ({"type": "exponential", "kappa": 0.2}, 2.5, 0.1 * math.exp(-0.5)),
    ({"type": "linear", "start": 0.03, "end": 0.0001}, 0.0, 0.03),
    ({"type": "linear", "start": 0.03, "end": 0.0001}, 9.0, 0.0001),
    ({"type": "linear", "start": 0.9, "end": 0.999}, 4.5, 0.9 + 0.099 / 2),
    ({"type": "cosine"}, 5.0, 0.05),
    ({"type": "cosine", "end": 0.01}, 10.0, 0.01),
    ([0.1, 0.05, 0.01], 1.5, 0.05),
    ([0.1, 0.05, 0.01], 8.0, 0.01),
    ({"type": "constant", "warmup": 2}, 0.0, 0.01),
    ({"type": "constant", "warmup": 2}, 1.0, 0.055),
    ({"type": "step", "step": 3, "gamma": 0.5, "warmup": 1}, 3.0, 0.05),
])
def test_schedules(spec, t, expected):
    schedule = make_schedule(spec, start=0.1, epochs=10)
    assert schedule(t) == pytest.approx(expected)


def test_unknown_schedule_is_named():
    with pytest.raises(ConfigError, match="'stepp'"):
        make_schedule({"type": "stepp"}, start=0.1, epochs=3)
