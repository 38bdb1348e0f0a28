"""The convscope command: a short real run end to end, and errors as one line."""

import re
import warnings

import numpy as np
import pytest
import yaml
from PIL import Image

from convscope.cli import main
from convscope.train.datasets import load_split

TINY = {
    "name": "tiny",
    "model": "lenet5",
    "data": {"name": "mnist_subset", "limit": 1000},
    "optimizer": {"type": "adam", "lr": 0.002},
    "lr_schedule": None,
    "epochs": 1,
    "batch_size": 25,
    "seed": 3,
}


def _config(tmp_path, config):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    assert main(["train", _config(tmp, TINY), "--out", str(tmp)]) == 0
    return tmp / "tiny"


def test_train_writes_the_run_folder(run_dir, capsys):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "network.json", "summary.txt", "run.json", "metrics.csv",
            "checkpoint.safetensors", "model.safetensors", "preprocess.safetensors",
            "report.html"} <= names
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["epochs"] == 1 and config["data"]["limit"] == 1000
    assert (run_dir / "metrics.csv").read_text().count("\n") == 2


def test_evaluate_prints_the_test_error(run_dir, capsys):
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test error ") and "N=2000" in out
    error = float(out.split()[2].rstrip("%"))
    assert error < 40   # 1000 images, one epoch: far better than chance (90%)


def _digit_pngs(folder, n=3) -> list[str]:
    """The first n bundled test digits as PNG files in folder."""
    test = load_split("mnist_subset", "test")
    paths = []
    for i in range(n):
        path = folder / f"digit{i}.png"
        Image.fromarray(test.x[i, :, :, 0]).save(path)
        paths.append(str(path))
    return paths


def test_predict_reads_png_files(run_dir, tmp_path, capsys):
    paths = _digit_pngs(tmp_path)
    assert main(["predict", str(run_dir), *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith(paths[0])
    probs = [float(t.split()[-1].rstrip(",)")) for t in lines[0].split("(")[1].split(", ")]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_predict_scales_a_16_bit_png_as_its_8_bit_twin(run_dir, tmp_path, capsys):
    """Pillow's convert("L") clipped 16-bit gray values at 255: a digit saved as 16 bits came
    out nearly white everywhere and was classified as noise."""
    eight = _digit_pngs(tmp_path, n=1)[0]
    digit = np.asarray(Image.open(eight), dtype=np.uint16) * 257
    sixteen = tmp_path / "digit16.png"
    Image.fromarray(digit).save(sixteen)  # mode I;16
    assert main(["predict", str(run_dir), eight, str(sixteen)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(":", 1)[1] == lines[1].split(":", 1)[1]


@pytest.fixture
def devices_used(monkeypatch):
    """The devices that networks are moved to (Network.to) during the test."""
    from convscope.nn import Network

    used, to = [], Network.to
    monkeypatch.setattr(Network, "to", lambda net, device: used.append(device) or to(net, device))
    return used


NUMBER = re.compile(r"\d+\.\d+")


def assert_same_up_to_the_last_digit(ours, reference):
    """The same text, and each printed decimal number within one unit of its last digit."""
    assert NUMBER.sub("#", ours) == NUMBER.sub("#", reference)
    for a, b in zip(NUMBER.findall(ours), NUMBER.findall(reference), strict=True):
        assert abs(float(a) - float(b)) <= 1.01 * 10.0 ** -len(b.split(".")[1]), (a, b)


def test_evaluate_and_predict_on_torch_print_the_numpy_results(run_dir, tmp_path, capsys,
                                                              devices_used):
    paths = _digit_pngs(tmp_path)
    printed = {}
    for device in ("numpy", "cpu"):
        assert main(["evaluate", str(run_dir), "--device", device]) == 0
        assert main(["predict", str(run_dir), *paths, "--device", device]) == 0
        printed[device] = capsys.readouterr().out
    assert devices_used == ["numpy", "numpy", "cpu", "cpu"]
    assert printed["numpy"].startswith("test error ") and printed["numpy"].count("\n") == 4
    assert_same_up_to_the_last_digit(printed["cpu"], printed["numpy"])


def test_train_and_doctor_run_on_torch(tmp_path, capsys, devices_used):
    config = _config(tmp_path, {**TINY, "data": {"name": "mnist_subset", "limit": 100}})
    assert main(["train", config, "--out", str(tmp_path), "--device", "cpu", "--no-report"]) == 0
    assert "test error" in capsys.readouterr().out
    assert yaml.safe_load((tmp_path / "tiny" / "config.yaml").read_text())["device"] == "cpu"
    assert main(["doctor", config, "--device", "cpu", "--no-save"]) == 0
    assert "doctor: lenet5 on mnist_subset (100 images)" in capsys.readouterr().out
    assert devices_used == ["cpu", "cpu"]


def test_resume_continues_from_the_checkpoint(run_dir, capsys):
    out_dir = str(run_dir.parent)
    assert main(["train", _config(run_dir.parent, TINY), "--out", out_dir, "--epochs", "2",
                 "--resume", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "after epoch 1" in out
    assert (run_dir / "metrics.csv").read_text().count("\n") == 3


def test_resume_with_another_config_is_refused(run_dir, capsys):
    assert main(["train", _config(run_dir.parent, TINY), "--out", str(run_dir.parent),
                 "--lr", "0.5", "--resume"]) == 2
    assert "different config (optimizer differ)" in capsys.readouterr().err


def test_summary_of_a_zoo_model_and_of_a_run(run_dir, capsys):
    assert main(["summary", "lenet5"]) == 0
    zoo_text = capsys.readouterr().out
    assert "receptive field" in zoo_text and "61,706" in zoo_text
    assert main(["summary", str(run_dir)]) == 0
    assert capsys.readouterr().out == zoo_text


@pytest.mark.parametrize(("args", "message"), [
    (["summary", "lenet6"], "'lenet6' is neither a zoo model"),
    (["evaluate", "no/such/run"], "no/such/run is not a run folder (no such folder)"),
    (["train", "no/such/config.yaml"], "cannot read config"),
    (["data", "fetch", "nosuch"], "unknown data set 'nosuch'"),
])
def test_errors_are_one_line_without_traceback(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_diverging_run_stops_in_one_line_and_still_writes_its_report(tmp_path, capsys):
    """The run that most needs the diagnosis used to end without report.html; and the overflow
    in the batch split's worker printed NumPy's RuntimeWarnings past the trainer's errstate."""
    boom = {**TINY, "name": "boom", "data": {"name": "mnist_subset", "limit": 500},
            "optimizer": {"type": "momentum", "lr": 100.0}, "epochs": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert main(["train", _config(tmp_path, boom), "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert re.search(r"error: epoch 1, batch \d+: layer '\w+' produced NaN or Inf", captured.err)
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert (tmp_path / "boom" / "report.html").exists()
    assert "report: " in captured.out


def test_a_typo_in_the_config_names_the_key(tmp_path, capsys):
    bad = {**TINY, "optimizer": {"type": "momentum", "lr": 0.1, "momentun": 0.9}}
    assert main(["train", _config(tmp_path, bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'optimizer.momentun'" in err and "did you mean 'momentum'" in err
    assert "Traceback" not in err


def test_the_bundled_subset_is_stratified():
    train = load_split("mnist_subset", "train")
    counts = np.bincount(train.y, minlength=10)
    full = np.array([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    assert counts.sum() == 10_000
    assert np.abs(counts - full * 10_000 / 60_000).max() <= 1
    assert train.x.dtype == np.uint8 and train.x.shape[1:] == (28, 28, 1)


def test_train_on_a_data_set_of_convscope_data(tmp_path, capsys):
    from pathlib import Path
    data_dir = Path(__file__).resolve().parents[3] / "shared" / "data"
    if not (data_dir / "adrenalmnist3d_28.npz").exists():
        pytest.skip("shared data not here")
    config = {"name": "vol", "model": "convnet3d",
              "data": {"name": "adrenal3d", "limit": 64, "test_split": "val"},
              "optimizer": {"type": "adam", "lr": 0.001}, "epochs": 1, "batch_size": 32}
    assert main(["train", _config(tmp_path, config), "--out", str(tmp_path), "--data-dir",
                 str(data_dir), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "test error" in out and "top-5" not in out          # 2 classes
    assert main(["evaluate", str(tmp_path / "vol")]) == 0
    assert "N=98" in capsys.readouterr().out


def test_the_main_job_trains_without_a_monitor_warning(tmp_path, capsys):
    """The README's first command, for one epoch: its learning rate leaves every ReLU alive (at
    η0 = 0.05 seed 0 left 56 % of conv2's channels dead and the monitor said to lower it)."""
    assert main(["train", "--epochs", "1", "--out", str(tmp_path), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out
    assert "accuracy 9" in out  # one epoch: about 97 % on the bundled test images


def test_predict_on_a_keypoints_run_prints_each_keypoint(tmp_path, capsys):
    from convscope import zoo
    from convscope.train.config import dump, validate
    from convscope.train.datasets import KeypointScaling
    from convscope.train.run import MODEL, Transforms

    net = zoo.keypoints_net1(input_shape=(8, 8, 1), keypoints=2)
    net.nodes["fc2"].layer.params["w"].value[...] = 0
    net.nodes["fc2"].layer.params["b"].value[...] = [-0.5, 0.25, 0.5, -1.0]
    net.save(tmp_path / MODEL)
    (tmp_path / "config.yaml").write_text(dump(validate({"model": "keypoints_net1"})))
    Transforms(None, KeypointScaling(4), ["left_eye", "right_eye"]).save(tmp_path)
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(tmp_path / "face.png")
    assert main(["predict", str(tmp_path), str(tmp_path / "face.png")]) == 0
    assert capsys.readouterr().out.strip().endswith("face.png: left_eye (4.5, 10.5), "
                                                    "right_eye (12.5, 0.5)")
