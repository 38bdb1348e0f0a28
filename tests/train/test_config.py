"""Run configs: validation with named keys, defaults, overrides, every zoo model reachable."""

import numpy as np
import pytest

from convscope import ConfigError, zoo
from convscope.train.config import DEFAULTS, load_config, override, validate
from convscope.train.datasets import validation_split


@pytest.mark.parametrize(("config", "key"), [
    ({"epoch": 3}, "'epoch'; did you mean 'epochs'"),
    ({"optimizer": {"type": "adam", "lr": 1e-3, "beta": 0.9}}, "'optimizer.beta'"),
    ({"data": {"nmae": "mnist"}}, "'data.nmae'; did you mean 'name'"),
    ({"lr_schedule": {"type": "step", "gama": 0.1}}, "'lr_schedule.gama'; did you mean 'gamma'"),
    ({"model": {"name": "lenet5", "clases": 3}}, "'model.clases'; did you mean 'classes'"),
    ({"early_stopping": {"patients": 3}}, "'early_stopping.patients'"),
])
def test_a_typo_names_the_key(config, key):
    with pytest.raises(ConfigError, match=key):
        validate(config)


@pytest.mark.parametrize(("config", "message"), [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"model": "lenet6"}, "model.name is 'lenet6'"),
    ({"optimizer": {"type": "sgdd"}}, "optimizer.type"),
    ({"data": {"preprocess": "whiten"}}, "data.preprocess"),
    ({"data": {"augment": [{"type": "RandomFlop"}]}}, "RandomFlop"),
])
def test_bad_values_are_named(config, message):
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_defaults_are_the_main_job_and_overrides_apply():
    config = validate({})
    assert config == DEFAULTS and config["model"]["name"] == "lenet5"
    assert config["data"]["name"] == "mnist_subset"
    changed = override(config, epochs=2, batch_size=32, lr=0.01, out="elsewhere")
    assert (changed["epochs"], changed["batch_size"], changed["optimizer"]["lr"],
            changed["out"]) == (2, 32, 0.01, "elsewhere")
    assert config["epochs"] == DEFAULTS["epochs"]


@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_every_zoo_model_is_reachable(name):
    assert validate({"model": name})["model"] == {"name": name}


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 3\nbatchsize: 10\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'batchsize'.*'batch_size'"):
        load_config(path)
    path.write_text("epochs: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_committed_configs_are_valid():
    from pathlib import Path
    folder = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(folder.glob("*.yaml"))
    assert files
    for path in files:
        load_config(path)


def test_the_main_job_config_file_is_the_default():
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "configs" / "lenet5_mnist.yaml"
    assert load_config(path) == validate({})


def test_freezing_and_parameter_factors_from_the_config():
    from convscope.train.run import prepare
    config = {"freeze": ["conv1"], "param_factors": {"fc3.b": {"lr_factor": 2.0}},
              "data": {"limit": 10, "test_split": None}}
    net = prepare(config, progress=False).net
    assert net.params()["conv1.w"].frozen and not net.params()["conv2.w"].frozen
    assert net.params()["fc3.b"].lr_factor == 2.0
    with pytest.raises(ConfigError, match="'fc9.w'"):
        prepare({**config, "param_factors": {"fc9.w": {"lr_factor": 2.0}}}, progress=False)
    with pytest.raises(ConfigError, match="'param_factors.fc3.b.lr'"):
        validate({"param_factors": {"fc3.b": {"lr": 2.0}}})
    with pytest.raises(ConfigError, match="no layer named 'conv9'"):
        prepare({**config, "freeze": ["conv9"]}, progress=False)


def test_a_run_whose_learning_rate_stays_zero_is_refused():
    """`--epochs 1` on a config with a one-epoch warm-up into a cosine decay would ramp toward the
    cosine's end value, 0, and train nothing: the run is refused with what to change."""
    from convscope.train.run import prepare
    config = {"lr_schedule": {"type": "cosine", "warmup": 1}, "data": {"limit": 10, "test_split": None}}
    with pytest.raises(ConfigError, match=r"learning rate is 0 for the whole 1-epoch run.*warmup"):
        prepare({**config, "epochs": 1}, progress=False)
    with pytest.raises(ConfigError, match="learning rate is 0"):
        prepare({**config, "epochs": 3, "optimizer": {"type": "sgd", "lr": 0.0}}, progress=False)
    prepare({**config, "epochs": 2}, progress=False)  # warms up in epoch 1, then decays


def _shipped_keypoints_config(limit):
    """configs/keypoints_net2.yaml as shipped, on the first `limit` real faces of ../shared/data."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    config = load_config(repo / "configs" / "keypoints_net2.yaml")
    config["data"].update(data_dir=str(repo.parent / "shared" / "data"), limit=limit)
    return config


def test_the_untrained_keypoints_net_passes_the_doctors_initial_loss_check():
    """Its output layer starts near 0 (zoo.KEYPOINT_HEAD_INIT): the untrained loss is about
    mean t², the lecture's check. With Xavier's output layer it was 0.49 against 0.057."""
    from convscope.debug.doctor import check_initial_loss, job_from_config

    check = check_initial_loss(job_from_config(_shipped_keypoints_config(512)))
    assert check.passed, check.measured


def test_the_keypoints_config_does_not_blow_up_in_its_first_batches(tmp_path):
    """configs/keypoints_net2.yaml as shipped, on the real faces (first 768): the loss of its first
    batches stays below twice the first batch's. With Xavier's output layer, η = 0.03 from the
    first batch took the loss from 0.48 to 20 in one step and to 2·10^10 in five."""
    from convscope.train.run import prepare

    config = _shipped_keypoints_config(768)
    run = prepare({**config, "out": str(tmp_path)}, progress=False, log=lambda *_: None)
    losses = []

    class Losses:
        def on_batch_end(self, trainer, info):
            losses.append(info["loss"])

    run.trainer.callbacks.append(Losses())
    run.trainer.train_epoch()
    assert len(losses) == 5
    assert max(losses) < 2 * losses[0], losses


@pytest.mark.parametrize(("config", "message"), [
    ({"optimizer": {"type": "adam", "lr": "fast"}}, "optimizer.lr must be a finite number, got 'fast'"),
    ({"optimizer": {"type": "momentum", "lr": -0.1}}, "lr and weight_decay must be >= 0"),
    ({"lr_schedule": {"type": "step", "step": "ten"}}, "lr_schedule.step must be a finite number"),
    ({"lr_schedule": {"type": "step", "step": 0}}, "lr_schedule: .*step must be >= 1"),
    ({"lr_schedule": {"type": "linear"}}, "lr_schedule: .*'end'"),
    ({"lr_schedule": [0.1, "x"]}, r"lr_schedule\[1\] must be a finite number"),
    ({"momentum_schedule": {"type": "linear", "end": 0.99}, "optimizer": "adam"},
     "momentum_schedule needs an optimizer with momentum"),
    ({"early_stopping": {"patience": "5"}}, "early_stopping.patience must be a positive"),
    ({"param_factors": {"fc3.b": {"lr_factor": "two"}}}, "param_factors.fc3.b.lr_factor must"),
])
def test_bad_option_values_name_the_key_before_the_run(config, message):
    """Checked when the config is read, not when (or after) the run starts: a value that is not a
    number used to pass validation and fail later as a TypeError or ValueError naming no key."""
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_numbers_that_pyyaml_reads_as_text_are_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads `lr: 1e-3` as the string '1e-3'; it used to pass validation and
    then fail in the optimiser with "'<' not supported between 'str' and 'int'"."""
    path = tmp_path / "adam.yaml"
    path.write_text("optimizer: {type: adam, lr: 1e-3}\nlr_schedule: {type: exponential, "
                    "kappa: 5e-2}\n")
    config = load_config(path)
    assert config["optimizer"]["lr"] == 0.001 and config["lr_schedule"]["kappa"] == 0.05


def test_a_schedule_given_by_name_is_a_schedule():
    """`lr_schedule: cosine` passed validation, then the run failed: 'expected a mapping'."""
    from convscope.train.run import prepare
    config = validate({"lr_schedule": "cosine", "data": {"limit": 10, "test_split": None}})
    assert config["lr_schedule"] == {"type": "cosine"}
    run = prepare({"lr_schedule": "step", "data": {"limit": 10, "test_split": None}},
                  progress=False)
    assert run.trainer.lr_schedule(10.0) == pytest.approx(0.1 * 0.02)


def test_early_stopping_on_a_training_metric_needs_no_validation_set():
    from convscope.train.run import prepare
    config = {"early_stopping": {"patience": 2, "monitor": "train_objective"},
              "data": {"limit": 10, "test_split": None}}
    assert prepare(config, progress=False).trainer.monitor == "train_objective"
    with pytest.raises(ConfigError, match="needs a validation set"):
        prepare({**config, "early_stopping": {"patience": 2}}, progress=False)


def test_predict_gives_a_keypoints_run_its_keypoints_in_the_images_pixels(tmp_path):
    """predict used to print keypoint names with the softmax of the coordinates as
    'probabilities'. The output layer here is fixed (w = 0, b = t̃), so the keypoints are known:
    t = c·t̃ + c in the 8×8 input, then (t + ½)·16/8 − ½ in a 16×16 image."""
    import numpy as np
    from PIL import Image

    from convscope.train.config import dump
    from convscope.train.datasets import KeypointScaling
    from convscope.train.run import MODEL, Transforms, predict_images

    net = zoo.keypoints_net1(input_shape=(8, 8, 1), keypoints=2)
    head = net.nodes["fc2"].layer
    head.params["w"].value[...] = 0
    head.params["b"].value[...] = [-0.5, 0.25, 0.5, -1.0]  # (x, y) of two keypoints, scaled
    net.save(tmp_path / MODEL)
    (tmp_path / "config.yaml").write_text(dump(validate({"model": "keypoints_net1"})))
    Transforms(None, KeypointScaling(4), ["left_eye", "right_eye"]).save(tmp_path)
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(tmp_path / "face.png")
    [(path, found)] = predict_images(tmp_path, [tmp_path / "face.png"])
    assert [name for name, _ in found] == ["left_eye", "right_eye"]
    in_input = 4 * np.array([[-0.5, 0.25], [0.5, -1.0]]) + 4   # (2, 5), (6, 0)
    np.testing.assert_allclose([xy for _, xy in found], (in_input + 0.5) * 2 - 0.5, atol=1e-5)


@pytest.mark.parametrize(("labels", "held"), [
    (np.repeat(np.arange(100), 3), 30),   # 0.3 per class: rounding each class alone held out 0
    (np.repeat(np.arange(10), 6000), 6000),  # MNIST's train counts gave 5999
    (np.zeros((50, 30), np.float32), 5),  # keypoints: not stratified
])
def test_validation_holds_out_the_fraction_of_the_whole_set(labels, held):
    keep, val = validation_split(labels, 0.1, seed=0)
    assert len(val) == held and len(keep) == len(labels) - held
    assert np.intersect1d(keep, val).size == 0
    again_keep, again_val = validation_split(labels, 0.1, seed=0)
    assert np.array_equal(val, again_val) and np.array_equal(keep, again_keep)


def test_resume_may_change_device_place_and_epochs_but_not_what_is_trained(tmp_path):
    """Checkpoints load on any device, and a run folder may move: resuming with --device cpu or
    from another data directory used to be refused as 'a different config'."""
    from convscope.train.config import dump
    from convscope.train.run import _check_same_run

    started = validate(DEFAULTS)
    (tmp_path / "config.yaml").write_text(dump(started))
    moved = override(started, epochs=30, device="cpu", out="elsewhere", name="moved",
                     data_dir="/data")
    _check_same_run(tmp_path, moved)
    with pytest.raises(ConfigError, match="different config \\(optimizer differ"):
        _check_same_run(tmp_path, override(started, lr=0.5))
    with pytest.raises(ConfigError, match="data differ"):
        _check_same_run(tmp_path, validate({**started, "data": {**started["data"], "limit": 10}}))


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan"])
def test_a_learning_rate_that_is_not_finite_is_refused(value, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"optimizer: {{type: momentum, lr: {value}}}\n")
    with pytest.raises(ConfigError, match="optimizer.lr must be a finite number"):
        load_config(path)


def test_a_config_that_is_not_yaml_or_not_text_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\noptimizer: {type: momentum\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML \(line 3, column 1\)"):
        load_config(bad)
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(binary)


def test_init_from_copies_the_parameters_of_the_same_name_and_shape(tmp_path):
    from convscope.train.run import init_from

    source = zoo.lenet5(seed=1)
    source.save(tmp_path / "mnist.safetensors")
    net = zoo.lenet5(classes=4, seed=2)  # a new output layer for four classes
    said = init_from(net, str(tmp_path / "mnist.safetensors"))
    assert said.endswith("8 of 10 parameters copied; initialised anew: fc3.w (1×1×84×10 there), "
                         "fc3.b (10 there)")
    theirs, ours = source.state_dict(), net.state_dict()
    for name in ours:
        assert np.array_equal(ours[name], theirs[name]) == (not name.startswith("fc3")), name
    with pytest.raises(ConfigError, match="no parameter of .* matches this network"):
        init_from(zoo.cifar10_quick(), str(tmp_path / "mnist.safetensors"))
    with pytest.raises(ConfigError, match="holds no trained network"):
        init_from(net, str(tmp_path))


def test_fine_tuning_from_a_run_keeps_the_frozen_layers_it_copied(tmp_path):
    """The config's freeze was documented as fine-tuning, but a config could not start from
    another run's weights: it froze random filters."""
    from convscope.nn import Network
    from convscope.train.run import MODEL, train

    small = {"data": {"name": "mnist_subset", "limit": 256}, "epochs": 1, "batch_size": 64,
             "out": str(tmp_path), "lr_schedule": None}
    said = []
    train({**small, "name": "source"}, log=said.append)
    source = Network.load(tmp_path / "source" / MODEL).state_dict()
    train({**small, "name": "tuned", "init_from": str(tmp_path / "source"),
           "freeze": ["conv1", "conv2"]}, log=said.append)
    tuned = Network.load(tmp_path / "tuned" / MODEL).state_dict()
    assert any(s.startswith("init_from") and "10 of 10 parameters copied" in s for s in said)
    for name in ("conv1.w", "conv1.b", "conv2.w", "conv2.b"):
        assert np.array_equal(tuned[name], source[name]), name
    assert not np.array_equal(tuned["fc1.w"], source["fc1.w"])
