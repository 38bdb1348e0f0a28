"""The monitor's warnings, each naming the layer, and the statistics they read."""

import numpy as np
import pytest

from convscope.debug import stats
from convscope.debug.rules import Thresholds, gradient_warnings, unit_warnings, warnings_for


def _rows(rms):
    return [{"layer": f"conv{i}", "w_grad_rms": v} for i, v in enumerate(rms, 1)]


def test_vanishing_and_exploding_gradients_are_judged_against_the_last_layer():
    found = gradient_warnings(_rows([1e-7, 1e-2, 2e3, 1e-1, 1.0]), Thresholds())
    assert [(w["kind"], w["layer"]) for w in found] == [
        ("vanishing_gradients", "conv1"), ("exploding_gradients", "conv3")]
    assert found[0]["message"].startswith("vanishing gradients in 'conv1': RMS dE/dω = 1.00e-07")
    assert "clip the gradient" in found[1]["message"]
    assert gradient_warnings(_rows([1e-3, 1.0]), Thresholds()) == []  # exactly 1e-3: no warning


def test_dead_relu_and_saturated_layers_are_named_with_their_numbers():
    found = warnings_for([{"layer": "relu2", "act_dead": 0.75}, {"layer": "relu3", "act_dead": 0.5},
                          {"layer": "sigmoid1", "act_saturated": 0.9}])
    assert [(w["kind"], w["layer"]) for w in found] == [("dead_relu", "relu2"),
                                                        ("saturated", "sigmoid1")]
    assert "75% of its channels" in found[0]["message"]
    assert "90% of its outputs" in found[1]["message"]
    assert unit_warnings({"layer": "relu1", "act_dead": 0.0}, Thresholds()) == []


def test_statistics_of_one_array():
    a = np.array([[0.0, 1.0], [0.0, 3.0], [0.0, -4.0]])
    assert stats.moments(a) == pytest.approx((0.0, np.sqrt(26 / 6)))
    assert stats.norm(a) == pytest.approx(np.sqrt(26))
    assert stats.rms(a) == pytest.approx(np.sqrt(26 / 6))
    assert stats.zero_fraction(a) == 0.5
    assert stats.dead_fraction(a) == 0.5  # column 0 is 0 for every sample
    assert stats.saturated_fraction(np.array([0.005, 0.5, 0.995, 0.99]), "Sigmoid") == 0.75
    assert stats.saturated_fraction(np.array([-0.995, 0.0, 0.3, 1.0]), "Tanh") == 0.5
    assert stats.saturated_fraction(a, "ReLU") is None
    assert stats.update_ratio([np.array([3.0, 4.0])], [np.array([3.0, 4.005])]) == \
        pytest.approx(1e-3)
    assert stats.update_ratio([np.zeros(2)], [np.ones(2)]) is None
    # anything np.asarray accepts, as the module promises
    assert stats.norm([3, 4]) == 5.0 and stats.rms([3, 4]) == pytest.approx(np.sqrt(12.5))
    assert stats.update_ratio([[3.0, 4.0]], [[3.0, 4.005]]) == pytest.approx(1e-3)
    h = stats.histogram(np.array([0.0, 1.0, np.nan, 1.0]), bins=2)
    assert h == {"counts": [1, 2], "edges": [0.0, 0.5, 1.0]}
    assert not stats.all_finite(np.array([1.0, np.inf])) and stats.all_finite(np.arange(3))
    assert not stats.all_finite(np.array([3e38, 3e38, np.nan], dtype=np.float32))


def test_a_finite_array_whose_sum_overflows_is_finite_without_a_warning():
    big = np.full(4, 3e38, dtype=np.float32)
    with np.errstate(over="raise", invalid="raise"):  # as a user's settings may be
        assert stats.all_finite(big)
        assert not stats.all_finite(np.array([3e38, 3e38, np.nan], dtype=np.float32))


@pytest.mark.parametrize("wrap", [np.asarray, "torch"], ids=["numpy", "torch"])
def test_all_finite_together_finds_one_bad_entry_among_many_arrays(wrap):
    """The probe's check of a whole network's gradients: one read back for every tensor, the
    NaN or Inf found in any of them, an overflowing sum of finite float64 entries still finite."""
    if wrap == "torch":
        torch = pytest.importorskip("torch")
        wrap = torch.from_numpy
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5,), (2, 2, 2))]
    labels = np.arange(4)  # integers are never NaN
    assert stats.all_finite_together([wrap(a) for a in arrays] + [wrap(labels)])
    for bad in (np.nan, np.inf, -np.inf):
        for i in range(len(arrays)):
            broken = [a.copy() for a in arrays]
            broken[i].flat[-1] = bad
            assert not stats.all_finite_together([wrap(a) for a in broken]), (bad, i)
    huge = np.full(4, 1e308)  # the float64 sum overflows; every entry is finite
    assert stats.all_finite_together([wrap(huge), wrap(arrays[0])])
    assert not stats.all_finite_together([wrap(huge), wrap(np.array([np.nan]))])
    complex_numbers = np.array([1 + 2j, np.nan * 1j])
    assert not stats.all_finite_together([wrap(complex_numbers)])
    assert stats.all_finite_together([wrap(complex_numbers[:1])])
    assert stats.all_finite_together([])


def test_the_probe_reads_one_number_back_per_check_on_torch():
    """On PyTorch tensors the probe's checks of a step (the objective after the forward pass,
    the ten gradients of LeNet-5 after the backward pass) sum on the device and read one number
    back each, copying no array to the host: on a GPU every read makes the host wait."""
    torch = pytest.importorskip("torch")
    from convscope import zoo
    from convscope.debug.probe import Probe

    net = zoo.lenet5(seed=1).to("cpu")
    rng = np.random.default_rng(0)
    feed = {"input": rng.standard_normal((4, 28, 28, 1)).astype(np.float32), "label": np.arange(4)}
    copies, reads = [], []
    original = torch.Tensor.__float__

    def reading(self):
        reads.append(tuple(self.shape))
        return original(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stats, "to_numpy", lambda a: copies.append(a) or np.asarray(a))
        mp.setattr(torch.Tensor, "__float__", reading)
        probe = Probe(net).install()
        net.forward(feed, train=True)
        net.backward({"objective": 1.0}, input_grads=False)
        probe.check_params()
    assert copies == [] and reads == [(), (), ()]
