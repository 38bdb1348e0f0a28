"""The convscope command as a demanding user meets it: wrong arguments, run folders that are
missing, half-written or stopped early, resuming a finished run, Ctrl-C, and the data commands.
Every error is one line on stderr that says what was wrong and what to do, never a traceback."""

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from convscope import zoo
from convscope.cli import main

SMALL = {"name": "small", "model": "lenet5", "data": {"name": "mnist_subset", "limit": 500},
         "optimizer": {"type": "adam", "lr": 0.002}, "lr_schedule": None, "epochs": 1,
         "batch_size": 50, "seed": 1}
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _config(folder, config=SMALL, name="run.yaml") -> str:
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch run (never modified: tests copy it)."""
    tmp = tmp_path_factory.mktemp("runs")
    assert main(["train", _config(tmp), "--out", str(tmp), "--no-report"]) == 0
    return tmp / "small"


@pytest.fixture
def run_copy(finished, tmp_path):
    """A copy of the finished run, to damage; its config.yaml points at the copy."""
    run = tmp_path / "small"
    shutil.copytree(finished, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "out": str(tmp_path)},
                                                     sort_keys=False))
    return run


def _one_line_error(capsys, *parts) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for part in parts:
        assert part in err, err
    return err


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
    (["train", "--lr", "nan"], "argument --lr: 'nan' is not a finite number"),
    (["train", "--lr", "inf"], "argument --lr: 'inf' is not a finite number"),
    (["data"], "the following arguments are required: list|info|fetch"),
    (["predict", "runs/x"], "the following arguments are required: IMAGE"),
])
def test_argument_errors_are_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run that starts anyway (--lr inf once did) stays out of runs/
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    _one_line_error(capsys, message, "--help")


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--epochs", "0"], "epochs must be a positive integer, got 0"),
    (["train", "--batch-size", "-1"], "batch_size must be a positive integer, got -1"),
    (["train", "--device", "gpu"], "device must be 'numpy', 'cpu', 'cuda' or 'cuda:N'"),
    (["train", "--cuda-graph"], "cuda_graph needs a CUDA device"),
    (["data", "info", "nosuch"], "unknown data set 'nosuch'; known: mnist_subset, mnist"),
])
def test_bad_overrides_are_one_line_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    _one_line_error(capsys, message)


def test_a_config_that_is_not_text_or_not_yaml_is_one_line(tmp_path, capsys):
    binary = tmp_path / "model.safetensors.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xf0\x28\x8c\xbc" * 10)
    for command in ("train", "doctor"):
        assert main([command, str(binary)]) == 2
        _one_line_error(capsys, f"cannot read config {binary}: it is not UTF-8 text")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [\n")
    assert main(["train", str(broken)]) == 2
    _one_line_error(capsys, f"{broken} is not valid YAML")


def test_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["train", config, "--out", config]) == 2
    _one_line_error(capsys, f"--out {config} is a file, not a folder")
    # a folder of the run path that is a file (caught as an OSError that names the path)
    (tmp_path / "afile").write_text("x")
    assert main(["train", config, "--out", str(tmp_path), "--name", "afile/run"]) == 2
    _one_line_error(capsys, "afile", "Not a directory")


def test_report_refuses_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    _one_line_error(capsys, f"{tmp_path} is not a run folder: it has no config.yaml")
    assert not (tmp_path / "report.html").exists()
    assert main(["report", str(tmp_path / "nosuch")]) == 2
    _one_line_error(capsys, "is not a run folder (no such folder)")


def test_a_run_stopped_early_says_how_to_finish_it(run_copy, capsys):
    (run_copy / "model.safetensors").unlink()          # as after Ctrl-C during epoch 2
    for args in (["evaluate", str(run_copy)], ["predict", str(run_copy), "x.png"]):
        assert main(args) == 2
        _one_line_error(capsys, f"{run_copy} stopped before its end (after epoch 1",
                        f"convscope train {run_copy / 'config.yaml'} --resume")
    assert main(["summary", str(run_copy)]) == 0       # from network.json
    assert "61,706" in capsys.readouterr().out
    assert main(["report", str(run_copy)]) == 0
    assert (run_copy / "report.html").exists()


def test_the_suggested_resume_command_finishes_a_stopped_run(run_copy, capsys):
    (run_copy / "model.safetensors").unlink()
    assert main(["evaluate", str(run_copy)]) == 2
    command = capsys.readouterr().err.split("`")[1].split()
    assert command[:2] == ["convscope", "train"]
    assert main([*command[1:], "--no-report"]) == 0
    assert main(["evaluate", str(run_copy)]) == 0
    assert capsys.readouterr().out.count("test error") == 2


@pytest.mark.parametrize(("damage", "message"), [
    (lambda run: (run / "run.json").unlink(), "is incomplete: run.json is missing"),
    (lambda run: (run / "preprocess.safetensors").unlink(),
     "is incomplete: preprocess.safetensors is missing"),
    (lambda run: (run / "config.yaml").write_text("garbage: [\n"), "config.yaml is damaged"),
    (lambda run: (run / "config.yaml").unlink(), "is not a run folder: it has no config.yaml"),
])
def test_a_half_written_run_folder_is_named(run_copy, damage, message, capsys):
    damage(run_copy)
    for args in (["evaluate", str(run_copy)], ["predict", str(run_copy), "x.png"],
                 ["report", str(run_copy)]):
        assert main(args) == 2
        _one_line_error(capsys, message)


def test_resume_on_a_finished_run_trains_nothing_and_keeps_its_files(run_copy, capsys):
    config = str(run_copy / "config.yaml")
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    assert main(["train", config, "--resume", "--no-report"]) == 0
    assert "finished after epoch 1: nothing to train (give --epochs above 1" in \
        capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before
    assert main(["train", config, "--resume", "--epochs", "2", "--no-report"]) == 0
    assert main(["train", config, "--resume", "--epochs", "1", "--no-report"]) == 2
    _one_line_error(capsys, "has trained 2 epochs already, more than the 1 asked for")
    assert yaml.safe_load((run_copy / "config.yaml").read_text())["epochs"] == 2


def test_training_over_an_earlier_run_says_so(run_copy, capsys):
    assert main(["train", str(run_copy / "config.yaml"), "--no-report"]) == 0
    assert f"note: {run_copy} holds an earlier run, which this one replaces" in \
        capsys.readouterr().out


def test_ctrl_c_during_training_names_the_resume_command(tmp_path, monkeypatch, capsys):
    import convscope.train.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convscope.train.run, "train", interrupted)
    config = _config(tmp_path)
    assert main(["train", config, "--epochs", "3"]) == 130
    _one_line_error(capsys, "convscope train: interrupted",
                    f"continue with `convscope train {config} --epochs 3 --resume`")
    monkeypatch.setattr(convscope.train.run, "evaluate_run", interrupted)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(SMALL))
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "preprocess.safetensors").write_bytes(b"")
    assert main(["evaluate", str(tmp_path)]) == 130
    err = _one_line_error(capsys, "convscope evaluate: interrupted")
    assert "--resume" not in err


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    from convscope import cli

    def closed(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_summary", closed)
    assert main(["summary", "lenet5"]) == 141
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")),
                    reason="tensorboard is installed")
def test_tensorboard_without_the_package_is_refused_before_training(tmp_path, capsys):
    assert main(["train", _config(tmp_path), "--out", str(tmp_path), "--tensorboard"]) == 2
    _one_line_error(capsys, "--tensorboard: TensorBoard export needs", "leave --tensorboard out")
    assert not (tmp_path / "small").exists()


def test_predict_on_gray_rgb_and_non_image_files(finished, tmp_path, capsys):
    gray, rgb, text = tmp_path / "g.png", tmp_path / "c.jpg", tmp_path / "notes.png"
    Image.new("L", (28, 28), 0).save(gray)
    Image.new("RGB", (64, 40), (200, 10, 10)).save(rgb)
    text.write_text("not an image")
    assert main(["predict", str(finished), str(gray), str(rgb)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["predict", str(finished), str(gray), str(text)]) == 2
    _one_line_error(capsys, f"{text}: cannot read as an image")


@pytest.mark.parametrize("model", list(zoo.MODELS))
def test_summary_of_every_zoo_model(model, capsys):
    assert main(["summary", model]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("total")


def test_summary_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["summary", str(tmp_path)]) == 2
    _one_line_error(capsys, "is not a run folder: it holds neither model.safetensors nor "
                            "network.json")


def test_data_list_and_info(tmp_path, capsys):
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"data directory: {tmp_path}" in out and "mnist_subset      bundled" in out
    assert "cifar10           not found: `convscope data fetch cifar10` downloads it" in out
    assert main(["data", "info", "mnist_subset", "--split", "test"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "x: 2000×28×28×1 uint8   y: 2000 int64"
    assert out[2].startswith("classes: 0 ")
    assert main(["data", "info", "cifar10", "--data-dir", str(tmp_path)]) == 2
    _one_line_error(capsys, "cifar10: data files not found", "convscope data fetch cifar10")


@pytest.mark.skipif(not (SHARED_DATA / "faces68_96.npz").exists(), reason="no shared data")
def test_data_list_finds_the_shared_files(capsys):
    assert main(["data", "list", "--data-dir", str(SHARED_DATA)]) == 0
    out = capsys.readouterr().out
    assert "mnist             found: MNIST test: 10000 gray 28×28 images" in out
    assert "facial_keypoints  not found: get it by hand" in out
    assert main(["data", "info", "faces68", "--data-dir", str(SHARED_DATA)]) == 0
    assert "keypoints (68): right_jaw_0" in capsys.readouterr().out


def test_fetch_offline_is_one_line(tmp_path, monkeypatch, capsys):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["data", "fetch", "mnist", "--data-dir", str(tmp_path)]) == 2
    _one_line_error(capsys, "download from", "failed", "check the network")
    assert main(["data", "fetch", "faces68", "--data-dir", str(tmp_path)]) == 2
    _one_line_error(capsys, "faces68: cannot be downloaded automatically")
