"""``fetch(name, data_dir=None)``: download a data set's canonical files, checksum-verified.

Used by ``convscope data fetch NAME``; never called by the tests (they read ``../shared/data``).
Files go to the data directory (see :func:`~convscope.data.dataset.resolve_data_dir`) under
the paths the loaders look for. A file already present with the right checksum is not
downloaded again. A download is written to ``<file>.part`` and renamed only once its md5
matches the published one; a mismatch raises DataError and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import tarfile
import urllib.request
from pathlib import Path

from convscope.data.dataset import file_digest, resolve_data_dir
from convscope.data.errors import DataError
from convscope.data.sources import CANONICAL, MANUAL
from convscope.errors import ConfigError


def _take_back(part: Path, new_folders) -> None:
    """After a failed download: remove the partial file and the folders made for it (innermost
    first), so that a failure leaves the data directory as it was."""
    part.unlink(missing_ok=True)
    for folder in new_folders:
        folder.rmdir()


def _download(url: str, dest: Path, algorithm: str, expected: str) -> None:
    part = dest.with_name(dest.name + ".part")
    new_folders = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.new(algorithm)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            while chunk := r.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
    except OSError as e:
        _take_back(part, new_folders)
        raise DataError(f"{dest.name}: download from {url} failed ({e}); check the network, "
                        f"or download it by hand into {dest.parent}") from None
    if h.hexdigest() != expected:
        _take_back(part, new_folders)
        raise DataError(f"{dest.name}: downloaded from {url} with {algorithm} {h.hexdigest()}, "
                        f"expected {expected}; the mirror serves a different file")
    part.replace(dest)


def _extract_tar(archive: Path, root: Path) -> list[Path]:
    """Extract a tar.gz under ``root``, refusing members that would land outside it."""
    out = []
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            target = (root / m.name).resolve()
            if not target.is_relative_to(root.resolve()) or not (m.isfile() or m.isdir()):
                raise DataError(f"{archive}: unsafe member {m.name!r}; not extracting")
            if m.isfile():
                out.append(root / m.name)
        if hasattr(tarfile, "data_filter"):  # Python ≥ 3.10.12 / 3.11.4
            tar.extractall(root, filter="data")
        else:  # members were checked above
            tar.extractall(root)
    return sorted(out)


def fetch(name: str, data_dir=None) -> list[Path]:
    """Download the canonical files of data set ``name``; returns the paths of the data files.

    Known: mnist, fashion_mnist (IDX .gz), cifar10 (binary version, extracted to
    ``cifar-10-batches-bin/``), adrenal3d (MedMNIST npz, 28³ and 64³). ``facial_keypoints``
    (needs a Kaggle account) and ``faces68`` raise DataError explaining how to get them.
    """
    if name in MANUAL:
        raise DataError(f"{name}: cannot be downloaded automatically: {MANUAL[name]}")
    if name not in CANONICAL:
        raise ConfigError(f"fetch: unknown data set {name!r}; known: "
                          f"{', '.join(list(CANONICAL) + list(MANUAL))}")
    root = resolve_data_dir(data_dir)
    paths = []
    for rel, url, algorithm, digest in CANONICAL[name]:
        dest = root / rel
        if not (dest.is_file() and file_digest(dest, algorithm) == digest):
            _download(url, dest, algorithm, digest)
        paths.append(dest)
    if name == "cifar10":
        return _extract_tar(paths[0], root)
    return paths
