"""The heavy kernels on PyTorch tensors (CPU or CUDA): PyTorch's operators, never its autograd.

convscope's tensors are channels-last (N×H×W×D); PyTorch's convolution and pooling take NCHW, so
each kernel hands them a permuted view, which is an NCHW tensor in PyTorch's channels_last memory
format: cuDNN and oneDNN run it natively and return channels_last results, permuted back without a
copy. The derivatives are PyTorch's backward kernels called directly
(`aten.convolution_backward`, `aten.max_pool2d_with_indices_backward`, …), as the hand-written
backward of :mod:`convscope.ops` asks for them; no graph is recorded.

Same signatures as :mod:`convscope.backend.numpy_kernels`: stride and dilate one int per spatial
axis, pads ((before, after), ...) per spatial axis.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

from convscope.backend.numpy_kernels import window_counts


def to_torch_layout(x: torch.Tensor) -> torch.Tensor:
    """N×H×W×D → the N×D×H×W view (channels_last memory format); no copy."""
    return x.permute(0, x.ndim - 1, *range(1, x.ndim - 1))


def from_torch_layout(y: torch.Tensor) -> torch.Tensor:
    """N×D×H×W → N×H×W×D, contiguous (a view when y is channels_last)."""
    return y.permute(0, *range(2, y.ndim), 1).contiguous()


def filters_to_torch(w: torch.Tensor) -> torch.Tensor:
    """w[h, w, d, k] → PyTorch's K×D×H'×W' weight, stored channels_last (K×H'×W'×D in memory)."""
    spatial = w.ndim - 2
    stored = w.permute(w.ndim - 1, *range(spatial), spatial).contiguous()  # K × H' × W' × D
    return stored.permute(0, stored.ndim - 1, *range(1, stored.ndim - 1))


def filters_from_torch(dw: torch.Tensor) -> torch.Tensor:
    """PyTorch's K×D×H'×W' weight gradient → H'×W'×D×K."""
    return dw.permute(*range(2, dw.ndim), 1, 0).contiguous()


def pad_flat(pads) -> tuple[int, ...]:
    """((before, after) per spatial axis in order) → F.pad's flat tuple, last axis first."""
    return tuple(v for pair in reversed(pads) for v in pair)


def _symmetric(pads) -> tuple[int, ...] | None:
    return tuple(a for a, _ in pads) if all(a == b for a, b in pads) else None


def _padded(xt, pads, value=0.0):
    flat = pad_flat(pads)
    return F.pad(xt, flat, value=value) if any(flat) else xt


def _as_input(size, like):
    """A stand-in tensor of `size` for backward kernels that only read the input's shape."""
    return like.new_empty(1).expand(size)


def conv_forward(x, w, stride, pads, dilate, groups, out_spatial, bias=None):
    """y_{i,j,k} = b_k + Σ_{h,w,d} f_{h,w,d,k} · x_{S·i+dil·h, S·j+dil·w, d} by F.conv2d/conv3d."""
    xt = to_torch_layout(x)
    padding = _symmetric(pads)
    if padding is None:
        xt, padding = _padded(xt, pads), 0
    conv = F.conv2d if x.ndim == 4 else F.conv3d
    y = conv(xt, filters_to_torch(w), bias, stride, padding, dilate, groups)
    return from_torch_layout(y)


def conv_backward_filter(x, dy, w_shape, stride, pads, dilate, groups):
    """dE/df by PyTorch's convolution backward kernel (weight gradient only)."""
    xt = _padded(to_torch_layout(x), pads)
    k, d_g, kernel = w_shape[-1], w_shape[-2], tuple(w_shape[:-2])
    weight = _as_input((k, d_g, *kernel), x)
    _, dw, _ = torch.ops.aten.convolution_backward(
        to_torch_layout(dy), xt, weight, None, list(stride), [0] * len(stride), list(dilate),
        False, [0] * len(stride), groups, [False, True, False],
    )
    return filters_from_torch(dw)


def conv_backward_data(dy, w, x_shape, stride, pads, dilate, groups):
    """dE/dx by PyTorch's convolution backward kernel on the padded input, then the padding cropped."""
    n, channels = x_shape[0], x_shape[-1]
    padded = [s + a + b for s, (a, b) in zip(x_shape[1:-1], pads)]
    stand_in = _as_input((n, channels, *padded), dy)
    dxp, _, _ = torch.ops.aten.convolution_backward(
        to_torch_layout(dy), stand_in, filters_to_torch(w), None, list(stride), [0] * len(stride),
        list(dilate), False, [0] * len(stride), groups, [True, False, False],
    )
    crop = tuple(-v for v in pad_flat(pads))
    return from_torch_layout(F.pad(dxp, crop) if any(crop) else dxp)


def relu(x):
    """y = max{0, x} (a scalar bound: no tensor made per call on a GPU)."""
    return torch.clamp(x, min=0)


def relu_backward(x, dy):
    """dE/dx = dE/dy · [x > 0]."""
    return dy * (x > 0)


def max_pool(x, kernel, stride, pads, out_spatial):
    """y_{i,j,d} = max over the window, padded cells −∞ (F.max_pool2d/3d). The maxima's positions
    are kept with y (see max_pool_backward)."""
    xt, y, indices = _max_pool_with_indices(x, kernel, stride, pads)
    y = from_torch_layout(y)
    _POOLED[y] = (kernel, stride, pads, _identity(x), xt, indices)
    return y


def max_pool_backward(x, dy, kernel, stride, pads, y=None):
    """Routes dE/dy to the first maximum of each window via PyTorch's pooling backward kernel, which
    takes the maxima's positions. Given the forward's y, the positions that forward found are used;
    otherwise the pooling is computed again to find them (a second max-pool kernel per step)."""
    kept = _POOLED.get(y) if y is not None else None
    if kept is not None and kept[:4] == (kernel, stride, pads, _identity(x)):
        xt, indices = kept[4:]
    else:
        xt, _, indices = _max_pool_with_indices(x, kernel, stride, pads)
    backward = (
        torch.ops.aten.max_pool2d_with_indices_backward
        if x.ndim == 4
        else torch.ops.aten.max_pool3d_with_indices_backward
    )
    zeros = [0] * len(kernel)
    dxp = backward(to_torch_layout(dy), xt, list(kernel), list(stride), zeros, [1] * len(kernel),
                   False, indices)
    crop = tuple(-v for v in pad_flat(pads))
    return from_torch_layout(F.pad(dxp, crop) if any(crop) else dxp)


# max_pool's output → (kernel, stride, pads, input identity, padded input, maxima positions), kept
# while the output lives
_POOLED = WeakIdKeyDictionary()


def _identity(x):
    """Where x's data lives, its shape and strides, and its in-place version: the same identity
    means the same values."""
    return x.data_ptr(), tuple(x.shape), x.stride(), x._version


def _max_pool_with_indices(x, kernel, stride, pads):
    xt = _padded(to_torch_layout(x), pads, value=float("-inf"))
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    return xt, *pool(xt, kernel, stride, return_indices=True)


def avg_pool(x, kernel, stride, pads, out_spatial):
    """y_{i,j,d} = window sum / number of real cells in the window (padding not counted)."""
    xt = _padded(to_torch_layout(x), pads)
    pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
    sums = pool(xt, kernel, stride, divisor_override=1)
    return from_torch_layout(sums) / _counts(x, kernel, stride, pads, out_spatial)


def avg_pool_backward(x, dy, kernel, stride, pads):
    """dE/dx_p = Σ over windows holding p of dE/dy / count, via the sum-pooling backward kernel."""
    out_spatial = tuple(dy.shape[1:-1])
    share = to_torch_layout(dy / _counts(x, kernel, stride, pads, out_spatial))
    xt = _padded(to_torch_layout(x), pads)
    backward = torch.ops.aten.avg_pool2d_backward if x.ndim == 4 else torch.ops.aten.avg_pool3d_backward
    dxp = backward(share, xt, list(kernel), list(stride), [0] * len(kernel), False, True, 1)
    crop = tuple(-v for v in pad_flat(pads))
    return from_torch_layout(F.pad(dxp, crop) if any(crop) else dxp)


def _counts(x, kernel, stride, pads, out_spatial):
    return _window_counts(tuple(x.shape[1:-1]), tuple(kernel), tuple(stride), tuple(pads),
                          tuple(out_spatial), x.dtype, x.device)


@functools.lru_cache(maxsize=64)
def _window_counts(in_spatial, kernel, stride, pads, out_spatial, dtype, device):
    """The per-window cell counts as a tensor, made once per geometry: a host-to-device copy inside
    every step would also stop the step from being captured as a CUDA graph."""
    counts = window_counts(in_spatial, kernel, stride, pads, out_spatial, np.float64)
    return torch.as_tensor(counts, dtype=dtype, device=device)
