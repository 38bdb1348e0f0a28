"""The monitor's warnings, each naming the layer, and the statistics they read."""

import numpy as np
import pytest

from convscope.debug import stats
from convscope.debug.rules import Thresholds, gradient_warnings, unit_warnings, warnings_for


def _rows(rms):
    return [{"layer": f"conv{i}", "w_grad_rms": v} for i, v in enumerate(rms, 1)]


def test_vanishing_and_exploding_gradients_are_judged_against_the_last_layer():
    found = gradient_warnings(_rows([1e-7, 1e-2, 2e3, 1e-1, 1.0]), Thresholds())
    assert [(w["kind"], w["layer"]) for w in found] == [
        ("vanishing_gradients", "conv1"), ("exploding_gradients", "conv3")]
    assert found[0]["message"].startswith("vanishing gradients in 'conv1': RMS dE/dω = 1.00e-07")
    assert "clip the gradient" in found[1]["message"]
    assert gradient_warnings(_rows([1e-3, 1.0]), Thresholds()) == []  # exactly 1e-3: no warning


def test_dead_relu_and_saturated_layers_are_named_with_their_numbers():
    found = warnings_for([{"layer": "relu2", "act_dead": 0.75}, {"layer": "relu3", "act_dead": 0.5},
                          {"layer": "sigmoid1", "act_saturated": 0.9}])
    assert [(w["kind"], w["layer"]) for w in found] == [("dead_relu", "relu2"),
                                                        ("saturated", "sigmoid1")]
    assert "75% of its channels" in found[0]["message"]
    assert "90% of its outputs" in found[1]["message"]
    assert unit_warnings({"layer": "relu1", "act_dead": 0.0}, Thresholds()) == []


def test_statistics_of_one_array():
    a = np.array([[0.0, 1.0], [0.0, 3.0], [0.0, -4.0]])
    assert stats.moments(a) == pytest.approx((0.0, np.sqrt(26 / 6)))
    assert stats.norm(a) == pytest.approx(np.sqrt(26))
    assert stats.rms(a) == pytest.approx(np.sqrt(26 / 6))
    assert stats.zero_fraction(a) == 0.5
    assert stats.dead_fraction(a) == 0.5  # column 0 is 0 for every sample
    assert stats.saturated_fraction(np.array([0.005, 0.5, 0.995, 0.99]), "Sigmoid") == 0.75
    assert stats.saturated_fraction(np.array([-0.995, 0.0, 0.3, 1.0]), "Tanh") == 0.5
    assert stats.saturated_fraction(a, "ReLU") is None
    assert stats.update_ratio([np.array([3.0, 4.0])], [np.array([3.0, 4.005])]) == \
        pytest.approx(1e-3)
    assert stats.update_ratio([np.zeros(2)], [np.ones(2)]) is None
    h = stats.histogram(np.array([0.0, 1.0, np.nan, 1.0]), bins=2)
    assert h == {"counts": [1, 2], "edges": [0.0, 0.5, 1.0]}
    assert not stats.all_finite(np.array([1.0, np.inf])) and stats.all_finite(np.arange(3))
    assert not stats.all_finite(np.array([3e38, 3e38, np.nan], dtype=np.float32))


def test_a_finite_array_whose_sum_overflows_is_finite_without_a_warning():
    big = np.full(4, 3e38, dtype=np.float32)
    with np.errstate(over="raise", invalid="raise"):  # as a user's settings may be
        assert stats.all_finite(big)
        assert not stats.all_finite(np.array([3e38, 3e38, np.nan], dtype=np.float32))
