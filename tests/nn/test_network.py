"""The Network DAG: shape inference, named errors, gradients, save/load."""

import numpy as np
import pytest

from convscope import ConfigError, ShapeError
from convscope.debug import gradcheck
from convscope.nn import (
    Add,
    BatchNorm,
    Concat,
    Conv,
    Dropout,
    FullyConnected,
    L2Loss,
    Network,
    Pool,
    ReLU,
    Sequential,
    SoftmaxLogLoss,
    Tanh,
)


def small_dag(dtype=np.float32, seed=0):
    """A DAG with a fork and two joins: conv → (relu | conv) → concat → pool → add → fc → loss."""
    net = Network({"input": (8, 8, 2), "label": ()}, dtype=dtype, seed=seed)
    net.add("conv1", Conv(3, 3, pad=1), "input")
    net.add("relu1", ReLU(), "conv1")
    net.add("conv2", Conv(2, 1), "conv1")
    net.add("cat", Concat(), ["relu1", "conv2"])
    net.add("pool", Pool(2, method="avg"), "cat")
    net.add("bn", BatchNorm(), "pool")
    net.add("tanh", Tanh(), "bn")
    net.add("sum", Add(), ["tanh", "pool"])
    net.add("fc", FullyConnected(4), "sum", output="prediction")
    net.add("objective", SoftmaxLogLoss(), ["prediction", "label"])
    return net


def test_shapes_are_inferred_when_layers_are_added():
    net = small_dag()
    assert net.shapes["conv1"] == (8, 8, 3)
    assert net.shapes["cat"] == (8, 8, 5)
    assert net.shapes["pool"] == (4, 4, 5)
    assert net.shapes["prediction"] == (1, 1, 4)
    assert net.nodes["conv2"].layer.params["w"].value.shape == (1, 1, 3, 2)
    assert net.nodes["fc"].layer.params["w"].value.shape == (4, 4, 5, 4)


def test_layers_may_be_added_in_any_order():
    net = Network({"input": (6, 6, 1)})
    net.add("relu", ReLU(), "conv")          # waits for "conv"
    net.add("conv", Conv(2, 3), "input")
    assert net.order() == ["conv", "relu"]
    y = net.forward({"input": np.ones((2, 6, 6, 1))})["relu"]
    assert y.shape == (2, 4, 4, 2)


def test_a_cycle_is_a_named_error():
    net = Network({"input": (6, 6, 1)})
    net.add("a", ReLU(), ["c"])
    net.add("b", ReLU(), ["a"])
    net.add("c", ReLU(), ["b"])
    with pytest.raises(ConfigError, match="cycle") as err:
        net.order()
    for name in "abc":
        assert f"{name}" in str(err.value)
    assert "→" in str(err.value)


def test_a_dangling_input_is_a_named_error():
    net = Network({"input": (6, 6, 1)})
    net.add("relu", ReLU(), "conv9")
    with pytest.raises(ConfigError, match="'relu' reads variable 'conv9'.*dangling"):
        net.forward({"input": np.zeros((1, 6, 6, 1))})


def test_mismatched_shapes_name_the_layer_and_the_shapes():
    net = Network({"a": (12, 12, 20), "b": (8, 8, 50)})
    with pytest.raises(ShapeError) as err:
        net.add("sum", Add(), ["a", "b"])
    message = str(err.value)
    assert "'sum'" in message and "12×12×20" in message and "8×8×50" in message


def test_a_kernel_larger_than_its_input_is_a_named_error():
    net = Sequential((4, 4, 1), [Conv(8, 3), ReLU()])
    with pytest.raises(ShapeError, match=r"'conv2'.*2×2×8"):
        net.append(Conv(4, 5))


def test_labels_that_do_not_fit_the_scores_are_a_named_error():
    with pytest.raises(ShapeError, match="'objective'"):
        Sequential((10,), [FullyConnected(3)], loss=SoftmaxLogLoss(), label_shape=(2,))


def test_a_variable_has_one_producer_and_layer_names_are_unique():
    net = Network({"input": (4,)})
    net.add("fc", FullyConnected(2), "input")
    with pytest.raises(ConfigError, match="already"):
        net.add("fc", FullyConnected(2), "input", output="other")
    with pytest.raises(ConfigError, match="'fc'"):
        net.add("fc2", FullyConnected(2), "input", output="fc")


def test_feed_with_the_wrong_shape_names_the_input():
    net = small_dag()
    with pytest.raises(ShapeError, match="'input' expects N×8×8×2, got 3×8×8"):
        net.forward({"input": np.zeros((3, 8, 8))})


def _params_check(net, x, labels, train):
    """gradcheck over the network input and every learnable parameter, in float64."""
    names = list(net.params(learnable_only=True))
    params = net.params()

    def forward(x, *arrays):
        for name, a in zip(names, arrays, strict=True):
            params[name].value = a
        return net.forward({"input": x, "label": labels}, train=train)["objective"]

    def backward(x, *arrays_and_dy):
        *arrays, dy = arrays_and_dy
        forward(x, *arrays)
        grads = net.backward({"objective": dy})
        return [grads["input"], *(params[n].grad for n in names)]

    return gradcheck(forward, backward, [x, *(params[n].value for n in names)])


def test_network_backward_matches_numerical_gradient_float64():
    net = small_dag(np.float64, seed=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8, 8, 2))
    labels = np.array([0, 3, 1])
    errors = _params_check(net, x, labels, train=True)
    assert len(errors) == 1 + len(net.params(learnable_only=True))
    assert max(errors.values()) < 1e-6, errors


def test_regression_network_backward_with_missing_targets():
    net = Sequential((5, 5, 1), [Conv(2, 3), ReLU(), FullyConnected(4)], loss=L2Loss(),
                     label_shape=(2, 2), dtype=np.float64)
    rng = np.random.default_rng(1)
    target = rng.standard_normal((3, 2, 2))
    target[0, 1] = np.nan
    errors = _params_check(net, rng.standard_normal((3, 5, 5, 1)), target, train=False)
    assert max(errors.values()) < 1e-6, errors


def test_gradients_sum_where_a_variable_feeds_two_layers():
    net = Network({"input": (3,)}, dtype=np.float64)
    net.add("a", ReLU(), "input")
    net.add("b", Tanh(), "input")
    net.add("sum", Add(), ["a", "b"])
    x = np.array([[0.5, -1.0, 2.0]])
    net.forward({"input": x})
    dx = net.backward({"sum": np.ones((1, 3))})["input"]
    np.testing.assert_allclose(dx, (x > 0) + 1 - np.tanh(x) ** 2)


def test_save_and_load_give_identical_outputs(tmp_path):
    net = small_dag(seed=5)
    net.params()["conv1.w"].lr_factor = 2.0
    net.freeze("fc")
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 2)).astype(np.float32)
    net.forward({"input": x, "label": np.arange(4)}, train=True)   # moves batch-norm moments
    net.save(tmp_path / "net.safetensors")
    loaded = Network.load(tmp_path / "net.safetensors")
    assert loaded.to_config() == net.to_config()
    for name, p in net.params().items():
        assert np.array_equal(loaded.params()[name].value, p.value), name
    assert loaded.params()["conv1.w"].lr_factor == 2.0 and loaded.params()["fc.w"].frozen
    a = net.forward({"input": x})["prediction"]
    b = loaded.forward({"input": x})["prediction"]
    assert np.array_equal(a, b)


def test_loading_parameters_of_the_wrong_shape_is_a_named_error():
    net = small_dag()
    state = net.state_dict()
    state["fc.w"] = np.zeros((2, 2))
    with pytest.raises(ShapeError, match="'fc.w'"):
        net.load_state_dict(state)


def test_dropout_only_in_training_and_test_mode_is_deterministic():
    net = Sequential((50,), [Dropout(0.5)])
    x = np.ones((2, 50), dtype=np.float32)
    assert np.array_equal(net.forward({"input": x})["dropout1"], x)
    y = net.forward({"input": x}, train=True, rng=np.random.default_rng(0))["dropout1"]
    assert set(np.unique(y)) == {0.0, 2.0}


def test_summary_reports_receptive_fields_and_totals():
    from convscope import zoo
    text = zoo.lenet5().summary()
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:-2]}
    assert rows["conv1"][2:5] == ["28×28×6", "156", "5×5"]
    assert rows["pool1"][4] == "6×6" and rows["pool1"][5] == "2×2"
    assert rows["conv2"][4] == "14×14"
    assert rows["pool2"][4:6] == ["16×16", "4×4"]
    assert text.splitlines()[-1].split()[1] == "61,706"


def test_every_layer_type_backward_in_a_chain_float64():
    from convscope.nn import ELU, LRN, ConvTranspose, DropConnect, Flatten, LeakyReLU, Sigmoid, Softplus
    layers = [Conv(4, 3, pad=1), LeakyReLU(0.1), ConvTranspose(3, 2, stride=2), ELU(),
              LRN(size=3), Pool(2, stride=2), Sigmoid(), Flatten(), DropConnect(6, rate=0.3),
              Softplus(), FullyConnected(3)]
    net = Sequential((3, 3, 2), layers, loss=SoftmaxLogLoss(), dtype=np.float64, seed=2)
    assert net.shapes["deconv1"] == (6, 6, 3) and net.shapes["flatten1"] == (27,)
    rng = np.random.default_rng(4)
    errors = _params_check(net, rng.standard_normal((2, 3, 3, 2)), np.array([0, 2]), train=False)
    assert max(errors.values()) < 1e-6, errors


def test_backward_from_two_weighted_losses_is_the_weighted_sum():
    net = Network({"input": (6,), "label": (), "target": (2,)}, dtype=np.float64, seed=1)
    net.add("fc", FullyConnected(4), "input")
    net.add("scores", FullyConnected(3), "fc")
    net.add("coords", FullyConnected(2), "fc")
    net.add("ce", SoftmaxLogLoss(), ["scores", "label"])
    net.add("mse", L2Loss(), ["coords", "target"])
    rng = np.random.default_rng(0)
    feed = {"input": rng.standard_normal((4, 6)), "label": np.array([0, 1, 2, 1]),
            "target": rng.standard_normal((4, 2))}

    def grad(losses):
        net.forward(feed)
        net.backward(losses)
        return net.params()["fc.w"].grad.copy()

    combined = grad({"ce": 0.3, "mse": 2.0})
    np.testing.assert_allclose(combined, 0.3 * grad({"ce": 1.0}) + 2.0 * grad({"mse": 1.0}))
    net.forward(feed)
    net.backward({"ce": 1.0})
    assert net.params()["coords.w"].grad is None      # no gradient reaches it


def test_backward_without_input_gradients_gives_the_same_parameter_gradients():
    net = small_dag(np.float64, seed=2)
    feed = {"input": np.random.default_rng(0).standard_normal((2, 8, 8, 2)),
            "label": np.array([1, 2])}
    net.forward(feed, train=True)
    full = net.backward({"objective": 1.0})
    grads = {k: p.grad for k, p in net.params(learnable_only=True).items()}
    net.forward(feed, train=True)
    lean = net.backward({"objective": 1.0}, input_grads=False)
    assert "input" in full and "input" not in lean
    for k, p in net.params(learnable_only=True).items():
        assert np.array_equal(p.grad, grads[k]), k


def test_a_changed_hyper_parameter_reaches_the_op():
    """Layers keep their op keywords between calls; changing a field must not leave them stale."""
    pool, conv = Pool(2), Conv(2, 3, pad=1)
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 1))
    conv.build([(6, 6, 1)], np.random.default_rng(0), np.float64)
    assert pool.forward([x], train=False, rng=None)[0].shape == (1, 3, 3, 1)
    assert conv.forward([x], train=False, rng=None)[0].shape == (1, 6, 6, 2)
    pool.kernel, conv.pad = 3, 0
    assert pool.forward([x], train=False, rng=None)[0].shape == (1, 2, 2, 1)
    assert conv.forward([x], train=False, rng=None)[0].shape == (1, 4, 4, 2)


def test_a_failed_add_leaves_the_network_as_it_was():
    """The layer whose shapes do not fit is not kept: the network still runs, and the same name
    can be added again, corrected (a kept unbuilt layer broke order() with a StopIteration)."""
    net = Network({"input": (4, 4, 1)})
    net.add("conv1", Conv(8, 3), "input")
    with pytest.raises(ShapeError, match="'conv2'"):
        net.add("conv2", Conv(4, 5), "conv1")
    assert net.order() == ["conv1"] and "conv2" not in net.shapes
    net.add("conv2", Conv(4, 1), "conv1")
    assert net.order() == ["conv1", "conv2"]
    assert net.forward({"input": np.zeros((1, 4, 4, 1))})["conv2"].shape == (1, 2, 2, 4)


def test_a_failed_add_also_takes_back_the_layers_it_let_build():
    """relu waits on "fc" and the loss on relu: an fc of 3 units lets relu build, then fails in
    the loss (2 targets). fc and relu are taken back; an fc of 2 units then completes the net."""
    net = Network({"input": (6,), "target": (2,)})
    net.add("relu", ReLU(), "fc")
    net.add("objective", L2Loss(), ["relu", "target"])
    with pytest.raises(ShapeError, match="'objective'"):
        net.add("fc", FullyConnected(3), "input")
    assert "fc" not in net.nodes and "relu" not in net.shapes
    with pytest.raises(ConfigError, match="dangling"):
        net.order()
    net.add("fc", FullyConnected(2), "input")
    assert net.order() == ["fc", "relu", "objective"]


def _summary_columns(net):
    from convscope.nn.summary import summary_rows
    return {r["layer"]: (r["output"], r["params"], r["rf"], r["stride"], r["madds"])
            for r in summary_rows(net)}


def test_summary_a_fully_connected_layer_after_flatten_sees_the_whole_map():
    """tiny_vgg's fc1 reads pool2's 13×13 map through Flatten: r = 16 + (13 − 1)·4 = 64."""
    from convscope import zoo
    rows = _summary_columns(zoo.tiny_vgg())
    assert rows["pool2"][2:4] == ("16×16", "4×4")
    assert rows["flatten1"][:4] == ("1690", 0, "16×16", "4×4")
    assert rows["fc1"] == ("10", 16_910, "64×64", "4×4", 16_900)


def test_summary_columns_of_a_dag_with_upsampling_concat_and_add_by_hand():
    from convscope.nn import Add, BatchNorm, Concat, ConvTranspose, Flatten
    net = Network({"input": (16, 16, 3), "label": ()})
    net.add("a", Conv(8, 3, pad=1), "input")
    net.add("b", Conv(8, 5, pad=2, stride=2), "input")           # 1 + ⌊(16 − 5 + 4)/2⌋ = 8
    net.add("up", ConvTranspose(8, 2, stride=2), "b")            # (8 − 1)·2 + 2 = 16
    net.add("cat", Concat(), ["a", "up"])
    net.add("c", Conv(8, 1), "cat")
    net.add("sum", Add(), ["c", "a"])
    net.add("pool", Pool(2), "sum")
    net.add("bn", BatchNorm(), "pool")
    net.add("flat", Flatten(), "bn")
    net.add("fc", FullyConnected(4), "flat")
    net.add("fc2", FullyConnected(3), "fc")
    net.add("objective", SoftmaxLogLoss(), ["fc2", "label"])
    rows = _summary_columns(net)
    assert rows["a"] == ("16×16×8", 3 * 3 * 3 * 8 + 8, "3×3", "1×1", 16 * 16 * 8 * 27)
    assert rows["b"] == ("8×8×8", 5 * 5 * 3 * 8 + 8, "5×5", "2×2", 8 * 8 * 8 * 75)
    # each upsampled pixel reads ⌈2/2⌉ = 1 pixel of b: r stays 5, the stride halves back to 1
    assert rows["up"] == ("16×16×8", 2 * 2 * 8 * 8 + 8, "5×5", "1×1", 8 * 8 * 2 * 2 * 8 * 8)
    assert rows["cat"] == ("16×16×16", 0, "5×5", "1×1", 0)       # joins take the largest
    assert rows["c"] == ("16×16×8", 16 * 8 + 8, "5×5", "1×1", 16 * 16 * 16 * 8)
    assert rows["sum"][2:4] == ("5×5", "1×1")
    assert rows["pool"] == ("8×8×8", 0, "6×6", "2×2", 0)
    assert rows["bn"][1] == 16                                   # γ, β; not the running moments
    assert rows["fc"] == ("4", 512 * 4 + 4, "20×20", "2×2", 512 * 4)   # 6 + (8 − 1)·2
    assert rows["fc2"] == ("3", 4 * 3 + 3, "20×20", "2×2", 12)
    assert net.summary().splitlines()[-1].split()[1:] == [f"{3315:,}", f"{144_908:,}"]


def test_summary_strides_finer_than_an_input_pixel_are_fractions():
    from convscope.nn import ConvTranspose
    rows = _summary_columns(Sequential((4, 4, 1), [ConvTranspose(2, 4, stride=2), Conv(2, 2)]))
    assert rows["deconv1"][2:] == ("2×2", "1/2×1/2", 4 * 4 * 4 * 4 * 2)   # ⌈4/2⌉ inputs each
    assert rows["conv1"][2:4] == ("3×3", "1/2×1/2")             # 2 + 1·½, up to whole pixels


def test_summary_of_the_3d_net_by_hand():
    from convscope import zoo
    rows = _summary_columns(zoo.convnet3d())
    assert rows["conv1"] == ("28×28×28×16", 448, "3×3×3", "1×1×1", 28 ** 3 * 16 * 27)
    assert rows["pool1"][2:4] == ("4×4×4", "2×2×2")
    assert rows["conv2"] == ("14×14×14×32", 13_856, "8×8×8", "2×2×2", 14 ** 3 * 32 * 432)
    assert rows["pool2"][2:4] == ("10×10×10", "4×4×4")
    assert rows["fc1"][:3] == ("1×1×1×64", 702_528, "34×34×34")  # 10 + (7 − 1)·4


def test_summary_names_the_axes_of_volumes():
    from convscope import zoo
    from convscope.nn.summary import summary

    assert "output T×H×W×D" in summary(zoo.convnet3d())
    assert "output H×W×D" in summary(zoo.lenet5()) and "T×H×W×D" not in summary(zoo.lenet5())


def test_files_written_atomically_are_readable_by_others(tmp_path):
    """mkstemp makes 0600 files: a run's config.yaml and run.json were private, unlike its
    report.html; they follow the umask as any new file does."""
    import os

    from convscope.nn.files import atomic_write

    atomic_write(tmp_path / "run.json", b"{}")
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o666 & ~mask
