"""Layer objects: parameters and hyper-parameters around the pure functions of :mod:`convscope.ops`.

A layer is a small dataclass whose fields are its hyper-parameters (what the architecture JSON
stores). :meth:`Layer.build` is called when the layer joins a :class:`~convscope.nn.Network`,
with the per-sample shapes of its inputs (H×W×D, no N): it creates the parameters, so a user gives
the filter count K and size H'×W', never the input depth D. Then

    y, aux = layer.forward(xs, train=..., rng=...)      # the op's forward
    dxs = layer.backward(xs, aux, dy)                   # the op's backward; sets each p.grad

where ``aux`` is what the backward needs besides the inputs (a dropout mask, batch moments).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from convscope import ops
from convscope.backend import array_namespace, can_inspect_values, kernels
from convscope.backend.devices import device_of, numpy_dtype, to_device
from convscope.errors import ConfigError, ShapeError
from convscope.nn.init import initialize
from convscope.nn.parameter import Parameter

LAYERS: dict[str, type[Layer]] = {}


def shape_str(shape) -> str:
    """A per-sample shape in the lecture's notation: '28×28×1', '500', or 'scalar'."""
    return "×".join(str(s) for s in shape) if len(shape) else "scalar"


@dataclass(eq=False)
class Layer(abc.ABC):
    """Base class. ``arity`` is the number of inputs (None: one or more)."""

    arity = 1
    loss = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        LAYERS[cls.__name__] = cls

    def __post_init__(self):
        self.params: dict[str, Parameter] = {}

    # -- description -------------------------------------------------------------------------
    def hyper(self) -> dict:
        """The hyper-parameters (the constructor's keywords), as stored in the architecture JSON."""
        return {name: getattr(self, name) for name in _hyper_names(type(self))}

    def op_hyper(self) -> dict:
        """The keywords this layer gives its op (read only): made once, and again after any
        attribute changes, since a training step asks for them once per layer and pass."""
        kept = self.__dict__.get("_op_hyper")
        if kept is None:
            kept = self.__dict__["_op_hyper"] = self._op_keywords()
        return kept

    def _op_keywords(self) -> dict:
        """The op's keywords: by default all the hyper-parameters."""
        return self.hyper()

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        self.__dict__.pop("_op_hyper", None)

    def geometry(self, in_shape):
        """(kernel, stride) per spatial axis in this layer's input pixels, for the receptive field;
        None for a layer that works pixel by pixel."""
        return None

    def madds(self, in_shapes, out_shape) -> int:
        """Multiply-adds per sample (the products of convolutions and fully connected layers)."""
        return 0

    # -- building ----------------------------------------------------------------------------
    def build(self, in_shapes, rng, dtype) -> None:  # noqa: B027 (no parameters by default)
        """Create the parameters for inputs of per-sample shapes ``in_shapes``."""

    def output_shape(self, in_shapes, dtype):
        """The per-sample output shape, found by running the op on one sample of zeros, so that
        the op's own checks (channels, empty outputs) speak for the layer."""
        xs = [np.zeros((1, *s), dtype=dtype) for s in in_shapes]
        y, _ = self.forward(xs, train=False, rng=None)
        return tuple(int(s) for s in y.shape[1:])

    def _param(self, name, shape, init, rng, dtype, **factors) -> None:
        self.params[name] = Parameter(initialize(init, shape, rng, dtype), **factors)

    def placed(self) -> None:  # noqa: B027 (most layers keep their parameters as they are)
        """Called after the network moved its parameters to a device or dtype: lets a layer keep
        a parameter in the memory order its backend's kernels run fastest."""

    def value(self, name):
        """The array of parameter ``name`` (None when the layer has no such parameter)."""
        p = self.params.get(name)
        return None if p is None else p.value

    def set_grads(self, **grads) -> None:
        for name, g in grads.items():
            if name in self.params:
                self.params[name].grad = g

    # -- computing ---------------------------------------------------------------------------
    @abc.abstractmethod
    def forward(self, xs, *, train, rng):
        """(y, aux): the op's output for the inputs ``xs`` and what its backward needs besides them."""

    @abc.abstractmethod
    def backward(self, xs, aux, dy):
        """[dE/dx for each input] given dE/dy; sets each parameter's ``grad``. Layers on the data
        (filters, fully connected) also take ``input_grad=False`` to skip a dE/dx nobody needs."""


@functools.cache
def _hyper_names(cls) -> tuple[str, ...]:
    """The constructor's fields of a layer class (looked up once: dataclasses.fields is slow enough
    to cost half a millisecond per training step when asked on every call)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def _tuple(value, dims):
    return (value,) * dims if isinstance(value, (int, np.integer)) else tuple(value)


def _spatial(in_shape, layer):
    if len(in_shape) not in (3, 4):
        raise ShapeError(f"{type(layer).__name__}: expected an H×W×D (or T×H×W×D) input, "
                         f"got {shape_str(in_shape)}")
    return len(in_shape) - 1


# ---------------------------------------------------------------------------------------------
# Layers with filters


@dataclass(eq=False)
class _Filtered(Layer):
    """Common part of the layers with a filter bank ``w`` and biases ``b``."""

    def _make(self, shape, bias_size, rng, dtype):
        self._param("w", shape, self.init, rng, dtype)
        if self.bias:
            self._param("b", (bias_size,), "zeros", rng, dtype, decay_factor=0.0)

    def _op_keywords(self):
        """The op's keywords: the hyper-parameters other than the filter count and size, the
        bias switch, the initialiser and a dropping rate."""
        return {k: v for k, v in self.hyper().items()
                if k not in ("k", "d", "size", "bias", "init", "rate")}

    stores_filters = False  # Conv, ConvTranspose: w kept in the backend's filter order

    def placed(self) -> None:
        if self.stores_filters and "w" in self.params:
            w = self.params["w"]
            w.value = kernels(w.value).stored_filters(w.value)

    def backward(self, xs, aux, dy, *, input_grad=True):
        dx, dw, db = self.op_backward(xs[0], self.value("w"), self.value("b"), dy,
                                      input_grad=input_grad, **self.op_hyper())
        self.set_grads(w=dw, b=db)
        return [dx]

    def forward(self, xs, *, train, rng):
        return self.op(xs[0], self.value("w"), self.value("b"), **self.op_hyper()), None


@dataclass(eq=False)
class Conv(_Filtered):
    """Convolutional layer: y_{i,j,k} = b_k + Σ_{h,w,d} f_{h,w,d,k} · x_{i+h,j+w,d}
    (:func:`convscope.ops.conv`), K filters of size H'×W' (T'×H'×W' on volumes); the depth D is
    the input's. H'' = 1 + ⌊(H − H' + P_U + P_D)/S_H⌋."""

    k: int = 1
    size: int | tuple = 3
    stride: int | tuple = 1
    pad: int | tuple = 0
    dilate: int | tuple = 1
    groups: int = 1
    bias: bool = True
    init: str | dict = "he"
    op = staticmethod(ops.conv)
    op_backward = staticmethod(ops.conv_backward)
    stores_filters = True

    def build(self, in_shapes, rng, dtype):
        (shape,) = in_shapes
        dims = _spatial(shape, self)
        if shape[-1] % self.groups:
            raise ShapeError(f"Conv: input depth D={shape[-1]} is not divisible by "
                             f"groups={self.groups}")
        size = _tuple(self.size, dims)
        self._make((*size, shape[-1] // self.groups, self.k), self.k, rng, dtype)

    def geometry(self, in_shape):
        dims = len(in_shape) - 1
        dil = _tuple(self.dilate, dims)
        kernel = tuple(d * (k - 1) + 1 for k, d in zip(_tuple(self.size, dims), dil, strict=True))
        return kernel, _tuple(self.stride, dims)

    def madds(self, in_shapes, out_shape):
        return math.prod(out_shape[:-1]) * math.prod(self.value("w").shape)


@dataclass(eq=False)
class ConvTranspose(_Filtered):
    """Deconvolution layer (:func:`convscope.ops.conv_transpose`): the transpose of a convolution
    with filters H'×W'×D×K, mapping an H×W×K input to H_out×W_out×D with
    H_out = (H − 1)·S_H + H' − C_U − C_D; ``d`` is the output depth D."""

    d: int = 1
    size: int | tuple = 2
    stride: int | tuple = 2
    crop: int | tuple = 0
    dilate: int | tuple = 1
    groups: int = 1
    bias: bool = True
    init: str | dict = "he"
    op = staticmethod(ops.conv_transpose)
    op_backward = staticmethod(ops.conv_transpose_backward)
    stores_filters = True

    def build(self, in_shapes, rng, dtype):
        (shape,) = in_shapes
        dims = _spatial(shape, self)
        self._make((*_tuple(self.size, dims), self.d // self.groups, shape[-1]), self.d, rng,
                   dtype)

    def madds(self, in_shapes, out_shape):
        return math.prod(in_shapes[0][:-1]) * math.prod(self.value("w").shape)


@dataclass(eq=False)
class FullyConnected(_Filtered):
    """Fully connected layer (:func:`convscope.ops.fully_connected`): the lecture's convolution
    with a filter as large as the input, f ∈ R^{H×W×D×K}, output 1×1×K; on a flat input of M
    values, w ∈ R^{M×K} and y = x·w + b."""

    k: int = 1
    bias: bool = True
    init: str | dict = "xavier"
    op = staticmethod(ops.fully_connected)
    op_backward = staticmethod(ops.fully_connected_backward)

    def build(self, in_shapes, rng, dtype):
        (shape,) = in_shapes
        if not shape:
            raise ShapeError("FullyConnected: the input has no values (scalar per sample)")
        self._make((*shape, self.k), self.k, rng, dtype)

    def geometry(self, in_shape):
        return (tuple(in_shape[:-1]), (1,) * (len(in_shape) - 1)) if len(in_shape) > 1 else None

    def madds(self, in_shapes, out_shape):
        return math.prod(self.value("w").shape)


@dataclass(eq=False)
class DropConnect(FullyConnected):
    """DropConnect (Wan et al. 2013): a fully connected layer whose weights are dropped at random
    in training, y = x·(w ⊙ m)/(1 − rate) + b with m ~ Bernoulli(1 − rate)
    (:func:`convscope.ops.dropconnect`); at test time it is the plain fully connected layer."""

    rate: float = 0.5

    def forward(self, xs, *, train, rng):
        if not train:
            return super().forward(xs, train=train, rng=rng)
        return ops.dropconnect(xs[0], self.value("w"), self.value("b"), rate=self.rate, rng=rng)

    def backward(self, xs, aux, dy, *, input_grad=True):
        if aux is None:
            return super().backward(xs, aux, dy, input_grad=input_grad)
        dx, dw, db = ops.dropconnect_backward(xs[0], self.value("w"), self.value("b"), dy, aux,
                                              rate=self.rate)
        self.set_grads(w=dw, b=db)
        return [dx]


# ---------------------------------------------------------------------------------------------
# Pointwise layers: activations, dropout


@dataclass(eq=False)
class _Pointwise(Layer):
    """A layer y = op(x, **hyper) with backward op_backward(x, dy, **hyper) and no parameters."""

    op_name = ""

    def forward(self, xs, *, train, rng):
        return getattr(ops, self.op_name)(xs[0], **self.op_hyper()), None

    def backward(self, xs, aux, dy):
        return [getattr(ops, self.op_name + "_backward")(xs[0], dy, **self.op_hyper())]

    def output_shape(self, in_shapes, dtype):
        return tuple(in_shapes[0])


@dataclass(eq=False)
class ReLU(_Pointwise):
    """Activation y = max{0, x}."""

    op_name = "relu"


@dataclass(eq=False)
class LeakyReLU(_Pointwise):
    """Activation y = max{slope·x, x}."""

    slope: float = 0.01
    op_name = "leaky_relu"


@dataclass(eq=False)
class ELU(_Pointwise):
    """Activation y = x for x > 0, α(eˣ − 1) otherwise."""

    alpha: float = 1.0
    op_name = "elu"


@dataclass(eq=False)
class Sigmoid(_Pointwise):
    """Activation y = 1/(1 + e^(−x))."""

    op_name = "sigmoid"


@dataclass(eq=False)
class Tanh(_Pointwise):
    """Activation y = tanh x."""

    op_name = "tanh"


@dataclass(eq=False)
class Softplus(_Pointwise):
    """Activation y = log(1 + eˣ)."""

    op_name = "softplus"


@dataclass(eq=False)
class Dropout(Layer):
    """Dropout (:func:`convscope.ops.dropout`): in training each unit is kept with probability
    1 − rate and scaled by 1/(1 − rate); at test time the identity."""

    rate: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.rate < 1:
            raise ConfigError(f"Dropout: rate must be in [0, 1), got {self.rate}")

    def forward(self, xs, *, train, rng):
        if not train or self.rate == 0:
            return xs[0], None
        return ops.dropout(xs[0], rate=self.rate, rng=rng)

    def backward(self, xs, aux, dy):
        return [dy if aux is None else ops.dropout_backward(dy, aux, rate=self.rate)]

    def output_shape(self, in_shapes, dtype):
        return tuple(in_shapes[0])


# ---------------------------------------------------------------------------------------------
# Pooling and normalisation


@dataclass(eq=False)
class Pool(Layer):
    """Pooling (:func:`convscope.ops.pool`): max or average over H'×W' windows with stride S
    (default: the kernel), H'' = 1 + ⌊(H − H' + P_U + P_D)/S_H⌋."""

    kernel: int | tuple = 2
    stride: int | tuple | None = None
    pad: int | tuple = 0
    method: str = "max"

    def forward(self, xs, *, train, rng):
        y = ops.pool(xs[0], **self.op_hyper())
        return y, y  # the maxima, so that backward need not recompute them

    def backward(self, xs, aux, dy):
        return [ops.pool_backward(xs[0], dy, **self.op_hyper(), y=aux)]

    def geometry(self, in_shape):
        dims = len(in_shape) - 1
        kernel = _tuple(self.kernel, dims)
        return kernel, kernel if self.stride is None else _tuple(self.stride, dims)


@dataclass(eq=False)
class LRN(_Pointwise):
    """Local response normalisation across channels, y = x (κ + α Σ_window x²)^(−β)
    (:func:`convscope.ops.lrn`; α is not divided by the window size)."""

    size: int = 5
    kappa: float = 2.0
    alpha: float = 1e-4
    beta: float = 0.75
    op_name = "lrn"


@dataclass(eq=False)
class BatchNorm(Layer):
    """Batch normalisation per channel (:func:`convscope.ops.batch_norm`):
    y = γ (x − μ)/√(σ² + ε) + β with the batch's moments (μ, σ²) in training. The running moments
    used at test time follow μ̄ ← m μ̄ + (1 − m) μ (likewise σ̄²), m = ``momentum``."""

    eps: float = 1e-5
    momentum: float = 0.9

    def build(self, in_shapes, rng, dtype):
        depth = in_shapes[0][-1:] or (1,)
        self._param("gamma", depth, "ones", rng, dtype, decay_factor=0.0)
        self._param("beta", depth, "zeros", rng, dtype, decay_factor=0.0)
        self._param("mean", depth, "zeros", rng, dtype, trainable=False, decay_factor=0.0)
        self._param("var", depth, "ones", rng, dtype, trainable=False, decay_factor=0.0)

    def _moments(self):
        return self.value("mean"), self.value("var")

    def forward(self, xs, *, train, rng):
        g, b = self.value("gamma"), self.value("beta")
        if not train:
            y, _ = ops.batch_norm(xs[0], g, b, eps=self.eps, moments=self._moments())
            return y, None
        y, (mu, var) = ops.batch_norm(xs[0], g, b, eps=self.eps)
        for name, batch in (("mean", mu), ("var", var)):
            running = self.params[name].value
            running *= self.momentum
            running += (1 - self.momentum) * batch
        return y, (mu, var)

    def backward(self, xs, aux, dy):
        moments = self._moments() if aux is None else None
        dx, dg, db = ops.batch_norm_backward(xs[0], self.value("gamma"), self.value("beta"), dy,
                                             eps=self.eps, moments=moments)
        self.set_grads(gamma=dg, beta=db)
        return [dx]


# ---------------------------------------------------------------------------------------------
# Reshaping and joins


@dataclass(eq=False)
class Flatten(Layer):
    """Flatten N×H×W×D to N×(H·W·D) (:func:`convscope.ops.flatten`)."""

    def forward(self, xs, *, train, rng):
        return ops.flatten(xs[0]), None

    def backward(self, xs, aux, dy):
        return [ops.flatten_backward(xs[0], dy)]


@dataclass(eq=False)
class Concat(Layer):
    """Concatenation of several inputs along channels (:func:`convscope.ops.concat`)."""

    axis: int = -1
    arity = None

    def forward(self, xs, *, train, rng):
        return ops.concat(list(xs), axis=self.axis), None

    def backward(self, xs, aux, dy):
        return list(ops.concat_backward(list(xs), dy, axis=self.axis))


@dataclass(eq=False)
class Add(Layer):
    """Sum of several inputs of equal shape, y = Σ_i x_i (:func:`convscope.ops.add`)."""

    arity = None

    def forward(self, xs, *, train, rng):
        return ops.add(list(xs)), None

    def backward(self, xs, aux, dy):
        return list(ops.add_backward(list(xs), dy))


# ---------------------------------------------------------------------------------------------
# Losses: inputs (prediction, target); output a scalar


@dataclass(eq=False)
class _Loss(Layer):
    arity = 2
    loss = True

    def output_shape(self, in_shapes, dtype):
        return ()

    @staticmethod
    def _as_rows(x, target):
        """The 1×1×C×N loss layer: an N×1×1×C prediction meets N labels as an N×C matrix."""
        if x.ndim > 2 and all(s == 1 for s in x.shape[1:-1]) and target.ndim in (1, 2):
            return x.reshape(x.shape[0], x.shape[-1])
        return x


@dataclass(eq=False)
class SoftmaxLogLoss(_Loss):
    """Softmax log-loss (cross-entropy on logits), averaged over the N samples:
    ℓ = −(1/N) Σ_n (x_{c_n} − log Σ_d e^{x_d}) (:func:`convscope.ops.softmax_log_loss`);
    per-class ``weights`` optional. Inputs: logits (C, or 1×1×C, or H×W×C per pixel) and labels."""

    weights: tuple | None = None

    def output_shape(self, in_shapes, dtype):
        pred, labels = in_shapes
        spatial = tuple(s for s in pred[:-1] if s != 1)
        if not pred or tuple(labels) not in ((), tuple(pred[:-1]), spatial):
            raise ShapeError(f"SoftmaxLogLoss: labels of shape {shape_str(labels)} do not fit "
                             f"predictions of shape {shape_str(pred)} (C scores per label)")
        return ()

    def _w(self, x):
        if self.weights is None:
            return None
        return to_device(np.asarray(self.weights), device_of(x), numpy_dtype(x))

    def forward(self, xs, *, train, rng):
        x, labels = xs
        return ops.softmax_log_loss(self._as_rows(x, labels), labels, weights=self._w(x)), None

    def backward(self, xs, aux, dy):
        x, labels = xs
        dx = ops.softmax_log_loss_backward(self._as_rows(x, labels), labels, dy,
                                           weights=self._w(x))
        return [dx.reshape(x.shape), None]


@dataclass(eq=False)
class L2Loss(_Loss):
    """Squared error ℓ = mean over the known targets of (x − t)² (:func:`convscope.ops.l2_loss`);
    NaN targets (missing keypoints) are masked out. Target and prediction hold the same number of
    values (a 1×1×30 prediction meets a 15×2 keypoint target)."""

    def output_shape(self, in_shapes, dtype):
        pred, target = in_shapes
        if math.prod(pred) != math.prod(target):
            raise ShapeError(f"L2Loss: target of shape {shape_str(target)} does not fit "
                             f"predictions of shape {shape_str(pred)}")
        return ()

    @staticmethod
    def _target(x, target):
        """The target shaped as x and in x's dtype, and the mask of its known values (None: all
        known). NaN is the one value unequal to itself, so t == t is the mask in one kernel."""
        xp = array_namespace(x)
        t = target.reshape(x.shape)
        t = t if t.dtype == x.dtype else xp.astype(t, x.dtype)
        mask = t == t
        # on a GPU values are not read (a stall, and an error in a CUDA graph): the mask is applied
        return t, None if can_inspect_values(t) and bool(xp.all(mask)) else mask

    def forward(self, xs, *, train, rng):
        t, mask = self._target(*xs)
        return ops.l2_loss(xs[0], t, mask=mask), (t, mask)  # the backward reuses them

    def backward(self, xs, aux, dy):
        t, mask = self._target(*xs) if aux is None else aux
        return [ops.l2_loss_backward(xs[0], t, dy, mask=mask), None]


def make_layer(type_name: str, hyper: dict) -> Layer:
    """A layer from its type name and hyper-parameters (JSON lists become tuples)."""
    cls = LAYERS.get(type_name)
    if cls is None or type_name.startswith("_"):
        known = ", ".join(n for n in LAYERS if not n.startswith("_"))
        raise ConfigError(f"unknown layer type {type_name!r}; known: {known}")
    try:
        return cls(**{k: _tuples(v) for k, v in hyper.items()})
    except TypeError as e:
        raise ConfigError(f"layer {type_name}: {e}") from None


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


__all__ = [name for name in LAYERS if not name.startswith("_")] + [
    "LAYERS", "Layer", "make_layer", "shape_str"]
