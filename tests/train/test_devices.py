"""The same network on NumPy and on PyTorch tensors: on the CPU here, on CUDA with
CONVSCOPE_TEST_DEVICE=cuda (benchmarks/gpu_run.sh runs them so)."""

import os

import numpy as np
import pytest
import torch

from convscope import ConfigError, zoo
from convscope.nn import Network
from convscope.nn.layers import Conv, FullyConnected, L2Loss, ReLU
from convscope.train import Trainer
from convscope.train.config import DEFAULTS, validate
from convscope.train.datasets import load_split
from convscope.train.optim import Adam, Nesterov
from convscope.train.step import CudaGraphStep, train_step

DEVICE = os.environ.get("CONVSCOPE_TEST_DEVICE", "cpu")


@pytest.fixture(scope="module")
def digits():
    split = load_split("mnist_subset", "train")
    x = (split.x[:320].astype(np.float64) - 33.3) / 78.6
    return x, split.y[:320]


def _train_one_epoch(device, digits, optimizer):
    net = zoo.lenet5(dtype=np.float64, seed=3).to(device)
    Trainer(net, optimizer, digits, epochs=1, batch_size=32, seed=5, progress=False,
            log=lambda *_: None).fit()
    return net


@pytest.mark.parametrize("make_optimizer", [lambda: Nesterov(0.05, 0.9, weight_decay=5e-4),
                                            lambda: Adam(1e-3)])
def test_one_epoch_on_each_backend_reaches_the_same_weights(digits, make_optimizer):
    on_numpy = _train_one_epoch("numpy", digits, make_optimizer())
    on_torch = _train_one_epoch(DEVICE, digits, make_optimizer())
    start = zoo.lenet5(dtype=np.float64, seed=3).state_dict()
    for name, a in on_numpy.state_dict().items():
        b = on_torch.state_dict()[name]
        assert isinstance(on_torch.params()[name].value, torch.Tensor)
        moved = np.max(np.abs(a - start[name]))
        assert moved > 0, name
        assert np.max(np.abs(a - b)) < 1e-9 * max(1.0, np.max(np.abs(a))), name


def test_forward_and_backward_match_between_backends(digits):
    x, y = digits[0][:16], digits[1][:16]
    grads = {}
    for device in ("numpy", DEVICE):
        net = zoo.cifar10_quick(input_shape=(28, 28, 1), dtype=np.float64, seed=1).to(device)
        values = net.forward({"input": x, "label": y}, train=True)
        net.backward({"objective": 1.0})
        grads[device] = (float(values["objective"]),
                         {k: np.asarray(p.grad.cpu() if device != "numpy" else p.grad)
                          for k, p in net.params().items() if p.grad is not None})
    (loss_np, g_np), (loss_t, g_t) = grads["numpy"], grads[DEVICE]
    assert abs(loss_np - loss_t) < 1e-12
    assert set(g_np) == set(g_t) and len(g_np) == 10
    for k in g_np:
        assert np.max(np.abs(g_np[k] - g_t[k])) <= 1e-10 * np.max(np.abs(g_np[k])), k


def test_saved_network_is_device_independent(tmp_path, digits):
    net = zoo.lenet5(seed=2).to(DEVICE)
    net.save(tmp_path / "net.safetensors")
    back = type(net).load(tmp_path / "net.safetensors")
    assert back.device == "numpy"
    x = digits[0][:8].astype(np.float32)
    assert np.allclose(net.predict(x), back.predict(x), rtol=1e-5, atol=1e-6)


def test_devices_are_checked_with_clear_errors():
    with pytest.raises(ConfigError, match="unknown device"):
        zoo.lenet5().to("gpu")
    with pytest.raises(ConfigError, match="device"):
        validate({**DEFAULTS, "device": "tpu"})
    with pytest.raises(ConfigError, match="cuda_graph needs a CUDA device"):
        validate({**DEFAULTS, "device": "cpu", "cuda_graph": True})
    with pytest.raises(ConfigError, match="net.to\\('cuda'\\)"):
        CudaGraphStep(zoo.lenet5().to("cpu"), Nesterov())


def test_a_cuda_graph_config_takes_every_optimiser():
    """Adam too since the fourteenth session (its step count t is a device scalar the graph
    reads); before, it was refused: its bias corrections were numbers a graph would freeze."""
    for kind in ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"):
        validate({**DEFAULTS, "device": "cuda", "cuda_graph": True,
                  "optimizer": {"type": kind, "lr": 0.001}})


@pytest.mark.skipif(not DEVICE.startswith("cuda"), reason="CUDA graphs: CONVSCOPE_TEST_DEVICE=cuda")
def test_a_monitored_cuda_graph_run_records_its_replays_as_the_eager_run_records_its_steps(digits):
    """Replays never pass through the probe: the monitor must read the graph's own tensors, which
    every replay refreshes (it recorded the last eager step's activations until the twelfth
    session). Steps 4–10 of the epoch are replays (3 warm-up steps, then the capture)."""
    from convscope.debug import Monitor

    records = {}
    for graph in (False, True):
        net = zoo.lenet5(dtype=np.float64, seed=3).to(DEVICE)
        trainer = Trainer(net, Nesterov(0.05, 0.9), digits, epochs=1, batch_size=32, seed=5,
                          progress=False, log=lambda *_: None, cuda_graph=graph)
        monitor = Monitor(every=1).attach(trainer)
        trainer.fit()
        records[graph] = [(r["step"], r["layer"], r["act_std"], r["grad_rms"])
                          for r in monitor.records if r.get("act_std") is not None]
    eager, replayed = records[False], records[True]
    assert len(eager) == len(replayed) and {r[0] for r in eager} == set(range(10))
    for a, b in zip(eager, replayed, strict=True):
        assert a[:2] == b[:2] and b[2:] == pytest.approx(a[2:], rel=1e-9), a[:2]
    assert len({r[2] for r in replayed if r[1] == "conv1"}) == 10  # no step repeats another's


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "rmsprop",
                                       "adagrad"])
def test_multi_tensor_update_on_torch_equals_the_update_per_parameter(optimizer):
    """The torch update groups parameters by learning-rate factor (and, for Adam, by their own step
    count t: p4 gets no gradient in the first step, as a layer unfrozen late) and applies each
    weight-decay factor to its own parameters; it must equal NumPy's update parameter by
    parameter."""
    from convscope.nn.parameter import Parameter
    from convscope.train.optim import make_optimizer

    rng = np.random.default_rng(4)
    factors = [(1.0, 1.0), (1.0, 0.0), (0.1, 2.0), (0.1, 1.0), (1.0, 2.0)]  # (c_η, c_λ)
    values = [rng.standard_normal((3, 2)) for _ in factors]
    grads = [[rng.standard_normal((3, 2)) for _ in factors] for _ in range(3)]
    results = {}
    for device in ("numpy", "torch"):
        wrap = torch.from_numpy if device == "torch" else np.copy
        params = {f"p{i}": Parameter(wrap(v.copy()), lr_factor=lr, decay_factor=decay)
                  for i, (v, (lr, decay)) in enumerate(zip(values, factors, strict=True))}
        opt = make_optimizer(optimizer, lr=0.1, weight_decay=0.01)
        for n, step in enumerate(grads):
            for p, g in zip(params.values(), step, strict=True):
                p.grad = wrap(g.copy())
            if n == 0:
                params["p4"].grad = None
            opt.step(params)
        results[device] = [np.asarray(p.value) for p in params.values()]
    for a, b in zip(results["numpy"], results["torch"], strict=True):
        assert np.max(np.abs(a - b)) < 1e-14
    assert not np.allclose(results["numpy"][1], values[1])


def _filters_outermost(t) -> bool:
    """Whether an H'×W'×D×K tensor holds its K filters outermost in memory (K×H'×W'×D)."""
    return t.permute(3, 0, 1, 2).is_contiguous()


def test_torch_network_keeps_its_filters_in_the_kernels_order_and_copies_none(digits):
    """On PyTorch a network keeps each convolution's filters K×H'×W'×D in memory (PyTorch's
    channels_last weight): the kernels take them and return dE/df without a copy, and the
    optimiser's state follows the same order; NumPy gets them back C-contiguous."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Copies(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in ("clone", "copy_", "_to_copy", "contiguous"):
                Copies.count += 1
            return func(*args, **(kwargs or {}))

    net = zoo.lenet5(seed=2).to(DEVICE)
    optimizer = Nesterov(0.01, 0.9)
    batch = {"input": torch.from_numpy(digits[0][:8].astype(np.float32)).to(DEVICE),
             "label": torch.from_numpy(digits[1][:8]).to(DEVICE)}
    from convscope.train.step import train_step

    train_step(net, optimizer, batch)
    with Copies():
        train_step(net, optimizer, batch)
    assert Copies.count == 0
    for name in ("conv1.w", "conv2.w"):
        p = net.params()[name]
        assert _filters_outermost(p.value) and p.value.stride() == p.grad.stride()
        assert optimizer.state[name]["v"].stride() == p.value.stride()
    assert net.params()["fc1.w"].value.is_contiguous()
    before = {k: v.copy() for k, v in net.state_dict().items()}
    back = net.to("numpy").params()["conv1.w"].value
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(back, before["conv1.w"])


def test_restored_optimizer_state_takes_the_parameters_memory_order(digits):
    net = zoo.lenet5(seed=2).to(DEVICE)
    optimizer = Nesterov(0.01, 0.9)
    optimizer.state = {"conv2.w": {"v": np.ones(tuple(net.params()["conv2.w"].value.shape))}}
    from convscope.train.step import train_step

    train_step(net, optimizer, {"input": torch.from_numpy(digits[0][:8].astype(np.float32)),
                                "label": torch.from_numpy(digits[1][:8])})
    v = optimizer.state["conv2.w"]["v"]
    assert isinstance(v, torch.Tensor) and _filters_outermost(v) and v.dtype == torch.float32


def _small_net(net):
    net.add("conv1", Conv(4, 3), "input")
    net.add("relu1", ReLU(), "conv1")
    net.add("fc", FullyConnected(3), "relu1")
    return net


def test_layers_added_after_to_join_the_network_on_its_device():
    """A layer added to a network already on PyTorch gets its parameters there, in the backend's
    filter order, and computes what the same network moved after building computes."""
    early = _small_net(Network({"input": (8, 8, 3)}, dtype=np.float64, seed=1).to(DEVICE))
    late = _small_net(Network({"input": (8, 8, 3)}, dtype=np.float64, seed=1)).to(DEVICE)
    for name, p in early.params().items():
        q = late.params()[name].value
        assert isinstance(p.value, torch.Tensor), name
        assert p.value.stride() == q.stride(), name
        assert torch.equal(p.value, q), name
    x = np.random.default_rng(2).standard_normal((2, 8, 8, 3))
    assert torch.equal(early.forward({"input": x})["fc"], late.forward({"input": x})["fc"])


@pytest.mark.parametrize("values_readable", [True, False], ids=["cpu-tensors", "as-on-cuda"])
def test_l2_loss_layer_on_torch_drops_missing_targets_as_on_numpy(values_readable, monkeypatch):
    """NaN (missing) keypoints give no loss and no gradient on either backend, also where the
    layer may not read values and so always applies the mask (CUDA)."""
    from convscope.nn import layers
    from convscope.ops import losses

    if not values_readable:
        monkeypatch.setattr(layers, "can_inspect_values", lambda a: not isinstance(a, torch.Tensor))
        monkeypatch.setattr(losses, "can_inspect_values", lambda a: not isinstance(a, torch.Tensor))
    rng = np.random.default_rng(4)
    x, target = rng.standard_normal((3, 1, 1, 4)), rng.standard_normal((3, 2, 2))
    target[1, 0] = np.nan
    for t in (target, np.nan_to_num(target)):  # with a missing keypoint, and with none
        known = ~np.isnan(t.reshape(x.shape))
        residual = np.where(known, x - np.nan_to_num(t.reshape(x.shape)), 0.0)
        expected = ((residual**2).sum() / known.sum(), 2 * residual / known.sum())  # E, dE/dx
        on_numpy = _loss_and_gradient(x, t, "numpy")
        on_torch = _loss_and_gradient(x, t, "cpu")
        for a, b, want in zip(on_numpy, on_torch, expected, strict=True):
            np.testing.assert_allclose(a, want, rtol=1e-12)
            np.testing.assert_allclose(b, want, rtol=1e-12)
    loss, dx = _loss_and_gradient(x, target, "cpu")
    assert np.isfinite(loss) and np.all(dx.reshape(3, 2, 2)[1, 0] == 0)


def _loss_and_gradient(x, target, device):
    layer = L2Loss()
    if device != "numpy":
        x, target = torch.from_numpy(x), torch.from_numpy(target)
    loss, aux = layer.forward([x, target], train=True, rng=None)
    dx, _ = layer.backward([x, target], aux, 1.0)
    return [np.asarray(a) if device == "numpy" else a.numpy() for a in (loss, dx)]


def test_feed_arrives_on_the_networks_device_and_dtype_in_one_move(digits):
    net = zoo.lenet5(dtype=np.float64, seed=3).to(DEVICE)
    images = digits[0][:4]
    from_numpy = net._check_feed("input", images.astype(np.float32))
    from_torch = net._check_feed("input", torch.from_numpy(images.astype(np.float32)))
    labels = net._check_feed("label", digits[1][:4])
    assert from_numpy.dtype == from_torch.dtype == torch.float64
    torch.testing.assert_close(from_numpy.cpu(), torch.from_numpy(images.astype(np.float32)).double())
    assert labels.dtype == torch.from_numpy(digits[1][:4]).dtype  # class indices keep their type
    ready = torch.from_numpy(images).to(DEVICE)  # float64 on its device already: no copy
    assert net._check_feed("input", ready) is ready


def _relative_difference(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize(("saved_on", "resumed_on"), [(DEVICE, "numpy"), ("numpy", DEVICE)])
def test_training_checkpoint_resumes_on_the_other_backend(saved_on, resumed_on, digits, tmp_path):
    """A checkpoint written while training on one backend (two Nesterov steps) resumes on the other
    with the very same weights, momentum buffers, step count and generator; one more step from
    that state gives the same weights and buffers on both, within float32 tolerance."""
    from convscope.train.step import train_step

    x, y = digits[0][:64].astype(np.float32), digits[1][:64]

    def trainer(device, seed):
        return Trainer(zoo.lenet5(seed=seed).to(device), Nesterov(0.05, 0.9, weight_decay=5e-4),
                       (x, y), epochs=1, batch_size=32, seed=5, out_dir=tmp_path, progress=False,
                       log=lambda *_: None)

    saved = trainer(saved_on, seed=2)
    saved.fit()  # writes tmp_path/checkpoint.safetensors
    resumed = trainer(resumed_on, seed=7).resume()
    assert resumed.net.device == resumed_on and resumed.epoch == 1
    assert resumed.optimizer.t == saved.optimizer.t == 2
    assert resumed.rng.bit_generator.state == saved.rng.bit_generator.state
    buffers = saved.optimizer.state_arrays()
    assert set(resumed.optimizer.state_arrays()) == set(buffers) == {
        f"{name}/v" for name in saved.net.params()}
    for name, v in buffers.items():
        assert np.max(np.abs(v)) > 0, name
        np.testing.assert_array_equal(resumed.optimizer.state_arrays()[name], v, err_msg=name)
    for name, w in saved.net.state_dict().items():
        np.testing.assert_array_equal(resumed.net.state_dict()[name], w, err_msg=name)

    before = {name: w.copy() for name, w in saved.net.state_dict().items()}  # live on numpy
    for t in (saved, resumed):
        train_step(t.net, t.optimizer, {"input": x[:32], "label": y[:32]})
    for t, device in ((saved, saved_on), (resumed, resumed_on)):
        assert isinstance(t.optimizer.state["conv1.w"]["v"], torch.Tensor) == (device != "numpy")
    weights = resumed.net.state_dict()
    for name, w in saved.net.state_dict().items():
        assert _relative_difference(w, before[name]) > 1e-2, name  # the step moved it
        assert _relative_difference(weights[name], w) < 1e-5, name
    buffers = resumed.optimizer.state_arrays()
    for name, v in saved.optimizer.state_arrays().items():
        assert _relative_difference(buffers[name], v) < 1e-5, name


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "rmsprop",
                                       "adagrad"])
def test_a_captured_update_reads_its_live_hyper_parameters_from_device_scalars(optimizer):
    """While a CUDA graph is captured the multi-tensor update must read η, α and Adam's step
    count t from the scalars the graph replays with (CudaGraphStep counts each call and fills
    them), not the numbers of the moment of capture: the same steps with η and α moved into
    scalars and made useless on the host, and the host's step counts held where they were at
    capture (as every replay has them), reach the weights of the plain update."""
    from convscope.nn.parameter import Parameter
    from convscope.train.optim import make_optimizer

    rng = np.random.default_rng(8)
    factors = [(1.0, 1.0), (0.1, 0.0), (1.0, 2.0)]  # (c_η, c_λ)
    values = [rng.standard_normal((4, 3)) for _ in factors]
    grads = [[rng.standard_normal((4, 3)) for _ in factors] for _ in range(4)]
    schedule = [(0.1, 0.9), (0.05, 0.95), (0.02, 0.5), (0.2, 0.99)]  # (η, α) per step
    results = {}
    for live in (False, True):
        params = {f"p{i}": Parameter(torch.from_numpy(v.copy()), lr_factor=lr, decay_factor=decay)
                  for i, (v, (lr, decay)) in enumerate(zip(values, factors, strict=True))}
        opt = make_optimizer(optimizer, lr=0.1, weight_decay=0.01)
        if live:
            opt.scalars = {name: torch.zeros((), dtype=torch.float64) for name in opt.live}
            opt.prepare(params)
            captured = opt.t, dict(opt.steps)
        for (lr, momentum), step in zip(schedule, grads, strict=True):
            for p, g in zip(params.values(), step, strict=True):
                p.grad = torch.from_numpy(g.copy())
            opt.lr, opt.momentum = lr, momentum
            if not live:
                opt.step(params)
                continue
            opt.count(params)
            for name, scalar in opt.scalars.items():
                scalar.fill_(getattr(opt, name))
            counts = opt.t, dict(opt.steps)
            opt.lr, opt.momentum = float("nan"), float("nan")  # what a replay never sees
            opt.t, opt.steps = captured[0], dict(captured[1])
            opt.step(params)
            opt.t, opt.steps = counts
        results[live] = [p.value.numpy() for p in params.values()]
    expected = {"sgd": {"lr"}, "adam": {"lr", "t"}, "rmsprop": {"lr"}, "adagrad": {"lr"}}
    assert set(opt.live) == expected.get(optimizer, {"lr", "momentum"})
    for a, b in zip(results[False], results[True], strict=True):
        assert np.all(np.isfinite(b)) and np.max(np.abs(a - b)) < 1e-14


@pytest.mark.skipif(not DEVICE.startswith("cuda"), reason="CUDA graphs: CONVSCOPE_TEST_DEVICE=cuda")
@pytest.mark.parametrize("make", [lambda: Nesterov(0.05, 0.9, weight_decay=5e-4),
                                  lambda: Adam(1e-3, weight_decay=5e-4)], ids=["nesterov", "adam"])
def test_a_cuda_graph_follows_a_per_step_schedule_of_eta_and_alpha_with_one_capture(digits, make):
    """The lecture's schedules change η (and α) every step, and Adam's bias corrections change
    with t: the graph reads them from device scalars, so ten steps under a ramp capture once and
    reach the eager steps' weights (before, every step captured anew, and Adam was refused)."""
    x, y = digits[0][:320].reshape(10, 32, 28, 28, 1), digits[1][:320].reshape(10, 32)
    weights = {}
    for graph in (False, True):
        net = zoo.lenet5(dtype=np.float64, seed=3).to(DEVICE)
        opt = make()
        step = CudaGraphStep(net, opt) if graph else None
        start = opt.lr
        for i in range(10):
            opt.lr, opt.momentum = start * (1 - i / 10), 0.9 + 0.009 * i
            feed = {"input": torch.from_numpy(x[i]).to(DEVICE), "label": torch.from_numpy(y[i]).to(DEVICE)}
            if graph:
                step(feed["input"], feed["label"])
            else:
                train_step(net, opt, feed)
        weights[graph] = net.state_dict()
        if graph:
            assert step.captures == 1
    for name, a in weights[False].items():
        assert np.max(np.abs(a - weights[True][name])) < 1e-9 * max(1.0, np.max(np.abs(a))), name
