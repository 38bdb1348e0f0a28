"""Gradient checks of a whole network and of each of its layers, in float64, with the public
:func:`convscope.debug.gradcheck`.

The whole network is one function E(x, ω_1, …, ω_L) of the input mini-batch and every learnable
parameter; its backward is :meth:`Network.backward` from dE/dE = dy. Each of its inputs is
checked along random unit directions v, (E(ω + εv) − E(ω − εv))/2ε against ⟨dE/dω, v⟩. A layer
check does the same for one layer y = f(x, ω) on the very inputs the network feeds it, so that a
wrong derivative is pinned on the layer that computes it.
"""

from __future__ import annotations

import copy

import numpy as np

from convscope.debug.gradcheck import gradcheck
from convscope.nn import Network


def clone(net) -> Network:
    """A copy of ``net``: the same layers (custom ones included) and parameter values, without a
    :class:`~convscope.debug.probe.Probe` or the last pass's values."""
    tape, net._tape = net._tape, None
    try:
        twin = copy.deepcopy(net)
    finally:
        net._tape = tape
    for name in ("forward", "backward"):
        twin.__dict__.pop(name, None)
    return twin


def float64_copy(net) -> Network:
    """A float64 :func:`clone` of ``net`` (for gradient checks)."""
    return clone(net).astype(np.float64)


def _bind(params, arrays) -> None:
    for p, a in zip(params, arrays, strict=True):
        p.value = a


def network_gradcheck(net, feed, *, directions=4, seed=0, train=False) -> dict[str, float]:
    """{'input' or 'layer.param': max relative error} of the whole network's backward on the
    mini-batch ``feed``, its input :func:`jitter` ed (float64 copy of ``net``). In test mode, or
    with ``train=True`` in training mode, as SGD runs it: batch norm on the batch's moments,
    dropout masks drawn from a generator seeded anew for every pass (the same masks each time)."""
    net = float64_copy(net)
    names = list(net.params(learnable_only=True))
    params = list(net.params(learnable_only=True).values())
    data, objective = net.roles["input"], net.roles["objective"]
    rest = {k: v for k, v in feed.items() if k != data}

    def forward(x, *values):
        _bind(params, values)
        return net.forward({data: x, **rest}, train=train, rng=np.random.default_rng(seed))[objective]

    def backward(x, *values_and_dy):
        *values, dy = values_and_dy
        forward(x, *values)
        grads = net.backward({objective: dy})
        return [grads.get(data, np.zeros_like(x)), *(p.grad for p in params)]

    x = jitter(np.asarray(feed[data], dtype=np.float64), np.random.default_rng(seed))
    errors = gradcheck(forward, backward, [x, *(p.value for p in params)],
                       directions=directions, seed=seed)
    labels = ["input", *names]
    return {labels[i]: e for i, e in errors.items()}


def jitter(x, rng, scale=1e-3):
    """x + N(0, (scale·(std x))²) for a float array (integer labels unchanged): breaks the exact
    ties that a ReLU leaves for a max pooling (windows of zeros), where the max is not
    differentiable and no numerical derivative can agree with any analytic one."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x
    return x + scale * (float(np.nanstd(x)) or 1.0) * rng.standard_normal(x.shape)


def layer_gradcheck(net, feed, *, directions=4, seed=0, train=False) -> dict[str, float]:
    """{layer: max relative error over its inputs and parameters}, every layer checked on the
    inputs the network gives it for ``feed``, :func:`jitter` ed (float64 copy of ``net``; test
    or training mode as in :func:`network_gradcheck`)."""
    net = float64_copy(net)
    values = net.forward(feed, train=train, rng=np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    out = {}
    for name in net.order():
        node = net.nodes[name]
        xs = [jitter(values[v], rng) for v in node.inputs]
        errors = _check_layer(node.layer, xs, directions, seed, train)
        if errors:
            out[name] = max(errors.values())
    return out


def _check_layer(layer, xs, directions, seed, train) -> dict:
    params = [p for p in layer.params.values() if p.learnable]
    n = len(xs)

    def run(arrays):
        _bind(params, arrays[n:])
        return layer.forward(list(arrays[:n]), train=train, rng=np.random.default_rng(seed))

    def forward(*arrays):
        return run(arrays)[0]

    def backward(*arrays_and_dy):
        *arrays, dy = arrays_and_dy
        _, aux = run(arrays)
        dxs = layer.backward(list(arrays[:n]), aux, dy)
        return [*dxs, *(p.grad for p in params)]

    return gradcheck(forward, backward, [*xs, *(p.value for p in params)],
                     directions=directions, seed=seed)


def worst(errors: dict[str, float]) -> tuple[str, float]:
    """(name, error) of the largest error."""
    name = max(errors, key=errors.get)
    return name, errors[name]
