"""Array-namespace dispatch and the few heavy kernels per backend.

Element-wise code in :mod:`convscope.ops` is written once against the namespace of its input
(`array_api_compat.array_namespace`); only convolution and pooling differ per backend and are taken
from :func:`kernels` (NumPy here; PyTorch tensors use PyTorch's own operators).
"""

from __future__ import annotations

import sys
from types import ModuleType

from array_api_compat import array_namespace, is_numpy_array, is_torch_array

from convscope.backend.memory import keep_freed_memory
from convscope.backend.parallel import one_blas_thread
from convscope.errors import ConfigError

FREED_MEMORY_KEPT = keep_freed_memory()  # see convscope.backend.memory: why, and how to opt out
ONE_BLAS_THREAD = one_blas_thread()  # see convscope.backend.parallel: why, and how to opt out

__all__ = [
    "array_namespace", "asarray_like", "can_inspect_values", "capturing", "is_numpy_array",
    "is_torch_array", "kernels",
]


def kernels(x) -> ModuleType:
    """The kernel module for x's array type: NumPy arrays or PyTorch tensors (looked up by type
    after the first call: it is asked several times per layer and step)."""
    module = _KERNELS_BY_TYPE.get(type(x))
    if module is None:
        module = _KERNELS_BY_TYPE[type(x)] = _kernels_for(x)
    return module


_KERNELS_BY_TYPE: dict[type, ModuleType] = {}


def _kernels_for(x) -> ModuleType:
    if is_torch_array(x):
        from convscope.backend import torch_kernels

        return torch_kernels
    if is_numpy_array(x):
        from convscope.backend import numpy_kernels

        return numpy_kernels
    raise ConfigError(
        f"convscope ops take NumPy arrays or PyTorch tensors, got {type(x).__name__}; "
        f"convert with numpy.asarray(x)"
    )


def asarray_like(a, like):
    """NumPy data `a` (a dropout mask, labels) as the array type and device of `like`."""
    if is_torch_array(like):
        import torch

        return torch.as_tensor(a, device=like.device)
    return a


def can_inspect_values(x) -> bool:
    """False for CUDA tensors: reading a value (a label range, a NaN check) makes the host wait for
    the GPU, a stall in every step (and an error while a CUDA graph is captured); such checks run
    on NumPy arrays and CPU tensors only."""
    return not (is_torch_array(x) and x.is_cuda)


def capturing() -> bool:
    """True while a CUDA graph is being recorded on the current stream (nothing may then be read
    back to the host); False without PyTorch or CUDA."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available()
                and torch.cuda.is_current_stream_capturing())
