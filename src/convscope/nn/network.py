"""The network: a directed acyclic graph of named layers over named variables (MatConvNet's DagNN).

    net = Network({"input": (28, 28, 1), "label": ()})
    net.add("conv1", Conv(20, 5), "input")            # output variable "conv1"
    net.add("relu1", ReLU(), "conv1")
    ...
    net.add("objective", SoftmaxLogLoss(), ["prediction", "label"])

A layer is built (its parameters created, its output shape inferred) as soon as the shapes of all
its inputs are known, so layers may be added in any order; the build order is a topological order
of the DAG, and it is the execution order. A layer that is never built waits either on a variable
that nothing produces (a dangling input) or on itself through a cycle: :meth:`Network.order` says
which, naming the layers.

``forward`` evaluates every layer whose inputs are given (a test-time feed without labels skips
the losses) and keeps the values; ``backward`` propagates dE/dy from one or several weighted
losses back through the DAG by the chain rule dE/dx = dE/dy · dy/dx, summing where a variable
feeds several layers, and leaves dE/dω in each parameter's ``grad``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass

import numpy as np

from convscope.backend.devices import NUMPY, check_device, to_device, to_numpy
from convscope.errors import ConfigError, ConvscopeError, ShapeError
from convscope.nn.layers import Layer, make_layer, shape_str
from convscope.nn.parameter import Parameter

FORMAT = "convscope.network/1"
SHORT_NAMES = {"FullyConnected": "fc", "BatchNorm": "bn", "ConvTranspose": "deconv"}
DEFAULT_ROLES = {"input": "input", "label": "label", "prediction": "prediction",
                 "objective": "objective"}


@dataclass(eq=False)
class Node:
    """One layer of the DAG with the names of its input variables and of its output variable."""

    name: str
    layer: Layer
    inputs: tuple[str, ...]
    output: str


class Network:
    """A DAG of named layers. ``inputs`` maps each input variable to its per-sample shape (H×W×D;
    ``()`` for one label per sample). ``roles`` names the variables a trainer uses: the data
    ``input``, the ``label``, the ``prediction`` and the ``objective``."""

    def __init__(self, inputs, *, dtype=np.float32, seed=0, rng=None, roles=None):
        self.inputs = {name: tuple(int(s) for s in shape) for name, shape in inputs.items()}
        self.dtype = np.dtype(dtype)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.roles = {**DEFAULT_ROLES, **(roles or {})}
        self.device = NUMPY
        self.nodes: dict[str, Node] = {}
        self.shapes: dict[str, tuple[int, ...]] = dict(self.inputs)
        self._order: list[str] = []
        self._producer: dict[str, str] = {}
        self._tape: dict | None = None

    # -- building the graph ------------------------------------------------------------------
    def add(self, name, layer, inputs, output=None) -> Network:
        """Add ``layer`` under ``name`` reading ``inputs`` (a name or a list) and writing
        ``output`` (default: the layer's name); returns the network for chaining."""
        inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        output = output or name
        if name in self.nodes:
            raise ConfigError(f"layer {name!r} is already in the network")
        if output in self.inputs or output in self._producer:
            other = self._producer.get(output, "the network input")
            raise ConfigError(f"layer {name!r}: variable {output!r} is already produced by "
                              f"{other!r}; each variable has one producer")
        if layer.arity is not None and len(inputs) != layer.arity:
            raise ConfigError(f"layer {name!r} ({type(layer).__name__}) takes {layer.arity} "
                              f"input(s), got {len(inputs)}: {list(inputs)}")
        self.nodes[name] = Node(name, layer, inputs, output)
        self._producer[output] = name
        built = len(self._order)
        try:
            self._build_ready()
        except ConvscopeError:
            self._undo_add(name, built)
            raise
        return self

    def _undo_add(self, name, built) -> None:
        """Take back an add whose build failed: the layer and what was built since, so the network
        is as before the call (the same name can be added again, corrected)."""
        for done in self._order[built:]:
            del self.shapes[self.nodes[done].output]
        del self._order[built:]
        del self._producer[self.nodes.pop(name).output]

    def _build_ready(self) -> None:
        progress = True
        while progress:
            progress = False
            for node in self.nodes.values():
                if node.output not in self.shapes and all(v in self.shapes for v in node.inputs):
                    self._build(node)
                    progress = True

    def _build(self, node: Node) -> None:
        in_shapes = [self.shapes[v] for v in node.inputs]
        try:
            node.layer.build(in_shapes, self.rng, self.dtype)
            out = node.layer.output_shape(in_shapes, self.dtype)
        except ConvscopeError as e:
            given = ", ".join(f"{v!r} {shape_str(s)}" for v, s in zip(node.inputs, in_shapes))
            raise type(e)(f"layer {node.name!r} ({type(node.layer).__name__}) cannot take its "
                          f"input(s) {given}: {e}") from None
        self.shapes[node.output] = out
        self._order.append(node.name)
        if self.device != NUMPY:  # added after net.to(device): the layer joins the others there
            self._place(node.layer)

    def order(self) -> list[str]:
        """The layers in execution (topological) order, or a ConfigError naming a cycle or a
        dangling input."""
        if len(self._order) == len(self.nodes):  # every layer built
            return list(self._order)
        waiting = [n for n in self.nodes.values() if n.output not in self.shapes]
        for node in waiting:
            for v in node.inputs:
                if v not in self.inputs and v not in self._producer:
                    raise ConfigError(f"layer {node.name!r} reads variable {v!r}, which is "
                                      f"neither a network input nor the output of a layer "
                                      f"(dangling input)")
        cycle = self._find_cycle(waiting[0])
        raise ConfigError("the network has a cycle: " + " → ".join(cycle))

    def _find_cycle(self, start: Node) -> list[str]:
        path, node = [], start
        while node.name not in path:
            path.append(node.name)
            node = next(self.nodes[self._producer[v]] for v in node.inputs
                        if v not in self.shapes)
        return path[path.index(node.name):] + [node.name]

    @property
    def layers(self) -> dict[str, Layer]:
        """The layers by name, in execution order."""
        return {name: self.nodes[name].layer for name in self.order()}

    def params(self, *, learnable_only=False) -> dict[str, Parameter]:
        """All parameters as ``{"layer.param": Parameter}`` in execution order."""
        return {f"{name}.{p}": param for name, layer in self.layers.items()
                for p, param in layer.params.items()
                if not learnable_only or param.learnable}

    def freeze(self, *layer_names, frozen=True) -> None:
        """Freeze (or with ``frozen=False`` unfreeze) every parameter of the named layers."""
        for name in layer_names:
            if name not in self.nodes:
                raise ConfigError(f"freeze: no layer named {name!r}")
            for p in self.nodes[name].layer.params.values():
                p.frozen = frozen

    # -- computing ---------------------------------------------------------------------------
    def forward(self, feed, *, train=False, rng=None) -> dict:
        """Evaluate the network on ``feed`` (``{input name: N×H×W×D array}``) and return every
        variable's value. In training mode dropout draws from ``rng`` (default: the network's)
        and batch norm uses and tracks batch moments."""
        rng = self.rng if rng is None else rng
        values = {name: self._check_feed(name, x) for name, x in feed.items()}
        aux = {}
        for name in self.order():
            node = self.nodes[name]
            if all(v in values for v in node.inputs):
                xs = [values[v] for v in node.inputs]
                values[node.output], aux[name] = node.layer.forward(xs, train=train, rng=rng)
        self._tape = {"values": values, "aux": aux}
        return values

    def _check_feed(self, name, x):
        if name not in self.inputs:
            raise ConfigError(f"feed: {name!r} is not a network input; inputs are "
                              f"{list(self.inputs)}")
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        if tuple(x.shape[1:]) != self.inputs[name]:
            raise ShapeError(f"input {name!r} expects N×{shape_str(self.inputs[name])}, got "
                             f"{'×'.join(map(str, x.shape))}")
        floating = self.inputs[name] or "float" in str(x.dtype)
        return to_device(x, self.device, self.dtype if floating else None)

    def backward(self, losses, *, input_grads=True) -> dict:
        """Back-propagate from ``losses`` (``{variable: weight}`` or ``{variable: dE/dvariable}``)
        through the last forward pass. Sets each parameter's ``grad`` (None where no gradient
        reaches) and returns dE/dv for every variable reached, network inputs included unless
        ``input_grads=False`` (training needs no dE/dx of the data, and a first convolution
        then skips computing it)."""
        if self._tape is None:
            raise ConfigError("backward: call forward first")
        values, aux = self._tape["values"], self._tape["aux"]
        grads = {v: self._loss_weight(w) for v, w in losses.items()}
        for p in self.params().values():
            p.grad = None
        for name in reversed(self.order()):
            node = self.nodes[name]
            dy = grads.get(node.output)
            if dy is None or name not in aux:
                continue
            xs = [values[v] for v in node.inputs]
            if not input_grads and all(v in self.inputs for v in node.inputs):
                dxs = self._backward_on_data(node, xs, aux[name], dy)
            else:
                dxs = node.layer.backward(xs, aux[name], dy)
            for v, dx in zip(node.inputs, dxs, strict=True):
                if dx is not None:
                    grads[v] = dx if v not in grads else grads[v] + dx
        return grads

    def _loss_weight(self, w):
        """A loss weight (a scalar dE/dE_i) or a dE/dv array, on the network's device."""
        if np.ndim(w) == 0 and not hasattr(w, "device"):
            return np.asarray(w, dtype=self.dtype) if self.device == NUMPY else float(w)
        return to_device(w, self.device, self.dtype)

    @staticmethod
    def _backward_on_data(node, xs, aux, dy):
        """A layer reading only network inputs: its parameter gradients, no dE/dx."""
        if _skips_input_grad(node.layer.backward):
            return node.layer.backward(xs, aux, dy, input_grad=False)
        node.layer.backward(xs, aux, dy)
        return [None] * len(xs)

    def predict(self, x, *, batch_size=256, output=None) -> np.ndarray:
        """The ``prediction`` variable (or ``output``) in test mode, in batches of ``batch_size``."""
        output = output or self.roles["prediction"]
        parts = [to_numpy(self.forward({self.roles["input"]: x[i:i + batch_size]})[output])
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts)

    def to(self, device) -> Network:
        """Move every parameter to ``device``: 'numpy' (the default), 'cpu' (PyTorch tensors on the
        CPU), 'cuda' or 'cuda:N'. The ops then run on that backend; feeds are moved there batch by
        batch. Returns self."""
        self.device = check_device(device)
        for layer in self.layers.values():
            for p in layer.params.values():
                p.grad = None
            self._place(layer)
        self._tape = None
        return self

    # -- state and files ---------------------------------------------------------------------
    def astype(self, dtype) -> Network:
        """Convert every parameter to ``dtype`` (float64 for gradient checks); returns self."""
        self.dtype = np.dtype(dtype)
        for layer in self.layers.values():
            self._place(layer)
        return self

    def _place(self, layer) -> None:
        """Move a layer's parameters to the network's device and dtype, then let the layer keep
        them in its backend's preferred memory order."""
        for p in layer.params.values():
            p.value = to_device(p.value, self.device, self.dtype)
        layer.placed()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter array (running moments included) by ``"layer.param"``, as NumPy arrays
        whatever the device (on 'numpy' the live arrays themselves)."""
        return {name: to_numpy(p.value) for name, p in self.params().items()}

    def load_state_dict(self, arrays) -> None:
        """Copy arrays into the parameters; names and shapes must match exactly."""
        params = self.params()
        missing = sorted(set(params) - set(arrays))
        extra = sorted(set(arrays) - set(params))
        if missing or extra:
            raise ConfigError(f"parameters do not match the network: missing {missing}, "
                              f"unexpected {extra}")
        for name, p in params.items():
            a = to_numpy(arrays[name])
            if a.shape != tuple(p.value.shape):
                raise ShapeError(f"parameter {name!r}: expected {shape_str(p.value.shape)}, "
                                 f"got {shape_str(a.shape)}")
            if self.device == NUMPY:
                p.value = a.astype(self.dtype, copy=True)
            else:  # in place: a captured CUDA graph keeps reading the same tensors
                p.value.copy_(to_device(a, self.device, self.dtype))

    def to_config(self) -> dict:
        """The architecture as a JSON-able dict (no parameter values)."""
        return {
            "format": FORMAT,
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "roles": self.roles,
            "dtype": self.dtype.name,
            "layers": [
                {"name": n.name, "type": type(n.layer).__name__, "inputs": list(n.inputs),
                 "output": n.output, "hyper": n.layer.hyper(),
                 "params": {p: param.factors() for p, param in n.layer.params.items()}}
                for n in (self.nodes[name] for name in self.order())
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_config(), indent=1)

    @classmethod
    def from_config(cls, config, *, seed=0) -> Network:
        """A network from :meth:`to_config`'s dict (parameters freshly initialised from ``seed``)."""
        if config.get("format") != FORMAT:
            raise ConfigError(f"not a convscope network description (format "
                              f"{config.get('format')!r}, expected {FORMAT!r})")
        net = Network(config["inputs"], dtype=config.get("dtype", "float32"), seed=seed,
                  roles=config.get("roles"))
        for spec in config["layers"]:
            net.add(spec["name"], make_layer(spec["type"], spec["hyper"]), spec["inputs"],
                    spec["output"])
            for p, factors in spec.get("params", {}).items():
                net.nodes[spec["name"]].layer.params[p].set_factors(**factors)
        net.order()
        return net

    @classmethod
    def from_json(cls, text, *, seed=0) -> Network:
        return cls.from_config(json.loads(text), seed=seed)

    def save(self, path) -> None:
        """Write the network to one safetensors file: the parameters as tensors and the
        architecture as JSON in the file's metadata (key ``convscope.network``). Atomic."""
        from convscope.nn.files import write_safetensors
        write_safetensors(path, self.state_dict(), {"convscope.network": self.to_json()})

    @classmethod
    def load(cls, path) -> Network:
        """Restore a network written by :meth:`save`: same architecture, same parameters."""
        from convscope.nn.files import read_safetensors
        arrays, meta = read_safetensors(path)
        if "convscope.network" not in meta:
            raise ConfigError(f"{path}: no convscope network in this safetensors file")
        net = cls.from_json(meta["convscope.network"])
        net.load_state_dict({k: v for k, v in arrays.items() if k in net.params()})
        return net

    def summary(self) -> str:
        """The per-layer table of :func:`convscope.nn.summary.summary`."""
        from convscope.nn.summary import summary
        return summary(self)

    def __repr__(self):
        return f"Network({len(self.nodes)} layers, inputs {self.inputs})"


class Sequential(Network):
    """A chain of layers: each reads the previous one's output. The first reads ``input``; with
    ``loss``, the last layer's output is named ``prediction`` and the loss, reading it and the
    ``label`` input (shape ``label_shape``), is the ``objective``.

        net = Sequential((28, 28, 1), [Conv(20, 5), ReLU(), Pool(2), FullyConnected(10)],
                         loss=SoftmaxLogLoss())
    """

    def __init__(self, input_shape, layers=(), *, loss=None, label_shape=(), names=None,
                 dtype=np.float32, seed=0, rng=None):
        inputs = {"input": tuple(input_shape)}
        if loss is not None:
            inputs["label"] = tuple(label_shape)
        super().__init__(inputs, dtype=dtype, seed=seed, rng=rng)
        self._last = "input"
        layers = list(layers)
        names = list(names) if names else [None] * len(layers)
        for i, (layer, name) in enumerate(zip(layers, names, strict=True)):
            output = "prediction" if loss is not None and i == len(layers) - 1 else None
            self.append(layer, name=name, output=output)
        if loss is not None:
            self.add("objective", loss, [self._last, "label"])

    def append(self, layer, *, name=None, output=None) -> Sequential:
        """Add ``layer`` reading the previous output; the name defaults to type + count
        (``conv1``, ``relu2``)."""
        if name is None:
            base = SHORT_NAMES.get(type(layer).__name__, type(layer).__name__.lower())
            count = sum(type(n.layer) is type(layer) for n in self.nodes.values())
            name = f"{base}{count + 1}"
        self.add(name, layer, self._last, output)
        self._last = output or name
        return self


def _skips_input_grad(backward) -> bool:
    """Whether a layer's backward takes input_grad=False, looked up once per function (reading a
    signature costs about 30 µs, every step)."""
    function = getattr(backward, "__func__", backward)
    known = _INPUT_GRAD.get(function)
    if known is None:
        known = _INPUT_GRAD[function] = "input_grad" in inspect.signature(backward).parameters
    return known


_INPUT_GRAD: dict = {}
