"""Loaders of the real data sets, and the one entry point :func:`load`.

``load(name, split="train", *, data_dir=None, **options) -> Dataset``

=================== =============== ==================================================== ======
name                splits          x, y                                                 options
=================== =============== ==================================================== ======
``mnist``           train, test     uint8 N×28×28×1; class 0…9                           verify
``fashion_mnist``   train, test     uint8 N×28×28×1; class 0…9                           verify
``cifar10``         train, test     uint8 N×32×32×3; class 0…9                           verify
``facial_keypoints`` train, test    uint8 N×96×96×1; N×15×2 keypoints (NaN = missing)    verify
``faces68``         train, test     uint8 N×96×96×1; N×68×2 or N×15×2 keypoints          keypoints, verify
``adrenal3d``       train, val, test uint8 N×T×H×W×1 (28³ or 64³); class 0…1            size, verify
=================== =============== ==================================================== ======

Each loader reads the canonical format when it is in the data directory, else the compact
``.npz`` of ``../shared/data``:

- ``mnist/`` and ``fashion_mnist/``: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
- ``cifar-10-batches-bin/``: ``data_batch_1.bin`` … ``data_batch_5.bin``, ``test_batch.bin``.
- ``facial_keypoints/``: Kaggle's ``training.csv``, ``test.csv``.
- ``medmnist/``: MedMNIST's ``adrenalmnist3d.npz`` / ``adrenalmnist3d_64.npz``.

With ``verify=True`` (the default) a loader checks the file's published checksum (md5 of the
uncompressed IDX and CIFAR files, MedMNIST's md5, sha256 of the shared npz) and the expected
sample count; it always checks shapes and label ranges. Problems raise
:class:`~convscope.data.errors.DataError` naming the file.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable

import numpy as np

from convscope.data import formats
from convscope.data.dataset import Dataset, check_digest, find_first
from convscope.data.errors import DataError
from convscope.data.keypoints import IBUG68_NAMES, KAGGLE15_NAMES, kaggle15_from_ibug68
from convscope.data.sources import MEDMNIST_MD5, RAW_MD5, SHARED_SHA256
from convscope.errors import ConfigError, describe_shape

DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")

# expected sample counts per split (checked when verify=True)
COUNTS = {
    "mnist": {"train": 60000, "test": 10000},
    "fashion_mnist": {"train": 60000, "test": 10000},
    "cifar10": {"train": 50000, "test": 10000},
    "facial_keypoints": {"train": 7049, "test": 1783},
    "faces68": {"train": 3462, "test": 770},
    "adrenal3d": {"train": 1188, "val": 98, "test": 298},
}


def _check_split(name, split):
    if split not in COUNTS[name]:
        raise ConfigError(f"{name}: the splits are {', '.join(COUNTS[name])}, not {split!r}")


def _check_count(name, split, n, path, verify):
    expected = COUNTS[name][split]
    if verify and n != expected:
        raise DataError(f"{path}: holds {n} samples, {name} {split} has {expected}: a truncated "
                        "or different file (pass verify=False to load it anyway)")


def _check_labels(y, n_classes, path, n):
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{path}: labels have shape {y.shape}, expected ({n},) to match the images")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"{path}: labels range {y.min()}…{y.max()}, expected 0…{n_classes - 1}")
    return y.astype(np.int64)


def _check_images(x, shape, path):
    if x.shape[1:] != shape:
        raise DataError(f"{path}: images are {describe_shape(x.shape)}, expected N×"
                        f"{'×'.join(map(str, shape))}")
    return x


def _shared_npz(path, keys, verify):
    if verify and path.name in SHARED_SHA256:
        check_digest(path, SHARED_SHA256[path.name])
    return formats.read_npz(path, keys)


# ------------------------------------------------------------------ MNIST, Fashion-MNIST

def _idx_split(name, split, data_dir, verify, classes, title):
    _check_split(name, split)
    prefix = {"train": "train", "test": "t10k"}[split]
    stems = (f"{name}/{prefix}-images-idx3-ubyte", f"{name}/{prefix}-labels-idx1-ubyte")
    which, paths = find_first(name, [tuple(s + ".gz" for s in stems), stems, (f"{name}.npz",)],
                              data_dir)
    if which < 2:
        arrays = []
        for stem, path in zip(stems, paths, strict=True):
            raw = formats.read_bytes(path)
            if verify:
                check_digest(path, RAW_MD5[stem], "md5", hashlib.md5(raw).hexdigest())
            arrays.append(formats.parse_idx(raw, path))
        (x, y), (source, label_source) = arrays, paths
    else:
        source = label_source = paths[0]
        d = _shared_npz(source, [f"x_{split}", f"y_{split}"], verify)
        x, y = d[f"x_{split}"], d[f"y_{split}"]
    x = _check_images(x, (28, 28), source)
    y = _check_labels(y, 10, label_source, len(x))
    _check_count(name, split, len(x), source, verify)
    desc = f"{title} {split}: {len(x)} gray 28×28 images, 10 classes, from {source.name}"
    return Dataset(x[..., None], y, classes, desc)


def mnist(split="train", data_dir=None, *, verify=True) -> Dataset:
    """MNIST handwritten digits (LeCun & Cortes): 60000 train / 10000 test, 28×28×1, labels 0–9."""
    return _idx_split("mnist", split, data_dir, verify, DIGITS, "MNIST")


def fashion_mnist(split="train", data_dir=None, *, verify=True) -> Dataset:
    """Fashion-MNIST (Zalando): 60000 train / 10000 test, 28×28×1, 10 clothing classes."""
    return _idx_split("fashion_mnist", split, data_dir, verify, FASHION_CLASSES, "Fashion-MNIST")


# ------------------------------------------------------------------ CIFAR-10

def cifar10(split="train", data_dir=None, *, verify=True) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009): 50000 train / 10000 test RGB 32×32×3 images, 10 classes.

    Reads the binary version (never the Python-object one); the shared npz files hold NCHW
    and are converted to channels-last N×H×W×D.
    """
    _check_split("cifar10", split)
    stems = ([f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train"
             else ["test_batch.bin"])
    npz = (("cifar10_train_1.npz", "cifar10_train_2.npz") if split == "train"
           else ("cifar10_test.npz",))
    which, paths = find_first("cifar10", [tuple(f"cifar-10-batches-bin/{s}" for s in stems), npz],
                              data_dir)
    xs, ys = [], []
    for path in paths:
        if which == 0:
            if verify:
                check_digest(path, RAW_MD5[f"cifar-10-batches-bin/{path.name}"], "md5")
            x, y = formats.read_cifar_binary(path)
        else:
            d = _shared_npz(path, ["x", "y"], verify)
            x = _check_images(d["x"], (3, 32, 32), path).transpose(0, 2, 3, 1)
            y = _check_labels(d["y"], 10, path, len(x))
        xs.append(x)
        ys.append(y)
    x, y = np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)
    names = CIFAR10_CLASSES
    meta = paths[0].parent / "batches.meta.txt"
    if which == 0 and meta.is_file():
        names = tuple(s for s in meta.read_text().split() if s)
    _check_count("cifar10", split, len(x), paths[0], verify)
    source = ", ".join(p.name for p in paths)
    desc = f"CIFAR-10 {split}: {len(x)} RGB 32×32 images, 10 classes, from {source}"
    return Dataset(x, y, names, desc)


# ------------------------------------------------------------------ faces

def facial_keypoints(split="train", data_dir=None, *, verify=True) -> Dataset:
    """Kaggle Facial Keypoints Detection: 96×96×1 faces, 15 keypoints (NaN where missing).

    ``training.csv`` has 7049 faces, many with only 4 of the 15 keypoints; ``test.csv`` has
    1783 faces and no keypoints (y all NaN). Keypoint names and the left/right convention
    (the subject's) are those of :data:`~convscope.data.keypoints.KAGGLE15_NAMES`.
    """
    _check_split("facial_keypoints", split)
    fname = {"train": "training.csv", "test": "test.csv"}[split]
    _, (path,) = find_first("facial_keypoints", [(f"facial_keypoints/{fname}",)], data_dir)
    x, y = formats.read_kaggle_csv(path, KAGGLE15_NAMES)
    _check_count("facial_keypoints", split, len(x), path, verify)
    missing = int(np.isnan(y[..., 0]).sum())
    desc = (f"Kaggle facial keypoints {split}: {len(x)} gray 96×96 faces, 15 keypoints "
            f"({missing} missing), from {path.name}")
    return Dataset(x, y, KAGGLE15_NAMES, desc)


def faces68(split="train", data_dir=None, *, keypoints="ibug68", verify=True) -> Dataset:
    """96×96×1 gray faces with 68 iBUG landmarks (Udacity/YouTube Faces), from faces68_96.npz.

    ``keypoints="ibug68"`` gives y N×68×2 named by IBUG68_NAMES; ``keypoints="kaggle15"``
    derives Kaggle's 15 keypoints (see :func:`~convscope.data.keypoints.kaggle15_from_ibug68`),
    so the lecture's facial-keypoints networks run on real faces.
    """
    _check_split("faces68", split)
    if keypoints not in ("ibug68", "kaggle15"):
        raise ConfigError(f"faces68: keypoints must be 'ibug68' or 'kaggle15', got {keypoints!r}")
    _, (path,) = find_first("faces68", [("faces68_96.npz",)], data_dir)
    d = _shared_npz(path, [f"x_{split}", f"keypoints_{split}"], verify)
    x = _check_images(d[f"x_{split}"], (96, 96), path)
    y = d[f"keypoints_{split}"]
    if y.shape != (len(x), 68, 2):
        raise DataError(f"{path}: keypoints_{split} has shape {y.shape}, expected ({len(x)}, 68, 2)")
    _check_count("faces68", split, len(x), path, verify)
    names = IBUG68_NAMES
    if keypoints == "kaggle15":
        y, names = kaggle15_from_ibug68(y), KAGGLE15_NAMES
    desc = (f"faces68 {split}: {len(x)} gray 96×96 faces, {len(names)} keypoints "
            f"({keypoints}), from {path.name}")
    return Dataset(x[..., None], y.astype(np.float32), names, desc)


# ------------------------------------------------------------------ 3D

def adrenal3d(split="train", data_dir=None, *, size=28, verify=True) -> Dataset:
    """AdrenalMNIST3D (MedMNIST v2): adrenal-gland shape masks, N×T×H×W×1 with T=H=W=size.

    Classes 0 normal, 1 hyperplasia; 1188 train / 98 val / 298 test volumes. Reads MedMNIST's
    ``medmnist/adrenalmnist3d[_64].npz`` (keys ``train_images``, ``train_labels``) or the
    shared ``adrenalmnist3d_{28,64}.npz`` (keys ``x_train``, ``y_train``).
    """
    _check_split("adrenal3d", split)
    if size not in (28, 64):
        raise ConfigError(f"adrenal3d: size must be 28 or 64, got {size!r}")
    canonical = "medmnist/adrenalmnist3d.npz" if size == 28 else "medmnist/adrenalmnist3d_64.npz"
    which, (path,) = find_first("adrenal3d", [(canonical,), (f"adrenalmnist3d_{size}.npz",)],
                                data_dir)
    if which == 0:
        if verify:
            check_digest(path, MEDMNIST_MD5[canonical], "md5")
        d = formats.read_npz(path, [f"{split}_images", f"{split}_labels"])
        x, y = d[f"{split}_images"], d[f"{split}_labels"].reshape(-1)
    else:
        d = _shared_npz(path, [f"x_{split}", f"y_{split}"], verify)
        x, y = d[f"x_{split}"], d[f"y_{split}"]
    x = _check_images(x, (size, size, size), path)
    y = _check_labels(y, 2, path, len(x))
    _check_count("adrenal3d", split, len(x), path, verify)
    desc = (f"AdrenalMNIST3D {split}: {len(x)} volumes {size}×{size}×{size}×1, 2 classes, "
            f"from {path.name}")
    return Dataset(x[..., None], y, ("normal", "hyperplasia"), desc)


# ------------------------------------------------------------------ entry point

LOADERS: dict[str, Callable[..., Dataset]] = {
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "cifar10": cifar10,
    "facial_keypoints": facial_keypoints,
    "faces68": faces68,
    "adrenal3d": adrenal3d,
}


def load(name: str, split: str = "train", *, data_dir=None, **options) -> Dataset:
    """Load split ``split`` of data set ``name`` from the data directory (see module docstring).

    ``data_dir``: explicit folder; else $CONVSCOPE_DATA; else the user cache dir. ``options``
    are the loader's keyword options (``verify``, ``keypoints``, ``size``).
    """
    if name not in LOADERS:
        raise ConfigError(f"load: unknown data set {name!r}; known: {', '.join(LOADERS)}")
    loader = LOADERS[name]
    allowed = [p for p in inspect.signature(loader).parameters if p not in ("split", "data_dir")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"load: {name} has no option {unknown[0]!r}; its options are "
                          f"{', '.join(allowed)}")
    return loader(split, data_dir, **options)
