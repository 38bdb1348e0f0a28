"""Data for training runs: the bundled MNIST subset, any data set of :mod:`convscope.data`, a
seeded validation split, preprocessing and augmentation from a config, and keypoint scaling.

The bundled subset (``mnist_subset``) is 10,000 training and 2,000 test images drawn, stratified
and seeded, from MNIST by ``tools/make_mnist_subset.py``; it ships inside the package, so the
first ``convscope train`` needs no network and no data directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from convscope.data import make_split
from convscope.errors import ConfigError

BUNDLED = "mnist_subset"


@dataclass
class Split:
    """Inputs, targets and the class or keypoint names of one split."""

    x: np.ndarray
    y: np.ndarray
    names: tuple
    description: str


def _bundled(split: str) -> Split:
    if split not in ("train", "test"):
        raise ConfigError(f"{BUNDLED}: no split {split!r}; it has 'train' and 'test'")
    folder = resources.files("convscope") / "_bundled"
    info = json.loads((folder / f"{BUNDLED}.json").read_text(encoding="utf-8"))
    with resources.as_file(folder / f"{BUNDLED}.npz") as path, np.load(path,
                                                                       allow_pickle=False) as d:
        x, y = d[f"x_{split}"], d[f"y_{split}"]
    return Split(x, y, tuple(info["names"]), f"{info['description']} ({split}, N={len(x)})")


def load_split(name: str, split: str, *, data_dir=None, **options) -> Split:
    """The ``split`` of data set ``name``: the bundled subset, or :func:`convscope.data.load`."""
    if name == BUNDLED:
        if options:
            raise ConfigError(f"{BUNDLED} takes no options, got {sorted(options)}")
        return _bundled(split)
    from convscope import data

    ds = data.load(name, split, data_dir=data_dir, **options)
    return Split(ds.x, ds.y, tuple(ds.names), ds.description)


def validation_split(y, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): a seeded split holding out ``fraction`` of the
    samples, stratified per class when ``y`` holds class indices (:func:`convscope.data.make_split`:
    ⌊N·f⌋ or ⌈N·f⌉ held out, each class's share rounded down or up)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"data.validation must be between 0 and 1, got {fraction}")
    split = make_split(np.asarray(y), {"train": 1 - fraction, "val": fraction}, seed=seed)
    return split["train"], split["val"]


class KeypointScaling:
    """Keypoint targets in pixels mapped to [−1, 1]: t̃ = (t − c)/c with c = H/2 (the tutorial's
    scaling); RMSE is reported back in pixels (× c)."""

    def __init__(self, center):
        self.center = float(center)

    def __call__(self, y):
        return ((np.asarray(y, dtype=np.float32) - self.center) / self.center).astype(np.float32)

    def to_config(self) -> dict:
        return {"center": self.center}


PREPROCESS_NAMES = {"standardize": "Standardize", "mean_image": "MeanImage",
                    "pca": "PCAWhitening", "zca": "ZCAWhitening",
                    "gcn": "GlobalContrastNormalization"}


def make_preprocessor(spec):
    """An unfitted :mod:`convscope.data.preprocess` object from a config value: ``"none"``
    (None), a short name (``standardize``, ``mean_image``, ``pca``, ``zca``, ``gcn``), or a
    mapping ``{type: ZCAWhitening, eps: 0.01}``."""
    from convscope.data import preprocess

    if spec in (None, "none"):
        return None
    options = dict(spec) if isinstance(spec, dict) else {"type": spec}
    kind = PREPROCESS_NAMES.get(options.get("type"), options.pop("type", None))
    options.pop("type", None)
    if kind not in preprocess.PREPROCESSORS or kind == "Pipeline":
        known = ", ".join([*PREPROCESS_NAMES, "none"])
        raise ConfigError(f"data.preprocess: unknown {kind!r}; known: {known}")
    try:
        return preprocess.PREPROCESSORS[kind](**options)
    except TypeError as e:
        raise ConfigError(f"data.preprocess {kind}: {e}") from None


def make_augmentation(specs, keypoint_names=None):
    """A :class:`convscope.data.augment.Compose` from a config list of ``{type: RandomFlip, p:
    0.5}`` mappings (None when the list is empty); a flip of keypoints gets their names."""
    from convscope.data import augment

    if not specs:
        return None
    steps = []
    for spec in specs:
        options = dict(spec) if isinstance(spec, dict) else {"type": spec}
        kind = options.pop("type", None)
        factory = getattr(augment, str(kind), None)
        if (not str(kind)[:1].isupper() or not callable(factory)
                or kind in ("Augmentation", "Compose")):
            raise ConfigError(f"data.augment: unknown augmentation {kind!r}")
        if kind == "RandomFlip" and keypoint_names:
            options.setdefault("names", keypoint_names)
        try:
            steps.append(factory(**options))
        except TypeError as e:
            raise ConfigError(f"data.augment {kind}: {e}") from None
    return augment.Compose(steps)
