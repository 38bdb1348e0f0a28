"""Run configurations: YAML in, a validated and fully resolved dict out.

A config names the model (any zoo model, with its options), the data, the optimiser, the
schedules, epochs, batch size and seed. Every key is checked: a misspelt one is a ConfigError that
names it and the key it may have meant. What a config leaves out comes from :data:`DEFAULTS`, the
main job: LeNet-5 on the bundled MNIST subset. The keys::

    name: lenet5-mnist          # the run folder is OUT/NAME
    out: runs
    seed: 0                     # initialisation, shuffling, dropout, augmentation, splits
    model: lenet5               # or {name: cifar10_quick, classes: 10, input_shape: [32, 32, 3]}
                                # (input_shape, classes/keypoints default to the data's)
    data:
      name: mnist_subset        # the bundled subset, or any convscope.data.load name
      data_dir: null            # --data-dir; default $CONVSCOPE_DATA or the user cache
      options: {}               # loader options, e.g. {keypoints: kaggle15} or {size: 64}
      validation: 0.0           # fraction of train held out (seeded, stratified)
      test_split: test          # evaluated at the end (null: none)
      preprocess: standardize   # none | standardize | mean_image | pca | zca | gcn | {type: ..}
      augment: []               # [{type: RandomFlip, p: 0.5}, {type: RandomRotation, ...}]
      limit: null               # train on the first N images only
    optimizer: {type: momentum, lr: 0.02, momentum: 0.9, weight_decay: 0.0005}
                                # sgd | momentum | nesterov | adam | rmsprop | adagrad
    lr_schedule: {type: cosine} # constant | step | inverse | exponential | linear | cosine |
                                # a list per epoch; warmup: W epochs in any mapping
    momentum_schedule: null     # same forms, e.g. {type: linear, start: 0.9, end: 0.999}
    epochs: 10
    batch_size: 64
    early_stopping: null        # {patience: 5, monitor: val_objective}
    keep_best: true             # restore the best weights (by the monitor) at the end
    init_from: null             # start from another run's weights (runs/NAME or a .safetensors
                                # network): every parameter of the same name and shape
    freeze: []                  # layers whose parameters stay fixed (fine-tuning)
    param_factors: {}           # per parameter, e.g. {conv1.b: {lr_factor: 2, decay_factor: 0}}
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
from pathlib import Path

import yaml

from convscope.errors import ConfigError
from convscope.train.datasets import make_augmentation, make_preprocessor
from convscope.train.optim import OPTIMIZERS, make_optimizer
from convscope.train.schedules import SCHEDULES, make_schedule

DEFAULTS = {
    "name": "lenet5-mnist",
    "out": "runs",
    "seed": 0,
    "model": {"name": "lenet5"},
    "data": {"name": "mnist_subset", "data_dir": None, "options": {}, "validation": 0.0,
             "test_split": "test", "preprocess": "standardize", "augment": [],
             "limit": None},
    "optimizer": {"type": "momentum", "lr": 0.02, "momentum": 0.9, "weight_decay": 0.0005},
    "lr_schedule": {"type": "cosine"},
    "momentum_schedule": None,
    "epochs": 10,
    "batch_size": 64,
    "early_stopping": None,
    "keep_best": True,
    "init_from": None,
    "freeze": [],
    "param_factors": {},
    "device": "numpy",
    "cuda_graph": False,
}
DATA_KEYS = set(DEFAULTS["data"])
EARLY_KEYS = {"patience", "monitor"}


def _unknown(section: str, given, allowed) -> None:
    for key in given:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            where = f"{section}.{key}" if section else str(key)
            raise ConfigError(f"config: unknown key {where!r}{hint} (allowed in "
                              f"{section or 'the top level'}: {', '.join(sorted(allowed))})")


def _mapping(section: str, value) -> dict:
    if isinstance(value, str):
        return {"name" if section == "model" else "type": value}
    if not isinstance(value, dict):
        raise ConfigError(f"config: {section} must be a mapping, got {value!r}")
    return dict(value)


def _keywords(fn) -> set[str]:
    return {p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}


def _check_choice(key, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"config: {key} is {value!r}; choose one of {', '.join(choices)}")


def _number(key, value):
    """``value`` as a number, or a ConfigError naming ``key``. A string that reads as a number is
    taken as one: YAML 1.1 (PyYAML) reads ``1e-3`` as text, ``1.0e-3`` as a number."""
    number = None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    if number is None or not math.isfinite(number):
        raise ConfigError(f"config: {key} must be a finite number, got {value!r}")
    return number


def _numbers(section: str, options: dict, *, skip=("type",)) -> dict:
    """The mapping with every value (but those in ``skip``) a number; lists of numbers too."""
    out = {}
    for k, v in options.items():
        if k in skip:
            out[k] = v
        elif isinstance(v, list):
            out[k] = [_number(f"{section}.{k}[{i}]", x) for i, x in enumerate(v)]
        else:
            out[k] = _number(f"{section}.{k}", v)
    return out


def _check_optimizer(spec: dict) -> dict:
    """The optimizer mapping with numeric values, built once to check their ranges."""
    kind = spec.setdefault("type", "momentum")
    _check_choice("optimizer.type", kind, list(OPTIMIZERS))
    _unknown("optimizer", spec, _keywords(OPTIMIZERS[kind]) | {"type"})
    spec = _numbers("optimizer", spec)
    try:
        make_optimizer(**spec)
    except ConfigError as e:
        raise ConfigError(f"config: {e}") from None
    return spec


def _check_schedule(key, spec, *, start, epochs):
    """The schedule ``spec`` (None, a list of values, a type name or a mapping) with numeric
    values, a mapping for a type name, built once to check it."""
    if spec is None:
        return None
    if isinstance(spec, list):
        spec = [_number(f"{key}[{i}]", v) for i, v in enumerate(spec)]
    else:
        spec = _mapping(key, spec)
        kind = spec.get("type", "constant")
        _check_choice(f"{key}.type", kind, list(SCHEDULES))
        _unknown(key, spec, _keywords(SCHEDULES[kind]) | {"type", "warmup"})
        spec = _numbers(key, spec)
    try:
        make_schedule(spec, start=start, epochs=epochs)
    except ConfigError as e:
        raise ConfigError(f"config: {key}: {e}") from None
    return spec


def _check_positive_int(key, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"config: {key} must be a positive integer, got {value!r}")


def validate(config: dict) -> dict:
    """Check every key and value of ``config`` and return it resolved against :data:`DEFAULTS`."""
    if not isinstance(config, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {config!r}")
    _unknown("", config, DEFAULTS)
    out = copy.deepcopy(DEFAULTS)
    for key, value in config.items():
        if key in ("model", "optimizer"):
            out[key] = _mapping(key, value)
        elif key == "data":
            data = _mapping("data", value)
            _unknown("data", data, DATA_KEYS)
            out["data"].update(data)
        else:
            out[key] = copy.deepcopy(value)
    from convscope.zoo import MODELS
    _check_choice("model.name", out["model"].get("name"), list(MODELS))
    _unknown("model", out["model"], _keywords(MODELS[out["model"]["name"]]) - {"seed", "dtype"}
             | {"name"})
    for key in ("epochs", "batch_size"):
        _check_positive_int(key, out[key])
    out["optimizer"] = _check_optimizer(out["optimizer"])
    optimizer = make_optimizer(**out["optimizer"])
    out["lr_schedule"] = _check_schedule("lr_schedule", out["lr_schedule"], start=optimizer.lr,
                                         epochs=out["epochs"])
    if out["momentum_schedule"] is not None and not hasattr(optimizer, "momentum"):
        raise ConfigError(f"config: momentum_schedule needs an optimizer with momentum, not "
                          f"{out['optimizer']['type']!r}")
    out["momentum_schedule"] = _check_schedule(
        "momentum_schedule", out["momentum_schedule"], start=getattr(optimizer, "momentum", 0.0),
        epochs=out["epochs"])
    if not isinstance(out["seed"], int):
        raise ConfigError(f"config: seed must be an integer, got {out['seed']!r}")
    make_preprocessor(out["data"]["preprocess"])
    make_augmentation(out["data"]["augment"])
    if out["data"]["limit"] is not None:
        _check_positive_int("data.limit", out["data"]["limit"])
    if out["init_from"] is not None and not isinstance(out["init_from"], str):
        raise ConfigError(f"config: init_from must be a run folder or a .safetensors network, got "
                          f"{out['init_from']!r}")
    if not isinstance(out["freeze"], list):
        raise ConfigError(f"config: freeze must be a list of layer names, got {out['freeze']!r}")
    params = _mapping("param_factors", out["param_factors"])
    for name, factors in params.items():
        factors = _mapping(f"param_factors.{name}", factors)
        _unknown(f"param_factors.{name}", factors, {"lr_factor", "decay_factor", "frozen"})
        if not isinstance(factors.get("frozen", False), bool):
            raise ConfigError(f"config: param_factors.{name}.frozen must be true or false, got "
                              f"{factors['frozen']!r}")
        params[name] = _numbers(f"param_factors.{name}", factors, skip=("frozen",))
    out["param_factors"] = params
    if not isinstance(out["device"], str) or not (
            out["device"] in ("numpy", "cpu") or out["device"].startswith("cuda")):
        raise ConfigError(f"config: device must be 'numpy', 'cpu', 'cuda' or 'cuda:N', "
                          f"got {out['device']!r}")
    if not isinstance(out["cuda_graph"], bool):
        raise ConfigError(f"config: cuda_graph must be true or false, got {out['cuda_graph']!r}")
    if out["cuda_graph"] and not out["device"].startswith("cuda"):
        raise ConfigError(f"config: cuda_graph needs a CUDA device, not {out['device']!r}")
    if out["early_stopping"] is not None:
        early = _mapping("early_stopping", out["early_stopping"])
        _unknown("early_stopping", early, EARLY_KEYS)
        if "patience" in early:
            _check_positive_int("early_stopping.patience", early["patience"])
        if not isinstance(early.get("monitor", ""), str):
            raise ConfigError(f"config: early_stopping.monitor must be a metric name such as "
                              f"val_objective, got {early['monitor']!r}")
        out["early_stopping"] = early
    return out


def load_config(path) -> dict:
    """Read a YAML config file (``yaml.safe_load``) and :func:`validate` it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config {path}: it is not UTF-8 text; a config is a YAML "
                          f"text file such as configs/lenet5_mnist.yaml") from None
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        what = getattr(e, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path} is not valid YAML{at}: {what}") from None
    try:
        return validate(config)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def override(config: dict, *, epochs=None, batch_size=None, lr=None, out=None, name=None,
             data_dir=None, device=None, cuda_graph=None) -> dict:
    """``config`` with the command line's overrides applied, validated again."""
    config = copy.deepcopy(config)
    if epochs is not None:
        config["epochs"] = epochs
    if batch_size is not None:
        config["batch_size"] = batch_size
    if lr is not None:
        config["optimizer"]["lr"] = lr
    if out is not None:
        config["out"] = str(out)
    if name is not None:
        config["name"] = name
    if data_dir is not None:
        config["data"] = {**config["data"], "data_dir": str(data_dir)}
    if device is not None:
        config["device"] = device
    if cuda_graph:
        config["cuda_graph"] = True
    return validate(config)


def dump(config: dict) -> str:
    """The config as YAML text (the resolved config a run writes)."""
    return yaml.safe_dump(config, sort_keys=False)
