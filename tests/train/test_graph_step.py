"""CudaGraphStep's bookkeeping, checked on the CPU with a stand-in for torch.cuda: a capture runs
the step and takes it back (a real capture records kernels and runs none); a replay runs the
recorded step again seeing only what a graph sees on the device, so the optimiser's live
hyper-parameters come from its scalars, its own η and α are NaN and its step counts are those of
the captured step. (The real graph's check is
test_devices.py's, on CUDA.)"""

import contextlib
import math
import types

import numpy as np
import pytest
import torch

from convscope import zoo
from convscope.train.datasets import load_split
from convscope.train.optim import AdaGrad, Adam, Nesterov, RMSProp
from convscope.train.step import CudaGraphStep, train_step


def stand_in_graph_step(net, optimizer) -> CudaGraphStep:
    """A CudaGraphStep on a PyTorch-CPU network whose torch.cuda is the stand-in above."""
    net.device = "cuda"  # past the constructor's device check only
    try:
        step = CudaGraphStep(net, optimizer)
    finally:
        net.device = "cpu"

    class Graph:
        def replay(self):
            numbers = {name: getattr(optimizer, name) for name in optimizer.live if name != "t"}
            counts = optimizer.t, dict(optimizer.steps)
            for name in numbers:
                setattr(optimizer, name, math.nan)  # a replay reads no number of the host
            optimizer.t, optimizer.steps = recorded["counts"][0], dict(recorded["counts"][1])
            optimizer.scalars = recorded["scalars"]  # what the captured kernels read; the counts
            # above are the captured step's, baked in
            try:
                values = step._step(*step.static)
            finally:
                optimizer.scalars = None
                for name, value in numbers.items():
                    setattr(optimizer, name, value)
                optimizer.t, optimizer.steps = counts  # __call__ counts the replay
            for name, tensor in values.items():
                step.values[name].copy_(tensor)

    recorded = {}

    @contextlib.contextmanager
    def graph(_):
        recorded["scalars"] = optimizer.scalars
        recorded["counts"] = optimizer.t, dict(optimizer.steps)
        params = {name: p.value.clone() for name, p in net.params().items()}
        state = {name: {s: a.clone() for s, a in slots.items()}
                 for name, slots in optimizer.state.items()}
        yield
        for name, p in net.params().items():
            p.value.copy_(params[name])
        for name, slots in optimizer.state.items():
            for s, a in slots.items():
                a.copy_(state[name][s])

    cuda = types.SimpleNamespace(CUDAGraph=Graph, graph=graph, stream=lambda s: contextlib.nullcontext(),
                                 Stream=lambda: types.SimpleNamespace(wait_stream=lambda s: None),
                                 current_stream=lambda: types.SimpleNamespace(wait_stream=lambda s: None))
    step.torch = types.SimpleNamespace(cuda=cuda, zeros=torch.zeros)
    return step


@pytest.fixture(scope="module")
def batches():
    split = load_split("mnist_subset", "train")
    x = (split.x[:320].astype(np.float64) - 33.3) / 78.6
    return [(torch.from_numpy(x[i:i + 32]), torch.from_numpy(split.y[i:i + 32])) for i in range(0, 320, 32)]


def _train(batches, make_optimizer, schedule, *, graph, frozen=()):
    """Ten steps of LeNet-5 in float64, the optimiser's attributes set by ``schedule(i)`` before
    step i, the layers in ``frozen`` (a set of step indices → layer names) frozen at those steps."""
    net = zoo.lenet5(dtype=np.float64, seed=3).to("cpu")
    optimizer = make_optimizer()
    step = stand_in_graph_step(net, optimizer) if graph else None
    for i, (x, y) in enumerate(batches):
        for name, value in schedule(i).items():
            setattr(optimizer, name, value)
        net.freeze("conv1", frozen=i in frozen)
        if graph:
            step(x, y)
        else:
            train_step(net, optimizer, {"input": x, "label": y})
    return net.state_dict(), step


def _same_weights(a, b):
    for name in a:
        assert np.max(np.abs(a[name] - b[name])) < 1e-12 * max(1.0, np.max(np.abs(a[name]))), name


def _ramp(optimizer):
    def schedule(i):
        ramp = {"lr": optimizer().lr * (1 - i / 10)}
        return {**ramp, "momentum": 0.9 + 0.009 * i} if hasattr(optimizer(), "momentum") else ramp

    return schedule


OPTIMIZERS = {"nesterov": lambda: Nesterov(0.05, 0.9, weight_decay=5e-4),
              "adam": lambda: Adam(1e-3, weight_decay=5e-4), "rmsprop": lambda: RMSProp(1e-3),
              "adagrad": lambda: AdaGrad(1e-2)}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_a_per_step_schedule_of_eta_and_alpha_replays_one_capture(batches, optimizer):
    """The main job's cosine η and the keypoints example's ramps of η and α change every step,
    and Adam's bias corrections 1 − βᵗ with every step: each change captured the whole step
    anew (Adam was refused), so --cuda-graph ran no faster than eager."""
    make = OPTIMIZERS[optimizer]
    eager, _ = _train(batches, make, _ramp(make), graph=False)
    replayed, step = _train(batches, make, _ramp(make), graph=True)
    assert step.captures == 1 and step.optimizer.t == 10
    _same_weights(eager, replayed)


@pytest.mark.parametrize(("make", "schedule"), [
    (lambda: Nesterov(0.05, 0.9), lambda i: {"weight_decay": 0.0 if i < 6 else 1e-3}),
    (lambda: RMSProp(1e-3), lambda i: {"rho": 0.9 if i < 5 else 0.99}),
    (lambda: Adam(1e-3), lambda i: {"beta1": 0.9 if i < 5 else 0.8})])
def test_a_hyper_parameter_a_graph_bakes_in_triggers_a_new_capture(batches, make, schedule):
    """Weight decay λ, RMSProp's ρ and Adam's β₁ are baked into the graph: a change must record
    the step again, or the replays would keep the old value."""
    eager, _ = _train(batches, make, schedule, graph=False)
    replayed, step = _train(batches, make, schedule, graph=True)
    assert step.captures == 2
    _same_weights(eager, replayed)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_unfreezing_a_layer_captures_a_step_that_moves_it_from_fresh_state(batches, optimizer):
    """Fine-tuning unfreezes layers: the graph must capture a step that updates them, their
    optimiser state made before the capture (made during it, it would be zeroed in every
    replay), and Adam's count for them starting at 1 while the others' goes on."""
    make = OPTIMIZERS[optimizer]
    frozen = set(range(5))
    eager, _ = _train(batches, make, _ramp(make), graph=False, frozen=frozen)
    replayed, step = _train(batches, make, _ramp(make), graph=True, frozen=frozen)
    assert step.captures == 2
    _same_weights(eager, replayed)
    if optimizer == "adam":
        assert step.optimizer.steps["conv1.w"] == 5 and step.optimizer.steps["conv2.w"] == 10


def test_the_trainer_replays_one_capture_of_adam_under_a_cosine_schedule(batches):
    """The command line's path: the Trainer hands full batches to the graph step and a last
    partial batch to an eager step, η follows a cosine every batch, and Adam's t every step."""
    from convscope.train import Trainer
    from convscope.train.schedules import Cosine

    x = torch.cat([b[0] for b in batches])[:300]
    y = torch.cat([b[1] for b in batches])[:300]
    weights, steps = {}, {}
    for graph in (False, True):
        net = zoo.lenet5(dtype=np.float64, seed=3).to("cpu")
        optimizer = Adam(1e-3, weight_decay=5e-4)
        trainer = Trainer(net, optimizer, (x, y), epochs=2, batch_size=32, seed=5,
                          lr_schedule=Cosine(1e-3, 2), progress=False, log=lambda *_: None)
        if graph:
            trainer._graph_step = stand_in_graph_step(net, optimizer)
        trainer.fit()
        weights[graph], steps[graph] = net.state_dict(), dict(optimizer.steps)
    assert trainer._graph_step.captures == 1 and steps[True] == steps[False]
    assert steps[True]["conv1.w"] == 20  # 9 full batches and 1 of 12, twice
    _same_weights(weights[False], weights[True])
