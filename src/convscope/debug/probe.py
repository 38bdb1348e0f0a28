"""Where a NaN or an Inf first appears in a network: in the forward pass, in the backward pass, or
in the optimiser's update.

:func:`first_nonfinite_forward` walks the layers in execution order and names the first one whose
output y holds a NaN or an Inf although its inputs x are finite; :func:`first_nonfinite_backward`
walks them backwards and names the first one whose dE/dx (or dE/dω) is not finite although its
dE/dy is; :func:`first_nonfinite_params` names the first layer whose parameters ω the update
ω ← ω − η Δω made NaN or Inf (from a finite gradient: an overflow). A :class:`Probe` wraps a
network's ``forward`` and ``backward`` so that every pass is checked as it happens and the first
non-finite value that matters stops the run with a :class:`NonFiniteError` naming the layer,
before the optimiser can write it into the weights. Cheaply: each pass tests only what every NaN
that matters must reach, the objective in the forward pass and the parameter gradients dE/dω in
the backward pass (a NaN that a ReLU masks, max{0, NaN} = 0, reaches neither and harms nothing),
and :meth:`Probe.check_params` the parameters after the update; only then is the network walked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from convscope.backend import capturing
from convscope.debug.stats import all_finite, all_finite_together
from convscope.errors import ConvscopeError


class NonFiniteError(ConvscopeError, FloatingPointError):
    """A NaN or Inf appeared: ``layer`` (None: the data), ``phase`` ('forward' or 'backward'),
    ``variable`` (the variable or parameter that holds it)."""

    def __init__(self, message, *, layer=None, phase=None, variable=None):
        super().__init__(message)
        self.layer, self.phase, self.variable = layer, phase, variable


@dataclass
class Culprit:
    """The first layer that produced a non-finite value, in its ``phase``: 'forward', 'backward'
    or 'update' (the optimiser's step wrote it into the parameter ``variable``)."""

    layer: str | None
    phase: str
    variable: str

    def describe(self) -> str:
        if self.layer is None:
            return f"the data fed as {self.variable!r} already holds NaN or Inf"
        if self.phase == "update":
            return (f"layer {self.layer!r} holds NaN or Inf in its parameter {self.variable!r} "
                    f"after the optimiser's update (from a finite gradient: the step overflowed)")
        what = "its output" if self.phase == "forward" else "the gradient"
        return (f"layer {self.layer!r} produced NaN or Inf in its {self.phase} pass "
                f"({what} {self.variable!r}) from finite inputs")

    def consequence(self) -> str:
        """What is still good when the run stops here."""
        if self.phase == "update":
            return ("the run stops before the checkpoint is written: the weights in memory are "
                    "not good, the last checkpoint is the last good one")
        return "the run stops before the update, the weights and the last checkpoint are the last good ones"


def first_nonfinite_params(net) -> Culprit | None:
    """The first layer, in execution order, one of whose parameters ω is not finite."""
    for name in net.order():
        for pname, p in net.nodes[name].layer.params.items():
            if not all_finite(p.value):
                return Culprit(name, "update", f"{name}.{pname}")
    return None


def first_nonfinite_forward(net, values) -> Culprit | None:
    """The first layer, in execution order, whose output is not finite while its inputs are (the
    labels may hold NaN: a missing keypoint is a NaN target that the L2 loss masks out). A layer
    whose own parameters are not finite is named for them (phase 'update'), not for its output."""
    for name, x in values.items():
        if name in net.inputs and name != net.roles["label"] and not all_finite(x):
            return Culprit(None, "forward", name)
    broken = first_nonfinite_params(net)
    for name in net.order():
        if broken is not None and broken.layer == name:
            return broken
        node = net.nodes[name]
        if node.output in values and not all_finite(values[node.output]):
            return Culprit(name, "forward", node.output)
    return None


def first_nonfinite_backward(net, grads) -> Culprit | None:
    """The first layer, from the loss back to the input, whose dE/dω or dE/dx is not finite while
    its dE/dy is (``grads``: what :meth:`Network.backward` returned)."""
    for name in reversed(net.order()):
        node = net.nodes[name]
        for pname, p in node.layer.params.items():
            if p.grad is not None and not all_finite(p.grad):
                return Culprit(name, "backward", f"{name}.{pname}")
        for v in node.inputs:
            if v in grads and not all_finite(grads[v]):
                return Culprit(name, "backward", f"dE/d{v}")
    return None


class Probe:
    """Checks every forward and backward pass of ``net`` for NaN and Inf.

    ``install()`` shadows the network's ``forward`` and ``backward`` on this one instance (the
    class is untouched; ``remove()`` restores them). The last forward values and backward
    gradients stay in ``values`` and ``grads`` for the monitor. ``where`` (e.g. 'epoch 2, batch
    7', or a function returning it, asked only on a failure) is set by the caller to say when a
    failure happened; ``on_failure(culprit)`` is called before the error is raised (the monitor
    records it). :meth:`check_params` tests the parameters after an update. ``seconds``: the
    time spent checking.
    """

    def __init__(self, net, *, on_failure=None):
        self.net = net
        self.values: dict = {}
        self.grads: dict = {}
        self.where = ""
        self.on_failure = on_failure
        self.seconds = 0.0
        self._forward = self._backward = None

    def install(self) -> Probe:
        if self._forward is None:
            self._forward, self._backward = self.net.forward, self.net.backward
            self.net.forward, self.net.backward = self.forward, self.backward
        return self

    def remove(self) -> None:
        if self._forward is not None:
            del self.net.forward, self.net.backward
            self._forward = self._backward = None

    def forward(self, feed, **kwargs):
        if capturing():  # a CUDA-graph step is being recorded: nothing can be read back now; the
            # values are the graph's own tensors, which every replay refreshes for the monitor
            self.values = self._forward(feed, **kwargs)
            return self.values
        self.values = self._forward(feed, **kwargs)
        roles = self.net.roles
        ends = [self.values[v] for v in (roles["objective"], roles["prediction"])
                if v in self.values][:1]
        self._check(ends, first_nonfinite_forward, self.values)
        return self.values

    def backward(self, losses, **kwargs):
        if capturing():
            self.grads = self._backward(losses, **kwargs)
            return self.grads
        self.grads = self._backward(losses, **kwargs)
        grads = [p.grad for p in self.net.params().values() if p.grad is not None]
        self._check(grads, first_nonfinite_backward, self.grads)
        return self.grads

    def check_params(self) -> None:
        """After the optimiser's step: stop with a :class:`NonFiniteError` naming the first layer
        whose parameters the update made NaN or Inf (before a checkpoint can save them)."""
        if capturing():
            return
        params = [p.value for p in self.net.params().values()]
        self._check(params, lambda net, _: first_nonfinite_params(net), None)

    def _check(self, cheap, locate, arrays) -> None:
        """Test the ``cheap`` arrays (the objective; the parameter gradients); only when one is
        not finite, walk the network to ``locate`` the culprit."""
        start = time.perf_counter()
        culprit = None
        if not all_finite_together(cheap):
            culprit = locate(self.net, arrays)
        self.seconds += time.perf_counter() - start
        if culprit is None:
            return
        if self.on_failure is not None:
            self.on_failure(culprit)
        where = self.where() if callable(self.where) else self.where
        when = f"{where}: " if where else ""
        raise NonFiniteError(f"{when}{culprit.describe()}; {culprit.consequence()}",
                             layer=culprit.layer, phase=culprit.phase, variable=culprit.variable)
