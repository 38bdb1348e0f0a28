"""The :class:`Dataset` record, the data directory, and checksums.

A data set is the lecture's input layer x ∈ R^{H×W×D×N}, stored channels-last as everywhere in
convscope: ``x`` is N×H×W×D for 2D images (D = 1 gray, 3 RGB, 3 slices for 2.5D, 4 for RGB-D)
and N×T×H×W×D for 3D volumes.

Data directory, first match wins: an explicit ``data_dir`` argument (``--data-dir`` on the
command line) > the environment variable ``CONVSCOPE_DATA`` > the user cache directory of
:mod:`platformdirs` (``~/.cache/convscope`` on Linux).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convscope.data.errors import DataError
from convscope.data.sources import MANUAL
from convscope.errors import ShapeError, describe_shape

ENV_VAR = "CONVSCOPE_DATA"


@dataclass
class Dataset:
    """One split of a data set.

    Attributes:
        x: images, uint8 or float32, N×H×W×D (2D) or N×T×H×W×D (3D volumes).
        y: targets: class indices (int64, shape N), or keypoints (float32, N×K×2) holding (x, y)
            pixel coordinates with NaN for a missing point. Pixel (i, j) = (row, column) has its
            centre at (x, y) = (j, i).
        names: the class names (``names[y[n]]`` is sample n's class) or the K keypoint names.
        description: one line saying what this is (name, split, N and shape, source file).
    """

    x: np.ndarray
    y: np.ndarray
    names: tuple[str, ...]
    description: str

    def __post_init__(self):
        self.names = tuple(str(s) for s in self.names)
        if self.x.ndim not in (4, 5):
            raise ShapeError(
                f"Dataset: x must be N×H×W×D or N×T×H×W×D, got {describe_shape(self.x.shape)}"
            )
        if len(self.y) != len(self.x):
            raise ShapeError(
                f"Dataset: x has N={len(self.x)} samples but y has {len(self.y)}"
            )

    def __len__(self) -> int:
        return len(self.x)

    @property
    def is_keypoints(self) -> bool:
        """True when ``y`` holds keypoints (N×K×2) rather than class indices."""
        return self.y.ndim == 3

    def subset(self, index, description: str | None = None) -> Dataset:
        """The samples at ``index`` (an index array or a boolean mask), same names."""
        index = np.asarray(index)
        return Dataset(self.x[index], self.y[index], self.names,
                       description or f"{self.description} [subset of {len(self.x[index])}]")

    def __repr__(self) -> str:
        return (f"Dataset(x={describe_shape(self.x.shape)} {self.x.dtype}, "
                f"y={self.y.shape} {self.y.dtype}, {len(self.names)} names: {self.description})")


def resolve_data_dir(data_dir=None) -> Path:
    """The data directory: ``data_dir`` if given, else $CONVSCOPE_DATA, else the user cache dir."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("convscope"))


def _where(data_dir) -> str:
    """How the data directory was chosen, for error messages."""
    if data_dir is not None:
        return "the data_dir argument"
    if os.environ.get(ENV_VAR):
        return f"${ENV_VAR}"
    return f"the default cache dir (set ${ENV_VAR} or pass data_dir to change it)"


def find_first(dataset: str, candidates, data_dir=None):
    """The first existing file among ``candidates`` (lists of names relative to the data dir).

    ``candidates`` is a sequence of alternatives; each alternative is a tuple of file names
    that must all exist (e.g. the image and the label file of one IDX split). Returns the
    index of the first complete alternative and its paths. Raises :class:`DataError` naming
    every file looked for, where, and how to get them.
    """
    root = resolve_data_dir(data_dir)
    for k, names in enumerate(candidates):
        paths = [root / n for n in names]
        if all(p.is_file() for p in paths):
            return k, paths
    wanted = " or ".join("(" + " + ".join(names) + ")" for names in candidates)
    get = (f"Get them by hand: {MANUAL[dataset]}" if dataset in MANUAL  # no automatic download
           else f"Download them with `convscope data fetch {dataset}`")
    raise DataError(
        f"{dataset}: data files not found. Looked for {wanted} in {root} (from {_where(data_dir)}). "
        f"{get}, or point data_dir / ${ENV_VAR} at a folder that holds them."
    )


def file_digest(path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (``algorithm``: sha256 or md5)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def check_digest(path, expected: str, algorithm: str = "sha256", digest: str | None = None):
    """Raise :class:`DataError` unless the file's (or the given) digest equals ``expected``."""
    got = digest if digest is not None else file_digest(path, algorithm)
    if got != expected:
        raise DataError(
            f"{path}: {algorithm} is {got}, expected {expected}: the file is corrupt, truncated "
            "or a different version. Delete it and download it again "
            "(or pass verify=False to load it anyway)."
        )
