"""The ``convscope`` command.

    convscope train [CONFIG] [--epochs N] [--batch-size B] [--lr X] [--out DIR] [--resume]
                    [--name NAME] [--data-dir DIR] [--no-report] [--tensorboard [LOGDIR]]
    convscope evaluate RUN [--split SPLIT] [--data-dir DIR]
    convscope predict RUN IMAGE...
    convscope summary MODEL            (a zoo name, a run folder or a saved .safetensors network)
    convscope data fetch NAME [--data-dir DIR]
    convscope doctor [CONFIG] / convscope report RUN     (from convscope.viz.cli)

With no CONFIG, ``convscope train`` trains LeNet-5 on the MNIST subset bundled with the package
and prints the test error. Errors are printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convscope.errors import ConvscopeError


def _train(args) -> None:
    from convscope.train.config import DEFAULTS, load_config, override
    from convscope.train.run import train

    config = load_config(args.config) if args.config else DEFAULTS
    from convscope.debug import Monitor

    config = override(config, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      out=args.out, name=args.name, data_dir=args.data_dir, device=args.device,
                      cuda_graph=args.cuda_graph)
    from convscope.viz.cli import after_train

    try:
        result = train(config, resume=args.resume, callbacks=[Monitor()])
    except FloatingPointError:  # the run that most needs the diagnosis ("η too high") gets one
        run_dir = Path(config["out"]) / config["name"]
        if (run_dir / "run.json").exists():
            after_train(args, run_dir)
        raise
    after_train(args, result["run_dir"])


def _evaluate(args) -> None:
    from convscope.train.run import evaluate_run, format_result

    metrics, n = evaluate_run(args.run, args.split, data_dir=args.data_dir, device=args.device)
    print(format_result(args.split or "test", metrics, n))


def _predict(args) -> None:
    from convscope.train.run import predict_images

    for path, top in predict_images(args.run, args.images, device=args.device):
        ranked = ", ".join(f"{name} {p:.3f}" for name, p in top)
        print(f"{path}: {top[0][0]}  ({ranked})")


def _summary(args) -> None:
    from convscope import zoo
    from convscope.nn import Network
    from convscope.train.run import MODEL

    path = Path(args.model)
    if args.model in zoo.MODELS:
        net = zoo.create(args.model)
    elif path.is_dir():
        net = Network.load(path / MODEL)
    elif path.exists():
        net = Network.load(path)
    else:
        raise ConvscopeError(f"{args.model!r} is neither a zoo model ({', '.join(zoo.MODELS)}) "
                             f"nor a run folder or saved network")
    print(net.summary(), end="")


def _fetch(args) -> None:
    from convscope import data

    for path in data.fetch(args.name, data_dir=args.data_dir) or ():
        print(f"{args.name}: {path}")


def add_device_option(parser) -> None:
    """--device: where the network runs (NumPy by default; PyTorch on the CPU or a CUDA GPU)."""
    parser.add_argument("--device", help="numpy (default), cpu (PyTorch on the CPU), cuda or cuda:N")


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``convscope`` command."""
    from convscope.viz import cli as viz_cli

    p = argparse.ArgumentParser(prog="convscope", description="A ConvNet toolbox for imaging "
                                "data: train, evaluate and inspect networks.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a network (default: LeNet-5 on bundled MNIST)")
    t.add_argument("config", nargs="?", help="YAML run config (default: the main job)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float, help="learning rate η0")
    t.add_argument("--out", help="parent folder of the run (default: runs)")
    t.add_argument("--name", help="run name (default: the config's)")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    t.add_argument("--data-dir", help="data directory (overrides the config's data.data_dir)")
    add_device_option(t)
    t.add_argument("--cuda-graph", action="store_true",
                   help="capture each training step as one CUDA graph (needs --device cuda)")
    viz_cli.add_train_options(t)
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="metrics of a trained run on its test split")
    e.add_argument("run", help="run folder (runs/NAME)")
    e.add_argument("--split", help="data split (default: the config's test split)")
    e.add_argument("--data-dir", help="data directory (default: the run's)")
    add_device_option(e)
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("predict", help="classify PNG/JPEG images with a trained run")
    r.add_argument("run")
    r.add_argument("images", nargs="+")
    add_device_option(r)
    r.set_defaults(func=_predict)

    s = sub.add_parser("summary", help="per-layer table: sizes, parameters, receptive fields")
    s.add_argument("model", help="zoo model name, run folder or .safetensors network")
    s.set_defaults(func=_summary)

    d = sub.add_parser("data", help="data sets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="download a data set with checksum verification")
    f.add_argument("name")
    f.add_argument("--data-dir", help="data directory (default: $CONVSCOPE_DATA or user cache)")
    f.set_defaults(func=_fetch)
    viz_cli.add_subcommands(sub)           # doctor, report
    return p


def main(argv=None) -> int:
    """Run the command; a convscope error (or a missing file) is one line on stderr, exit 2."""
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (ConvscopeError, FileNotFoundError, FloatingPointError) as e:
        print(f"convscope {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
