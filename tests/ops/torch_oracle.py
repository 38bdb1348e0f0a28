"""PyTorch as the test oracle: the same layer through torch.nn.functional and autograd.

PyTorch takes NCHW / NCTHW and filters K×D×H'×W'; convscope is channels-last with filters
H'×W'×D×K. The wrappers here permute at that boundary only, so each oracle reads as the PyTorch
call a user would write.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def relative_error(ours, reference) -> float:
    """max_i |a_i − b_i| / max_i |b_i| (0 when both are zero)."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = max(np.max(np.abs(reference), initial=0.0), np.max(np.abs(ours), initial=0.0))
    return 0.0 if scale == 0 else float(np.max(np.abs(ours - reference)) / scale)


def to_channels_first(t):
    return t.permute(0, t.ndim - 1, *range(1, t.ndim - 1)).contiguous()


def to_channels_last(t):
    return t.permute(0, *range(2, t.ndim), 1)


def filters_to_torch(w):
    """H'×W'×D×K (or T'×H'×W'×D×K) → K×D×H'×W' (PyTorch's conv weight)."""
    return w.permute(w.ndim - 1, w.ndim - 2, *range(w.ndim - 2)).contiguous()


def pad_pairs_to_torch(pads):
    """((before, after) per spatial axis in order) → F.pad's (last axis first) flat tuple."""
    return tuple(v for before_after in reversed(pads) for v in before_after)


def check_op(op, op_backward, torch_fn, inputs, *, dtype, hyper=None, seed=0, output=None):
    """Run our forward and backward and the PyTorch oracle on the same inputs and dy; assert both
    the output and every gradient (of inputs the backward returns non-None for) agree within
    TOLERANCE[dtype]. `output` picks our forward's output when it returns a tuple."""
    hyper = hyper or {}
    rng = np.random.default_rng(seed)
    ours_in = [a.astype(dtype) if _is_float(a) else a for a in inputs]
    y = op(*ours_in, **hyper)
    y = y[0] if isinstance(y, tuple) else y
    dy = rng.standard_normal(np.shape(y)).astype(dtype)
    grads = op_backward(*ours_in, dy, **hyper)
    grads = grads if isinstance(grads, tuple | list) else (grads,)

    tensors = [
        torch.tensor(a, requires_grad=_is_float(a)) if isinstance(a, np.ndarray) else a
        for a in ours_in
    ]
    y_ref = torch_fn(*tensors)
    (y_ref * torch.tensor(dy)).sum().backward()
    tol = TOLERANCE[dtype]
    assert relative_error(y, y_ref.detach().numpy()) < tol, "forward differs from PyTorch"
    for index, (grad, t) in enumerate(zip(grads, tensors)):
        if grad is None:
            continue
        error = relative_error(grad, t.grad.numpy())
        assert error < tol, f"gradient of input {index} differs from PyTorch: {error:.3g}"
    return y


def _is_float(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def conv_reference(x, w, b, *, stride=1, pads=None, dilate=1, groups=1):
    """F.conv2d / F.conv3d on channels-last tensors with explicit (before, after) pads."""
    dims = x.ndim - 2
    xt = to_channels_first(x)
    if pads is not None:
        xt = F.pad(xt, pad_pairs_to_torch(pads))
    fn = F.conv2d if dims == 2 else F.conv3d
    y = fn(xt, filters_to_torch(w), b, stride=stride, dilation=dilate, groups=groups)
    return to_channels_last(y)


def conv_transpose_reference(x, w, b, *, stride=1, crops=None, dilate=1, groups=1):
    """F.conv_transpose2d/3d with padding 0, then the (before, after) crops sliced off."""
    dims = x.ndim - 2
    fn = F.conv_transpose2d if dims == 2 else F.conv_transpose3d
    weight = filters_to_torch(w)  # K × D/g × H' × W' for a transposed convolution
    y = fn(to_channels_first(x), weight, b, stride=stride, dilation=dilate, groups=groups)
    if crops is not None:
        index = [slice(None), slice(None)]
        index += [slice(a, y.shape[2 + i] - c) for i, (a, c) in enumerate(crops)]
        y = y[tuple(index)]
    return to_channels_last(y)


def pool_reference(x, *, kernel, stride, pads, method):
    """Max pooling with −∞ padding, or average pooling that excludes padded cells."""
    dims = x.ndim - 2
    xt = to_channels_first(x)
    flat = pad_pairs_to_torch(pads)
    if method == "max":
        fn = F.max_pool2d if dims == 2 else F.max_pool3d
        return to_channels_last(fn(F.pad(xt, flat, value=-np.inf), kernel, stride))
    fn = F.avg_pool2d if dims == 2 else F.avg_pool3d
    total = fn(F.pad(xt, flat), kernel, stride)
    cells = fn(F.pad(torch.ones_like(xt), flat), kernel, stride)
    return to_channels_last(total / cells)
