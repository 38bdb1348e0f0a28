"""The heavy kernels on NumPy: convolution by im2col + one BLAS product, and pooling by strided slices.

Channels-last throughout (DESIGN.md, Speed): an N×H×W×D input's im2col columns are laid out as
(N, H'', W'', H', W', D), so every copy moves contiguous channel runs, the product with the filters
w[h, w, d, k] reshaped to (H'W'D)×K is already the next activation N×H''×W''×K, and the same code
serves 3D volumes (N×T×H×W×D) with one more spatial axis. Groups add a leading axis G: the input's
channels are split as (G, D/G) and the filters' K outputs as (G, K/G), as in PyTorch.

Arguments arrive checked and normalised by :mod:`convscope.ops`: `stride`, `dilate` are tuples
with one int per spatial axis and `pads` is ((before, after), ...) per spatial axis.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from convscope.backend import parallel, workspace


def pad_spatial(x: np.ndarray, pads, name: str, fill: float = 0.0) -> np.ndarray:
    """x padded on its spatial axes (negative amounts crop) into the reusable buffer `name`."""
    crop = tuple(slice(max(-a, 0), n - max(-b, 0)) for n, (a, b) in zip(x.shape[1:-1], pads))
    x = x[(slice(None), *crop)]
    grow = tuple((max(a, 0), max(b, 0)) for a, b in pads)
    if not any(a or b for a, b in grow):
        return x
    shape = (x.shape[0], *(n + a + b for n, (a, b) in zip(x.shape[1:-1], grow)), x.shape[-1])
    out = workspace.buffer(name, shape, x.dtype)
    out.fill(fill)
    out[(slice(None), *(slice(a, a + n) for n, (a, _) in zip(x.shape[1:-1], grow)))] = x
    return out


def grouped(x: np.ndarray, groups: int) -> np.ndarray:
    """View of N×…×D as G×N×…×(D/G): group g holds channels g·D/G … (g+1)·D/G − 1."""
    return np.moveaxis(x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups), -2, 0)


def windows(xg: np.ndarray, out_spatial, kernel, stride, dilate) -> np.ndarray:
    """Strided view G×N×(H''×W'')×(H'×W')×Dg of the receptive field of every output position."""
    step = xg.strides[2:-1]
    shape = (*xg.shape[:2], *out_spatial, *kernel, xg.shape[-1])
    strides = (
        *xg.strides[:2],
        *(t * s for t, s in zip(step, stride)),
        *(t * d for t, d in zip(step, dilate)),
        xg.strides[-1],
    )
    return np.lib.stride_tricks.as_strided(xg, shape, strides, writeable=False)


def im2col(view: np.ndarray, name: str) -> list[np.ndarray]:
    """The im2col matrix of each group of a window view, M × (H'W'Dg) with M = N·H''·W'', in (h, w, d)
    column order.

    Columns live in the reusable buffer `name`. With several channels per group they are copied
    from the strided window view in one pass (contiguous channel runs). With one channel per group
    (a gray first layer, a depthwise conv) they are laid out offset-major, (H'W') × M, one
    contiguous strided-slice copy per kernel offset, and handed out transposed (BLAS reads either
    layout): copying 5×5 windows of a 28×28×1 batch that way took 1.4 ms against 5.6 ms.
    """
    spatial = (view.ndim - 3) // 2
    groups, rows = view.shape[0], int(np.prod(view.shape[1 : 2 + spatial]))
    if view.shape[-1] > 1:
        cols = workspace.buffer(name, view.shape, view.dtype)
        np.copyto(cols, view)
        return list(cols.reshape(groups, rows, -1))
    kernel = view.shape[2 + spatial : -1]
    cols = workspace.buffer(name, (groups, int(np.prod(kernel)), *view.shape[1 : 2 + spatial]), view.dtype)
    for tap, offset in enumerate(product(*map(range, kernel))):
        cols[:, tap] = view[(slice(None), slice(None), *((slice(None),) * spatial), *offset, 0)]
    return [c.reshape(cols.shape[1], rows).T for c in cols]


BLOCK_FLOATS = 1 << 19  # im2col columns of one block: 2 MB of float32, still in cache when the product runs


def blocks(batch: int, out_spatial, columns: int):
    """Output blocks (n0, n1, i0, i1) whose im2col columns hold about BLOCK_FLOATS numbers.

    A block is several whole samples (n0:n1, every output row) or a band i0:i1 of one sample's
    output rows, so its part of an N×H''×W''×K array is contiguous. Working block by block, the
    columns are still in cache when the product reads them (the CIFAR-10 net's conv2, forward and
    backward, took 72 ms against 131 ms with one product over all N·H''·W'' rows; 1 MB and 4 MB
    blocks measured a little slower than 2 MB).
    """
    rows = max(64, BLOCK_FLOATS // columns)
    per_line = int(np.prod(out_spatial[1:], dtype=np.int64))
    lines = out_spatial[0]
    if lines * per_line <= rows:
        step = rows // (lines * per_line)
        for n0 in range(0, batch, step):
            yield n0, min(batch, n0 + step), 0, lines
        return
    band = max(1, rows // per_line)
    for n0 in range(batch):
        for i0 in range(0, lines, band):
            yield n0, n0 + 1, i0, min(lines, i0 + band)


def block_of(a: np.ndarray, block) -> np.ndarray:
    """The part of an N×H''×… array in a block."""
    n0, n1, i0, i1 = block
    return a[n0:n1, i0:i1]


def filters_as_matrix(w: np.ndarray, groups: int) -> list[np.ndarray]:
    """w[h, w, d, k] (K = G·Kg outputs) as one (H'W'Dg) × Kg matrix per group."""
    rows = int(np.prod(w.shape[:-1]))
    k_g = w.shape[-1] // groups
    return [w.reshape(rows, w.shape[-1])[:, g * k_g : (g + 1) * k_g] for g in range(groups)]


def per_group(a: np.ndarray, groups: int) -> list[np.ndarray]:
    """N×…×C as one M × (C/G) matrix per group (views)."""
    flat = a.reshape(-1, a.shape[-1])
    c_g = a.shape[-1] // groups
    return [flat[:, g * c_g : (g + 1) * c_g] for g in range(groups)]


def conv_forward(x, w, stride, pads, dilate, groups, out_spatial, bias=None) -> np.ndarray:
    """y_{i,j,k} = b_k + Σ_{h,w,d} f_{h,w,d,k} · x_{S·i+dil·h, S·j+dil·w, d}, batch parts in parallel."""
    y = np.empty((x.shape[0], *out_spatial, w.shape[-1]), dtype=np.result_type(x, w))
    parallel.over_batch(
        lambda p: _conv_forward(x[p], w, stride, pads, dilate, groups, out_spatial, y[p], bias), x.shape[0]
    )
    return y


def conv_backward_filter(x, dy, w_shape, stride, pads, dilate, groups) -> np.ndarray:
    """dE/df = Σ over the batch's parts of each part's colsᵀ · dy."""
    partial = parallel.over_batch(
        lambda p: _conv_backward_filter(x[p], dy[p], w_shape, stride, pads, dilate, groups), x.shape[0]
    )
    return partial[0] if len(partial) == 1 else np.sum(partial, axis=0)


def conv_backward_data(dy, w, x_shape, stride, pads, dilate, groups) -> np.ndarray:
    """dE/dx of the convolution, batch parts in parallel (see _conv_backward_data)."""
    def part(p, out):
        out[...] = _conv_backward_data(dy[p], w, out.shape, stride, pads, dilate, groups)

    return _fill_parts(part, x_shape, np.result_type(dy, w))


def max_pool(x, kernel, stride, pads, out_spatial) -> np.ndarray:
    """Max pooling, batch parts in parallel (see _max_pool)."""
    shape = (x.shape[0], *out_spatial, x.shape[-1])
    return _batchwise(_max_pool, shape, x.dtype, (x,), kernel, stride, pads, out_spatial)


def max_pool_backward(x, dy, kernel, stride, pads) -> np.ndarray:
    """Max pooling's dE/dx, batch parts in parallel (see _max_pool_backward)."""
    return _batchwise(_max_pool_backward, x.shape, dy.dtype, (x, dy), kernel, stride, pads)


def avg_pool(x, kernel, stride, pads, out_spatial) -> np.ndarray:
    """Average pooling, batch parts in parallel (see _avg_pool)."""
    shape = (x.shape[0], *out_spatial, x.shape[-1])
    return _batchwise(_avg_pool, shape, x.dtype, (x,), kernel, stride, pads, out_spatial)


def avg_pool_backward(x, dy, kernel, stride, pads) -> np.ndarray:
    """Average pooling's dE/dx, batch parts in parallel (see _avg_pool_backward)."""
    return _batchwise(_avg_pool_backward, x.shape, dy.dtype, (x, dy), kernel, stride, pads)


def _batchwise(serial, shape, dtype, batched, *rest) -> np.ndarray:
    """serial(*(a[part] for a in batched), *rest) for each batch part, in parallel, into one array."""
    def part(p, out):
        out[...] = serial(*(a[p] for a in batched), *rest)

    return _fill_parts(part, shape, dtype)


def _fill_parts(compute, shape, dtype) -> np.ndarray:
    """A new array of `shape` whose batch parts compute(part, out[part]) fill, in parallel."""
    out = np.empty(shape, dtype=dtype)
    parallel.over_batch(lambda p: compute(p, out[p]), shape[0])
    return out


def _conv_forward(x, w, stride, pads, dilate, groups, out_spatial, out=None, bias=None) -> np.ndarray:
    """y_{i,j,k} = b_k + Σ_{h,w,d} f_{h,w,d,k} · x_{S·i+dil·h, S·j+dil·w, d}: per block of output
    rows, im2col then one GEMM per group."""
    view = windows(grouped(pad_spatial(x, pads, "conv.pad"), groups), out_spatial, w.shape[:-2],
                   stride, dilate)
    filters = filters_as_matrix(w, groups)
    y = np.empty((x.shape[0], *out_spatial, w.shape[-1]), np.result_type(x, w)) if out is None else out
    for block in blocks(x.shape[0], out_spatial, filters[0].shape[0]):
        cols = im2col(view[:, block[0] : block[1], block[2] : block[3]], "conv.cols")
        y_block = block_of(y, block)
        if groups == 1:
            np.matmul(cols[0], filters[0], out=y_block.reshape(-1, w.shape[-1]))
        else:
            for part, c, f in zip(per_group(y_block, groups), cols, filters):
                part[...] = c @ f
        if bias is not None:
            y_block += bias  # while the block is in cache
    return y


def _conv_backward_filter(x, dy, w_shape, stride, pads, dilate, groups) -> np.ndarray:
    """dE/df_{h,w,d,k} = Σ_{n,i,j} dE/dy_{i,j,k} · x_{S·i+dil·h, S·j+dil·w, d} = Σ_blocks colsᵀ · dy."""
    view = windows(grouped(pad_spatial(x, pads, "conv.pad"), groups), dy.shape[1:-1], w_shape[:-2],
                   stride, dilate)
    columns = int(np.prod(w_shape[:-1]))
    dw = np.zeros((columns, w_shape[-1]), dtype=np.result_type(x, dy))
    k_g = w_shape[-1] // groups
    for block in blocks(x.shape[0], dy.shape[1:-1], columns):
        cols = im2col(view[:, block[0] : block[1], block[2] : block[3]], "conv.cols")
        for g, (c, d) in enumerate(zip(cols, per_group(block_of(dy, block), groups))):
            dw[:, g * k_g : (g + 1) * k_g] += _inner_products(c, d)
    return dw.reshape(w_shape)


def _inner_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """aᵀ·b for tall M×P and M×Q matrices, as (bᵀ·a)ᵀ when Q > P: OpenBLAS runs the tall-skinny
    product faster with the wider matrix first (measured on the first layers)."""
    return (b.T @ a).T if b.shape[1] > a.shape[1] else a.T @ b


def _conv_backward_data(dy, w, x_shape, stride, pads, dilate, groups) -> np.ndarray:
    """dE/dx: the transpose of the convolution applied to dy.

    With stride 1 it is itself a convolution of dy, padded by dil·(H'−1) − P, with the filters
    rotated by 180° and their d, k axes swapped within each group (no scatter-add). With a larger
    stride, or more filters than input channels (K > D: the rotated convolution's columns,
    M·H'W'·K, would outgrow col2im's M·H'W'·D; measured faster on every such layer of LeNet-5,
    the keypoints net and the CIFAR-10 net), the column gradient dy · fᵀ is scattered back over
    the kernel offsets (col2im).
    """
    if all(s == 1 for s in stride) and dy.shape[-1] <= x_shape[-1]:
        return _conv_backward_data_rotated(dy, w, x_shape, pads, dilate, groups)
    return _conv_backward_data_col2im(dy, w, x_shape, stride, pads, dilate, groups)


def _rotated_filters(w: np.ndarray, groups: int) -> np.ndarray:
    """f'[h, w, kg, g·Dg + dg] = f[H'−1−h, W'−1−w, dg, g·Kg + kg]: H'×W'×(K/G)×D."""
    spatial = w.ndim - 2
    d_g, k = w.shape[-2:]
    flipped = np.flip(w, axis=tuple(range(spatial)))
    per_group = flipped.reshape(*w.shape[:-1], groups, k // groups)  # …, Dg, G, Kg
    swapped = np.moveaxis(per_group, (-3, -2, -1), (-1, -2, -3))  # …, Kg, G, Dg
    return np.ascontiguousarray(swapped).reshape(*w.shape[:-2], k // groups, groups * d_g)


def _conv_backward_data_rotated(dy, w, x_shape, pads, dilate, groups):
    kernel = w.shape[:-2]
    full = tuple(d * (k - 1) for k, d in zip(kernel, dilate))
    dy_pads = tuple((e - a, e - b) for e, (a, b) in zip(full, pads))
    return _conv_forward(
        dy, _rotated_filters(w, groups), (1,) * len(kernel), dy_pads, dilate, groups, x_shape[1:-1]
    )


def _conv_backward_data_col2im(dy, w, x_shape, stride, pads, dilate, groups):
    """dE/dx = col2im(dy · fᵀ), block by block: the column gradient of a block, computed offset-major
    ((H'W') × M × Dg, one product per kernel offset, so each offset's part is contiguous), is added
    back over the kernel offsets."""
    kernel, out_spatial = w.shape[:-2], dy.shape[1:-1]
    taps, d_g = int(np.prod(kernel)), x_shape[-1] // groups
    padded = tuple(n + a + b for n, (a, b) in zip(x_shape[1:-1], pads))
    dxp = np.zeros((x_shape[0], *padded, x_shape[-1]), dtype=np.result_type(dy, w))
    filters = filters_as_matrix(w, groups)
    for n0, n1, i0, i1 in blocks(x_shape[0], out_spatial, taps * d_g):
        band = (i1 - i0, *out_spatial[1:])
        target = dxp[n0:n1, i0 * stride[0] :]
        for g, (dy_g, f_g) in enumerate(zip(per_group(dy[n0:n1, i0:i1], groups), filters)):
            if d_g == 1:  # one product (H'W') × Kg · Kg × M; a batch of matrix-vector products is slow
                dcols = f_g @ dy_g.T
            else:
                dcols = np.matmul(dy_g[None], f_g.reshape(taps, d_g, -1).transpose(0, 2, 1))
            dcols = dcols.reshape(taps, n1 - n0, *band, d_g)
            scatter_add_windows(target[..., g * d_g : (g + 1) * d_g], dcols, band, kernel, stride, dilate)
    return _crop(dxp, pads, x_shape)


def scatter_add_windows(target, per_offset, out_spatial, kernel, stride, dilate) -> None:
    """target[n, S·i + dil·h, …] += per_offset[h, n, i, …] for every kernel offset h (col2im)."""
    for tap, offset in enumerate(product(*map(range, kernel))):
        where = tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offset, dilate, stride, out_spatial)
        )
        target[(slice(None), *where)] += per_offset[tap]


def window_slices(out_spatial, kernel, stride):
    """For each kernel offset (in row-major order), the strided slices it reads from the input."""
    for offset in product(*map(range, kernel)):
        yield tuple(
            slice(o, o + s * (n - 1) + 1, s) for o, s, n in zip(offset, stride, out_spatial)
        )


def _max_pool(x, kernel, stride, pads, out_spatial) -> np.ndarray:
    """y_{i,j,d} = max over the window of x, padded cells counting as −∞."""
    return _max_over_windows(pad_spatial(x, pads, "pool.pad", fill=-np.inf), kernel, stride, out_spatial)


def _max_over_windows(xp, kernel, stride, out_spatial):
    y = np.empty((xp.shape[0], *out_spatial, xp.shape[-1]), dtype=xp.dtype)
    slices = window_slices(out_spatial, kernel, stride)
    np.copyto(y, xp[(slice(None), *next(slices))])
    for where in slices:
        np.maximum(y, xp[(slice(None), *where)], out=y)
    return y


def _max_pool_backward(x, dy, kernel, stride, pads) -> np.ndarray:
    """Routes dE/dy_{i,j,d} to the first maximum (row-major within the window) of its window."""
    out_spatial = dy.shape[1:-1]
    xp = pad_spatial(x, pads, "pool.pad", fill=-np.inf)
    y = _max_over_windows(xp, kernel, stride, out_spatial)
    dxp = np.zeros(xp.shape, dtype=dy.dtype)
    unrouted = np.ones(dy.shape, dtype=bool)
    hit = np.empty(dy.shape, dtype=bool)
    share = np.empty(dy.shape, dtype=dy.dtype)
    overlapping = any(s < k for s, k in zip(stride, kernel))
    for where in window_slices(out_spatial, kernel, stride):  # five passes, no temporaries
        index = (slice(None), *where)
        np.equal(xp[index], y, out=hit)
        np.logical_and(hit, unrouted, out=hit)  # a maximum not yet routed: the first one
        np.greater(unrouted, hit, out=unrouted)  # unrouted ∧ ¬hit
        if overlapping:
            np.multiply(dy, hit, out=share)
            dxp[index] += share
        else:
            np.multiply(dy, hit, out=dxp[index])
    return _crop(dxp, pads, x.shape)


def _avg_pool(x, kernel, stride, pads, out_spatial) -> np.ndarray:
    """y_{i,j,d} = (1 / |window ∩ input|) Σ over the window of x: padded cells are not counted."""
    xp = pad_spatial(x, pads, "pool.pad")
    y = np.zeros((x.shape[0], *out_spatial, x.shape[-1]), dtype=x.dtype)
    for where in window_slices(out_spatial, kernel, stride):
        y += xp[(slice(None), *where)]
    y /= window_counts(x.shape[1:-1], kernel, stride, pads, out_spatial, x.dtype)
    return y


def _avg_pool_backward(x, dy, kernel, stride, pads) -> np.ndarray:
    """dE/dx_{p,d} = Σ over the windows holding p of dE/dy_{i,j,d} / |window ∩ input|."""
    out_spatial = dy.shape[1:-1]
    share = dy / window_counts(x.shape[1:-1], kernel, stride, pads, out_spatial, dy.dtype)
    padded = (x.shape[0], *(n + a + b for n, (a, b) in zip(x.shape[1:-1], pads)), x.shape[-1])
    dxp = np.zeros(padded, dtype=dy.dtype)
    for where in window_slices(out_spatial, kernel, stride):
        dxp[(slice(None), *where)] += share
    return _crop(dxp, pads, x.shape)


def window_counts(in_spatial, kernel, stride, pads, out_spatial, dtype) -> np.ndarray:
    """Number of real (unpadded) input cells in each window, shaped 1×H''×W''×1 for broadcasting."""
    counts = np.ones((), dtype=dtype)
    for axis, (n, k, s, (before, _), o) in enumerate(
        zip(in_spatial, kernel, stride, pads, out_spatial)
    ):
        start = np.arange(o) * s - before
        along = np.minimum(start + k, n) - np.maximum(start, 0)
        shape = [1] * len(in_spatial)
        shape[axis] = o
        counts = counts * along.reshape(shape).astype(dtype)
    return counts[None, ..., None]


def _crop(xp, pads, shape):
    interior = tuple(slice(a, a + n) for n, (a, _) in zip(shape[1:-1], pads))
    return np.ascontiguousarray(xp[(slice(None), *interior)])
