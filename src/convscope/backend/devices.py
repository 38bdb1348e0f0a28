"""Where arrays live: "numpy" (NumPy arrays, the default), "cpu" (PyTorch tensors on the CPU) or
"cuda" / "cuda:N" (PyTorch tensors on a GPU). The ops follow their inputs; a network, its
optimiser state and its data batches are moved with :func:`to_device`; checkpoints always hold
NumPy arrays, so they load on any device.
"""

from __future__ import annotations

import functools

import numpy as np

from convscope.backend import is_torch_array
from convscope.errors import ConfigError

NUMPY = "numpy"


def check_device(device: str) -> str:
    """The device name, checked: 'numpy', 'cpu', 'cuda' or 'cuda:N' (with PyTorch installed and,
    for CUDA, a GPU visible), else a ConfigError saying what is missing."""
    device = str(device)
    if device == NUMPY:
        return device
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"unknown device {device!r}; use 'numpy', 'cpu' (PyTorch on the CPU), "
                          f"'cuda' or 'cuda:N'")
    try:
        import torch
    except ImportError:
        raise ConfigError(f"device {device!r} needs PyTorch: pip install 'convscope[torch]'") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: PyTorch sees no CUDA GPU here; use 'numpy' or 'cpu'")
    return device


def device_of(a) -> str:
    """'numpy' for a NumPy array (or anything that is not a tensor), else the tensor's device."""
    return str(a.device) if is_torch_array(a) else NUMPY


def to_device(a, device: str, dtype=None):
    """`a` (array, tensor or scalar) on `device`, cast to the NumPy `dtype` when one is given."""
    if device == NUMPY:
        a = to_numpy(a)
        return a if dtype is None else a.astype(dtype, copy=False)
    import torch

    if not is_torch_array(a):
        a = torch.from_numpy(np.ascontiguousarray(a))
    # one call (a no-op when a is there already): a network's feed asks on every batch
    return a.to(device) if dtype is None else a.to(device, torch_dtype(dtype))


def copy_array(a):
    """A copy of an array or tensor, on its own device."""
    return a.detach().clone() if is_torch_array(a) else np.array(a, copy=True)


def to_numpy(a) -> np.ndarray:
    """A NumPy array of `a` (a copy to the host for a tensor)."""
    if is_torch_array(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


@functools.lru_cache(maxsize=32)
def torch_dtype(dtype):
    """The PyTorch dtype of a NumPy dtype (float32 → torch.float32, …); looked up once per dtype
    (a network's feed asks on every batch)."""
    import torch

    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def numpy_dtype(a) -> np.dtype:
    """The NumPy dtype of an array or tensor (torch.float32 → float32)."""
    return np.dtype(str(a.dtype).removeprefix("torch."))
