"""A training run from a config: data, model, optimiser, schedules and :class:`Trainer` wired
together, writing ``OUT/NAME/``:

- ``config.yaml``: the resolved config; ``network.json``: the architecture; ``summary.txt``;
- ``run.json``: class or keypoint names and the fitted preprocessing (``predict`` applies it);
- ``metrics.csv``, ``checkpoint.safetensors`` (every epoch), ``best.safetensors``;
- ``model.safetensors``: the trained network (the best one when a validation set picks it).
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convscope import zoo
from convscope.errors import ConfigError
from convscope.nn import Network
from convscope.nn.files import atomic_write
from convscope.train.config import dump, validate
from convscope.train.datasets import KeypointScaling, Split, Standardize, load_split, validation_split
from convscope.train.optim import make_optimizer
from convscope.train.schedules import make_schedule
from convscope.train.trainer import CHECKPOINT, Trainer, evaluate

MODEL = "model.safetensors"


@dataclass
class Run:
    """Everything a run needs: its folder, config, network, trainer, test split and transforms."""

    out_dir: Path
    config: dict
    net: Network
    trainer: Trainer
    test: Split | None
    info: dict


def _model_options(config, train: Split) -> dict:
    options = {k: v for k, v in config["model"].items() if k != "name"}
    accepted = inspect.signature(zoo.MODELS[config["model"]["name"]]).parameters
    options.setdefault("input_shape", tuple(train.x.shape[1:]))
    if "classes" in accepted and train.y.ndim == 1:
        options.setdefault("classes", len(train.names))
    if "keypoints" in accepted and train.y.ndim == 3:
        options.setdefault("keypoints", train.y.shape[1])
    return {**options, "seed": config["seed"]}


def _transforms(config, train: Split) -> dict:
    """The preprocessing fitted on the training split, as JSON-able info."""
    info = {"names": list(train.names), "preprocess": None, "target": None}
    if config["data"]["preprocess"] == "standardize":
        info["preprocess"] = Standardize.fit(train.x).to_config()
    if train.y.ndim == 3:
        info["target"] = KeypointScaling(train.x.shape[-2] / 2).to_config()
    return info


def transforms_from(info) -> tuple:
    """(input transform, target transform, RMSE scale) from a run's ``run.json`` info."""
    transform = Standardize(**info["preprocess"]) if info["preprocess"] else (
        lambda x: x.astype(np.float32))
    target = KeypointScaling(**info["target"]) if info["target"] else None
    return transform, target, target.center if target else 1.0


def prepare(config: dict, *, progress=None, log=print) -> Run:
    """Load the data, build the model and the trainer for ``config`` (validated here)."""
    config = validate(config)
    data = config["data"]
    load = {"data_dir": data["data_dir"], **(data["options"] or {})}
    train = load_split(data["name"], "train", **load)
    if data["limit"]:
        train = Split(train.x[:data["limit"]], train.y[:data["limit"]], train.names,
                      f"{train.description} [first {data['limit']}]")
    test = load_split(data["name"], data["test_split"], **load) if data["test_split"] else None
    val = None
    if data["validation"]:
        rng = np.random.default_rng(config["seed"])
        keep, held = validation_split(train.y, data["validation"], rng)
        val = (train.x[held], train.y[held])
        train = Split(train.x[keep], train.y[keep], train.names, train.description)
    net = zoo.create(config["model"]["name"], **_model_options(config, train))
    info = _transforms(config, train)
    transform, target, scale = transforms_from(info)
    optimizer = make_optimizer(**config["optimizer"])
    lr_schedule = make_schedule(config["lr_schedule"], start=optimizer.lr,
                                epochs=config["epochs"])
    momentum_schedule = None
    if config["momentum_schedule"] is not None:
        if not hasattr(optimizer, "momentum"):
            raise ConfigError(f"config: momentum_schedule needs an optimizer with momentum, "
                              f"not {config['optimizer']['type']!r}")
        momentum_schedule = make_schedule(config["momentum_schedule"],
                                          start=optimizer.momentum, epochs=config["epochs"])
    early = config["early_stopping"] or {}
    if early and val is None:
        raise ConfigError("config: early_stopping needs a validation set (data.validation > 0)")
    out_dir = Path(config["out"]) / config["name"]
    trainer = Trainer(net, optimizer, (train.x, train.y), val=val, epochs=config["epochs"],
                      batch_size=config["batch_size"], seed=config["seed"],
                      lr_schedule=lr_schedule, momentum_schedule=momentum_schedule,
                      transform=transform, target_transform=target, target_scale=scale,
                      out_dir=out_dir, patience=early.get("patience"),
                      monitor=early.get("monitor"), keep_best=config["keep_best"],
                      progress=progress, log=log)
    return Run(out_dir, config, net, trainer, test, info)


def _write_text(path, text) -> None:
    atomic_write(path, text.encode("utf-8"))


def train(config: dict, *, resume=False, progress=None, log=print) -> dict:
    """Run ``config`` (or continue it with ``resume``) and return the test metrics."""
    start = time.perf_counter()
    run = prepare(config, progress=progress, log=log)
    out = run.out_dir
    if resume and (out / CHECKPOINT).exists():
        run.trainer.resume()
        log(f"resuming {out} after epoch {run.trainer.epoch}")
    else:
        if resume:
            log(f"no checkpoint in {out}: starting a new run")
        out.mkdir(parents=True, exist_ok=True)
        (out / CHECKPOINT).unlink(missing_ok=True)
    _write_text(out / "config.yaml", dump(run.config))
    _write_text(out / "network.json", run.net.to_json())
    _write_text(out / "summary.txt", run.net.summary())
    _write_text(out / "run.json", json.dumps(run.info, indent=1))
    log(f"training {run.config['model']['name']} on {run.config['data']['name']} "
        f"({len(run.trainer.train_data[0])} images) for {run.config['epochs']} epochs → {out}")
    run.trainer.fit()
    run.net.save(out / MODEL)
    result = {"seconds": time.perf_counter() - start}
    if run.test is not None:
        transform, target, scale = transforms_from(run.info)
        result.update(evaluate(run.net, run.test.x, run.test.y, transform=transform,
                               target_transform=target, scale=scale))
        log(format_result("test", result, len(run.test.x)))
    log(f"done in {result['seconds']:.1f} s; model in {out / MODEL}")
    return result


def format_result(split, metrics, n) -> str:
    """'test error 1.45% (top-1), accuracy 98.55%, top-5 error 0.05%, loss 0.047 on N=2000'."""
    if "top1err" in metrics:
        return (f"{split} error {100 * metrics['top1err']:.2f}% (top-1), accuracy "
                f"{100 * (1 - metrics['top1err']):.2f}%, top-5 error "
                f"{100 * metrics['top5err']:.2f}%, loss {metrics['loss']:.4f} on N={n}")
    return f"{split} RMSE {metrics['rmse']:.3f} px, loss {metrics['loss']:.5f} on N={n}"


def load_run(run_dir) -> tuple[Network, dict, dict]:
    """(network, resolved config, run info) of a finished run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / MODEL).exists():
        raise ConfigError(f"{run_dir} holds no trained model ({MODEL}); train it first")
    config = validate(_read_yaml(run_dir / "config.yaml"))
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return Network.load(run_dir / MODEL), config, info


def _read_yaml(path):
    import yaml
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def evaluate_run(run_dir, split=None) -> tuple[dict, int]:
    """Metrics of a finished run on its test split (or ``split``), and the split's size."""
    net, config, info = load_run(run_dir)
    data = config["data"]
    split = split or data["test_split"]
    ds = load_split(data["name"], split, data_dir=data["data_dir"], **(data["options"] or {}))
    transform, target, scale = transforms_from(info)
    return evaluate(net, ds.x, ds.y, transform=transform, target_transform=target,
                    scale=scale), len(ds.x)


def predict_images(run_dir, paths) -> list[tuple[str, list[tuple[str, float]]]]:
    """For each image file, its top classes with probabilities (the prediction's softmax)."""
    from PIL import Image, UnidentifiedImageError

    from convscope import ops

    net, _, info = load_run(run_dir)
    shape = net.inputs[net.roles["input"]]
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ConfigError(f"predict works on gray or RGB images; this network takes "
                          f"{'×'.join(map(str, shape))}")
    transform, _, _ = transforms_from(info)
    batch = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im = im.convert("L" if shape[-1] == 1 else "RGB").resize(
                    (shape[1], shape[0]), Image.BILINEAR)
                batch.append(np.asarray(im, dtype=np.uint8).reshape(shape))
        except (OSError, UnidentifiedImageError) as e:
            raise ConfigError(f"cannot read image {path}: {e}") from None
    scores = net.predict(transform(np.stack(batch)))
    probs = np.asarray(ops.softmax(scores.reshape(len(batch), -1)))
    names = info["names"]
    out = []
    for path, p in zip(paths, probs, strict=True):
        top = np.argsort(-p)[:3]
        out.append((str(path), [(names[i] if i < len(names) else str(i), float(p[i]))
                                for i in top]))
    return out
