"""The doctor and report subcommands, as the convscope parser will register them."""

import argparse
import importlib.util

import pytest

from convscope.errors import ConfigError
from convscope.viz.cli import add_subcommands, add_train_options

HAS_TENSORBOARD = any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))


def _parser():
    p = argparse.ArgumentParser(prog="convscope")
    sub = p.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    add_train_options(sub.add_parser("train"))
    return p


def test_the_subcommands_parse():
    args = _parser().parse_args(["doctor", "job.yaml", "--no-save"])
    assert args.config == "job.yaml" and args.no_save and callable(args.func)
    args = _parser().parse_args(["train", "--tensorboard"])
    assert args.tensorboard == "" and not args.no_report
    assert _parser().parse_args(["report", "runs/x"]).tensorboard is None


def test_report_writes_the_page(run_dir, capsys):
    args = _parser().parse_args(["report", str(run_dir)])
    args.func(args)
    assert (run_dir / "report.html").exists() and "report.html" in capsys.readouterr().out


@pytest.mark.skipif(HAS_TENSORBOARD, reason="TensorBoard is installed")
def test_tensorboard_export_says_what_to_install(run_dir):
    args = _parser().parse_args(["report", str(run_dir), "--tensorboard"])
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        args.func(args)
