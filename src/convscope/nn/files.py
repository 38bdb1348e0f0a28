"""Files that hold data only: safetensors for arrays (with JSON in the metadata), written atomically;
nothing read back can run code."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load, save

from convscope.errors import ConfigError


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace, so
    a crash leaves either the old file or the new one, never a broken one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide run files from others
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_safetensors(path, arrays, metadata) -> None:
    """Arrays (contiguous copies) and string metadata into one safetensors file, atomically."""
    tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    atomic_write(path, save(tensors, metadata=dict(metadata)))


def read_safetensors(path):
    """(arrays, metadata) of a safetensors file, or a ConfigError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        arrays = load(data)
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + n]).get("__metadata__", {})
    except Exception as e:  # noqa: BLE001 (any parse failure is a bad file)
        raise ConfigError(f"{path} is not a valid safetensors file: {e}") from None
    return arrays, meta
