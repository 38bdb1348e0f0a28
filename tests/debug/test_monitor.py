"""The monitor: per-layer records every K batches, warnings naming the layer, the NaN stop."""

import json

import numpy as np
import pytest

from convscope.debug import Monitor, NonFiniteError, read_monitor
from convscope.debug.diagnosis import diagnose
from convscope.nn import FullyConnected, Network, Sequential, Sigmoid, SoftmaxLogLoss


def test_records_every_k_batches_one_line_per_layer(tmp_path, make_trainer, tiny_net):
    trainer = make_trainer(tiny_net(), epochs=1, out_dir=tmp_path)  # 8 batches
    monitor = Monitor(per_epoch=4).attach(trainer)
    trainer.fit()
    records = read_monitor(tmp_path)
    layers = ["conv1", "relu1", "pool1", "conv2", "fc1"]
    assert [r["layer"] for r in records] == layers * 4
    assert sorted({r["batch"] for r in records}) == [2, 4, 6, 8] and monitor.every == 2
    relu = next(r for r in records if r["layer"] == "relu1")
    assert 0 < relu["act_zero"] < 1 and 0 <= relu["act_dead"] <= relu["act_zero"]
    conv = records[-2]
    assert conv["layer"] == "conv2" and conv["w_norm"] > 0 and conv["w_grad_norm"] > 0
    assert 1e-5 < conv["update_ratio"] < 1
    assert sum(conv["act_hist"]["counts"]) > 0 and len(conv["act_hist"]["edges"]) == 21
    json.loads((tmp_path / "monitor.jsonl").read_text().splitlines()[0])  # plain JSON lines


def test_a_monitored_run_trains_exactly_as_an_unmonitored_one(make_trainer, tiny_net):
    plain, monitored = make_trainer(tiny_net(), epochs=1), make_trainer(tiny_net(), epochs=1)
    Monitor(every=1).attach(monitored)
    plain.fit()
    monitored.fit()
    for a, b in zip(plain.net.state_dict().values(), monitored.net.state_dict().values()):
        np.testing.assert_array_equal(a, b)


def test_a_deep_sigmoid_network_has_vanishing_gradients_in_its_first_layers(make_trainer):
    x_shape = (28, 28, 1)
    layers = [layer for _ in range(10) for layer in (FullyConnected(32), Sigmoid())]
    net = Sequential(x_shape, [*layers, FullyConnected(10)], loss=SoftmaxLogLoss())
    said = []
    trainer = make_trainer(net, epochs=1, lr=0.01)
    monitor = Monitor(every=4, log=said.append).attach(trainer)
    trainer.fit()
    vanishing = [w["layer"] for w in monitor.warnings if w["kind"] == "vanishing_gradients"]
    assert {"fc1", "fc2", "fc3"} <= set(vanishing)
    assert "fc10" not in vanishing and "fc11" not in vanishing
    assert any("vanishing gradients in 'fc1'" in line for line in said)


def _poison(layer, *, after, phase):
    """Make ``layer`` put a NaN in its output (or an Inf in its filter gradient) from its
    ``after``-th training call on."""
    calls = {"n": 0}
    forward, backward = layer.forward, layer.backward

    def poisoned_forward(xs, *, train, rng):
        y, aux = forward(xs, train=train, rng=rng)
        calls["n"] += train
        if phase == "forward" and train and calls["n"] > after:
            y = y.copy()
            y.reshape(-1)[5] = np.nan
        return y, aux

    def poisoned_backward(xs, aux, dy):
        dxs = backward(xs, aux, dy)
        if phase == "backward" and calls["n"] > after:
            layer.params["w"].grad[0, 0, 0, 0] = np.inf
        return dxs

    layer.forward, layer.backward = poisoned_forward, poisoned_backward


@pytest.mark.parametrize("phase", ["forward", "backward"])
def test_a_nan_stops_the_run_at_once_naming_the_layer(tmp_path, make_trainer, tiny_net, phase):
    net = tiny_net()
    _poison(net.nodes["conv2"].layer, after=10, phase=phase)  # batch 3 of epoch 2
    trainer = make_trainer(net, epochs=3, out_dir=tmp_path)
    Monitor().attach(trainer)
    with pytest.raises(NonFiniteError, match=f"^epoch 2, batch 3: layer 'conv2' produced NaN or "
                                             f"Inf in its {phase}") as e:
        trainer.fit()
    assert e.value.layer == "conv2" and e.value.phase == phase
    assert all(np.isfinite(v).all() for v in net.state_dict().values())  # no update applied
    checkpoint = Network.load(tmp_path / "checkpoint.safetensors")  # epoch 1, the last good one
    assert all(np.isfinite(v).all() for v in checkpoint.state_dict().values())
    assert trainer.epoch == 1
    failure = read_monitor(tmp_path)[-1]
    assert failure["nonfinite"] == phase and failure["layer"] == "conv2"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_learning_rate_100x_too_large_diverges_and_is_called_so(make_trainer, tiny_net):
    good = make_trainer(tiny_net(), lr=0.01, epochs=2)
    good_monitor = Monitor(every=2).attach(good)
    good.fit()
    assert all(f.kind != "lr_too_high" for f in diagnose(good.history, good_monitor.records))

    bad = make_trainer(tiny_net(), lr=1.0, epochs=2)
    monitor = Monitor(every=2).attach(bad)
    error = None
    try:
        bad.fit()
    except FloatingPointError as e:
        error = e
    findings = diagnose(bad.history, monitor.records, error=error)
    assert [f.kind for f in findings] == ["lr_too_high"]
    assert "diverged" in findings[0].message or "exploded" in findings[0].message


def test_dead_units_are_channels_that_never_fire_anywhere():
    """A position that is 0 on every sample (an empty image margin) does not make a filter dead:
    the filter is shared and learns where it fires. A channel 0 everywhere is dead."""
    from convscope.debug import stats

    y = np.ones((4, 5, 5, 4))
    y[:, 0, :, :] = 0  # the top row of every channel never fires: 20 % of the positions
    y[..., 1] = 0  # channel 1 never fires anywhere
    assert stats.dead_fraction(y) == 0.25
    assert stats.dead_fraction(np.maximum(np.eye(3) - 1, 0)) == 1.0  # N×K: every unit 0
    assert stats.dead_fraction(np.array([[0.0, 2.0], [0.0, 0.0]])) == 0.5


def test_weight_statistics_on_torch_equal_numpys_without_copies_to_the_host(monkeypatch):
    """‖ω‖, ‖dE/dω‖, RMS dE/dω and the update ratio of every layer are the same numbers for a
    network on PyTorch tensors, taken where the tensors are (on a GPU: no host copy of the
    keypoints net's 7.7 million fc1 weights at every record), and the snapshot stays there."""
    torch = pytest.importorskip("torch")
    from convscope import zoo
    from convscope.backend.devices import to_numpy
    from convscope.debug import stats
    from convscope.debug.monitor import layer_rows, snapshot
    from convscope.train.optim import Nesterov

    rng = np.random.default_rng(3)
    feed = {"input": rng.standard_normal((8, 28, 28, 1)), "label": rng.integers(0, 10, 8)}
    rows = {}
    for device in ("numpy", "cpu"):
        net = zoo.lenet5(dtype=np.float64, seed=2).to(device)
        values = net.forward(feed, train=True)
        grads = net.backward({"objective": 1.0})
        before = snapshot(net)
        Nesterov(0.05, 0.9).step(net.params())
        copies = []
        monkeypatch.setattr(stats, "to_numpy", lambda a, seen=copies: seen.append(id(a)) or to_numpy(a))
        if device == "cpu":
            assert all(isinstance(a, torch.Tensor) for arrays in before.values() for a in arrays)
        rows[device] = layer_rows(net, values, grads, before, rng=np.random.default_rng(0))
        monkeypatch.undo()
        weights = [p.value for p in net.params().values()] + [p.grad for p in net.params().values()]
        weights += [a for arrays in before.values() for a in arrays]
        assert len(copies) > 0  # the activations are sampled on the host
        assert not {id(w) for w in weights} & set(copies)  # the weights are not copied there
    keys = ("w_norm", "w_grad_norm", "w_grad_rms", "update_ratio")
    with_weights = [r for r in rows["numpy"] if "w_norm" in r]
    assert len(with_weights) == 5
    for a, b in zip(rows["numpy"], rows["cpu"], strict=True):
        for key in keys:
            if key in a:
                assert a[key] > 0 and b[key] == pytest.approx(a[key], rel=1e-12), (a["layer"], key)


def test_sums_of_squares_go_a_block_at_a_time_on_the_host(monkeypatch):
    from convscope.debug import stats

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (7, 1000, 3)]
    exact = sum(float(np.sum(a.astype(np.float64) ** 2)) for a in arrays)
    monkeypatch.setattr(stats, "SQUARES_BLOCK", 64)
    assert stats.sum_of_squares(arrays) == pytest.approx(exact, rel=1e-13)
    assert stats.norm_of(arrays) == pytest.approx(np.sqrt(exact), rel=1e-13)
    assert stats.rms_of(arrays) == pytest.approx(np.sqrt(exact / 1010), rel=1e-13)
    assert stats.sum_of_squares([np.array([3 + 4j])]) == 25.0
    assert stats.rms_of([]) == 0.0


def test_while_a_cuda_graph_is_captured_the_probe_keeps_its_tensors_and_reads_nothing(monkeypatch):
    """A captured step's values and gradients are the graph's own tensors, refreshed by every
    replay: the probe keeps them for the monitor (it kept the last eager step's, so a monitored
    --cuda-graph run recorded stale activations) and checks nothing while recording."""
    from convscope.debug import probe as probe_module
    from convscope.debug.probe import Probe

    net = Sequential((4,), [FullyConnected(3)], loss=SoftmaxLogLoss(), dtype=np.float64, seed=0)
    probe = Probe(net).install()
    feed = {"input": np.ones((2, 4)), "label": np.array([0, 1])}
    net.forward(feed, train=True)
    eager_values = probe.values
    monkeypatch.setattr(probe_module, "capturing", lambda: True)
    monkeypatch.setattr(probe_module, "all_finite_together", lambda arrays: 1 / 0)  # no reads
    captured = net.forward({**feed, "input": np.full((2, 4), np.nan)}, train=True)
    grads = net.backward({"objective": 1.0})
    assert probe.values is captured and probe.values is not eager_values
    assert probe.grads is grads
