"""Optimisers: one small class per update rule, in the lecture's notation.

Each step sees, per learnable parameter ω (of a :class:`convscope.nn.Parameter`), its gradient
∇ = dE/dω of the mini-batch loss plus weight decay, ∇ ← ∇ + λ·c_λ·ω (λ the regularisation
parameter, c_λ the parameter's decay factor), so the objective minimised (and reported) is

    E = (1/n) Σ_i ℓ(f(x_i; ω), y_i) + (λ/2) Σ c_λ ‖ω‖².

The step size is η·c_η with c_η the parameter's learning-rate factor. η and the momentum α are
attributes that a schedule sets before each step. Per-parameter state (velocities, moments) lives
in ``state[name]`` as arrays, so a checkpoint saves and restores it exactly.
"""

from __future__ import annotations

import abc

import numpy as np

from convscope.backend import array_namespace, is_torch_array
from convscope.backend.devices import device_of, to_device, to_numpy
from convscope.errors import ConfigError


class Optimizer(abc.ABC):
    """Base class: applies weight decay and the per-parameter factors, then :meth:`update`."""

    slots: tuple[str, ...] = ()
    steps_differ = False  # whether the update changes with the step count t (Adam's, per parameter)
    live: tuple[str, ...] = ()  # hyper-parameters a captured update reads from `scalars` (see value)

    def __init__(self, lr=0.01, *, weight_decay=0.0):
        if lr < 0 or weight_decay < 0:
            raise ConfigError(f"{type(self).__name__}: lr and weight_decay must be >= 0, "
                              f"got lr={lr}, weight_decay={weight_decay}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.t = 0
        self.steps: dict[str, int] = {}  # per parameter, where the update depends on t
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.scalars: dict | None = None  # while a CUDA graph is captured: name → 0-dim tensor

    def value(self, name):
        """Hyper-parameter ``name`` (η, α, the step count t) as the multi-tensor update reads it:
        the number, or, while a CUDA graph is captured, the device scalar in ``scalars`` (one of
        ``live``) that the graph reads on every replay, so that a schedule changing η or α every
        step needs no new capture, nor Adam's t (:class:`~convscope.train.step.CudaGraphStep`
        fills them before each replay)."""
        return self.scalars[name] if self.scalars and name in self.scalars else getattr(self, name)

    @staticmethod
    def updated(params) -> dict:
        """The parameters of ``params`` that a step moves: learnable, with a gradient."""
        return {name: p for name, p in params.items() if p.learnable and p.grad is not None}

    def count(self, names) -> None:
        """Count one step without updating anything: t and, where the update depends on it, the
        step count of each parameter in ``names`` (a replayed CUDA graph updates them)."""
        self.t += 1
        for name in names if self.steps_differ else ():
            self._step_count(name)

    def prepare(self, params) -> None:
        """Make the state of each learnable parameter in ``params`` that has none yet (zeros; a
        step count of 0 where the update depends on it), as before a CUDA graph is captured:
        state made during the capture would be made again, as zeros, in every replay."""
        for name, p in params.items():
            if p.learnable and name not in self.state:
                if self.steps_differ:
                    self.steps[name] = 0
                self._slots(name, p)

    def step(self, params) -> None:
        """One update of every learnable parameter in ``params`` (a name → Parameter mapping)."""
        self.t += 1
        learnable = self.updated(params)
        if learnable and hasattr(self, "foreach_update") and all(
                is_torch_array(p.value) for p in learnable.values()):
            self._foreach_step(learnable)
            return
        for name, p in learnable.items():
            t = self._step_count(name)  # before _slots makes the parameter's first state
            grad = p.grad
            if self.weight_decay and p.decay_factor:
                grad = grad + (self.weight_decay * p.decay_factor) * p.value
            p.value += self.update(grad, self._slots(name, p), self.lr * p.lr_factor, t)

    def _step_count(self, name) -> int:
        """t for this update of parameter ``name``: for an optimiser whose update depends on it
        (``steps_differ``), the parameter's own count (1 on its first update, as PyTorch counts
        per parameter: a layer unfrozen late starts at 1), else the optimiser's t."""
        if not self.steps_differ:
            return self.t
        done = self.steps.get(name, self.t - 1 if name in self.state else 0)  # older checkpoints
        self.steps[name] = done + 1
        return done + 1

    def _foreach_step(self, learnable) -> None:
        """The same update on PyTorch tensors, as a few multi-tensor (``torch._foreach_*``) kernels
        per group of parameters sharing their factors, instead of several kernels per parameter."""
        import torch

        groups: dict[tuple, list] = {}
        for name, p in learnable.items():  # by factor, and by step count where the update needs it
            groups.setdefault((p.lr_factor, self._step_count(name)), []).append((name, p))
        for (lr_factor, t), members in groups.items():
            values = [p.value for _, p in members]
            grads = self._foreach_decayed([p.grad for _, p in members], members, torch)
            slots = {s: [self._slots(name, p)[s] for name, p in members] for s in self.slots}
            self.foreach_update(values, grads, slots, self.value("lr"), lr_factor, t)

    def _foreach_decayed(self, grads, members, torch) -> list:
        """∇ + λ·c_λ·ω for each parameter, one multi-tensor kernel per decay factor c_λ ≠ 0."""
        if not self.weight_decay:
            return grads
        by_factor: dict[float, list[int]] = {}
        for i, (_, p) in enumerate(members):
            if p.decay_factor:
                by_factor.setdefault(p.decay_factor, []).append(i)
        grads = list(grads)
        for factor, at in by_factor.items():
            decayed = torch._foreach_add([grads[i] for i in at], [members[i][1].value for i in at],
                                         alpha=self.weight_decay * factor)
            for i, g in zip(at, decayed, strict=True):
                grads[i] = g
        return grads

    def _slots(self, name, p) -> dict:
        """The state arrays of parameter ``name`` (zeros at first), on the parameter's device (a
        checkpoint restores them as NumPy arrays)."""
        slots = self.state.get(name)
        if slots is None or (self.slots and not _beside(slots[self.slots[0]], p.value)):
            old = slots or {}
            slots = self.state[name] = {s: _like(p.value, old.get(s)) for s in self.slots}
        return slots

    @abc.abstractmethod
    def update(self, grad, slots, lr, t):
        """The step Δω for one parameter given its gradient and its step count t; updates
        ``slots`` in place."""

    def penalty(self, params) -> float:
        """The regularisation term (λ/2) Σ c_λ ‖ω‖² of the objective, over the parameters SGD
        moves (frozen ones are constants of the fine-tuned objective, and no decay reaches them)."""
        if not self.weight_decay:
            return 0.0
        total = sum(p.decay_factor * float((p.value * p.value).sum())
                    for p in params.values() if p.learnable and p.decay_factor)
        return 0.5 * self.weight_decay * total

    def hyper(self) -> dict:
        """JSON-able hyper-parameters, including the step count t (and each parameter's, where
        the update depends on it)."""
        counts = {"steps": dict(self.steps)} if self.steps_differ else {}
        return {"lr": self.lr, "weight_decay": self.weight_decay, "t": self.t, **counts}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The state as flat ``{"param/slot": NumPy array}`` (for safetensors, on any device)."""
        return {f"{name}/{slot}": to_numpy(a) for name, slots in self.state.items()
                for slot, a in slots.items()}

    def load_state_arrays(self, arrays, hyper) -> None:
        """Restore what :meth:`state_arrays` and :meth:`hyper` returned."""
        self.state, self.steps = {}, {}
        for key, a in arrays.items():
            name, slot = key.rsplit("/", 1)
            self.state.setdefault(name, {})[slot] = np.array(a)
        for key, value in hyper.items():
            setattr(self, key, value)


def _like(value, restored=None):
    """An array of value's shape, device, dtype and memory order (the multi-tensor kernels want
    a parameter and its state in one layout): zeros, or a copy of the restored array."""
    slot = array_namespace(value).zeros_like(value)
    if restored is not None:
        slot[...] = to_device(restored, device_of(value))
    return slot


def _beside(a, b) -> bool:
    """Whether arrays a and b are of one kind on one device (a checkpoint restores NumPy state)."""
    return type(a) is type(b) and getattr(a, "device", None) == getattr(b, "device", None)


def _descend(values, directions, root, scale) -> None:
    """ω ← ω − scale · directions / root for each parameter, scale a number or a live 0-dim
    tensor (the adaptive updates' last step, one multi-tensor kernel and, live, one product)."""
    import torch

    scaled, alpha = _times(directions, scale)
    torch._foreach_addcdiv_(values, scaled, root, value=-alpha)


def _root_plus_eps(s, eps, divisor=None) -> list:
    """√(s / divisor) + ε for each parameter's accumulated squares s (divisor: none, a number or
    a 0-dim tensor)."""
    import torch

    root = torch._foreach_sqrt(s) if divisor is None else torch._foreach_div(s, divisor)
    if divisor is not None:
        torch._foreach_sqrt_(root)
    torch._foreach_add_(root, eps)
    return root


def _times(tensors, scale):
    """scale · tensors_i as (products, alpha) with alpha · products_i = scale · tensors_i, for a
    fused ``torch._foreach_add_(…, alpha=…)``: the tensors and alpha = scale for a number; for a
    0-dim tensor (a live η or α, see :meth:`Optimizer.value`) the products, once, and alpha = 1."""
    import torch

    if is_torch_array(scale):
        return torch._foreach_mul(tensors, scale), 1.0
    return tensors, scale


class SGD(Optimizer):
    """Vanilla SGD: ω ← ω − η ∇."""

    live = ("lr",)

    def update(self, grad, slots, lr, t):
        return -lr * grad

    def foreach_update(self, values, grads, slots, lr, lr_factor, t):
        """ω ← ω − η c_η ∇ (η: a number or a live scalar)."""
        import torch

        eta_grads, eta = _times(grads, lr)
        torch._foreach_add_(values, eta_grads, alpha=-eta * lr_factor)


class Momentum(Optimizer):
    """SGD with momentum (the lecture's update, MatConvNet's solver):

        v ← α v − η ∇,    ω ← ω + v.
    """

    slots = ("v",)
    live = ("lr", "momentum")

    def __init__(self, lr=0.01, momentum=0.9, *, weight_decay=0.0):
        super().__init__(lr, weight_decay=weight_decay)
        self.momentum = float(momentum)

    def hyper(self):
        return {**super().hyper(), "momentum": self.momentum}

    def update(self, grad, slots, lr, t):
        v = slots["v"]
        v *= self.momentum
        v -= lr * grad
        return v

    def foreach_update(self, values, grads, slots, lr, lr_factor, t):
        """v ← α v − η c_η ∇, then :meth:`_apply` (η, α: numbers or live scalars)."""
        import torch

        eta_grads, eta = _times(grads, lr)  # η ∇ = eta · eta_grads
        torch._foreach_mul_(slots["v"], self.value("momentum"))
        torch._foreach_add_(slots["v"], eta_grads, alpha=-eta * lr_factor)
        self._apply(values, eta_grads, slots["v"], -eta * lr_factor)

    def _apply(self, values, eta_grads, v, step):
        """ω ← ω + v."""
        import torch

        torch._foreach_add_(values, v)


class Nesterov(Momentum):
    """Nesterov momentum (the facial-keypoints tutorial's solver), in the look-ahead-free form:

        v ← α v − η ∇,    ω ← ω + α v − η ∇

    (the gradient taken at ω + α v, rewritten in terms of the current ω as Sutskever et al. 2013).
    """

    def update(self, grad, slots, lr, t):
        v = super().update(grad, slots, lr, t)
        return self.momentum * v - lr * grad

    def _apply(self, values, eta_grads, v, step):
        """ω ← ω + α v − η c_η ∇, the last term as step · eta_grads."""
        import torch

        alpha_v, alpha = _times(v, self.value("momentum"))
        torch._foreach_add_(values, alpha_v, alpha=alpha)
        torch._foreach_add_(values, eta_grads, alpha=step)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): m ← β₁ m + (1−β₁) ∇, s ← β₂ s + (1−β₂) ∇²,

        ω ← ω − η · m̂ / (√ŝ + ε),   m̂ = m/(1−β₁ᵗ), ŝ = s/(1−β₂ᵗ),

    t counting the parameter's own updates (a layer unfrozen late starts at t = 1).
    """

    slots = ("m", "s")
    steps_differ = True  # the bias corrections 1 − β₁ᵗ, 1 − β₂ᵗ
    live = ("lr", "t")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, *, weight_decay=0.0):
        super().__init__(lr, weight_decay=weight_decay)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def hyper(self):
        return {**super().hyper(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def update(self, grad, slots, lr, t):
        m, s = slots["m"], slots["s"]
        m *= self.beta1
        m += (1 - self.beta1) * grad
        s *= self.beta2
        s += (1 - self.beta2) * grad * grad
        m_hat = m / (1 - self.beta1 ** t)
        s_hat = s / (1 - self.beta2 ** t)
        return -lr * m_hat / (array_namespace(s_hat).sqrt(s_hat) + self.eps)

    def foreach_update(self, values, grads, slots, lr, lr_factor, t):
        """The update above in eight multi-tensor kernels for parameters sharing c_η and t
        (about ten kernels per parameter one by one: host time on a GPU)."""
        import torch

        m, s = slots["m"], slots["s"]
        torch._foreach_mul_(m, self.beta1)
        torch._foreach_add_(m, grads, alpha=1 - self.beta1)
        torch._foreach_mul_(s, self.beta2)
        torch._foreach_addcmul_(s, grads, grads, value=1 - self.beta2)
        first, second = self._bias_corrections(t)
        _descend(values, m, _root_plus_eps(s, self.eps, second), lr * lr_factor / first)

    def _bias_corrections(self, t):
        """(1 − β₁ᵗ, 1 − β₂ᵗ) for parameters at step count t: numbers, or while a CUDA graph is
        captured 0-dim device tensors from the live t (a parameter's count trails the optimiser's
        by the same number of steps in every replay), taken in float64."""
        live_t = self.value("t")
        if not is_torch_array(live_t):
            return 1 - self.beta1 ** t, 1 - self.beta2 ** t
        import torch

        t = live_t.double() - (self.t - t)
        return tuple((1 - torch.pow(beta, t)).to(live_t.dtype) for beta in (self.beta1, self.beta2))


class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton 2012): s ← ρ s + (1−ρ) ∇²,   ω ← ω − η ∇ / (√s + ε)."""

    slots = ("s",)
    live = ("lr",)

    def __init__(self, lr=0.001, rho=0.9, eps=1e-8, *, weight_decay=0.0):
        super().__init__(lr, weight_decay=weight_decay)
        self.rho, self.eps = float(rho), float(eps)

    def hyper(self):
        return {**super().hyper(), "rho": self.rho, "eps": self.eps}

    def update(self, grad, slots, lr, t):
        s = slots["s"]
        s *= self.rho
        s += (1 - self.rho) * grad * grad
        return -lr * grad / (array_namespace(s).sqrt(s) + self.eps)

    def foreach_update(self, values, grads, slots, lr, lr_factor, t):
        """The update above in five multi-tensor kernels for parameters sharing c_η."""
        import torch

        torch._foreach_mul_(slots["s"], self.rho)
        torch._foreach_addcmul_(slots["s"], grads, grads, value=1 - self.rho)
        _descend(values, grads, _root_plus_eps(slots["s"], self.eps), lr * lr_factor)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al. 2011): s ← s + ∇²,   ω ← ω − η ∇ / (√s + ε)."""

    slots = ("s",)
    live = ("lr",)

    def __init__(self, lr=0.01, eps=1e-8, *, weight_decay=0.0):
        super().__init__(lr, weight_decay=weight_decay)
        self.eps = float(eps)

    def hyper(self):
        return {**super().hyper(), "eps": self.eps}

    def update(self, grad, slots, lr, t):
        s = slots["s"]
        s += grad * grad
        return -lr * grad / (array_namespace(s).sqrt(s) + self.eps)

    def foreach_update(self, values, grads, slots, lr, lr_factor, t):
        """The update above in four multi-tensor kernels for parameters sharing c_η."""
        import torch

        torch._foreach_addcmul_(slots["s"], grads, grads)
        _descend(values, grads, _root_plus_eps(slots["s"], self.eps), lr * lr_factor)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adam": Adam,
              "rmsprop": RMSProp, "adagrad": AdaGrad}


def make_optimizer(type="momentum", **options) -> Optimizer:  # noqa: A002 (config key)
    """Build an optimiser from its config name and options (``make_optimizer("adam", lr=1e-3)``)."""
    if type not in OPTIMIZERS:
        raise ConfigError(f"optimizer: unknown type {type!r}; known: {', '.join(OPTIMIZERS)}")
    try:
        return OPTIMIZERS[type](**options)
    except (TypeError, ValueError) as e:  # an unknown option, or a value that is not a number
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"optimizer {type!r}: {e}") from None
