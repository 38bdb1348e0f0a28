"""Initialisers' statistics and the model zoo."""

import numpy as np
import pytest

from convscope import ConfigError, zoo
from convscope.nn import init


@pytest.mark.parametrize(("name", "std"), [
    ("he", np.sqrt(2 / (5 * 5 * 16))),
    ("lecun", np.sqrt(1 / (5 * 5 * 16))),
    ("xavier", np.sqrt(2 / (5 * 5 * 16 + 5 * 5 * 64))),
    ({"type": "gaussian", "sigma": 0.01}, 0.01),
    ({"type": "uniform", "scale": 0.3}, 0.3 / np.sqrt(3)),
])
def test_initialisers_have_the_documented_spread(name, std):
    w = init.initialize(name, (5, 5, 16, 64), np.random.default_rng(0))
    assert w.dtype == np.float32 and w.shape == (5, 5, 16, 64)
    assert abs(w.std() / std - 1) < 0.03
    assert abs(w.mean()) < 0.05 * std


def test_xavier_is_bounded_and_unknown_initialisers_are_named():
    w = init.xavier((100, 50), np.random.default_rng(0))
    assert np.abs(w).max() <= np.sqrt(6 / 150)
    with pytest.raises(ConfigError, match="'glorious'"):
        init.initialize("glorious", (3, 3), np.random.default_rng(0))


@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_every_zoo_model_builds_and_runs(name):
    net = zoo.create(name)
    shape = net.inputs["input"]
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    values = net.forward({"input": x})
    assert values["prediction"].shape[0] == 2
    assert net.summary().splitlines()[-1].startswith("total")
    assert zoo.MODELS[name].__doc__


def test_zoo_options_are_checked():
    assert zoo.create("lenet5", input_shape=[32, 32, 3], classes=4).shapes["prediction"] == (
        1, 1, 4)
    with pytest.raises(ConfigError, match="'clases'"):
        zoo.create("lenet5", clases=3)
    with pytest.raises(ConfigError, match="unknown model 'lenet6'"):
        zoo.create("lenet6")
