"""A training run from a config: data, model, optimiser, schedules and :class:`Trainer` wired
together, writing ``OUT/NAME/``:

- ``config.yaml``: the resolved config; ``network.json``: the architecture; ``summary.txt``;
- ``run.json`` and ``preprocess.safetensors``: class or keypoint names, the keypoint scaling and
  the preprocessing fitted on the training split (``evaluate`` and ``predict`` apply it);
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
from convscope.nn.files import atomic_write, read_safetensors, write_safetensors
from convscope.nn.layers import shape_str
from convscope.train.config import dump, validate
from convscope.train.datasets import (
    KeypointScaling,
    Split,
    load_split,
    make_augmentation,
    make_preprocessor,
    validation_split,
)
from convscope.train.optim import make_optimizer
from convscope.train.schedules import make_schedule
from convscope.train.trainer import BEST, CHECKPOINT, METRICS, Trainer, evaluate, task_of

MODEL = "model.safetensors"
PREPROCESS = "preprocess.safetensors"


@dataclass
class Run:
    """Everything a run needs: its folder, config, network, trainer, test split and transforms."""

    out_dir: Path
    config: dict
    net: Network
    trainer: Trainer
    test: Split | None
    transforms: Transforms


def _check_that_it_learns(lr_schedule, config) -> None:
    """A ConfigError when the learning rate is 0 all through the run (sampled 32 times an epoch):
    a warm-up as long as the run ramps toward the schedule's value at its end, which is 0 for a
    cosine or a linear decay to 0 (`--epochs 1` on a config with `warmup: 1`)."""
    epochs = config["epochs"]
    if any(lr_schedule(k / 32) > 0 for k in range(32 * epochs)):
        return
    raise ConfigError(
        f"config: the learning rate is 0 for the whole {epochs}-epoch run (optimizer.lr "
        f"{config['optimizer'].get('lr')!r}, lr_schedule {config['lr_schedule']!r}); a warm-up "
        f"as long as the run ramps toward the schedule's end value. Shorten lr_schedule.warmup, "
        f"train for more epochs (--epochs) or set a learning rate above 0 (--lr)"
    )


def _model_options(config, train: Split) -> dict:
    options = {k: v for k, v in config["model"].items() if k != "name"}
    accepted = inspect.signature(zoo.MODELS[config["model"]["name"]]).parameters
    options.setdefault("input_shape", tuple(train.x.shape[1:]))
    if "classes" in accepted and train.y.ndim == 1:
        options.setdefault("classes", len(train.names))
    if "keypoints" in accepted and train.y.ndim == 3:
        options.setdefault("keypoints", train.y.shape[1])
    return {**options, "seed": config["seed"]}


@dataclass
class Transforms:
    """What a run applies to data: the fitted preprocessor (None: plain float32), the keypoint
    scaling (None for classes), and the names of the classes or keypoints."""

    preprocess: object
    target: KeypointScaling | None
    names: list

    @property
    def input(self):
        return self.preprocess if self.preprocess is not None else _as_float32

    @property
    def scale(self) -> float:
        return self.target.center if self.target is not None else 1.0

    def save(self, out_dir) -> None:
        """``run.json`` (names, target scaling, preprocessor config) and
        ``preprocess.safetensors`` (its fitted arrays)."""
        pre = self.preprocess
        info = {"names": self.names, "target": self.target and self.target.to_config(),
                "preprocess": pre and pre.config()}
        _write_text(Path(out_dir) / "run.json", json.dumps(info, indent=1))
        write_safetensors(Path(out_dir) / PREPROCESS, pre.state_dict() if pre else {}, {})

    @classmethod
    def load(cls, run_dir) -> Transforms:
        from convscope.data.preprocess import from_state

        info = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
        pre = info["preprocess"]
        if pre is not None:
            arrays, _ = read_safetensors(Path(run_dir) / PREPROCESS)
            pre = from_state(pre, arrays)
        target = KeypointScaling(**info["target"]) if info["target"] else None
        return cls(pre, target, info["names"])


def _as_float32(x):
    return np.asarray(x, dtype=np.float32)


def _set_param_factors(net, config) -> None:
    """Apply the config's ``freeze`` (layer names) and ``param_factors`` (``layer.param``)."""
    net.freeze(*config["freeze"])
    params = net.params()
    for name, factors in config["param_factors"].items():
        if name not in params:
            raise ConfigError(f"config: param_factors names {name!r}, which is not a parameter "
                              f"of {config['model']['name']}; it has {', '.join(params)}")
        params[name].set_factors(**factors)


def _transforms(config, train: Split) -> Transforms:
    """The preprocessing fitted on the training split, and the target scaling."""
    pre = make_preprocessor(config["data"]["preprocess"])
    if pre is not None:
        pre.fit(train.x)
    target = KeypointScaling(train.x.shape[-2] / 2) if train.y.ndim == 3 else None
    return Transforms(pre, target, list(train.names))


def init_from(net, source) -> str:
    """Fine-tuning's start: copy into ``net`` every parameter of the network in ``source`` (a run
    folder, whose model.safetensors is read, or a saved network file) that has the same
    ``layer.param`` name and shape; the others (a new output layer for other classes) keep their
    initialisation. Returns a line saying what was copied; a ConfigError when nothing matches."""
    path = Path(source)
    path = path / MODEL if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"init_from: {source} holds no trained network (a run folder with "
                          f"{MODEL}, or a .safetensors network file)")
    weights = Network.load(path).state_dict()
    copied, fresh = [], []
    for name, p in net.params().items():
        a = weights.get(name)
        if a is not None and a.shape == tuple(p.value.shape):
            p.value = a.astype(p.value.dtype, copy=True)
            copied.append(name)
        else:
            fresh.append(name if a is None else f"{name} ({shape_str(a.shape)} there)")
    if not copied:
        raise ConfigError(f"init_from: no parameter of {path} matches this network by name and "
                          f"shape; its parameters are {', '.join(weights)}")
    return (f"init_from {source}: {len(copied)} of {len(copied) + len(fresh)} parameters copied"
            + (f"; initialised anew: {', '.join(fresh)}" if fresh else ""))


def prepare(config: dict, *, progress=None, log=print, callbacks=()) -> Run:
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
        keep, held = validation_split(train.y, data["validation"], seed=config["seed"])
        val = (train.x[held], train.y[held])
        train = Split(train.x[keep], train.y[keep], train.names, train.description)
    net = zoo.create(config["model"]["name"], **_model_options(config, train))
    if config["init_from"]:
        log(init_from(net, config["init_from"]))
    _set_param_factors(net, config)
    net.to(config["device"])
    transforms = _transforms(config, train)
    augment = make_augmentation(data["augment"], train.names if train.y.ndim == 3 else None)
    optimizer = make_optimizer(**config["optimizer"])
    lr_schedule = make_schedule(config["lr_schedule"], start=optimizer.lr,
                                epochs=config["epochs"])
    _check_that_it_learns(lr_schedule, config)
    momentum_schedule = None
    if config["momentum_schedule"] is not None:
        if not hasattr(optimizer, "momentum"):
            raise ConfigError(f"config: momentum_schedule needs an optimizer with momentum, "
                              f"not {config['optimizer']['type']!r}")
        momentum_schedule = make_schedule(config["momentum_schedule"],
                                          start=optimizer.momentum, epochs=config["epochs"])
    early = config["early_stopping"] or {}
    if early and val is None and str(early.get("monitor", "val_")).startswith("val_"):
        raise ConfigError("config: early_stopping needs a validation set (data.validation > 0), "
                          "or early_stopping.monitor naming a training metric (train_objective)")
    out_dir = Path(config["out"]) / config["name"]
    trainer = Trainer(net, optimizer, (train.x, train.y), val=val, epochs=config["epochs"],
                      batch_size=config["batch_size"], seed=config["seed"],
                      lr_schedule=lr_schedule, momentum_schedule=momentum_schedule,
                      transform=transforms.input, target_transform=transforms.target,
                      target_scale=transforms.scale, augment=augment,
                      out_dir=out_dir, patience=early.get("patience"),
                      monitor=early.get("monitor"), keep_best=config["keep_best"],
                      progress=progress, log=log, callbacks=list(callbacks),
                      cuda_graph=config["cuda_graph"])
    return Run(out_dir, config, net, trainer, test, transforms)


def _write_text(path, text) -> None:
    atomic_write(path, text.encode("utf-8"))


def train(config: dict, *, resume=False, progress=None, log=print, callbacks=()) -> dict:
    """Run ``config`` (or continue it with ``resume``) and return the test metrics. ``callbacks``
    go to the :class:`Trainer` (e.g. :class:`convscope.debug.Monitor`)."""
    start = time.perf_counter()
    run = prepare(config, progress=progress, log=log, callbacks=callbacks)
    out = run.out_dir
    if resume and (out / CHECKPOINT).exists():
        _check_same_run(out, run.config)
        run.trainer.resume()
        log(f"resuming {out} after epoch {run.trainer.epoch}")
    else:
        if resume:
            log(f"no checkpoint in {out}: starting a new run")
        out.mkdir(parents=True, exist_ok=True)
        for name in (CHECKPOINT, BEST, METRICS, MODEL):
            (out / name).unlink(missing_ok=True)
    _write_text(out / "config.yaml", dump(run.config))
    _write_text(out / "network.json", run.net.to_json())
    _write_text(out / "summary.txt", run.net.summary())
    run.transforms.save(out)
    epochs = run.config["epochs"]
    log(f"training {run.config['model']['name']} on {run.config['data']['name']} "
        f"({len(run.trainer.train_data[0])} images) for {epochs} epoch{'s' * (epochs != 1)} → {out}")
    run.trainer.fit()
    run.net.save(out / MODEL)
    result = {"seconds": time.perf_counter() - start, "run_dir": out}
    if run.test is not None:
        result.update(_evaluate(run.net, run.test, run.transforms))
        log(format_result("test", result, len(run.test.x)))
    log(f"done in {result['seconds']:.1f} s; model in {out / MODEL}")
    return result


RESUMABLE_CHANGES = ("epochs", "out", "name", "device", "cuda_graph")  # not what is trained


def _training_part(config: dict) -> dict:
    """The config without what a resumed run may change: the epochs, where the run and its data
    lie (a moved run folder, another data directory), and the device (checkpoints load on any)."""
    kept = {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}
    kept["data"] = {k: v for k, v in config["data"].items() if k != "data_dir"}
    return kept


def _check_same_run(out: Path, config: dict) -> None:
    """A resumed run must train what it started with: the same config up to
    :data:`RESUMABLE_CHANGES` and the data directory."""
    import yaml

    path = out / "config.yaml"
    if not path.exists():
        return
    before = _training_part(validate(yaml.safe_load(path.read_text(encoding="utf-8"))))
    now = _training_part(config)
    changed = sorted(k for k in now if now[k] != before.get(k))
    if changed:
        raise ConfigError(f"--resume: {out} was started with a different config ({', '.join(changed)} "
                          f"differ); resume with the same config or train into another --out")


def format_result(split, metrics, n) -> str:
    """'test error 1.45% (top-1), accuracy 98.55%, top-5 error 0.05%, loss 0.047 on N=2000'."""
    if "top1err" in metrics:
        top5 = f", top-5 error {100 * metrics['top5err']:.2f}%" if "top5err" in metrics else ""
        return (f"{split} error {100 * metrics['top1err']:.2f}% (top-1), accuracy "
                f"{100 * (1 - metrics['top1err']):.2f}%{top5}, loss {metrics['loss']:.4f} "
                f"on N={n}")
    return f"{split} RMSE {metrics['rmse']:.3f} px, loss {metrics['loss']:.5f} on N={n}"


def _evaluate(net, split: Split, transforms: Transforms) -> dict:
    return evaluate(net, split.x, split.y, transform=transforms.input,
                    target_transform=transforms.target, scale=transforms.scale)


def load_run(run_dir) -> tuple[Network, dict, Transforms]:
    """(network, resolved config, transforms) of a finished run folder."""
    import yaml

    run_dir = Path(run_dir)
    if not (run_dir / MODEL).exists():
        raise ConfigError(f"{run_dir} holds no trained model ({MODEL}); train it first")
    config = validate(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")))
    return Network.load(run_dir / MODEL), config, Transforms.load(run_dir)


def evaluate_run(run_dir, split=None, *, data_dir=None, device=None) -> tuple[dict, int]:
    """Metrics of a finished run on its test split (or ``split``), and the split's size, with the
    network on ``device`` (default: NumPy)."""
    net, config, transforms = load_run(run_dir)
    net.to(device or "numpy")
    data = config["data"]
    ds = load_split(data["name"], split or data["test_split"],
                    data_dir=data_dir or data["data_dir"], **(data["options"] or {}))
    return _evaluate(net, ds, transforms), len(ds.x)


def predict_images(run_dir, paths, *, device=None) -> list[tuple[str, list[tuple]]]:
    """For each image file, what the run's network sees in it, with the network on ``device``
    (default: NumPy): for a classifier its top classes with probabilities (the prediction's
    softmax), ``[(class, p), …]``; for a keypoint regressor every keypoint in the image's own
    pixels, ``[(name, (x, y)), …]`` (t = c·t̃ + c undoes the run's scaling, then the network's
    H×W input frame is mapped back onto the image's, pixel centres to pixel centres)."""
    from convscope import ops
    from convscope.data.folders import read_image

    net, _, transforms = load_run(run_dir)
    net.to(device or "numpy")
    shape = net.inputs[net.roles["input"]]
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ConfigError(f"predict works on gray or RGB images; this network takes "
                          f"{'×'.join(map(str, shape))}")
    batch, sizes = [], []
    for path in paths:
        im = read_image(path)
        sizes.append(im.size)  # (W, H)
        im = im.resize((shape[1], shape[0]), _bilinear()).convert("L" if shape[-1] == 1 else "RGB")
        batch.append(np.asarray(im, dtype=np.uint8).reshape(shape))
    scores = net.predict(transforms.input(np.stack(batch))).reshape(len(batch), -1)
    names = transforms.names
    if task_of(net) != "classification":
        points = _in_image_pixels(transforms.scale * scores + transforms.scale, shape, sizes)
        return [(str(path), [(str(name), (float(x), float(y))) for name, (x, y) in zip(names, p)])
                for path, p in zip(paths, points, strict=True)]
    probs = np.asarray(ops.softmax(scores))
    out = []
    for path, p in zip(paths, probs, strict=True):
        top = np.argsort(-p)[:3]
        out.append((str(path), [(names[i] if i < len(names) else str(i), float(p[i]))
                                for i in top]))
    return out


def _bilinear():
    from PIL import Image

    return Image.Resampling.BILINEAR


def _in_image_pixels(t, shape, sizes) -> np.ndarray:
    """Keypoints (N×2K, (x, y) pairs in the network's H×W input) in each image's W₀×H₀ pixels:
    x₀ = (x + ½)·W₀/W − ½, likewise y (the resize maps pixel centres onto pixel centres)."""
    points = t.reshape(len(sizes), -1, 2)
    frame = np.array([shape[1], shape[0]], dtype=np.float64)
    image = np.array(sizes, dtype=np.float64)[:, None, :]
    return (points + 0.5) * image / frame - 0.5
