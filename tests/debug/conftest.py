"""Fixtures of the debugging tests: real MNIST images and tiny networks that train in a blink."""

import numpy as np
import pytest

from convscope.data.preprocess import Standardize
from convscope.nn import Conv, FullyConnected, Pool, ReLU, Sequential, SoftmaxLogLoss
from convscope.train import Trainer, make_optimizer
from convscope.train.datasets import load_split


@pytest.fixture(scope="session")
def mnist_small():
    """(x, y, standardiser): the first 256 images of the bundled MNIST subset."""
    train = load_split("mnist_subset", "train")
    x, y = train.x[:256], train.y[:256]
    return x, y, Standardize().fit(x)


def tiny_convnet(seed=0):
    """conv 5×5×4 stride 2 → ReLU → pool 2 → conv 3×3×8 → fc 10: a few thousand parameters."""
    return Sequential((28, 28, 1), [Conv(4, 5, stride=2), ReLU(), Pool(2), Conv(8, 3),
                                    FullyConnected(10)], loss=SoftmaxLogLoss(), seed=seed)


@pytest.fixture()
def make_trainer(mnist_small):
    """make_trainer(net, lr=..., epochs=..., **kw): a momentum Trainer on the small MNIST set (η =
    0.01 trains tiny_convnet; 0.05 took its loss to about 54 in one epoch and NaN in two)."""
    x, y, std = mnist_small

    def make(net, *, lr=0.01, epochs=2, batch_size=32, **kw):
        return Trainer(net, make_optimizer("momentum", lr=lr, momentum=0.9), (x, y),
                       epochs=epochs, batch_size=batch_size, transform=std, progress=False,
                       log=lambda *_: None, **kw)

    return make


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


@pytest.fixture()
def tiny_net():
    """The factory of :func:`tiny_convnet`."""
    return tiny_convnet
