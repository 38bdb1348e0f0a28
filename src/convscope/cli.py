"""The ``convscope`` command.

    convscope train [CONFIG] [--epochs N] [--batch-size B] [--lr X] [--out DIR] [--resume]
                    [--name NAME] [--data-dir DIR] [--device DEV] [--cuda-graph]
                    [--no-report] [--tensorboard [LOGDIR]]
    convscope evaluate RUN [--split SPLIT] [--data-dir DIR] [--device DEV]
    convscope predict RUN IMAGE... [--device DEV]
    convscope summary MODEL            (a zoo name, a run folder or a saved .safetensors network)
    convscope data list [--data-dir DIR] / data info NAME [--split S] / data fetch NAME
    convscope doctor [CONFIG] / convscope report RUN     (from convscope.viz.cli)

With no CONFIG, ``convscope train`` trains LeNet-5 on the MNIST subset bundled with the package
and prints the test error. Errors are printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path

from convscope.errors import ConfigError, ConvscopeError


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like convscope's own."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _epochs_done(run_dir: Path) -> tuple[int, bool] | None:
    """(epochs trained, stopped early) from the run's checkpoint; None without one."""
    from convscope.train.checkpoint import trainer_state
    from convscope.train.trainer import CHECKPOINT

    if not (run_dir / CHECKPOINT).is_file():
        return None
    state = trainer_state(run_dir / CHECKPOINT)
    return int(state.get("epoch", 0)), bool(state.get("stopped_early", False))


def _train(args) -> None:
    from convscope.train.config import DEFAULTS, load_config, override
    from convscope.train.run import MODEL, _check_same_run, train
    from convscope.train.trainer import CHECKPOINT

    config = load_config(args.config) if args.config else DEFAULTS
    from convscope.debug import Monitor

    config = override(config, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      out=args.out, name=args.name, data_dir=args.data_dir, device=args.device,
                      cuda_graph=args.cuda_graph)
    from convscope.viz.cli import after_train, check_tensorboard

    check_tensorboard(args.tensorboard)
    run_dir = Path(config["out"]) / config["name"]
    for folder, what in ((Path(config["out"]), "--out"), (run_dir, "the run folder")):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{what} {folder} is a file, not a folder; the run is written to "
                              f"OUT/NAME: choose another --out or --name")
    done = _epochs_done(run_dir) if args.resume else None
    if done is not None and (run_dir / MODEL).is_file():
        _check_same_run(run_dir, config)
        epochs, stopped = done
        if epochs > config["epochs"]:
            raise ConfigError(f"--resume: {run_dir} has trained {epochs} epochs already, more "
                              f"than the {config['epochs']} asked for; give --epochs above "
                              f"{epochs} to train on")
        if epochs == config["epochs"] or stopped:
            why = "stopped early" if stopped else "finished"
            print(f"{run_dir} {why} after epoch {epochs}: nothing to train (give --epochs above "
                  f"{epochs} to train on; convscope evaluate {run_dir} for its metrics)")
            return
    if not args.resume and ((run_dir / CHECKPOINT).exists() or (run_dir / MODEL).exists()):
        print(f"note: {run_dir} holds an earlier run, which this one replaces (--name NAME keeps "
              f"it, --resume continues it)")
    try:
        result = train(config, resume=args.resume, callbacks=[Monitor()])
    except FloatingPointError:  # the run that most needs the diagnosis ("η too high") gets one
        if (run_dir / "run.json").exists():
            after_train(args, run_dir)
        raise
    after_train(args, result["run_dir"])


def _evaluate(args) -> None:
    from convscope.train.run import evaluate_run, format_result
    from convscope.viz.cli import check_run_folder

    check_run_folder(args.run)
    metrics, n = evaluate_run(args.run, args.split, data_dir=args.data_dir, device=args.device)
    print(format_result(args.split or "test", metrics, n))


def _predict(args) -> None:
    from convscope.train.run import predict_images
    from convscope.viz.cli import check_run_folder

    check_run_folder(args.run)
    for path, found in predict_images(args.run, args.images, device=args.device):
        if isinstance(found[0][1], tuple):  # keypoints: (name, (x, y)) in the image's pixels
            print(f"{path}: " + ", ".join(f"{name} ({x:.1f}, {y:.1f})" for name, (x, y) in found))
            continue
        ranked = ", ".join(f"{name} {p:.3f}" for name, p in found)
        print(f"{path}: {found[0][0]}  ({ranked})")


def _summary(args) -> None:
    from convscope import zoo
    from convscope.nn import Network
    from convscope.train.run import MODEL

    path = Path(args.model)
    if args.model in zoo.MODELS:
        net = zoo.create(args.model)
    elif path.is_dir() and (path / MODEL).is_file():
        net = Network.load(path / MODEL)
    elif path.is_dir() and (path / "network.json").is_file():  # a run stopped before its end
        net = Network.from_json((path / "network.json").read_text(encoding="utf-8"))
    elif path.is_dir():
        raise ConvscopeError(f"{path} is not a run folder: it holds neither {MODEL} nor "
                             f"network.json (convscope train writes both into runs/NAME)")
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


def _how_to_get(name: str) -> str:
    from convscope.data.sources import CANONICAL, MANUAL

    if name in CANONICAL:
        return f"`convscope data fetch {name}` downloads it"
    if name in MANUAL:
        return f"get it by hand (`convscope data fetch {name}` says how)"
    return "see its loader in convscope.data"


def _data_list(args) -> None:
    from convscope.data import LOADERS, DataError, load, resolve_data_dir

    print(f"data directory: {resolve_data_dir(args.data_dir)} (--data-dir, else $CONVSCOPE_DATA, "
          f"else the user cache dir)")
    print(f"{'mnist_subset':18}bundled: 10,000 train and 2,000 test MNIST images, no download")
    for name in LOADERS:
        try:
            ds = load(name, "test", data_dir=args.data_dir)
            status = f"found: {ds.description}"
        except DataError:
            status = f"not found: {_how_to_get(name)}"
        print(f"{name:18}{status}")


def _data_info(args) -> None:
    import numpy as np

    from convscope.data import LOADERS
    from convscope.train.datasets import BUNDLED, load_split

    if args.name != BUNDLED and args.name not in LOADERS:
        raise ConfigError(f"unknown data set {args.name!r}; known: {BUNDLED}, "
                          f"{', '.join(LOADERS)} (convscope data list shows which are here)")
    ds = load_split(args.name, args.split, data_dir=args.data_dir)
    x, y = np.asarray(ds.x), np.asarray(ds.y)
    print(ds.description)
    print(f"x: {'×'.join(map(str, x.shape))} {x.dtype}   y: {'×'.join(map(str, y.shape))} "
          f"{y.dtype}")
    names = list(ds.names)
    if y.ndim == 1:
        counts = np.bincount(y.astype(np.int64), minlength=len(names))
        print("classes: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=False)))
    else:
        more = ", …" if len(names) > 8 else ""
        print(f"keypoints ({len(names)}): {', '.join(map(str, names[:8]))}{more}")


def add_device_option(parser) -> None:
    """--device: where the network runs (NumPy by default; PyTorch on the CPU or a CUDA GPU)."""
    parser.add_argument("--device", help="numpy (default), cpu (PyTorch on the CPU), cuda or cuda:N")


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``convscope`` command."""
    from convscope.viz import cli as viz_cli

    p = _Parser(prog="convscope", description="A ConvNet toolbox for imaging data: train, "
                "evaluate and inspect networks.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a network (default: LeNet-5 on bundled MNIST)")
    t.add_argument("config", nargs="?", help="YAML run config (default: the main job)")
    t.add_argument("--epochs", type=int, help="number of epochs (with --resume: the total, "
                                               "counting those already trained)")
    t.add_argument("--batch-size", type=int, help="mini-batch size B")
    t.add_argument("--lr", type=_finite_float, help="learning rate η0")
    t.add_argument("--out", help="parent folder of the run (default: the config's, runs)")
    t.add_argument("--name", help="run name, the run folder is OUT/NAME (default: the config's)")
    t.add_argument("--resume", action="store_true",
                   help="continue OUT/NAME from its last checkpoint (same config; a new run when "
                        "it has none)")
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

    r = sub.add_parser("predict", help="classify PNG/JPEG images (or find their keypoints) with a "
                       "trained run",
                       description="Run a trained network on images: prints each image's class "
                       "and its top-3 probabilities, or, for a keypoints run, every keypoint's "
                       "(x, y) in the image's own pixels. Images are converted to the network's "
                       "gray or RGB input and resized to its H×W; MNIST networks expect a white "
                       "digit on a black background.")
    r.add_argument("run", help="run folder (runs/NAME) of a classification or keypoints run")
    r.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    add_device_option(r)
    r.set_defaults(func=_predict)

    s = sub.add_parser("summary", help="per-layer table: sizes, parameters, receptive fields")
    s.add_argument("model", help="zoo model name, run folder or .safetensors network")
    s.set_defaults(func=_summary)

    d = sub.add_parser("data", help="data sets: list, info, fetch")
    dsub = d.add_subparsers(dest="data_command", metavar="list|info|fetch", required=True)
    data_dir_help = "data directory (default: $CONVSCOPE_DATA or the user cache dir)"
    dl = dsub.add_parser("list", help="the data sets, and which are in the data directory")
    dl.add_argument("--data-dir", help=data_dir_help)
    dl.set_defaults(func=_data_list)
    di = dsub.add_parser("info", help="a data set's description, shapes and classes")
    di.add_argument("name", help="mnist_subset or a name of convscope data list")
    di.add_argument("--split", default="train", help="split to describe (default: train)")
    di.add_argument("--data-dir", help=data_dir_help)
    di.set_defaults(func=_data_info)
    f = dsub.add_parser("fetch", help="download a data set with checksum verification")
    f.add_argument("name", help="mnist, fashion_mnist, cifar10 or adrenal3d (facial_keypoints "
                                "and faces68: it says how to get them)")
    f.add_argument("--data-dir", help=data_dir_help)
    f.set_defaults(func=_fetch)
    viz_cli.add_subcommands(sub)           # doctor, report
    return p


def _one_line(message) -> str:
    """The message on one line (a YAML error spans several, with a '^' pointer line)."""
    lines = (line.strip() for line in str(message).splitlines())
    return " ".join(line for line in lines if line.strip("^ "))


def _interrupted(args, argv) -> str:
    if args.command != "train":
        return f"convscope {args.command}: interrupted"
    again = shlex.join(["convscope", *(a for a in argv if a != "--resume"), "--resume"])
    return (f"convscope train: interrupted; the checkpoint of the last finished epoch is kept: "
            f"continue with `{again}`")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the flush at exit does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests) or already gone
        pass


def main(argv=None) -> int:
    """Run the command; a convscope error (or a missing file) is one line on stderr, exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (ConvscopeError, FloatingPointError) as e:
        print(f"convscope {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `convscope ... | head`: stop quietly, as other commands do
        _silence_stdout()
        return 141
    except OSError as e:  # a file that cannot be read or written: name it
        what = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
        print(f"convscope {args.command}: error: {_one_line(what)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted(args, argv), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
