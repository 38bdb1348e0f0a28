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

# the axis orders of the layout changes, by number of axes (2D and 3D)
_CHANNELS_FIRST = {4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)}  # N×H×W×D → N×D×H×W
_CHANNELS_LAST = {4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}  # N×D×H×W → N×H×W×D
_FILTERS_OUT_FIRST = {4: (3, 0, 1, 2), 5: (4, 0, 1, 2, 3)}  # H'×W'×D×K → K×H'×W'×D
_FILTERS_TO_TORCH = {4: (3, 2, 0, 1), 5: (4, 3, 0, 1, 2)}  # H'×W'×D×K → K×D×H'×W'
_FILTERS_FROM_TORCH = {4: (2, 3, 1, 0), 5: (2, 3, 4, 1, 0)}  # K×D×H'×W' → H'×W'×D×K
_FILTERS_OUT_LAST = {4: (1, 2, 3, 0), 5: (1, 2, 3, 4, 0)}  # K×H'×W'×D → H'×W'×D×K
_LEADING_AXES = {n: tuple(range(n - 1)) for n in range(2, 7)}  # every axis but the last


def to_torch_layout(x: torch.Tensor) -> torch.Tensor:
    """N×H×W×D → the N×D×H×W view (channels_last memory format); no copy."""
    return x.permute(_CHANNELS_FIRST[x.ndim])


def from_torch_layout(y: torch.Tensor) -> torch.Tensor:
    """N×D×H×W → N×H×W×D, contiguous (a view when y is channels_last)."""
    return y.permute(_CHANNELS_LAST[y.ndim]).contiguous()


def stored_filters(w: torch.Tensor) -> torch.Tensor:
    """w[h, w, d, k] with the K filters outermost in memory (K×H'×W'×D, PyTorch's channels_last
    weight), as a network keeps its convolutions' filters on this backend: `filters_to_torch`
    then hands them to the kernels without a copy, and dE/df, which PyTorch's convolution backward
    returns in that order, keeps it (the optimiser's multi-tensor kernels want the value, its
    gradient and its momentum in one layout). Without this, every convolution copied its filters
    once per forward and once per dE/dx, and its dE/df once."""
    return w.permute(_FILTERS_OUT_FIRST[w.ndim]).contiguous().permute(_FILTERS_OUT_LAST[w.ndim])


def filters_to_torch(w: torch.Tensor) -> torch.Tensor:
    """w[h, w, d, k] → PyTorch's K×D×H'×W' weight, a view: channels_last (K×H'×W'×D in memory)
    for filters in `stored_filters`' order; PyTorch's kernels convert other filters themselves."""
    return w.permute(_FILTERS_TO_TORCH[w.ndim])


def filters_from_torch(dw: torch.Tensor) -> torch.Tensor:
    """PyTorch's K×D×H'×W' weight gradient → H'×W'×D×K, a view (in `stored_filters`' order when
    PyTorch returns it channels_last, as it does for channels-last inputs)."""
    return dw.permute(_FILTERS_FROM_TORCH[dw.ndim])


def pad_flat(pads) -> tuple[int, ...]:
    """((before, after) per spatial axis in order) → F.pad's flat tuple, last axis first."""
    return tuple(v for pair in reversed(pads) for v in pair)


@functools.lru_cache(maxsize=256)
def _symmetric(pads) -> tuple[int, ...] | None:
    """The padding per axis when before = after on every axis, else None."""
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


def conv_backward(x, w, dy, stride, pads, dilate, groups, *, input_grad, bias):
    """(dE/dx or None, dE/df, dE/db or None) from one call of PyTorch's convolution backward
    kernel; symmetric padding is passed to the kernel, other padding is applied to x and the
    padded margin cropped from dE/dx."""
    dims = len(stride)
    xt, padding, margins = to_torch_layout(x), _symmetric(pads), None
    if padding is None:
        xt, padding, margins = _padded(xt, pads), (0,) * dims, pads
    dxp, dw, db = torch.ops.aten.convolution_backward(
        to_torch_layout(dy), xt, filters_to_torch(w), [w.shape[-1]] if bias else None, list(stride),
        list(padding), list(dilate), False, [0] * dims, groups, [input_grad, True, bias],
    )
    dx = _cropped(dxp, margins) if input_grad else None
    return dx, filters_from_torch(dw), db


def conv_backward_filter(x, dy, w_shape, stride, pads, dilate, groups):
    """dE/df by PyTorch's convolution backward kernel (weight gradient only)."""
    xt = _padded(to_torch_layout(x), pads)
    weight = _as_input(_torch_filter_shape(w_shape), x)
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
    return _cropped(dxp, pads)


def add_bias(y, bias):
    """y_{…,k} += b_k in place."""
    y += bias
    return y


def matrix_product(a, b):
    """a · b (PyTorch's own threads)."""
    return a @ b


def affine(x, w, b=None):
    """x·w + b, in one kernel (`torch.addmm`) when the bias has the product's dtype."""
    if b is None or b.dtype != x.dtype or b.dtype != w.dtype:
        return x @ w if b is None else x @ w + b
    return torch.addmm(b, x, w)


def bias_gradient(dy):
    """dE/db_k = Σ over every axis but the last of dE/dy_{…,k} (one call: each PyTorch call, a
    reshape included, costs the host several µs on a GPU)."""
    return dy.sum(_LEADING_AXES[dy.ndim])


def _torch_filter_shape(w_shape):
    """H'×W'×(D/G)×K → PyTorch's K×(D/G)×H'×W'."""
    return (w_shape[-1], w_shape[-2], *w_shape[:-2])


def _cropped(dxp, pads):
    """dE/dx on the padded input (PyTorch layout) with the margins `pads` (None: none) cropped,
    channels-last."""
    crop = tuple(-v for v in pad_flat(pads)) if pads is not None else ()
    return from_torch_layout(F.pad(dxp, crop) if any(crop) else dxp)


def relu(x):
    """y = max{0, x} (a scalar bound: no tensor made per call on a GPU)."""
    return torch.clamp(x, min=0)


def relu_backward(x, dy):
    """dE/dx = dE/dy · [x > 0], in one kernel (PyTorch's threshold_backward)."""
    return torch.ops.aten.threshold_backward(dy, x, 0)


def channel_window_sum(a, before, after):
    """Σ_{d'=d−before}^{d+after} a_{…,d'} along the last axis, cells outside [0, D) being zero (LRN's
    window), by shifted additions."""
    out = a.clone()
    for shift in range(1, before + 1):
        out[..., shift:] += a[..., :-shift]
    for shift in range(1, after + 1):
        out[..., :-shift] += a[..., shift:]
    return out


def negative_power(s, beta):
    """s^(−β), one kernel."""
    return s ** (-beta)


def softmax_log_loss(x, labels, weights):
    """E = Σ ω_c ℓ / Σ ω_c by PyTorch's fused cross-entropy (log-softmax and NLL kernels), on the
    positions as rows: N×C, or N·H·W × C for per-pixel labels."""
    rows, targets = _class_rows(x, labels)
    return F.cross_entropy(rows, targets, weight=weights)


def softmax_log_loss_backward(x, labels, dy, weights):
    """dE/dx = dE/dy · ω_c (softmax(x) − onehot(c)) / Σ ω_c: the softmax, 1 subtracted at each label
    in place, one scaling."""
    rows, targets = _class_rows(x, labels)
    grad = torch.softmax(rows, dim=-1)
    grad.scatter_add_(1, targets[:, None], _minus_ones(rows.dtype, rows.device).expand(len(rows), 1))
    if weights is None:
        grad *= dy / len(rows)
    else:
        omega = weights[targets]
        grad *= (omega * (dy / omega.sum()))[:, None]
    return _shaped(grad, x.shape)


def _class_rows(x, labels):
    """x as (positions × C) rows and labels as the 64-bit class indices PyTorch indexes with."""
    targets = labels if labels.dtype == torch.int64 else labels.long()
    return _shaped(x, (-1, x.shape[-1])), _shaped(targets, (-1,))


def _shaped(a, shape):
    """a.reshape(shape), or a itself where it has that shape already (N×C logits, N labels): no
    PyTorch call for a no-op."""
    same = a.ndim == len(shape) and all(s in (-1, t) for s, t in zip(shape, a.shape))
    return a if same else a.reshape(shape)


@functools.cache  # never evicted: a captured CUDA graph reads it by address (see _window_counts)
def _minus_ones(dtype, device):
    """A one-element tensor −1 per dtype and device, made once (not a fill kernel every step)."""
    return torch.full((1, 1), -1.0, dtype=dtype, device=device)


def max_pool(x, kernel, stride, pads, out_spatial):
    """y_{i,j,d} = max over the window, padded cells −∞ (F.max_pool2d/3d). The maxima's positions
    are kept with y (see max_pool_backward)."""
    pooled = _max_pool_with_indices(x, kernel, stride, pads, out_spatial)
    y = from_torch_layout(pooled[-1])
    _POOLED[y] = (kernel, stride, pads, _identity(x), *pooled[:-1])
    return y


def max_pool_backward(x, dy, kernel, stride, pads, y=None):
    """Routes dE/dy to the first maximum of each window via PyTorch's pooling backward kernel, which
    takes the maxima's positions. Given the forward's y, the positions that forward found are used;
    otherwise the pooling is computed again to find them (a second max-pool kernel per step)."""
    kept = _POOLED.get(y) if y is not None else None
    if kept is not None and kept[:4] == (kernel, stride, pads, _identity(x)):
        xt, padding, ceil_mode, margins, indices = kept[4:]
    else:
        xt, padding, ceil_mode, margins, indices, _ = _max_pool_with_indices(
            x, kernel, stride, pads, tuple(dy.shape[1:-1]))
    backward = (
        torch.ops.aten.max_pool2d_with_indices_backward
        if x.ndim == 4
        else torch.ops.aten.max_pool3d_with_indices_backward
    )
    dxp = backward(to_torch_layout(dy), xt, list(kernel), list(stride), list(padding),
                   [1] * len(kernel), ceil_mode, indices)
    return _cropped(dxp, margins)


# max_pool's output → (kernel, stride, pads, input identity, the pooled input with its padding,
# ceil mode and margins, maxima positions), kept while the output lives
_POOLED = WeakIdKeyDictionary()


def _identity(x):
    """Where x's data lives, its shape and strides, and its in-place version: the same identity
    means the same values."""
    return x.data_ptr(), tuple(x.shape), x.stride(), x._version


def _max_pool_with_indices(x, kernel, stride, pads, out_spatial):
    """(pooled input, padding, ceil mode, margins, maxima positions, y in PyTorch's layout)."""
    xt, padding, ceil_mode, margins = _pool_input(x, kernel, stride, pads, out_spatial, float("-inf"))
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    y, indices = pool(xt, kernel, stride, padding, 1, ceil_mode, return_indices=True)
    return xt, padding, ceil_mode, margins, indices, y


def avg_pool(x, kernel, stride, pads, out_spatial):
    """y_{i,j,d} = window sum / number of real cells in the window (padding not counted)."""
    xt, padding, ceil_mode, margins = _pool_input(x, kernel, stride, pads, out_spatial, 0.0)
    pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
    if margins is None:  # PyTorch pads, and leaves padded cells out of the count
        return from_torch_layout(pool(xt, kernel, stride, padding, ceil_mode, False))
    sums = pool(xt, kernel, stride, divisor_override=1)
    return from_torch_layout(sums) / _counts(x, kernel, stride, pads, out_spatial)


def avg_pool_backward(x, dy, kernel, stride, pads):
    """dE/dx_p = Σ over windows holding p of dE/dy / count, via the average-pooling backward kernel."""
    out_spatial = tuple(dy.shape[1:-1])
    xt, padding, ceil_mode, margins = _pool_input(x, kernel, stride, pads, out_spatial, 0.0,
                                                  native=not _avg_backward_misroutes_padding(x, pads))
    backward = torch.ops.aten.avg_pool2d_backward if x.ndim == 4 else torch.ops.aten.avg_pool3d_backward
    if margins is None:
        return from_torch_layout(backward(to_torch_layout(dy), xt, list(kernel), list(stride),
                                          list(padding), ceil_mode, False, None))
    share = to_torch_layout(dy / _counts(x, kernel, stride, pads, out_spatial))
    dxp = backward(share, xt, list(kernel), list(stride), [0] * len(kernel), False, True, 1)
    return _cropped(dxp, margins)


def _avg_backward_misroutes_padding(x, pads) -> bool:
    """PyTorch's CUDA average-pooling backward for channels-last inputs (convscope's layout) maps
    input cells to the wrong windows when it pads them itself (pytorch/pytorch#188344, seen with
    PyTorch 2.11 on an H200: dE/dx off, the forward right); there convscope pads explicitly."""
    return x.is_cuda and any(before for before, _ in pads)


def _pool_input(x, kernel, stride, pads, out_spatial, fill, *, native=True):
    """x in PyTorch's layout for its pooling kernels, with their (padding, ceil mode), and the
    margins to crop from dE/dx: None where PyTorch's own padding gives the same windows (and
    `native` allows it), else x explicitly padded with `fill`, padding 0 and the margins `pads`."""
    xt = to_torch_layout(x)
    native = native and _native_padding(tuple(x.shape[1:-1]), tuple(kernel), tuple(stride),
                                        tuple(pads), tuple(out_spatial))
    if native:
        return xt, *native, None
    return _padded(xt, pads, value=fill), (0,) * len(kernel), False, pads


@functools.lru_cache(maxsize=256)
def _native_padding(in_spatial, kernel, stride, pads, out_spatial):
    """(padding, ceil mode) with which PyTorch's pooling kernels see the windows that `pads` make,
    or None. PyTorch pads both sides by P ≤ H'/2 (cells it leaves out of the max and of the average's
    count, as convscope's padding); ceil mode adds a last window reaching past the input, which is
    the extra padding after when P_D > P_U gives the same output size."""
    before = tuple(a for a, _ in pads)
    if any(2 * a > k for a, k in zip(before, kernel)) or any(b < a for a, b in pads):
        return None
    ceil_mode = any(b > a for a, b in pads)
    if ceil_mode and _ceil_mode_size(in_spatial, kernel, stride, before) != out_spatial:
        return None
    return before, ceil_mode


def _ceil_mode_size(in_spatial, kernel, stride, padding):
    """PyTorch's pooling output size in ceil mode: windows may start in the input or its padding
    before, never past the input."""
    sizes = []
    for n, k, s, p in zip(in_spatial, kernel, stride, padding):
        size = -(-(n + 2 * p - k) // s) + 1
        sizes.append(size - 1 if (size - 1) * s >= n + p else size)
    return tuple(sizes)


def _counts(x, kernel, stride, pads, out_spatial):
    return _window_counts(tuple(x.shape[1:-1]), tuple(kernel), tuple(stride), tuple(pads),
                          tuple(out_spatial), x.dtype, x.device)


@functools.cache
def _window_counts(in_spatial, kernel, stride, pads, out_spatial, dtype, device):
    """The per-window cell counts as a tensor, made once per geometry: a host-to-device copy inside
    every step would also stop the step from being captured as a CUDA graph. Never evicted: a
    captured graph reads the tensor by address, and once freed its memory would go to other
    tensors while the graph still reads it (a few hundred numbers per pooling geometry)."""
    counts = window_counts(in_spatial, kernel, stride, pads, out_spatial, np.float64)
    return torch.as_tensor(counts, dtype=dtype, device=device)
