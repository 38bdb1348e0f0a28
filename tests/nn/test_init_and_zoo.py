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


# Per model, computed by hand from its source: for each layer with parameters or a new size, the
# output H×W×D by H'' = 1 + ⌊(H − H' + P_U + P_D)/S⌋, and the parameter count H'·W'·D·K + K; then
# the total multiply-adds per sample (Σ over conv/fc of output positions · H'·W'·D·K).
ZOO_BY_HAND = {
    "lenet5": ([("conv1", (28, 28, 6), 5 * 5 * 1 * 6 + 6), ("pool1", (14, 14, 6), 0),
                ("conv2", (10, 10, 16), 5 * 5 * 6 * 16 + 16), ("pool2", (5, 5, 16), 0),
                ("fc1", (1, 1, 120), 5 * 5 * 16 * 120 + 120), ("fc2", (1, 1, 84), 120 * 84 + 84),
                ("fc3", (1, 1, 10), 84 * 10 + 10)],
               "conv relu pool:max conv relu pool:max fc relu fc relu fc",
               28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10),
    "mnist_lenet": ([("conv1", (24, 24, 20), 5 * 5 * 20 + 20), ("pool1", (12, 12, 20), 0),
                     ("conv2", (8, 8, 50), 5 * 5 * 20 * 50 + 50), ("pool2", (4, 4, 50), 0),
                     ("conv3", (1, 1, 500), 4 * 4 * 50 * 500 + 500),
                     ("conv4", (1, 1, 10), 500 * 10 + 10)],
                    "conv pool:max conv pool:max conv relu conv",
                    24 * 24 * 20 * 25 + 8 * 8 * 50 * 500 + 800 * 500 + 500 * 10),
    "cifar10_quick": ([("conv1", (32, 32, 32), 5 * 5 * 3 * 32 + 32), ("pool1", (16, 16, 32), 0),
                       ("conv2", (16, 16, 32), 5 * 5 * 32 * 32 + 32), ("pool2", (8, 8, 32), 0),
                       ("conv3", (8, 8, 64), 5 * 5 * 32 * 64 + 64), ("pool3", (4, 4, 64), 0),
                       ("fc1", (1, 1, 64), 4 * 4 * 64 * 64 + 64), ("fc2", (1, 1, 10), 650)],
                      "conv pool:max relu conv relu pool:avg conv relu pool:avg fc relu fc",
                      32 * 32 * 32 * 75 + 16 * 16 * 32 * 800 + 8 * 8 * 64 * 800 + 1024 * 64
                      + 640),
    "keypoints_net1": ([("fc1", (1, 1, 100), 9216 * 100 + 100), ("fc2", (1, 1, 30), 3030)],
                       "fc relu fc", 9216 * 100 + 100 * 30),
    "keypoints_net2": ([("conv1", (94, 94, 32), 3 * 3 * 32 + 32), ("pool1", (47, 47, 32), 0),
                        ("conv2", (46, 46, 64), 2 * 2 * 32 * 64 + 64), ("pool2", (23, 23, 64), 0),
                        ("conv3", (22, 22, 128), 2 * 2 * 64 * 128 + 128),
                        ("pool3", (11, 11, 128), 0),
                        ("fc1", (1, 1, 500), 11 * 11 * 128 * 500 + 500),
                        ("fc2", (1, 1, 500), 500 * 500 + 500), ("fc3", (1, 1, 30), 500 * 30 + 30)],
                       "conv relu pool:max conv relu pool:max conv relu pool:max fc relu fc relu fc",
                       94 * 94 * 32 * 9 + 46 * 46 * 64 * 128 + 22 * 22 * 128 * 256 + 15488 * 500
                       + 500 * 500 + 500 * 30),
    "tiny_vgg": ([("conv1", (62, 62, 10), 3 * 3 * 3 * 10 + 10), ("conv2", (60, 60, 10), 910),
                  ("pool1", (30, 30, 10), 0), ("conv3", (28, 28, 10), 910),
                  ("conv4", (26, 26, 10), 910), ("pool2", (13, 13, 10), 0),
                  ("flatten1", (1690,), 0), ("fc1", (10,), 1690 * 10 + 10)],
                 "conv relu conv relu pool:max conv relu conv relu pool:max flatten fc",
                 62 * 62 * 10 * 27 + (60 * 60 + 28 * 28 + 26 * 26) * 10 * 90 + 16900),
    "alexnet_small": ([("conv1", (32, 32, 64), 5 * 5 * 3 * 64 + 64), ("pool1", (16, 16, 64), 0),
                       ("conv2", (16, 16, 64), 5 * 5 * 64 * 64 + 64), ("pool2", (8, 8, 64), 0),
                       ("fc1", (1, 1, 384), 8 * 8 * 64 * 384 + 384),
                       ("fc2", (1, 1, 192), 384 * 192 + 192), ("fc3", (1, 1, 10), 1930)],
                      "conv relu pool:max lrn conv relu pool:max lrn fc relu dropout fc relu "
                      "dropout fc",
                      32 * 32 * 64 * 75 + 16 * 16 * 64 * 1600 + 4096 * 384 + 384 * 192 + 1920),
    "convnet3d": ([("conv1", (28, 28, 28, 16), 27 * 16 + 16), ("pool1", (14, 14, 14, 16), 0),
                   ("conv2", (14, 14, 14, 32), 27 * 16 * 32 + 32), ("pool2", (7, 7, 7, 32), 0),
                   ("fc1", (1, 1, 1, 64), 7 ** 3 * 32 * 64 + 64), ("fc2", (1, 1, 1, 2), 130)],
                  "conv relu pool:max conv relu pool:max fc relu dropout fc",
                  28 ** 3 * 16 * 27 + 14 ** 3 * 32 * 432 + 7 ** 3 * 32 * 64 + 128),
}


def _kinds(net):
    short = {"Conv": "conv", "ReLU": "relu", "FullyConnected": "fc", "LRN": "lrn",
             "Dropout": "dropout", "Flatten": "flatten"}
    out = []
    for name in net.order():
        layer = net.nodes[name].layer
        kind = type(layer).__name__
        if layer.loss:
            continue
        out.append(f"pool:{layer.method}" if kind == "Pool" else short[kind])
    return " ".join(out)


@pytest.mark.parametrize("name", list(ZOO_BY_HAND))
def test_zoo_models_have_their_sources_sizes_and_parameter_counts(name):
    import re

    from convscope.nn.summary import summary_rows
    layers, kinds, madds = ZOO_BY_HAND[name]
    net = zoo.create(name)
    assert _kinds(net) == kinds
    rows = {r["layer"]: r for r in summary_rows(net)}
    for layer, shape, params in layers:
        assert net.shapes[net.nodes[layer].output] == shape, layer
        assert rows[layer]["params"] == params, layer
    total = sum(r["params"] for r in rows.values())
    assert total == sum(p for _, _, p in layers)
    assert sum(r["madds"] for r in rows.values()) == madds
    stated = re.search(r"([\d,]+)\s+parameters", zoo.MODELS[name].__doc__)
    assert stated and int(stated[1].replace(",", "")) == total   # the docstring tells the truth


def test_zoo_hyper_parameters_follow_their_sources():
    quick = zoo.cifar10_quick()
    for pool in ("pool1", "pool2", "pool3"):                     # MatConvNet's "emulate Caffe"
        layer = quick.nodes[pool].layer
        assert (layer.kernel, layer.stride, tuple(layer.pad)) == (3, 2, (0, 1, 0, 1))
    alex = zoo.alexnet_small()
    for lrn in ("lrn1", "lrn2"):                                  # AlexNet's k, n, α, β
        layer = alex.nodes[lrn].layer
        assert (layer.size, layer.kappa, layer.alpha, layer.beta) == (5, 2.0, 1e-4, 0.75)
    assert [alex.nodes[d].layer.rate for d in ("dropout1", "dropout2")] == [0.5, 0.5]
    assert zoo.convnet3d().nodes["dropout1"].layer.rate == 0.5
    for name in ("keypoints_net1", "keypoints_net2"):             # the head starts near 0
        net = zoo.create(name)
        head = net.nodes[net.order()[-2]].layer
        assert head.init == zoo.KEYPOINT_HEAD_INIT
        assert abs(float(head.value("w").std()) - 0.01) < 0.002
