"""The doctor's checks, the network gradient checks, and the diagnosis rules."""

import time

import numpy as np
import pytest

from convscope.debug import DoctorReport, layer_gradcheck, network_gradcheck, run_doctor
from convscope.debug.diagnosis import diagnose
from convscope.debug.doctor import Check, Job, check_gradients, check_overfit
from convscope.nn import (
    BatchNorm,
    Conv,
    Dropout,
    FullyConnected,
    Pool,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxLogLoss,
)


def _net_with(layer, seed=0):
    return Sequential((8, 8, 2), [Conv(3, 3), layer, Pool(2), FullyConnected(4)],
                      loss=SoftmaxLogLoss(), seed=seed)


def _feed(rng):
    return {"input": rng.standard_normal((2, 8, 8, 2)), "label": np.array([1, 3])}


def _wrong_sigmoid():
    """A sigmoid layer whose backward forgot the (1 − σ) factor."""
    from convscope import ops

    layer = Sigmoid()
    layer.backward = lambda xs, aux, dy: [dy * ops.sigmoid(xs[0])]
    return layer


def test_the_gradient_check_passes_a_right_network_and_fails_a_wrong_layer(rng):
    good = network_gradcheck(_net_with(ReLU()), _feed(rng))
    assert set(good) == {"input", "conv1.w", "conv1.b", "fc1.w", "fc1.b"}
    assert max(good.values()) < 1e-6
    net = _net_with(_wrong_sigmoid())
    bad = network_gradcheck(net, _feed(rng))
    assert bad["input"] > 1e-2 and bad["conv1.w"] > 1e-2 and bad["fc1.w"] < 1e-6
    per_layer = layer_gradcheck(net, _feed(rng))
    assert max(per_layer, key=per_layer.get) == "sigmoid1" and per_layer["sigmoid1"] > 1e-2
    assert all(e < 1e-6 for name, e in per_layer.items() if name != "sigmoid1")


def _batch_norm_with_test_mode_backward():
    """A BatchNorm whose backward treats the batch's moments as constants (the test-mode
    derivative γ/√(σ² + ε)·dE/dy): right for a test-mode pass, wrong for the training one."""
    from convscope import ops

    layer = BatchNorm()

    def backward(xs, aux, dy):
        moments = aux if aux is not None else layer._moments()
        dx, dg, db = ops.batch_norm_backward(xs[0], layer.value("gamma"), layer.value("beta"), dy,
                                             moments=moments)
        layer.set_grads(gamma=dg, beta=db)
        return [dx]

    layer.backward = backward
    return layer


def test_the_gradient_check_in_training_mode_checks_batch_norm_and_dropout(rng):
    for net in (_net_with(BatchNorm()), _net_with(Dropout(0.5))):
        assert max(network_gradcheck(net, _feed(rng), train=True).values()) < 1e-6
    net = _net_with(_batch_norm_with_test_mode_backward())
    assert max(network_gradcheck(net, _feed(rng)).values()) < 1e-6  # test mode: moments fixed
    assert network_gradcheck(net, _feed(rng), train=True)["input"] > 1e-2
    x = rng.standard_normal((16, 8, 8, 2)).astype(np.float32)
    job = Job("test", net, x, rng.integers(0, 4, 16), None, None, {"type": "sgd", "lr": 0.1}, 8, rng)
    check = check_gradients(job)  # the doctor checks what SGD runs: the training-mode backward
    assert not check.passed and "worst layer 'bn1'" in check.measured


def test_the_doctor_names_the_layer_with_the_wrong_backward(rng):
    x = rng.standard_normal((16, 8, 8, 2)).astype(np.float32)
    job = Job("test", _net_with(_wrong_sigmoid()), x, rng.integers(0, 4, 16), None, None,
              {"type": "sgd", "lr": 0.1}, 8, rng)
    check = check_gradients(job)
    assert not check.passed and "worst layer 'sigmoid1'" in check.measured


def test_the_default_job_passes_every_check_in_well_under_a_minute(tmp_path):
    start = time.perf_counter()
    report = run_doctor(log=lambda *_: None)
    assert time.perf_counter() - start < 45
    assert [c.passed for c in report.checks] == [True] * 5, report.table()
    table = report.table()
    assert "ln C = 2.303 (C = 10)" in table and "overfit 20 samples" in table
    assert 1e-4 < report.recommended_lr < 1
    again = DoctorReport.load(report.save(tmp_path / "doctor.json"))
    assert again.table() == table


def test_a_report_with_numpy_results_saves_as_json(rng, tmp_path):
    """A check's verdict from a NumPy comparison (np.bool_) and the directional gradient check's
    error (once an np.float64) must not stop the report from being saved."""
    job = Job("test", _net_with(ReLU()), rng.standard_normal((16, 8, 8, 2)), rng.integers(0, 4, 16),
              None, None, {"type": "sgd", "lr": 0.1}, 8, rng)
    check = check_gradients(job)
    assert type(check.passed) is bool
    net = _net_with(ReLU())
    errors = network_gradcheck(net, _feed(rng), directions=2)
    assert all(type(e) is float for e in errors.values())
    report = DoctorReport("test", [check, Check("numpy verdict", np.float64(1) < 2, "", "", "")])
    assert DoctorReport.load(report.save(tmp_path / "doctor.json")).table() == report.table()


def test_the_overfit_check_reports_a_diverging_run_as_a_failure(rng):
    x = rng.standard_normal((32, 8, 8, 2)).astype(np.float32)
    job = Job("test", _net_with(ReLU()), x, rng.integers(0, 4, 32), None, None,
              {"type": "momentum", "lr": 1e6, "momentum": 0.9}, 8, rng)
    check = check_overfit(job, steps=20)
    assert not check.passed and "diverged" in check.measured and "η = 1e+06" in check.advice


@pytest.mark.parametrize(("history", "kind"), [
    ([{"train_loss": v} for v in (2.30, 2.25, 2.20, 2.15, 2.10)], "lr_too_low"),
    ([{"train_loss": v, "train_top1err": 0.01, "val_top1err": 0.09} for v in (0.5, 0.1, 0.05)],
     "high_variance"),
    ([{"train_loss": v, "train_top1err": 0.30, "val_top1err": 0.31} for v in (1.5, 1.0, 0.9)],
     "high_bias"),
    ([{"train_loss": v, "train_top1err": 0.01, "val_top1err": 0.012} for v in (0.5, 0.1, 0.05)],
     "ok"),
    ([{"train_loss": v} for v in (2.3, 1.5, 2.2, 1.4, 2.3, 1.6, 2.2)], "lr_too_high"),
])
def test_the_diagnosis_reads_the_loss_curves(history, kind):
    findings = diagnose(history)
    assert [f.kind for f in findings] == [kind]
    assert kind == "ok" or any(ch.isdigit() for ch in findings[0].message)
