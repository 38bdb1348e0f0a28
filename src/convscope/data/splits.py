"""Splitting a data set into training, validation and test parts, seeded and reusable.

``split = make_split(y, {"train": 0.8, "val": 0.2}, seed=0)`` draws disjoint index sets whose
sizes follow the fractions (largest remainders, so they sum to N). For class labels (1-D
integer y) the split is stratified by default: every class is divided in the same
proportions, so each part keeps the class frequencies, and each part's total is still
⌊N·f_k⌋ or ⌈N·f_k⌉ (see :func:`_stratified_sizes`): small classes cannot leave a part empty.
``split.apply(dataset)`` gives one Dataset per part; ``split.save(path)`` /
``Split.load(path)`` keep a fixed split as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convscope.data.dataset import Dataset
from convscope.data.errors import DataError
from convscope.errors import ConfigError


def _allocate(n: int, fractions: np.ndarray) -> np.ndarray:
    """Integer sizes ≈ n·fᵢ summing to n (largest-remainder rounding, ties to the first part)."""
    exact = n * fractions
    sizes = np.floor(exact).astype(np.int64)
    rest = n - sizes.sum()
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[:rest]] += 1
    return sizes


_TOL = 1e-9


def _route_unit(c0, allowed, flow, col, cap, part_order) -> bool:
    """Give class c0 one more unit along an augmenting path (breadth first) of the bipartite
    flow classes → parts: forward over an allowed edge without flow, backward over one with
    flow, ending at a part k with col[k] < cap[k]. Updates ``flow`` and ``col``."""
    from_class, from_part = {}, {c0: None}
    frontier = [c0]
    while frontier:
        nxt = []
        for c in frontier:
            for k in part_order[c]:
                if not allowed[c, k] or flow[c, k] or k in from_class:
                    continue
                from_class[k] = c
                if col[k] < cap[k]:
                    col[k] += 1
                    while True:  # flip the path's edges back to c0
                        c = from_class[k]
                        flow[c, k] = 1
                        if from_part[c] is None:
                            return True
                        k = from_part[c]
                        flow[c, k] = 0
                for c2 in np.flatnonzero(flow[:, k]):
                    if c2 not in from_part:
                        from_part[c2] = k
                        nxt.append(c2)
        frontier = nxt
    return False


def _stratified_sizes(counts, fractions, rng) -> np.ndarray:
    """Per-class part sizes m[c, k] (controlled rounding of the table t[c, k] = n_c·f_k).

    Every m[c, k] is ⌊t[c, k]⌋ or ⌈t[c, k]⌉, row c sums to n_c, and part k's total Σ_c m[c, k]
    is ⌊N·f_k⌋ or ⌈N·f_k⌉. Rounding each class on its own (largest remainders per row) can
    instead send every class's remainder to the same part: 100 classes of 3 with fractions
    0.8/0.1/0.1 gave 300/0/0. Method: start from the floors; the r_c = n_c − Σ_k ⌊t[c, k]⌋
    leftover units of class c go, at most one per part, to parts k with a fractional t[c, k],
    routed as a maximum flow classes → parts with part capacities ⌊s_k⌋, then ⌈s_k⌉
    (s_k = Σ_c frac t[c, k]). The fractional remainders are such a flow, so by flow
    integrality an integral one exists. Ties (class order, part order) are drawn from ``rng``.
    """
    counts = np.asarray(counts, np.int64)
    t = counts[:, None] * fractions[None, :]
    floor = np.floor(t + _TOL).astype(np.int64)
    frac = np.clip(t - floor, 0.0, None)
    allowed = frac > _TOL
    need = counts - floor.sum(axis=1)
    s = frac.sum(axis=0)
    flow = np.zeros(t.shape, np.int8)
    col = np.zeros(len(fractions), np.int64)
    part_order = [np.lexsort((rng.random(len(fractions)), -frac[c])) for c in range(len(t))]
    classes = rng.permutation(len(t))
    for cap in (np.floor(s + _TOL), np.ceil(s - _TOL)):
        for c in classes:
            while flow[c].sum() < need[c] and _route_unit(c, allowed, flow, col, cap, part_order):
                pass
    if (flow.sum(axis=1) != need).any():  # cannot happen (see above); never a silent bad split
        raise ConfigError("make_split: could not round the stratified part sizes")
    return floor + flow


@dataclass
class Split:
    """Named disjoint index arrays into a data set of ``n`` samples."""

    parts: dict[str, np.ndarray]
    n: int
    seed: int | None = None
    stratified: bool = False
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.parts = {k: np.asarray(v, np.int64) for k, v in self.parts.items()}
        every = np.concatenate(list(self.parts.values())) if self.parts else np.zeros(0, np.int64)
        if len(every) and (every.min() < 0 or every.max() >= self.n):
            raise ConfigError(f"Split: indices must lie in 0…{self.n - 1}")
        if len(np.unique(every)) != len(every):
            raise ConfigError("Split: the parts overlap (an index is in two parts)")

    def __getitem__(self, name) -> np.ndarray:
        return self.parts[name]

    def apply(self, dataset: Dataset) -> dict[str, Dataset]:
        """One Dataset per part (``split.apply(ds)["val"]``)."""
        if len(dataset) != self.n:
            raise ConfigError(f"Split: made for N={self.n} samples, the data set has {len(dataset)}")
        return {k: dataset.subset(v, f"{dataset.description} [{k}: {len(v)}]")
                for k, v in self.parts.items()}

    def to_json(self) -> dict:
        return {"n": self.n, "seed": self.seed, "stratified": self.stratified, "meta": self.meta,
                "parts": {k: v.tolist() for k, v in self.parts.items()}}

    def save(self, path) -> None:
        """Write the split as JSON (indices as lists of integers)."""
        Path(path).write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path) -> Split:
        """Read a split written by :meth:`save`."""
        try:
            d = json.loads(Path(path).read_text())
            return cls({k: np.asarray(v, np.int64) for k, v in d["parts"].items()}, int(d["n"]),
                       d.get("seed"), bool(d.get("stratified", False)), d.get("meta", {}))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ConfigError) as e:
            raise DataError(f"{path}: not a saved split ({type(e).__name__}: {e})") from None


def make_split(y_or_n, fractions=None, *, seed: int = 0, stratify: bool | None = None) -> Split:
    """A seeded split of N samples into parts with the given fractions.

    ``y_or_n``: the labels y (or keypoints, or N). ``fractions``: dict name → fraction (they
    are normalised to sum to 1); default ``{"train": 0.8, "val": 0.1, "test": 0.1}``.
    ``stratify``: default True when y is a 1-D integer label array. Within each part indices
    are sorted. The same (y, fractions, seed) always gives the same split.
    """
    fractions = fractions or {"train": 0.8, "val": 0.1, "test": 0.1}
    names = list(fractions)
    f = np.asarray([fractions[k] for k in names], np.float64)
    if (f < 0).any() or f.sum() <= 0:
        raise ConfigError(f"make_split: fractions must be ≥ 0 with a positive sum, got {fractions}")
    f = f / f.sum()
    if np.isscalar(y_or_n):
        n, y = int(y_or_n), None
    else:
        y = np.asarray(y_or_n)
        n = len(y)
    is_labels = y is not None and y.ndim == 1 and np.issubdtype(y.dtype, np.integer)
    if stratify is None:
        stratify = is_labels
    if stratify and not is_labels:
        raise ConfigError("make_split: stratify needs 1-D integer class labels")
    rng = np.random.default_rng(seed)
    if stratify:
        groups = [np.flatnonzero(y == c) for c in np.unique(y)]
        sizes = _stratified_sizes([len(g) for g in groups], f, rng)
    else:
        groups, sizes = [np.arange(n)], _allocate(n, f)[None, :]
    chunks = {k: [] for k in names}
    for g, size in zip(groups, sizes, strict=True):
        g = rng.permutation(g)
        bounds = np.cumsum(size)[:-1]
        for k, part in zip(names, np.split(g, bounds), strict=True):
            chunks[k].append(part)
    parts = {k: np.sort(np.concatenate(v)) if v else np.zeros(0, np.int64)
             for k, v in chunks.items()}
    return Split(parts, n, seed, bool(stratify))


def train_val_split(dataset: Dataset, val_fraction: float = 0.1, *, seed: int = 0):
    """(train, val) Datasets: a seeded, stratified (for class labels) hold-out of the training set."""
    split = make_split(dataset.y, {"train": 1 - val_fraction, "val": val_fraction}, seed=seed)
    parts = split.apply(dataset)
    return parts["train"], parts["val"]
