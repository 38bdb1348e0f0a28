"""The monitor over whole runs: a resumed run, a step that overflows the weights, a warm-up, and
the statistics it records checked against their formulas."""

import numpy as np
import pytest

from convscope.debug import Monitor, NonFiniteError, read_monitor
from convscope.debug.monitor import peak_lr
from convscope.nn import FullyConnected, Network, Sequential, Sigmoid, SoftmaxLogLoss, Tanh
from convscope.train.schedules import Constant, Cosine, WarmUp


def test_a_resumed_run_continues_the_step_numbering_and_keeps_the_first_records(
        tmp_path, make_trainer, tiny_net):
    first = make_trainer(tiny_net(), lr=0.01, epochs=1, out_dir=tmp_path)  # 8 batches
    Monitor(every=2).attach(first)
    first.fit()
    second = make_trainer(tiny_net(), lr=0.01, epochs=2, out_dir=tmp_path)
    Monitor(every=2).attach(second)  # attached before resume(): must not empty the file
    second.resume()
    second.fit()
    steps = [(r["step"], r["epoch"], r["batch"]) for r in read_monitor(tmp_path)
             if r["layer"] == "conv1"]
    assert steps == [(1, 1, 2), (3, 1, 4), (5, 1, 6), (7, 1, 8),
                     (9, 2, 2), (11, 2, 4), (13, 2, 6), (15, 2, 8)]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow itself
def test_a_step_that_overflows_the_weights_stops_before_the_checkpoint_saves_them(
        tmp_path, make_trainer, tiny_net):
    """One batch per epoch: epoch 1 trains at η = 0.01 and is checkpointed; epoch 2's update at
    η = 1e39 overflows float32 weights to Inf from a finite gradient. The run must stop at that
    batch naming the layer, before the end of the epoch writes the Inf weights as checkpoint."""
    trainer = make_trainer(tiny_net(), lr=0.01, epochs=3, batch_size=256, out_dir=tmp_path,
                           lr_schedule=lambda t: 0.01 if t < 1 else 1e39)
    said = []
    Monitor(log=said.append).attach(trainer)
    with (np.errstate(over="ignore", invalid="ignore"),
          pytest.raises(NonFiniteError, match=r"epoch 2, batch 1: layer 'conv1' holds NaN or Inf "
                                              r"in its parameter 'conv1.w' after the optimiser")
          as e):
        trainer.fit()
    assert e.value.layer == "conv1" and e.value.phase == "update"
    assert "the last checkpoint is the last good one" in str(e.value)
    checkpoint = Network.load(tmp_path / "checkpoint.safetensors")
    assert all(np.isfinite(v).all() for v in checkpoint.state_dict().values())
    assert trainer.epoch == 1 and any("last good checkpoint" in line for line in said)
    assert read_monitor(tmp_path)[-1]["nonfinite"] == "update"


def test_update_ratios_during_a_warm_up_are_judged_at_the_peak_learning_rate(make_trainer,
                                                                              tiny_net):
    """η ramps from 1e-6 to 1e-3 in the first epoch: the update ratio at η = 3.8e-4 is ~3e-3,
    healthy. Judged against η(0) = 1e-6 it read as 1e-5 and the monitor said to raise η."""
    warm = WarmUp(Constant(0.001), epochs=1, start_factor=0.001)
    trainer = make_trainer(tiny_net(), lr=0.001, epochs=2, lr_schedule=warm)
    monitor = Monitor(every=4).attach(trainer)
    trainer.fit()
    ratios = [r["update_ratio"] for r in monitor.records if r.get("update_ratio") is not None]
    assert ratios and all(1e-4 < v < 1e-1 for v in ratios)
    assert [w for w in monitor.warnings if w["kind"] == "update_ratio"] == []


def test_the_peak_learning_rate_of_a_schedule():
    assert peak_lr(Cosine(0.1, epochs=10), 10) == pytest.approx(0.1)
    assert peak_lr(WarmUp(Cosine(0.1, epochs=10), epochs=2, start_factor=0.01), 10) == \
        pytest.approx(Cosine(0.1, epochs=10)(2.0))


def test_the_recorded_statistics_follow_their_formulas(make_trainer, mnist_small):
    """mean, std, saturation of a sigmoid and a tanh layer, ‖dE/dω‖ and ‖Δω‖/‖ω‖, recomputed here
    from the arrays of the same batch."""
    net = Sequential((28, 28, 1), [FullyConnected(16), Sigmoid(), FullyConnected(16), Tanh(),
                                   FullyConnected(10)], loss=SoftmaxLogLoss())
    trainer = make_trainer(net, lr=0.5, epochs=1)
    seen = {}

    class Keep:  # runs before the monitor: the weights after each update, the batch's values
        def on_batch_end(self, trainer, info):
            seen[info["batch"]] = ({k: v.copy() for k, v in trainer.net.state_dict().items()},
                                   {k: v.copy() for k, v in info["values"].items()},
                                   {n: p.grad.copy() for n, p in trainer.net.params().items()})

    trainer.callbacks.append(Keep())
    monitor = Monitor(every=3, seed=0).attach(trainer)
    trainer.fit()
    rows = {(r["step"], r["layer"]): r for r in monitor.records}
    assert {s for s, _ in rows} == {2, 5}
    for step in (2, 5):
        after, values, grads = seen[step]
        before = seen[step - 1][0]
        for layer, low, high in (("sigmoid1", 0.01, 0.99), ("tanh1", -0.99, 0.99)):
            y = values[layer].astype(np.float64)  # 32×16 = 512 entries: no sampling
            r = rows[(step, layer)]
            assert r["act_mean"] == pytest.approx(y.mean(), rel=1e-6)
            assert r["act_std"] == pytest.approx(y.std(), rel=1e-6)
            assert r["act_saturated"] == np.mean((y <= low) | (y >= high))
        for layer in ("fc1", "fc2", "fc3"):
            w = [f"{layer}.w", f"{layer}.b"]
            delta = np.sqrt(sum(np.sum((after[k].astype(np.float64) - before[k]) ** 2) for k in w))
            norm = np.sqrt(sum(np.sum(before[k].astype(np.float64) ** 2) for k in w))
            g = np.sqrt(sum(np.sum(grads[k].astype(np.float64) ** 2) for k in w))
            r = rows[(step, layer)]
            assert r["update_ratio"] == pytest.approx(delta / norm, rel=1e-6)
            assert r["w_grad_norm"] == pytest.approx(g, rel=1e-6)
    assert any(rows[(s, "sigmoid1")]["act_saturated"] > 0 for s in (2, 5))



@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow itself
def test_weights_overflowed_inside_an_epoch_are_named_by_the_next_forward_pass(make_trainer,
                                                                                tiny_net):
    """Batch 2 of 4 steps with η = 1e39: its update overflows conv1's filters; the forward pass of
    batch 3 is not finite and names the parameter, not conv1's output 'from finite inputs'."""
    trainer = make_trainer(tiny_net(), lr=0.01, epochs=1, batch_size=64,
                           lr_schedule=lambda t: 1e39 if 0.2 < t < 0.3 else 0.01)
    Monitor().attach(trainer)
    with (np.errstate(over="ignore", invalid="ignore"),
          pytest.raises(NonFiniteError, match=r"^epoch 1, batch 3: layer 'conv1' holds NaN or Inf "
                                              r"in its parameter 'conv1.w'") as e):
        trainer.fit()
    assert e.value.phase == "update" and e.value.variable == "conv1.w"
