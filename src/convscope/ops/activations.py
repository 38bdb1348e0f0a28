"""Activation layers: element-wise non-linearities y_{i,j,d} = g(x_{i,j,d}) and their derivatives.

x, y: any shape (N×H×W×D for images). No parameters. Each backward is
dE/dx_{i,j,d} = dE/dy_{i,j,d} · g'(x_{i,j,d}), written once for NumPy arrays and PyTorch tensors
through the array namespace of x (ReLU, the commonest, through each backend's kernels). dE/dy must
have x's shape (a ShapeError otherwise, never a silent broadcast).
"""

from __future__ import annotations

from convscope.backend import array_namespace, kernels
from convscope.ops import _args


def relu(x):
    """Rectified linear unit: y_{i,j,d} = max{0, x_{i,j,d}}.

    The commonest layer of all, so each backend runs it its fastest way (on NumPy, large batches
    in parallel parts)."""
    return kernels(x).relu(x)


def relu_backward(x, dy):
    """dE/dx_{i,j,d} = dE/dy_{i,j,d} · [x_{i,j,d} > 0]."""
    _args.check_same_shape("relu_backward", "dy", x.shape, dy)
    return kernels(x).relu_backward(x, dy)


def leaky_relu(x, *, slope=0.01):
    """y_{i,j,d} = x_{i,j,d} if x_{i,j,d} > 0 else slope · x_{i,j,d}."""
    xp = array_namespace(x)
    return xp.where(x > 0, x, slope * x)


def leaky_relu_backward(x, dy, *, slope=0.01):
    """dE/dx_{i,j,d} = dE/dy_{i,j,d} · (1 if x_{i,j,d} > 0 else slope)."""
    _args.check_same_shape("leaky_relu_backward", "dy", x.shape, dy)
    xp = array_namespace(x, dy)
    return xp.where(x > 0, dy, slope * dy)


def elu(x, *, alpha=1.0):
    """Exponential linear unit: y = x if x > 0 else α(eˣ − 1)."""
    xp = array_namespace(x)
    return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, xp.zeros_like(x))))


def elu_backward(x, dy, *, alpha=1.0):
    """dE/dx = dE/dy · (1 if x > 0 else α eˣ)."""
    _args.check_same_shape("elu_backward", "dy", x.shape, dy)
    xp = array_namespace(x, dy)
    return xp.where(x > 0, dy, dy * alpha * xp.exp(xp.minimum(x, xp.zeros_like(x))))


def sigmoid(x):
    """Logistic sigmoid: y = σ(x) = 1 / (1 + e^{−x}), computed without overflow for large |x|."""
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))  # in (0, 1]
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(x, dy):
    """dE/dx = dE/dy · σ(x)(1 − σ(x))."""
    _args.check_same_shape("sigmoid_backward", "dy", x.shape, dy)
    s = sigmoid(x)
    return dy * s * (1 - s)


def tanh(x):
    """Hyperbolic tangent: y = tanh(x) = (eˣ − e^{−x}) / (eˣ + e^{−x})."""
    return array_namespace(x).tanh(x)


def tanh_backward(x, dy):
    """dE/dx = dE/dy · (1 − tanh²(x))."""
    _args.check_same_shape("tanh_backward", "dy", x.shape, dy)
    t = tanh(x)
    return dy * (1 - t * t)


def softplus(x):
    """Smooth ReLU: y = ln(1 + eˣ) = max(x, 0) + ln(1 + e^{−|x|}) (stable for large |x|)."""
    xp = array_namespace(x)
    return xp.maximum(x, xp.zeros_like(x)) + xp.log1p(xp.exp(-xp.abs(x)))


def softplus_backward(x, dy):
    """dE/dx = dE/dy · σ(x), the derivative of ln(1 + eˣ)."""
    _args.check_same_shape("softplus_backward", "dy", x.shape, dy)
    return dy * sigmoid(x)
