"""Convolutional and deconvolutional (transposed convolution) layers, 2D and 3D."""

from __future__ import annotations

from convscope.backend import kernels
from convscope.errors import ConfigError, ShapeError, describe_filters, describe_shape
from convscope.ops import _args


def conv(x, w, b=None, *, stride=1, pad=0, dilate=1, groups=1):
    """Convolutional layer, the lecture's

    y_{i,j,k} = b_k + Σ_{h=1}^{H'} Σ_{w=1}^{W'} Σ_{d=1}^{D} f_{h,w,d,k} · x_{i+h,j+w,d}

    x: N×H×W×D (2D) or N×T×H×W×D (3D, one more spatial index t).
    w: filters f, H'×W'×(D/groups)×K (T'×H'×W'×(D/groups)×K in 3D), `w[h, w, d, k]`.
    b: biases, K (or None).
    y: N×H''×W''×K with H'' = 1 + floor((H − dil·(H'−1) − 1 + P_U + P_D) / S_H), likewise W''.

    stride S: int or one per spatial axis. pad P: int, one per spatial axis, or (before, after)
    per axis: (P_U, P_D, P_L, P_R) in 2D. dilate: filter taps dil apart (x_{S·i+dil·h, …}).
    groups G: input channels and filters split into G independent groups; output channel
    k = g·K/G + k' sees only input channels g·D/G … (g+1)·D/G − 1.
    """
    geometry = _conv_geometry("conv", x, w, b, stride, pad, dilate, groups)
    return kernels(x).conv_forward(x, w, *geometry, bias=b)


def conv_backward(x, w, b, dy, *, stride=1, pad=0, dilate=1, groups=1, input_grad=True):
    """Derivatives of `conv` given dE/dy (N×H''×W''×K): returns (dE/dx, dE/df, dE/db).

    dE/df_{h,w,d,k} = Σ_{n,i,j} dE/dy_{i,j,k} · x_{S·i+dil·h, S·j+dil·w, d}
    dE/dx_{p,q,d}   = Σ_{i,j,h,w,k: S·i+dil·h=p, S·j+dil·w=q} dE/dy_{i,j,k} · f_{h,w,d,k}
    dE/db_k         = Σ_{n,i,j} dE/dy_{i,j,k}            (None when b is None)
    Input positions that no window reaches (floor in H'') get zero gradient. With
    input_grad=False, dE/dx is not computed and None is returned in its place (a network's first
    layer, whose input is the data, needs only dE/df and dE/db).
    """
    stride_, pads, dilate_, groups_, out_spatial = _conv_geometry(
        "conv_backward", x, w, b, stride, pad, dilate, groups
    )
    _args.check_same_shape("conv_backward", "dy", (x.shape[0], *out_spatial, w.shape[-1]), dy)
    return kernels(x).conv_backward(x, w, dy, stride_, pads, dilate_, groups_,
                                    input_grad=input_grad, bias=b is not None)


def conv_transpose(x, w, b=None, *, stride=1, crop=0, dilate=1, groups=1):
    """Deconvolution layer, the transpose of `conv` with the same filter array.

    y_{p,q,d} = b_d + Σ_{i,j,h,w,k: S·i+dil·h = p+C_U, S·j+dil·w = q+C_L} f_{h,w,d,k} · x_{i,j,k}

    x: N×H×W×K; w: H'×W'×(D/groups)×K (as TensorFlow's conv2d_transpose filter: it maps the K
    channels back to D); b: D or None. y: N×H_out×W_out×D with
    H_out = (H − 1)·S_H + dil·(H' − 1) + 1 − C_U − C_D, the crops C taking the same forms as `pad`
    and trimming the output as PyTorch's `padding` does for ConvTranspose. `conv(y, w, stride=S,
    pad=C)` maps a H_out×W_out×D input back to H×W×K: this layer is that conv's dE/dx.
    """
    stride_, crops, dilate_, groups_, out_spatial = _transpose_geometry(
        "conv_transpose", x, w, b, stride, crop, dilate, groups
    )
    out_shape = (x.shape[0], *out_spatial, w.shape[-2] * groups_)
    y = kernels(x).conv_backward_data(x, w, out_shape, stride_, crops, dilate_, groups_)
    return _add_bias(y, b)


def conv_transpose_backward(x, w, b, dy, *, stride=1, crop=0, dilate=1, groups=1, input_grad=True):
    """Derivatives of `conv_transpose` given dE/dy (N×H_out×W_out×D): (dE/dx, dE/df, dE/db).

    dE/dx = conv(dE/dy, f, stride=S, pad=C, dilate, groups)   (the forward conv of dy)
    dE/df_{h,w,d,k} = Σ_{n,i,j} x_{i,j,k} · dE/dy_{S·i+dil·h−C_U, S·j+dil·w−C_L, d}
    dE/db_d = Σ_{n,p,q} dE/dy_{p,q,d}
    With input_grad=False, dE/dx is None (not computed).
    """
    stride_, crops, dilate_, groups_, out_spatial = _transpose_geometry(
        "conv_transpose_backward", x, w, b, stride, crop, dilate, groups
    )
    out_shape = (x.shape[0], *out_spatial, w.shape[-2] * groups_)
    _args.check_same_shape("conv_transpose_backward", "dy", out_shape, dy)
    k = kernels(x)
    dx = k.conv_forward(dy, w, stride_, crops, dilate_, groups_, x.shape[1:-1]) if input_grad else None
    dw = k.conv_backward_filter(dy, x, w.shape, stride_, crops, dilate_, groups_)
    return dx, dw, bias_gradient(dy, b)


def _add_bias(y, b):
    """y_{…,k} + b_k, in place: the kernels return fresh arrays that nobody else holds."""
    return y if b is None else kernels(y).add_bias(y, b)


def bias_gradient(dy, b):
    """dE/db_k = Σ over every axis but the last of dE/dy_{…,k}; None when there is no bias."""
    return None if b is None else kernels(dy).bias_gradient(dy)


@_args.cached_by_shape(arrays=3)
def _conv_geometry(op, x, w, b, stride, pad, dilate, groups):
    """Checked (stride, pads, dilate, groups, output spatial sizes) of a convolution."""
    dims = _check_filters(op, x, w, b, groups, channels_in=x.shape[-1] if x.ndim else 0)
    stride_ = _args.per_axis(op, "stride", stride, dims, minimum=1)
    dilate_ = _args.per_axis(op, "dilate", dilate, dims, minimum=1)
    pads = _args.padding(op, "pad", pad, dims)
    out = _args.output_shape(op, x.shape[1:-1], w.shape[:-2], stride_, pads, dilate_)
    if w.shape[-1] % groups:
        raise ShapeError(
            f"{op}: K = {w.shape[-1]} filters do not split into groups = {groups}; "
            f"use a multiple of {groups} filters"
        )
    _check_bias(op, b, w.shape[-1])
    return stride_, pads, dilate_, groups, out


@_args.cached_by_shape(arrays=3)
def _transpose_geometry(op, x, w, b, stride, crop, dilate, groups):
    """Checked (stride, crops, dilate, groups, output spatial sizes) of a transposed convolution."""
    dims = _check_filters(op, x, w, None, groups, channels_in=None)
    if x.shape[-1] != w.shape[-1]:
        raise ShapeError(
            f"{op}: the input {describe_shape(x.shape)} has D = {x.shape[-1]} channels but the "
            f"filters {describe_filters(w.shape)} expect K = {w.shape[-1]}"
        )
    if x.shape[-1] % groups:
        raise ShapeError(f"{op}: K = {x.shape[-1]} channels do not split into groups = {groups}")
    stride_ = _args.per_axis(op, "stride", stride, dims, minimum=1)
    dilate_ = _args.per_axis(op, "dilate", dilate, dims, minimum=1)
    crops = _args.padding(op, "crop", crop, dims)
    out = tuple(
        (n - 1) * s + d * (k - 1) + 1 - a - c
        for n, s, d, k, (a, c) in zip(x.shape[1:-1], stride_, dilate_, w.shape[:-2], crops)
    )
    if any(o < 1 for o in out):
        raise ShapeError(
            f"{op}: crop {crop!r} leaves an empty output {'×'.join(map(str, out))}: input "
            f"{describe_shape(x.shape)}, filters {describe_filters(w.shape)}, stride {stride_}, "
            f"dilation {dilate_}; use a smaller crop"
        )
    _check_bias(op, b, w.shape[-2] * groups)
    return stride_, crops, dilate_, groups, out


def _check_filters(op, x, w, b, groups, channels_in):
    dims = _args.spatial_dims(op, x)
    if not isinstance(groups, int) or groups < 1:
        raise ConfigError(f"{op}: groups must be a positive int, got {groups!r}")
    if getattr(w, "ndim", -1) != x.ndim:
        names = "H'×W'×D×K" if dims == 2 else "T'×H'×W'×D×K"
        raise ShapeError(
            f"{op}: filters must be {names} ({x.ndim} axes) for a {describe_shape(x.shape)} "
            f"input, got {describe_filters(getattr(w, 'shape', ()))}"
        )
    if channels_in is not None and w.shape[-2] * groups != channels_in:
        raise ShapeError(
            f"{op}: the input {describe_shape(x.shape)} has D = {channels_in} channels but the "
            f"filters {describe_filters(w.shape)} take D/groups = {w.shape[-2]} with groups = "
            f"{groups} (expected w.shape[-2] = {channels_in // groups})"
        )
    return dims


def _check_bias(op, b, size):
    if b is not None and tuple(b.shape) != (size,):
        raise ShapeError(f"{op}: bias must have shape ({size},), got {tuple(b.shape)}")
