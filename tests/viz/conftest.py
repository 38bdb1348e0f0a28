"""A small finished run with the monitor on: the report's input."""

import pytest

from convscope.debug import Monitor
from convscope.train import run as run_module


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """runs/tiny: LeNet-5 on 384 images of the bundled MNIST subset, 2 epochs, 25% held out for
    validation, trained by ``convscope.train.run.train`` with a :class:`Monitor` attached (what
    the wired ``convscope train`` does)."""
    out = tmp_path_factory.mktemp("runs")
    prepare = run_module.prepare

    def prepare_with_monitor(*args, **kwargs):
        run = prepare(*args, **kwargs)
        Monitor(per_epoch=3).attach(run.trainer)
        return run

    config = {"name": "tiny", "out": str(out), "epochs": 2, "batch_size": 32,
              "data": {"limit": 384, "validation": 0.25}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_module, "prepare", prepare_with_monitor)
        run_module.train(config, progress=False, log=lambda *_: None)
    return out / "tiny"
