"""Data for training runs: the bundled MNIST subset, any data set of :mod:`convscope.data`, a
seeded validation split, and the preprocessing a run fits on its training split and saves.

The bundled subset (``mnist_subset``) is 10,000 training and 2,000 test images drawn, stratified
and seeded, from MNIST by ``tools/make_mnist_subset.py``; it ships inside the package, so the
first ``convscope train`` needs no network and no data directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

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


def validation_split(y, fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): a seeded split holding out ``fraction`` of the
    samples, stratified per class when ``y`` holds class indices."""
    if not 0 < fraction < 1:
        raise ConfigError(f"data.validation must be between 0 and 1, got {fraction}")
    y = np.asarray(y)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if y.ndim == 1 else [
        np.arange(len(y))]
    val = np.concatenate([rng.permutation(g)[: int(round(fraction * len(g)))] for g in groups])
    mask = np.zeros(len(y), dtype=bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


class Standardize:
    """Per-channel standardisation fitted on the training split only:
    x̃_{i,j,d} = (x_{i,j,d}/s − μ_d) / σ_d with s = 255 for uint8 images (else 1), μ_d and σ_d the
    training mean and standard deviation of channel d. Saved as JSON with the run."""

    def __init__(self, mean, std, scale=1.0, dtype="float32"):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.scale, self.dtype = float(scale), np.dtype(dtype)

    @classmethod
    def fit(cls, x, dtype="float32") -> Standardize:
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        axes = tuple(range(x.ndim - 1))
        sample = x[: min(len(x), 10_000)].astype(np.float64) / scale
        return cls(sample.mean(axis=axes), sample.std(axis=axes) + 1e-8, scale, dtype)

    def __call__(self, x):
        mean = (self.mean * self.scale).astype(self.dtype)
        inv = (1.0 / (self.std * self.scale)).astype(self.dtype)
        return (x.astype(self.dtype) - mean) * inv

    def to_config(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "scale": self.scale,
                "dtype": self.dtype.name}


class KeypointScaling:
    """Keypoint targets in pixels mapped to [−1, 1]: t̃ = (t − c)/c with c = H/2 (the tutorial's
    scaling); RMSE is reported back in pixels (× c)."""

    def __init__(self, center):
        self.center = float(center)

    def __call__(self, y):
        return ((np.asarray(y, dtype=np.float32) - self.center) / self.center).astype(np.float32)

    def to_config(self) -> dict:
        return {"center": self.center}
