"""The Trainer: it learns, it resumes exactly, it writes files that survive a crash."""

import csv
import os
import shutil
import warnings

import numpy as np
import pytest

from convscope import ConfigError
from convscope.data.preprocess import Standardize
from convscope.nn import (
    Conv,
    Dropout,
    FullyConnected,
    L2Loss,
    Network,
    Pool,
    ReLU,
    Sequential,
    SoftmaxLogLoss,
)
from convscope.train import Trainer, make_optimizer, make_schedule
from convscope.train.checkpoint import load_checkpoint
from convscope.train.datasets import load_split
from convscope.train.trainer import CHECKPOINT, METRICS


def two_layer(seed=0):
    return Sequential((16,), [FullyConnected(32), ReLU(), FullyConnected(3)],
                      loss=SoftmaxLogLoss(), seed=seed)


def test_a_two_layer_network_overfits_20_samples():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 16)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    net = two_layer()
    trainer = Trainer(net, make_optimizer("momentum", lr=0.1, momentum=0.9), (x, y), epochs=100,
                      batch_size=20, progress=False, log=lambda *_: None)
    history = trainer.fit()
    assert history[0]["train_loss"] > 0.5
    assert trainer.evaluate(x, y)["loss"] < 0.01
    assert trainer.evaluate(x, y)["top1err"] == 0


def tiny_convnet(seed=0):
    return Sequential((28, 28, 1), [Conv(8, 5, stride=2), ReLU(), Pool(2), FullyConnected(10)],
                      loss=SoftmaxLogLoss(), seed=seed)


def test_one_epoch_on_the_bundled_subset_lowers_the_loss():
    train, test = load_split("mnist_subset", "train"), load_split("mnist_subset", "test")
    assert train.x.shape == (10_000, 28, 28, 1) and test.x.shape == (2_000, 28, 28, 1)
    std = Standardize().fit(train.x)
    net = tiny_convnet()
    trainer = Trainer(net, make_optimizer("momentum", lr=0.02, momentum=0.9), (train.x, train.y),
                      epochs=1, batch_size=100, transform=std, progress=False,
                      log=lambda *_: None)
    before = trainer.evaluate(test.x, test.y)
    trainer.fit()
    after = trainer.evaluate(test.x, test.y)
    assert before["loss"] > 2.0
    assert after["loss"] < 0.5 * before["loss"]
    assert after["top1err"] < 0.15


def _data(n=120, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 16)).astype(np.float32), rng.integers(0, 3, n)


def _dropout_net(seed=0):
    return Sequential((16,), [FullyConnected(32), ReLU(), Dropout(0.3), FullyConnected(3)],
                      loss=SoftmaxLogLoss(), seed=seed)


def _trainer(net, out_dir, epochs, **kw):
    x, y = _data()
    opt = make_optimizer("nesterov", lr=0.05, momentum=0.9, weight_decay=1e-3)
    return Trainer(net, opt, (x, y), val=_data(40, seed=2), epochs=epochs, batch_size=16,
                   seed=7, out_dir=out_dir, lr_schedule=make_schedule(
                       {"type": "cosine"}, start=0.05, epochs=epochs),
                   momentum_schedule=make_schedule({"type": "linear", "end": 0.99}, start=0.9,
                                                   epochs=epochs),
                   progress=False, log=lambda *_: None, **kw)


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    full = _trainer(_dropout_net(), tmp_path / "full", 4)
    full.fit()

    first = _trainer(_dropout_net(), tmp_path / "split", 4)
    first.epochs = 2                       # "crash" after epoch 2
    first.fit()
    resumed = _trainer(_dropout_net(seed=99), tmp_path / "split", 4).resume()
    assert resumed.epoch == 2
    resumed.fit()

    a, b = full.net.state_dict(), resumed.net.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]


def test_resume_from_a_checkpoint_elsewhere_takes_the_best_weights_beside_it(tmp_path):
    first = _trainer(_dropout_net(), tmp_path / "run", 2)
    first.fit()
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in (CHECKPOINT, "best.safetensors"):
        shutil.copy(tmp_path / "run" / name, moved / name)
    (tmp_path / "run" / "best.safetensors").unlink()
    resumed = _trainer(_dropout_net(seed=99), tmp_path / "new", 4).resume(moved / CHECKPOINT)
    best = Network.load(moved / "best.safetensors").state_dict()
    assert best.keys() == resumed._best_state.keys()
    for name in best:
        assert np.array_equal(best[name], resumed._best_state[name]), name
    (moved / "best.safetensors").unlink()
    with pytest.raises(ConfigError, match="best.safetensors is missing"):
        _trainer(_dropout_net(), tmp_path / "new", 4).resume(moved / CHECKPOINT)


def test_checkpoint_and_metrics_files(tmp_path):
    trainer = _trainer(_dropout_net(), tmp_path, 2, keep_best=False)
    trainer.fit()
    rows = list(csv.DictReader((tmp_path / METRICS).open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_objective", "val_top1err", "lr"} <= set(rows[0])
    assert "val_top5err" not in rows[0]       # 3 classes: top-5 says nothing
    assert float(rows[0]["train_objective"]) > float(rows[0]["train_loss"])   # λ/2 ‖w‖²
    net = Network.load(tmp_path / CHECKPOINT)    # a checkpoint is also a network file
    for name, value in trainer.net.state_dict().items():
        assert np.array_equal(net.params()[name].value, value)
    assert (tmp_path / "best.safetensors").exists()


def test_a_crash_while_writing_leaves_the_last_checkpoint_intact(tmp_path, monkeypatch):
    trainer = _trainer(_dropout_net(), tmp_path, 2)
    trainer.epochs = 1
    trainer.fit()
    good = (tmp_path / CHECKPOINT).read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    trainer.epochs = 2
    with pytest.raises(OSError, match="disk full"):
        trainer.fit()
    assert (tmp_path / CHECKPOINT).read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
    state = load_checkpoint(tmp_path / CHECKPOINT, _dropout_net(), make_optimizer("nesterov"))
    assert state["epoch"] == 1


def test_early_stopping_keeps_the_best_model():
    x, y = _data()
    net = two_layer()
    rows = []

    class Recorder:
        def on_epoch_end(self, trainer, row):
            rows.append(row)

    said = []
    trainer = Trainer(net, make_optimizer("sgd", lr=2.0), (x, y), val=_data(40, seed=2),
                      epochs=30, batch_size=8, patience=2, progress=False,
                      log=said.append, callbacks=[Recorder()])
    trainer.fit()
    assert trainer.stopped_early and len(rows) < 30
    assert said[-1].startswith("early stop") and said[-2].startswith(f"epoch {len(rows)} ")
    best = min(r["val_objective"] for r in rows)
    assert trainer.best == best
    assert trainer.evaluate(*_data(40, seed=2))["objective"] == pytest.approx(best, rel=1e-5)


def test_a_diverging_run_stops_before_the_update_that_would_break_the_weights():
    x, y = _data()
    x = x * 100
    trainer = Trainer(two_layer(), make_optimizer("sgd", lr=1e4), (x, y), epochs=3,
                      batch_size=8, progress=False, log=lambda *_: None)
    with pytest.raises(FloatingPointError, match="lower the learning rate"), warnings.catch_warnings():
        warnings.simplefilter("error")  # the stop is the message: no NumPy overflow warnings before it
        trainer.fit()
    assert all(np.isfinite(v).all() for v in trainer.net.state_dict().values())


def test_a_callback_keeps_numpys_warnings_as_the_user_set_them():
    """Only the trainer's own step silences overflow: a user's callback still sees it."""
    x, y = _data()

    class Overflows:
        def on_batch_end(self, trainer, info):
            np.float32(3e38) * np.float32(10)

    trainer = Trainer(two_layer(), make_optimizer("sgd", lr=0.01), (x, y), epochs=1,
                      batch_size=8, progress=False, log=lambda *_: None, callbacks=[Overflows()])
    with pytest.warns(RuntimeWarning, match="overflow"):
        trainer.fit()


def test_a_monitor_that_names_no_metric_is_refused_before_training():
    """A misspelt monitor used to surface only after the first epoch had been trained."""
    x, y = _data()
    with pytest.raises(ConfigError, match=r"monitor 'val_top1error' is not a metric.*val_top1err"):
        Trainer(two_layer(), make_optimizer("sgd", lr=0.1), (x, y), val=_data(40, seed=2),
                monitor="val_top1error", progress=False)
    with pytest.raises(ConfigError, match="'val_objective'"):   # no validation set: no val_*
        Trainer(two_layer(), make_optimizer("sgd", lr=0.1), (x, y), monitor="val_objective",
                progress=False)


def test_patience_without_a_metric_to_watch_is_refused():
    """Without a validation set or a monitor, patience used to be ignored silently."""
    x, y = _data()
    with pytest.raises(ConfigError, match="patience needs a metric"):
        Trainer(two_layer(), make_optimizer("sgd", lr=0.1), (x, y), patience=2, progress=False)
    with pytest.raises(ConfigError, match="patience must be a positive"):
        Trainer(two_layer(), make_optimizer("sgd", lr=0.1), (x, y), val=_data(40, seed=2),
                patience="3", progress=False)
    trainer = Trainer(two_layer(), make_optimizer("sgd", lr=0.0), (x, y), epochs=10, patience=2,
                      monitor="train_objective", progress=False, log=lambda *_: None)
    trainer.fit()
    assert trainer.stopped_early and len(trainer.history) < 10   # η = 0: nothing to gain


def test_the_metric_names_are_the_columns_of_every_row(tmp_path):
    trainer = _trainer(_dropout_net(), tmp_path, 1)
    trainer.fit()
    assert trainer.metric_names() == list(trainer.history[0])
    regression = Sequential((16,), [FullyConnected(4)], loss=L2Loss(), label_shape=(2, 2))
    x = np.zeros((8, 16), dtype=np.float32)
    other = Trainer(regression, make_optimizer("sgd"), (x, np.zeros((8, 2, 2))), epochs=1,
                    progress=False, log=lambda *_: None)
    other.fit()
    assert other.metric_names() == list(other.history[0]) == [
        "epoch", "lr", "train_loss", "train_rmse", "train_objective", "seconds"]
