"""The model zoo: the lecture's networks and the classic ones it cites, as :class:`Network` s.

Every model takes ``input_shape`` (H×W×D, or T×H×W×D for volumes), the number of outputs, and
``seed``/``dtype``; it returns a network with inputs ``input`` and ``label``, the ``prediction``
variable (the scores before the loss) and the ``objective`` (the loss). ``create(name, **options)``
looks a model up by name, as configs and ``convscope summary`` do.

Weights start from convscope's defaults, not from each source's scheme: He for convolutions,
Xavier for fully connected layers (with a convolution's fans, see :mod:`convscope.nn.init`), zero
biases; the keypoint regressors' output layer is the one exception (``KEYPOINT_HEAD_INIT``).
"""

from __future__ import annotations

import inspect

import numpy as np

from convscope.errors import ConfigError
from convscope.nn import (
    LRN,
    Conv,
    Dropout,
    Flatten,
    FullyConnected,
    L2Loss,
    Pool,
    ReLU,
    Sequential,
    SoftmaxLogLoss,
)


def _classifier(input_shape, layers, seed, dtype):
    return Sequential(input_shape, layers, loss=SoftmaxLogLoss(), seed=seed, dtype=dtype)


def _conv_relu(k, size, **hyper):
    return [Conv(k, size, **hyper), ReLU()]


def lenet5(input_shape=(28, 28, 1), classes=10, *, seed=0, dtype=np.float32):
    """LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
    recognition", Proc. IEEE 1998), the lecture's MNIST example: conv 5×5×6 (pad 2) → pool 2 →
    conv 5×5×16 → pool 2 → fc 120 → fc 84 → fc ``classes``, ReLU after every conv and hidden fc.
    The 28×28 input padded by 2 is the paper's 32×32; 61,706 parameters. Modernised as usual:
    ReLU for the scaled tanh, max pooling for the trainable subsampling, C3 connected to all six
    maps (2,416 parameters, not the paper's connection table's 1,516) and a plain fc with the
    softmax log-loss for the RBF output layer."""
    layers = [*_conv_relu(6, 5, pad=2), Pool(2), *_conv_relu(16, 5), Pool(2),
              FullyConnected(120), ReLU(), FullyConnected(84), ReLU(), FullyConnected(classes)]
    return _classifier(input_shape, layers, seed, dtype)


def mnist_lenet(input_shape=(28, 28, 1), classes=10, *, seed=0, dtype=np.float32):
    """MatConvNet's MNIST network (``examples/mnist/cnn_mnist_init.m``): conv 5×5×20 → pool 2 →
    conv 5×5×50 → pool 2 → conv 4×4×500 → ReLU → conv 1×1×10, every layer a convolution, max
    pooling, no ReLU after the first two (431,080 parameters). It is Caffe's MNIST LeNet
    (``examples/mnist/lenet_train_test.prototxt``: ip1 500 → ReLU → ip2 10) with its fully
    connected layers written as convolutions."""
    layers = [Conv(20, 5), Pool(2), Conv(50, 5), Pool(2), *_conv_relu(500, 4), Conv(classes, 1)]
    return _classifier(input_shape, layers, seed, dtype)


def cifar10_quick(input_shape=(32, 32, 3), classes=10, *, seed=0, dtype=np.float32):
    """The CIFAR-10 "quick" network of Caffe (``examples/cifar10/cifar10_quick_train_test``) and
    MatConvNet (``cnn_cifar_init.m``, 'lenet'): conv 5×5×32 → max pool 3/2 → ReLU → conv 5×5×32 →
    ReLU → avg pool 3/2 → conv 5×5×64 → ReLU → avg pool 3/2 → fc 64 → ReLU → fc ``classes``
    (145,578 parameters). The pools pad (0, 1, 0, 1), as MatConvNet does to emulate Caffe's
    rounding-up output size (32 → 16 → 8 → 4); average pooling leaves the padding out, as Caffe.
    The ReLU after fc 64 is MatConvNet's (after its conv 4×4×64); Caffe's prototxt has none
    between ip1 and ip2."""
    pool = {"kernel": 3, "stride": 2, "pad": (0, 1, 0, 1)}
    layers = [Conv(32, 5, pad=2), Pool(**pool), ReLU(),
              *_conv_relu(32, 5, pad=2), Pool(**pool, method="avg"),
              *_conv_relu(64, 5, pad=2), Pool(**pool, method="avg"),
              FullyConnected(64), ReLU(), FullyConnected(classes)]
    return _classifier(input_shape, layers, seed, dtype)


# The keypoint regressors' output layer starts near 0, so that an untrained net predicts the
# targets' centre and its loss is about mean t² (the lecture's initial-loss check). With Xavier's
# init keypoints_net2's first loss on standardised faces was 0.48 against mean t² = 0.057, and
# η = 0.03 from the first batch took it to 2·10^10 within five batches; from σ = 0.01 the same η
# took it from 0.06 to 0.01 in twelve.
KEYPOINT_HEAD_INIT = {"type": "gaussian", "sigma": 0.01}


def _keypoint_head(keypoints):
    return FullyConnected(2 * keypoints, init=KEYPOINT_HEAD_INIT)


def _regressor(input_shape, layers, keypoints, seed, dtype):
    return Sequential(input_shape, layers, loss=L2Loss(), label_shape=(keypoints, 2), seed=seed,
                      dtype=dtype)


def keypoints_net1(input_shape=(96, 96, 1), keypoints=15, *, seed=0, dtype=np.float32):
    """The facial-keypoints tutorial's net1 (D. Nouri, "Using convolutional neural nets to detect
    facial keypoints", 2014; the lecture's example): one hidden ReLU layer, 9216–100–30 units, trained
    on the mean squared error of the 2·``keypoints`` coordinates (the output layer starting near
    0: ``KEYPOINT_HEAD_INIT``); 924,730 parameters."""
    layers = [FullyConnected(100), ReLU(), _keypoint_head(keypoints)]
    return _regressor(input_shape, layers, keypoints, seed, dtype)


def keypoints_net2(input_shape=(96, 96, 1), keypoints=15, *, seed=0, dtype=np.float32):
    """The facial-keypoints tutorial's LeNet-style net2 (Nouri 2014; the lecture's net2–net5):
    conv 3×3×32 → pool 2 → conv 2×2×64 → pool 2 → conv 2×2×128 → pool 2 → fc 500 → fc 500 →
    fc 2·``keypoints`` (starting near 0: ``KEYPOINT_HEAD_INIT``), ReLU between, valid
    convolutions and max pooling (96 → 94 → 47 → 46 → 23 → 22 → 11; 8,051,502 parameters)."""
    layers = [*_conv_relu(32, 3), Pool(2), *_conv_relu(64, 2), Pool(2), *_conv_relu(128, 2),
              Pool(2), FullyConnected(500), ReLU(), FullyConnected(500), ReLU(),
              _keypoint_head(keypoints)]
    return _regressor(input_shape, layers, keypoints, seed, dtype)


def tiny_vgg(input_shape=(64, 64, 3), classes=10, *, width=10, seed=0, dtype=np.float32):
    """Tiny VGG (Wang et al., "CNN Explainer", IEEE TVCG 2020; the lecture monitors its training):
    two VGG blocks of [conv 3×3×``width`` → ReLU → conv 3×3×``width`` → ReLU → max pool 2], then
    flatten → fc ``classes``, valid convolutions (64 → 62 → 60 → 30 → 28 → 26 → 13; 19,920
    parameters with ``width`` 10)."""
    def block():
        return [*_conv_relu(width, 3), *_conv_relu(width, 3), Pool(2)]

    layers = [*block(), *block(), Flatten(), FullyConnected(classes)]
    return _classifier(input_shape, layers, seed, dtype)


def alexnet_small(input_shape=(32, 32, 3), classes=10, *, dropout=0.5, seed=0,
                  dtype=np.float32):
    """A small AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) for 32×32 images, laid out as
    TensorFlow's CIFAR-10 tutorial model (``tutorials/image/cifar10/cifar10.py``, itself after
    cuda-convnet's ``layers-18pct``): [conv 5×5×64 (pad 2) → ReLU → max pool 3/2 → LRN] ×2 →
    fc 384 → ReLU → dropout → fc 192 → ReLU → dropout → fc ``classes`` (1,756,426 parameters).
    The pools pad (0, 1, 0, 1), TensorFlow's 'SAME' (32 → 16 → 8). Departures from that model:
    AlexNet's LRN constants (κ=2, α=1e-4 not divided by the window, β=0.75, 5 channels) for its
    κ=1, α=1e-3/9, 9 channels; the second LRN after the pool (the tutorial normalises before
    it); AlexNet's dropout (``dropout``) on the fc layers, which the tutorial does not use;
    32×32 inputs where the tutorial crops 24×24."""
    layers = [*_conv_relu(64, 5, pad=2), Pool(3, stride=2, pad=(0, 1, 0, 1)), LRN(),
              *_conv_relu(64, 5, pad=2), Pool(3, stride=2, pad=(0, 1, 0, 1)), LRN(),
              FullyConnected(384), ReLU(), Dropout(dropout),
              FullyConnected(192), ReLU(), Dropout(dropout), FullyConnected(classes)]
    return _classifier(input_shape, layers, seed, dtype)


def convnet3d(input_shape=(28, 28, 28, 1), classes=2, *, seed=0, dtype=np.float32):
    """A small 3D ConvNet for volumes (T×H×W×D), convscope's own, sized for the 28×28×28 volumes
    of MedMNIST v2 (Yang et al., Scientific Data 2023; its baselines are 3D ResNets, not this
    net): conv 3×3×3×16 (pad 1) → ReLU → max pool 2 → conv 3×3×3×32 (pad 1) → ReLU → max
    pool 2 → fc 64 → ReLU → dropout 0.5 → fc ``classes`` (716,962 parameters on 28³×1)."""
    layers = [*_conv_relu(16, 3, pad=1), Pool(2), *_conv_relu(32, 3, pad=1), Pool(2),
              FullyConnected(64), ReLU(), Dropout(0.5), FullyConnected(classes)]
    return _classifier(input_shape, layers, seed, dtype)


MODELS = {f.__name__: f for f in (lenet5, mnist_lenet, cifar10_quick, keypoints_net1,
                                  keypoints_net2, tiny_vgg, alexnet_small, convnet3d)}


def create(name, **options):
    """The zoo model ``name`` built with ``options`` (``input_shape``, ``classes``, ``seed``, …)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; the zoo has: {', '.join(MODELS)}")
    fn = MODELS[name]
    accepted = set(inspect.signature(fn).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"model {name}: unknown option(s) {unknown}; it takes "
                          f"{sorted(accepted)}")
    if "input_shape" in options:
        options["input_shape"] = tuple(options["input_shape"])
    return fn(**options)
