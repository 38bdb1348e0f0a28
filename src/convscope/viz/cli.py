"""The ``doctor`` and ``report`` subcommands of ``convscope``, and the training options that turn
on the monitor and the report (the wiring lives in :mod:`convscope.cli`).

    convscope doctor [CONFIG] [--data-dir DIR] [--no-save]
    convscope report RUN [--doctor] [--tensorboard [LOGDIR]]
    convscope train ... [--no-report] [--tensorboard [LOGDIR]]

:func:`check_run_folder` and :func:`check_tensorboard` check a command's input before its work.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from convscope.debug.doctor import DOCTOR_FILE, run_doctor
from convscope.errors import ConfigError


def add_subcommands(sub) -> None:
    """Register ``doctor`` and ``report`` on the subparsers ``sub`` of the convscope parser."""
    d = sub.add_parser("doctor", help="sanity and loss checks before training (default job: "
                                      "LeNet-5 on the bundled MNIST)")
    d.add_argument("config", nargs="?", help="YAML run config (default: the main job)")
    d.add_argument("--data-dir", help="data directory (default: $CONVSCOPE_DATA or user cache)")
    d.add_argument("--device", help="numpy (default), cpu (PyTorch on the CPU), cuda or cuda:N")
    d.add_argument("--no-save", action="store_true",
                   help=f"do not write {DOCTOR_FILE} into the config's run folder")
    d.set_defaults(func=doctor_command)

    r = sub.add_parser("report", help="write RUN/report.html: curves, monitors, filters, "
                                      "feature maps, doctor, diagnosis")
    r.add_argument("run", help="run folder (runs/NAME)")
    r.add_argument("--doctor", action="store_true", help="run the doctor on the run's config "
                                                          "first and include its table")
    add_tensorboard_option(r)
    r.set_defaults(func=report_command)


def add_tensorboard_option(parser) -> None:
    parser.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="LOGDIR",
                        help="also export scalars and histograms for TensorBoard (default "
                             "LOGDIR: RUN/tensorboard; needs tensorboard or tensorboardX)")


def add_train_options(parser) -> None:
    """``--no-report`` and ``--tensorboard`` for ``convscope train``."""
    parser.add_argument("--no-report", action="store_true",
                        help="do not write RUN/report.html at the end")
    add_tensorboard_option(parser)


def doctor_command(args) -> None:
    report = run_doctor(args.config, data_dir=args.data_dir, log=print, device=args.device)
    print(report.table())
    if not args.no_save and report.run_dir:
        print(f"saved {report.save(Path(report.run_dir) / DOCTOR_FILE)}")


def check_tensorboard(tensorboard) -> None:
    """Before the work: a ConfigError when ``--tensorboard`` is given and neither tensorboard
    nor tensorboardX is installed (the export comes last, after a whole training run)."""
    if tensorboard is None:
        return
    if any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX")):
        return
    from convscope.viz.tensorboard import INSTALL

    raise ConfigError(f"--tensorboard: {INSTALL}; install one, or leave --tensorboard out")


def check_run_folder(run, *, model=True) -> Path:
    """``run`` as a Path, or a ConfigError saying what is missing from it and what to do: a run
    folder (``runs/NAME``) holds ``config.yaml``, ``run.json`` and ``preprocess.safetensors``
    from the start of training, and ``model.safetensors`` at its end (``model``: required)."""
    from convscope.train.run import MODEL, PREPROCESS
    from convscope.train.trainer import CHECKPOINT, METRICS

    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"{run} is not a run folder (no such folder); give the folder that "
                          f"convscope train wrote, runs/NAME")
    config = run / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{run} is not a run folder: it has no config.yaml (convscope train "
                          f"writes runs/NAME/config.yaml when a run starts)")
    import yaml

    try:
        saved = yaml.safe_load(config.read_text(encoding="utf-8"))
        where = Path(str(saved.get("out", ""))) / str(saved.get("name", ""))
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
        raise ConfigError(f"{config} is damaged (not a YAML run config); train the run "
                          f"again") from None
    if model and not (run / MODEL).is_file():
        again = f"`convscope train {config}"
        if where.resolve() != run.resolve():  # moved, or trained from another working folder
            again = (f"set out: {run.parent} and name: {run.name} in {config} (it places the run "
                     f"at {where}), then {again}")
        if (run / CHECKPOINT).is_file():
            lines = (run / METRICS).read_text().count("\n") - 1 if (run / METRICS).is_file() else 0
            raise ConfigError(f"{run} stopped before its end (after epoch {max(lines, 0)}; no "
                              f"{MODEL} yet): finish it: {again} --resume`, or see it with "
                              f"`convscope report {run}`")
        raise ConfigError(f"{run} holds no trained model ({MODEL}): it stopped before its first "
                          f"epoch ended; train it again: {again}`")
    if (run / MODEL).is_file():
        for name in ("run.json", PREPROCESS):
            if not (run / name).is_file():
                raise ConfigError(f"{run} is incomplete: {name} is missing (convscope train "
                                  f"writes it when the run starts); train the run again")
        try:
            json.loads((run / "run.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{run / 'run.json'} is damaged (not JSON); train the run "
                              f"again") from None
    return run


def report_command(args) -> None:
    check_tensorboard(args.tensorboard)
    run_dir = check_run_folder(args.run, model=False)
    if args.doctor:
        report = run_doctor(run_dir / "config.yaml", log=print)
        print(report.table())
        report.save(run_dir / DOCTOR_FILE)
    finish(run_dir, report=True, tensorboard=args.tensorboard)


def finish(run_dir, *, report=True, tensorboard=None, log=print) -> None:
    """After a run: write the report, and export to TensorBoard when asked."""
    from convscope.viz.report import write_report
    from convscope.viz.tensorboard import export_tensorboard

    if report:
        log(f"report: {write_report(run_dir)}")
    if tensorboard is not None:
        log(f"TensorBoard events: {export_tensorboard(run_dir, tensorboard or None)}")


def after_train(args, run_dir) -> None:
    """What ``convscope train`` does at the end with :func:`add_train_options`' flags."""
    finish(run_dir, report=not args.no_report, tensorboard=args.tensorboard)
