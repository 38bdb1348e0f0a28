"""Readers and writers of the canonical file formats; none can run code from the file it reads.

- IDX (MNIST, Fashion-MNIST): a 4-byte magic number ``0x00 0x00 T R`` (T the element type,
  0x08 = uint8; R the number of axes), R big-endian uint32 sizes, then the elements in C order.
  Files may be gzip-compressed (``.gz``), as distributed.
- CIFAR-10 binary version (``data_batch_1.bin`` … ``test_batch.bin``): 10000 records of
  1 + 3072 bytes: the label, then the 32×32 red, green and blue planes row by row (CHW).
- Kaggle "Facial Keypoints Detection" CSV (``training.csv``, ``test.csv``): a header, then one
  row per face: 30 columns ``<keypoint>_x``, ``<keypoint>_y`` (empty = missing) and an
  ``Image`` column of 96·96 = 9216 space-separated grey levels; ``test.csv`` has ``ImageId``
  and ``Image`` only.
- ``.npz`` archives, read with ``allow_pickle=False``.

Every reader raises :class:`~convscope.data.errors.DataError` naming the file and what is
wrong with it (truncated, wrong magic number, wrong pixel count, …).
"""

from __future__ import annotations

import csv
import gzip
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from convscope.data.errors import DataError

# ---------------------------------------------------------------- IDX

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}


def read_bytes(path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic 1f 8b."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: the gzip stream is damaged or truncated ({e}). Download the file again."
        ) from None


def parse_idx(raw: bytes, path="<bytes>") -> np.ndarray:
    """Decode the bytes of an IDX file to an array of its native shape and type."""
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file: {len(raw)} bytes, no 4-byte magic number")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_TYPES or ndim == 0:
        raise DataError(
            f"{path}: wrong magic number 0x{raw[:4].hex()}: an IDX file starts with 0x0000 "
            "then a type code (0x08 uint8 … 0x0e float64) and the number of axes "
            "(e.g. 0x00000803 for images, 0x00000801 for labels). Is this an IDX file?"
        )
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"{path}: truncated IDX header: needs {head} bytes, file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:head])
    dtype = np.dtype(_IDX_TYPES[code])
    need = math.prod(shape) * dtype.itemsize  # Python ints: a corrupt header cannot overflow
    if len(raw) - head != need:
        what = "truncated" if len(raw) - head < need else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: the header announces {'×'.join(map(str, shape))} elements = "
            f"{need} bytes of data, the file holds {len(raw) - head}. Download it again."
        )
    return np.frombuffer(raw, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzipped)."""
    return parse_idx(read_bytes(path), path)


def idx_bytes(array) -> bytes:
    """The IDX encoding of ``array`` (uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    head = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    return head + array.astype(_IDX_TYPES[code]).tobytes()


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    data = idx_bytes(array)
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    Path(path).write_bytes(data)


# ---------------------------------------------------------------- CIFAR-10 binary

CIFAR_RECORD = 1 + 3 * 32 * 32


def read_cifar_binary(path, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch: x uint8 N×32×32×3 (channels-last), y int64 N."""
    raw = np.fromfile(path, np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise DataError(
            f"{path}: {raw.size} bytes is not a whole number of CIFAR-10 records of "
            f"{CIFAR_RECORD} bytes (1 label + 3×32×32 pixels): truncated or not a CIFAR "
            "binary batch. Download cifar-10-binary.tar.gz again."
        )
    rec = raw.reshape(-1, CIFAR_RECORD)
    y = rec[:, 0].astype(np.int64)
    if y.max() >= n_classes:
        bad = int(np.argmax(y >= n_classes))
        raise DataError(
            f"{path}: record {bad} has label {y[bad]}, expected 0…{n_classes - 1}: "
            "not a CIFAR-10 binary batch (CIFAR-100 has 2 label bytes)."
        )
    x = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y


def write_cifar_binary(path, x, y) -> None:
    """Write x (N×32×32×3 uint8) and y (N labels < 256) as a CIFAR-10 binary batch."""
    x = np.asarray(x, np.uint8).transpose(0, 3, 1, 2).reshape(len(x), -1)
    rec = np.concatenate([np.asarray(y, np.uint8)[:, None], x], axis=1)
    rec.tofile(path)


# ---------------------------------------------------------------- Kaggle facial keypoints CSV

KAGGLE_IMAGE_SIDE = 96


def read_kaggle_csv(path, names) -> tuple[np.ndarray, np.ndarray]:
    """Read a Kaggle facial-keypoints CSV.

    Returns x uint8 N×96×96×1 and y float32 N×K×2 with the (x, y) of keypoint ``names[k]``
    from the columns ``<name>_x``, ``<name>_y``; empty cells, and files without keypoint
    columns (``test.csv``), give NaN, never 0.
    """
    path = Path(path)
    npix = KAGGLE_IMAGE_SIDE**2
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or "Image" not in header:
            raise DataError(f"{path}: no header with an 'Image' column: not a Kaggle "
                            "facial-keypoints CSV (training.csv / test.csv)")
        col = {c: i for i, c in enumerate(header)}
        kcols = [(col.get(f"{n}_x"), col.get(f"{n}_y")) for n in names]
        images, points = [], []
        for row in reader:
            line = reader.line_num
            if len(row) != len(header):
                raise DataError(f"{path}: line {line} has {len(row)} cells, the header has "
                                f"{len(header)}")
            images.append(_kaggle_pixels(row[col["Image"]], npix, path, line))
            points.append([[_kaggle_cell(row, c, path, line) for c in pair] for pair in kcols])
    if not images:
        raise DataError(f"{path}: the CSV has a header but no rows")
    x = np.stack(images).reshape(-1, KAGGLE_IMAGE_SIDE, KAGGLE_IMAGE_SIDE, 1)
    return x, np.asarray(points, np.float32)


def _kaggle_pixels(cell: str, npix: int, path, line: int) -> np.ndarray:
    parts = cell.split()
    if len(parts) != npix:
        raise DataError(f"{path}: line {line}: the Image cell has {len(parts)} pixels, expected "
                        f"96×96 = {npix}. The row is truncated or from another data set.")
    try:
        pixels = np.array(parts, dtype=np.int64)
    except ValueError:
        raise DataError(f"{path}: line {line}: the Image cell holds a non-integer value") from None
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path}: line {line}: grey levels must be 0…255, found "
                        f"{pixels.min()}…{pixels.max()}")
    return pixels.astype(np.uint8)


def _kaggle_cell(row, c, path, line) -> float:
    if c is None or row[c].strip() == "":
        return np.nan
    try:
        return float(row[c])
    except ValueError:
        raise DataError(f"{path}: line {line}: keypoint cell {row[c]!r} is not a number") from None


def write_kaggle_csv(path, x, y, names) -> None:
    """Write faces as a Kaggle ``training.csv``: 96×96 uint8 images x, keypoints y (N×K×2).

    NaN keypoint coordinates are written as empty cells, as in Kaggle's file.
    """
    x = np.asarray(x, np.uint8).reshape(len(x), -1)
    header = [f"{n}_{a}" for n in names for a in "xy"] + ["Image"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for img, pts in zip(x, np.asarray(y, np.float64), strict=True):
            cells = ["" if np.isnan(v) else repr(float(v)) for v in pts.reshape(-1)]
            w.writerow(cells + [" ".join(map(str, img.tolist()))])


# ---------------------------------------------------------------- npz

def read_npz(path, keys=None) -> dict[str, np.ndarray]:
    """Read the arrays ``keys`` (default: all) from an ``.npz`` archive, ``allow_pickle=False``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files) if keys is None else keys
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(f"{path}: the archive has no array {missing[0]!r} (it holds "
                                f"{', '.join(z.files)}): a different or outdated file")
            return {k: z[k] for k in keys}
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e}); download it again") from None
    except ValueError as e:
        if str(e).startswith("Object arrays"):  # NumPy refuses an object array without unpickling it
            raise DataError(f"{path}: holds Python objects, not numeric arrays; convscope never loads "
                            f"objects from a file (loading them can run code): save plain numeric "
                            f"arrays") from None
        raise DataError(f"{path}: not a readable .npz archive ({e}); download it again") from None
