"""The ``doctor`` and ``report`` subcommands of ``convscope``, and the training options that turn
on the monitor and the report (the wiring lives in :mod:`convscope.cli`).

    convscope doctor [CONFIG] [--data-dir DIR] [--no-save]
    convscope report RUN [--doctor] [--tensorboard [LOGDIR]]
    convscope train ... [--no-report] [--tensorboard [LOGDIR]]
"""

from __future__ import annotations

from pathlib import Path

from convscope.debug.doctor import DOCTOR_FILE, run_doctor


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


def report_command(args) -> None:
    run_dir = Path(args.run)
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
