"""The heavy kernels on NumPy: convolution by im2col + one BLAS product, and pooling by strided slices.

Channels-last throughout (DESIGN.md, Speed): an N×H×W×D input's im2col columns are laid out as
(N, H'', W'', H', W', D), so every copy moves contiguous channel runs, the product with the filters
w[h, w, d, k] reshaped to (H'W'D)×K is already the next activation N×H''×W''×K, and the same code
serves 3D volumes (N×T×H×W×D) with one more spatial axis. Groups add a leading axis G: the input's
channels are split as (G, D/G) and the filters' K outputs as (G, K/G), as in PyTorch.

Layers with few filters tile the last spatial axis (see `tile_width`): one im2col row then holds a
window wide enough for `tile` neighbouring outputs, and the filters become a banded (Toeplitz)
matrix with tile·K columns, which BLAS runs far better than a product with K = 6 columns.

Padded layers with many channels go box by box (`by_boxes`, boxes.py): the outputs whose windows
read the same taps inside the input are one product of the unpadded input's columns over those
taps with those taps' filters, so no product is spent on a padding zero (28 % of the CIFAR-10
net's conv3).

Arguments arrive checked and normalised by :mod:`convscope.ops`: `stride`, `dilate` are tuples
with one int per spatial axis and `pads` is ((before, after), ...) per spatial axis.
"""

from __future__ import annotations

import functools
import math
from itertools import product

import numpy as np

from convscope.backend import parallel, workspace
from convscope.backend.boxes import padded_share, padding_free_boxes


def pad_spatial(x: np.ndarray, pads, name: str) -> np.ndarray:
    """x padded with zeros on its spatial axes (negative amounts crop) into the reusable buffer
    `name`. Where the margins are a tenth of the buffer or more, the whole buffer is zeroed first:
    one fill beat the margins' many short runs (LeNet-5's conv1 input, 64×28×28×1 padded by 2:
    37 against 92 µs; 64×16×16×32 by 2 and 16×14×14×14×16 by 1: 280/360 against 294/439 µs),
    but not the 96×96×1 input padded by 1 (margins 4 %: 236 against 185 µs)."""
    crop = tuple(slice(max(-a, 0), n - max(-b, 0)) for n, (a, b) in zip(x.shape[1:-1], pads))
    x = x[(slice(None), *crop)]
    grow = tuple((max(a, 0), max(b, 0)) for a, b in pads)
    if not any(a or b for a, b in grow):
        return x
    shape = (x.shape[0], *(n + a + b for n, (a, b) in zip(x.shape[1:-1], grow)), x.shape[-1])
    out = workspace.buffer(name, shape, x.dtype)
    interior = (slice(None), *(slice(a, a + n) for n, (a, _) in zip(x.shape[1:-1], grow)))
    if 10 * x.size >= 9 * out.size:
        fill_outside(out, interior, 0)  # only the margins: the copy fills the rest
    else:
        out.fill(0)
    out[interior] = x
    return out


def grouped(x: np.ndarray, groups: int) -> np.ndarray:
    """View of N×…×D as G×N×…×(D/G): group g holds channels g·D/G … (g+1)·D/G − 1."""
    if groups == 1:
        return x[None]
    return np.moveaxis(x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups), -2, 0)


def windows(xg: np.ndarray, out_spatial, kernel, stride, dilate) -> np.ndarray:
    """Strided view G×N×(H''×W'')×(H'×W')×Dg of the receptive field of every output position."""
    return window_view(xg, out_spatial, kernel, stride, dilate, batch_axes=2, writeable=False)


def window_view(a, out_spatial, kernel, stride, dilate, *, batch_axes=1, writeable=False):
    """View (batch axes…)×(H''×W'')×(H'×W')×D of the windows of a (batch axes…)×H×W×D array: element
    [n, i, j, h, w, d] is a[n, S·i + dil·h, S·j + dil·w, d]. Windows overlap when S < dil·(H'−1) + 1."""
    step = a.strides[batch_axes:-1]
    shape = (*a.shape[:batch_axes], *out_spatial, *kernel, a.shape[-1])
    strides = (
        *a.strides[:batch_axes],
        *(t * s for t, s in zip(step, stride)),
        *(t * d for t, d in zip(step, dilate)),
        a.strides[-1],
    )
    return np.lib.stride_tricks.as_strided(a, shape, strides, writeable=writeable)


TILE_FILTERS = 80  # tile·K at most: wider tiles waste more products on the band's zeros than they gain
TILE_CHANNELS = 32  # inputs with this many channels or more are not tiled


def tile_width(out_width: int, filters: int, channels: int, groups: int, dilate_last: int, *,
               limit: int = TILE_FILTERS) -> int:
    """Outputs along the last spatial axis computed by one im2col row: the largest divisor of W''
    with tile·K ≤ `limit` (TILE_FILTERS), for inputs with fewer than TILE_CHANNELS channels (1 for
    grouped or dilated convolutions).

    Tiles lengthen both sides of a narrow product. LeNet-5's conv1 (D = 1, K = 6, tiles of 7):
    forward 2.3 → 1.6 ms on one core; conv2 (D = 6, K = 16, tiles of 5): dE/dx 6.1 → 3.9 ms;
    CIFAR-10's conv1 (D = 3, K = 32, tiles of 2): forward, dE/df and dE/dx 15.2, 16.3, 33.3 →
    14.0, 14.4, 27.8 ms. With 32 input channels the columns are already long and tiles of 2 were
    5–10 % slower (CIFAR-10's conv2).
    """
    if groups != 1 or dilate_last != 1 or channels >= TILE_CHANNELS:
        return 1
    fitting = [t for t in range(1, out_width + 1) if out_width % t == 0 and t * filters <= limit]
    return max(fitting, default=1)


FORWARD_TILE_FILTERS = 64  # the forward's tile·K at most
WIDE_ENOUGH = 16  # filters from which the forward of a one-channel input is not tiled


def forward_tile_width(out_width: int, filters: int, channels: int, groups: int, dilate_last: int) -> int:
    """`tile_width` for the forward, whose filter matrices are made before the batch split
    (`product_filters`): tiles of at most FORWARD_TILE_FILTERS outputs, and none for one input
    channel with WIDE_ENOUGH filters or more (its untiled columns are copied offset-major, see
    `im2col`). Forward alone, two threads after a pause, in turns (ms): LeNet-5's conv2 (K = 16)
    in tiles of 2: 1.68–1.72, of 5 (tile·K = 80): 2.31–2.61, untiled 1.74–2.01; the keypoints
    conv1 (D = 1, K = 32) untiled 28.0–28.8, in tiles of 2: 36.4–38.8; the 3D conv1 (D = 1, K =
    16) untiled 26.9, in tiles of 4: 28.8; tiny VGG's second conv (K = 10) in tiles of 4: 11.6, of
    6: 12.5; still tiled as before, CIFAR-10's conv1 (K = 32, tiles of 2: 6–9 % faster than
    untiled) and LeNet-5's conv1 (D = 1, K = 6, tiles of 7: 2.7 against 4.7 untiled)."""
    if channels == 1 and filters >= WIDE_ENOUGH:
        return 1
    return tile_width(out_width, filters, channels, groups, dilate_last, limit=FORWARD_TILE_FILTERS)


def tiled_geometry(out_spatial, kernel, stride, tile: int):
    """A tile of `tile` outputs along the last axis is one window of a wider kernel,
    S·(tile − 1) + W', taken every S·tile columns: (outputs, kernel, stride) of the tiled windows."""
    s, k = stride[-1], kernel[-1]
    return ((*out_spatial[:-1], out_spatial[-1] // tile), (*kernel[:-1], s * (tile - 1) + k),
            (*stride[:-1], s * tile))


def tiled_filters(w: np.ndarray, tile: int, stride_last: int) -> np.ndarray:
    """The banded matrix T with y_tile = cols_tile · T: T[(…, q, d), (j, k)] = f[…, q − S·j, d, k]
    where 0 ≤ q − S·j < W', else 0. Shape (H'·…·(S·(tile−1) + W')·D) × (tile·K)."""
    *lead, k_w, d, k = w.shape
    width = stride_last * (tile - 1) + k_w
    t = np.zeros((*lead, width, d, tile, k), dtype=w.dtype)
    for j in range(tile):
        t[..., stride_last * j : stride_last * j + k_w, :, j, :] = w
    return t.reshape(-1, tile * k)


def untiled_filter_gradient(dt: np.ndarray, w_shape, tile: int, stride_last: int) -> np.ndarray:
    """dE/df from dE/dT of `tiled_filters`: each filter tap sums its copies along the band."""
    if tile == 1:
        return dt.reshape(w_shape)
    *lead, k_w, d, k = w_shape
    dt = dt.reshape(*lead, stride_last * (tile - 1) + k_w, d, tile, k)
    dw = np.zeros(w_shape, dtype=dt.dtype)
    for j in range(tile):
        dw += dt[..., stride_last * j : stride_last * j + k_w, :, j, :]
    return dw


def im2col(view: np.ndarray, name: str, *, tiled: bool = False, ones: bool = False) -> list[np.ndarray]:
    """The im2col matrix of each group of a window view, M × (H'W'Dg) with M = N·H''·W'', in (h, w, d)
    column order; with `ones`, one more column, of ones, last (the product with `with_bias_row`'s
    filters then adds the biases).

    Columns live in the reusable buffer `name`. With several channels per group, or tiled windows,
    they are copied from the strided window view in one pass (contiguous runs of W'·Dg numbers).
    With one channel per group (a gray first layer, a depthwise conv) and untiled windows, whose
    runs are a few numbers long, they are laid out offset-major, (H'W') × M, each kernel offset's
    rows a contiguous strided slice, and handed out transposed (BLAS reads either layout):
    copying 5×5 windows of a 28×28×1 batch that way took 1.4 ms against 5.6 ms. (Tiled, the same
    layer's forward took 2.0 ms copied in one pass, 3.5 ms offset-major.) One copy of the view with
    its kernel axes moved in front, rather than one copy per offset: a block of the keypoints
    net's conv1 (one 94×94 sample, 3×3 taps) 33 → 23 µs, of the 3D net's conv1 (one 28×28×28
    volume, 3×3×3 taps) 204 → 183 µs; the per-offset copies were mostly the interpreter's work.
    """
    spatial = (view.ndim - 3) // 2
    groups, rows = view.shape[0], math.prod(view.shape[1 : 2 + spatial])
    if view.shape[-1] > 1 or tiled:
        width = math.prod(view.shape[2 + spatial :])
        cols = workspace.buffer(name, (groups, rows, width + int(ones)), view.dtype)
        np.copyto(_split_axes(cols[..., :width], view.shape, spatial), view)
        if ones:
            cols[..., width] = 1
        return list(cols)
    kernel, outputs = view.shape[2 + spatial : -1], view.shape[1 : 2 + spatial]
    taps = math.prod(kernel)
    cols = workspace.buffer(name, (groups, taps + int(ones), *outputs), view.dtype)
    kernel_axes = tuple(range(2 + spatial, 2 + 2 * spatial))
    by_offset = np.moveaxis(view[..., 0], kernel_axes, tuple(range(1, 1 + spatial)))  # G, H', W', N, H'', W''
    np.copyto(cols[:, :taps].reshape(groups, *kernel, *outputs), by_offset)
    if ones:
        cols[:, taps] = 1
    return [c.reshape(cols.shape[1], rows).T for c in cols]


def _split_axes(cols: np.ndarray, shape, spatial: int) -> np.ndarray:
    """A G × rows × width array (its rows possibly strided) as a view of `shape`, G × (N, H'', W'')
    × (H', W', Dg): rows and columns split into the window view's axes, in C order."""
    def c_strides(sizes, step):
        strides = []
        for size in reversed(sizes):
            strides.append(step)
            step *= size
        return tuple(reversed(strides))

    strides = (cols.strides[0], *c_strides(shape[1 : 2 + spatial], cols.strides[1]),
               *c_strides(shape[2 + spatial :], cols.strides[2]))
    return np.lib.stride_tricks.as_strided(cols, shape, strides, writeable=True)


def with_bias_row(filters: list[np.ndarray], bias, tile: int, dtype) -> list[np.ndarray]:
    """Each group's filter matrix with one more row, its biases b_k (`tile` times over for tiles),
    for columns ending in a one (`im2col`'s `ones`): y = [cols 1] · [F; b] = cols · F + b, the bias
    added by the product itself instead of another pass over y. One block of the keypoints net's
    conv2 (2116 × 128 by 128 × 64): 0.32–0.35 against 0.40–0.53 ms with the pass. The whole
    forward on one thread, in turns (new / old): the keypoints net's conv1 0.84–0.88, conv2 0.96,
    conv3 0.95–0.97, CIFAR-10's conv1 0.95–0.97 and conv2 0.94–1.01, the 3D conv1 0.96–0.97,
    LeNet-5's 0.95–0.98 (1.02–1.06 while this matrix was built with np.split, 38 µs a call
    against 6 µs now)."""
    k_g = len(bias) // len(filters)
    matrices = []
    for g, f in enumerate(filters):
        m = np.empty((f.shape[0] + 1, f.shape[1]), dtype=np.result_type(f, dtype))
        m[:-1] = f
        m[-1].reshape(tile, k_g)[...] = bias[g * k_g : (g + 1) * k_g]
        matrices.append(m)
    return matrices


BLOCK_FLOATS = 1 << 19  # im2col columns of one block: 2 MB of float32, still in cache when the product runs


def blocks(batch: int, out_spatial, columns: int, outputs: int = 0, block_floats: int | None = None):
    """Output blocks (n0, n1, i0, i1) whose im2col columns, and the product's `outputs` numbers per
    row, each hold at most about BLOCK_FLOATS numbers.

    A block is several whole samples (n0:n1, every output row) or a band i0:i1 of one sample's
    output rows, so its part of an N×H''×W''×K array is contiguous. Working block by block, the
    columns are still in cache when the product reads them (the CIFAR-10 net's conv2, forward and
    backward, took 72 ms against 131 ms with one product over all N·H''·W'' rows; 1 MB and 4 MB
    blocks measured a little slower than 2 MB), and so is the block's output when its bias is
    added. A first layer has more outputs than columns per row (the keypoints net's conv1, tiled:
    12 columns, 64 outputs): sized by its columns alone, its output blocks were 11 MB and the forward
    took 65–78 ms against 46–52 ms with 2 MB blocks (batch 128, two threads, in turns; the filter
    gradient, whose dE/dy block is the wide side, measured 1.01–1.08× slower so, and keeps the
    columns' size). `block_floats`: another size than BLOCK_FLOATS.
    """
    rows = max(64, (block_floats or BLOCK_FLOATS) // max(columns, outputs))
    per_line = math.prod(out_spatial[1:])
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
    rows = math.prod(w.shape[:-1])
    k_g = w.shape[-1] // groups
    return [w.reshape(rows, w.shape[-1])[:, g * k_g : (g + 1) * k_g] for g in range(groups)]


def product_filters(w, groups: int, tile: int, stride_last: int, bias, dtype) -> list[np.ndarray]:
    """The forward product's right-hand matrix per group: `filter_matrices`, with the bias row of
    `with_bias_row` when there are biases.

    A split call makes them once, before the split, and hands them to its parts: made in each
    part, the small copies of the banded filters handed the interpreter's lock back and forth
    between the threads, each hand-off a wake-up of the other core (LeNet-5's conv2, tiles of 5,
    two threads after a pause: the caller's part spent 1.7 ms making its filters, against 0.15 ms
    on the worker's; the forward took 4.8 ms against 1.8 ms with the filters made before)."""
    filters = filter_matrices(w, groups, tile, stride_last)
    return filters if bias is None else with_bias_row(filters, bias, tile, dtype)


def filter_matrices(w: np.ndarray, groups: int, tile: int, stride_last: int) -> list[np.ndarray]:
    """The product's right-hand matrix per group: the filters, or their banded form for tiles."""
    return filters_as_matrix(w, groups) if tile == 1 else [tiled_filters(w, tile, stride_last)]


def per_group(a: np.ndarray, groups: int, tile: int = 1) -> list[np.ndarray]:
    """N×…×C as one M × (tile·C/G) matrix per group (views): rows are tiles of `tile` positions along
    the last spatial axis (tiles are only used ungrouped)."""
    flat = a.reshape(-1, a.shape[-1] * tile)
    c_g = flat.shape[-1] // groups
    return [flat[:, g * c_g : (g + 1) * c_g] for g in range(groups)]


def conv_forward(x, w, stride, pads, dilate, groups, out_spatial, bias=None) -> np.ndarray:
    """y_{i,j,k} = b_k + Σ_{h,w,d} f_{h,w,d,k} · x_{S·i+dil·h, S·j+dil·w, d}, batch parts in parallel;
    box by box where the padding holds enough of the products (`by_boxes`)."""
    y = np.empty((x.shape[0], *out_spatial, w.shape[-1]), dtype=np.result_type(x, w))
    if by_boxes(x.shape, w.shape, out_spatial, stride, dilate, pads, groups):
        box_list = padding_free_boxes(x.shape[1:-1], out_spatial, w.shape[:-2], stride, dilate, before(pads))
        products = box_products(x, w, y, dilate, box_list)
        parallel.over_batch(lambda p: _conv_forward_by_boxes(p, products, bias), x.shape[0])
        return y
    tile = forward_tile_width(out_spatial[-1], w.shape[-1], x.shape[-1], groups, dilate[-1])
    filters = product_filters(w, groups, tile, stride[-1], bias, y.dtype)  # once, before the split
    parallel.over_batch(
        lambda p: _conv_forward(x[p], w, stride, pads, dilate, groups, out_spatial, y[p], bias,
                                tile=tile, filters=filters),
        x.shape[0],
    )
    return y


def conv_backward_filter(x, dy, w_shape, stride, pads, dilate, groups) -> np.ndarray:
    """dE/df = Σ over the batch's parts of each part's colsᵀ · dy."""
    return _filter_and_bias_gradients(x, dy, w_shape, stride, pads, dilate, groups, bias=False)[0]


def _filter_and_bias_gradients(x, dy, w_shape, stride, pads, dilate, groups, *, bias) -> tuple:
    """(dE/df, dE/db or None), each the sum over the batch's parts."""
    partial = parallel.over_batch(
        lambda p: _conv_backward_filter(x[p], dy[p], w_shape, stride, pads, dilate, groups, bias=bias),
        x.shape[0],
    )
    dws, dbs = zip(*partial)
    return summed(dws), summed(dbs) if bias else None


def conv_backward_data(dy, w, x_shape, stride, pads, dilate, groups) -> np.ndarray:
    """dE/dx of the convolution, batch parts in parallel (see _conv_backward_data); the rotated
    convolution box by box where `by_boxes` picks it (the forward of a stride-1 transposed
    convolution, whose padding dil·(H'−1) − crop holds a large share of the products)."""
    if dx_by_rotation(x_shape, w.shape, dy.shape, stride, groups):
        kernel, ones = w.shape[:-2], (1,) * (w.ndim - 2)
        padding = rotated_padding(kernel, pads, dilate)
        if by_boxes(dy.shape, w.shape, x_shape[1:-1], ones, dilate, padding, groups):
            return conv_forward(dy, _rotated_filters(w, groups), ones, padding, dilate, groups, x_shape[1:-1])
    filters = dx_filters(x_shape, w, dy.shape, stride, dilate, groups)  # once, before the split
    return _batchwise(_conv_backward_data, x_shape, np.result_type(dy, w), (dy,), w, stride, pads,
                      dilate, groups, filters)


def conv_backward(x, w, dy, stride, pads, dilate, groups, *, input_grad, bias) -> tuple:
    """(dE/dx or None, dE/df, dE/db or None) of the convolution: the two products above and the
    bias gradient, each batch part's on one thread in one split (LeNet-5's conv2, in turns with a
    split per product: 4.40–4.56 against 4.68–4.78 ms; its conv1 and CIFAR-10's 1–3 % faster),
    or, where dE/dx is the rotated convolution, both products from its columns
    (`_backward_from_dy_columns`).

    Every other part runs its two products in the other order, so that the threads are not in the
    same phase (copying columns, or scattering them back) at the same moment: the 3D net's conv1
    (batch 32) took 0.83–0.90 of the time in four runs in turns, LeNet-5's conv2 0.89–1.05, the
    other layers of benchmarks/ops.py 0.96–1.07; the numbers are the same."""
    if input_grad and dx_by_rotation(x.shape, w.shape, dy.shape, stride, groups):
        return _backward_from_dy_columns(x, w, dy, pads, dilate, groups, bias=bias)
    if not input_grad:
        return None, *_filter_and_bias_gradients(x, dy, w.shape, stride, pads, dilate, groups, bias=bias)
    dx = np.empty(x.shape, dtype=np.result_type(dy, w))
    filter_first = {p.start: i % 2 == 1 for i, p in enumerate(parallel.batch_parts(x.shape[0]))}
    filters = dx_filters(x.shape, w, dy.shape, stride, dilate, groups)  # once, before the split

    def both_products(p):  # one split for both: a part's dE/dy is still in cache for the second
        def data():
            _conv_backward_data(dy[p], w, stride, pads, dilate, groups, filters, out=dx[p])

        if not filter_first[p.start]:
            data()
        gradients = _conv_backward_filter(x[p], dy[p], w.shape, stride, pads, dilate, groups, bias=bias)
        if filter_first[p.start]:
            data()
        return gradients

    dws, dbs = zip(*parallel.over_batch(both_products, x.shape[0]))
    return dx, summed(dws), summed(dbs) if bias else None


def summed(parts):
    """The sum of the batch parts' arrays (the one array itself when there is one part), added one
    to the next: np.sum stacks them into a new array first (CIFAR-10's conv3 filter gradient, two
    parts: 27.5 µs against 5 µs)."""
    return functools.reduce(np.add, parts)


def _backward_from_dy_columns(x, w, dy, pads, dilate, groups, *, bias) -> tuple:
    """(dE/dx, dE/df, dE/db or None) of a stride-1 convolution from one im2col of the padded dE/dy,
    batch parts in parallel.

    The rotated convolution's columns hold, in the row of each position p of x, dE/dy_{p+P−dil·h, k}
    for every tap (H'−1−h, k) (see `_conv_backward_data_rotated`). So besides dE/dx = cols · f' they
    give dE/df_{h,d,k} = Σ_p x_{p,d} · dE/dy_{p+P−dil·h, k} = (xᵀ · cols) with its taps flipped back,
    without an im2col of x. Against the two products apart, in turns, two runs: 0.86–0.90× for
    CIFAR-10's conv2 (batch 128), 0.85–0.86× for convnet3d's conv2 (batch 32), 0.88× and 0.92× for
    tiny_vgg's 3×3×10×10 on 62×62 and alexnet_small's 5×5×64×64 (batch 64); 0.96–1.00× for
    CIFAR-10's conv3 and the keypoints net's conv2. Where the padded dE/dy holds enough of the
    products' inputs (`by_boxes`), box by box from the unpadded dE/dy (`_from_dy_columns_by_boxes`)."""
    dx = np.empty(x.shape, dtype=np.result_type(dy, w))
    rotated, kernel = _rotated_filters(w, groups), w.shape[:-2]
    padding, ones = rotated_padding(kernel, pads, dilate), (1,) * len(kernel)
    if by_boxes(dy.shape, w.shape, x.shape[1:-1], ones, dilate, padding, groups):
        box_list = padding_free_boxes(dy.shape[1:-1], x.shape[1:-1], kernel, ones, dilate, before(padding))
        boxes = box_products(dy, rotated, dx, dilate, box_list)

        def products(p):
            return _from_dy_columns_by_boxes(p, x, boxes, (x.shape[-1], *kernel, dy.shape[-1]),
                                             np.result_type(x, dy))
    else:
        filters = filters_as_matrix(rotated, groups)  # once, before the split

        def products(p):
            return _from_dy_columns(x[p], w, dy[p], pads, dilate, groups, filters, out=dx[p])

    partial = parallel.over_batch(lambda p: (products(p), bias_gradient(dy[p]) if bias else None), x.shape[0])
    dts, dbs = zip(*partial)
    return dx, _unrotated_filter_gradient(summed(dts), w.shape, groups), summed(dbs) if bias else None


def _from_dy_columns(x, w, dy, pads, dilate, groups, filters, *, out) -> np.ndarray:
    """dE/dx into `out` and, returned, the per-group G × (D/G) × (H'W'·K/G) products xᵀ · cols."""
    kernel = w.shape[:-2]
    view = windows(grouped(pad_spatial(dy, rotated_padding(kernel, pads, dilate), "conv.pad"), groups),
                   x.shape[1:-1], kernel, (1,) * len(kernel), dilate)
    d_g = x.shape[-1] // groups
    dt = np.zeros((groups, d_g, filters[0].shape[0]), dtype=np.result_type(x, dy))
    for block in blocks(x.shape[0], x.shape[1:-1], filters[0].shape[0], d_g):
        cols = im2col(view[:, block[0] : block[1], block[2] : block[3]], "conv.cols")
        dx_block, x_block = per_group(block_of(out, block), groups), per_group(block_of(x, block), groups)
        for g, (c, f, dx_g, x_g) in enumerate(zip(cols, filters, dx_block, x_block)):
            if groups == 1:
                np.matmul(c, f, out=dx_g)
            else:
                dx_g[...] = c @ f
            dt[g] += x_g.T @ c
    return dt


def _from_dy_columns_by_boxes(p: slice, x, products, dt_shape, dtype) -> np.ndarray:
    """`_from_dy_columns` for the batch part p box by box (`by_boxes`, one group): each box of x's
    positions from the columns of the unpadded dE/dy over its taps only (`box_products`), dE/dx =
    cols · f'_taps and, returned, xᵀ · cols added to the D × (H'×W') × K products at those taps.
    Those are summed as colsᵀ · x, (H'×W') × K × D, the faster side for OpenBLAS (`_inner_products`)."""
    d = dt_shape[0]
    dt = np.zeros((*dt_shape[1:], d), dtype=dtype)
    for box, view, f, dx_box in products:
        dx_box = dx_box[p]
        if f is None:
            dx_box[...] = 0
            continue
        x_box, dt_taps = x[(p, *box.outputs)], dt[box.taps]
        for block, cols in box_columns(view[p], f.shape[0], d):
            dx_part = block_of(dx_box, block)
            dx_part[...] = np.matmul(cols, f, out=_box_product_buffer(cols, f)).reshape(dx_part.shape)
            dt_taps += (cols.T @ block_of(x_box, block).reshape(-1, d)).reshape(dt_taps.shape)
    return dt.reshape(-1, d).T.reshape(1, d, -1)


def _unrotated_filter_gradient(dt, w_shape, groups) -> np.ndarray:
    """dE/df H'×W'×(D/G)×K from the G × (D/G) × (h', w', K/G) products of `_from_dy_columns`, whose
    taps h' = H'−1−h are rotated."""
    kernel, spatial = w_shape[:-2], len(w_shape) - 2
    dt = dt.reshape(groups, w_shape[-2], *kernel, w_shape[-1] // groups)  # G, Dg, h', w', Kg
    dt = np.flip(dt, axis=tuple(range(2, 2 + spatial)))
    return np.ascontiguousarray(np.moveaxis(dt, (0, 1), (-2, -3))).reshape(w_shape)


def bias_gradient(dy) -> np.ndarray:
    """dE/db_k = Σ over every axis but the last of dE/dy_{…,k}, as the product 1ᵀ · dy (BLAS), which
    ran 8–18× faster than NumPy's column sum of the tall, narrow N·H''·W'' × K matrix. A large dy
    is summed as lines of its last axes (`line_length`), whose K-wide columns are then added:
    batch 64, the keypoints net's conv1 and conv2 outputs 8.3 → 5.6 and 4.6 → 2.6 ms, LeNet-5's
    conv1 0.14 → 0.08 ms, with a smaller rounding error (8e-7 against 5e-6 of the largest sum);
    below 2^18 numbers (LeNet-5's conv2, 0.02 ms) the one product is as fast."""
    k = dy.shape[-1]
    line = line_length(dy.shape) if dy.size >= LARGE_BIAS_GRADIENT else k
    flat = dy.reshape(-1, line)
    sums = np.ones(flat.shape[0], dtype=flat.dtype) @ flat
    return sums if line == k else sums.reshape(-1, k).sum(axis=0)


LARGE_BIAS_GRADIENT = 1 << 18  # numbers of dE/dy from which its sum goes by lines
BIAS_LINE = 1 << 16  # numbers per line at most (see line_length)


def line_length(shape) -> int:
    """How many numbers of an array of `shape` one line holds: its last axis times as many of the
    axes before it as keep the line within BIAS_LINE numbers (one sample of LeNet-5's 28×28×6, one
    row 94·32 of the keypoints net's 94×94×32)."""
    line = shape[-1]
    for n in reversed(shape[:-1]):
        if line * n > BIAS_LINE:
            break
        line *= n
    return line


def add_bias(y: np.ndarray, bias) -> np.ndarray:
    """y_{…,k} += b_k in place, as lines of y (`line_length`) plus b tiled to a line: broadcasting b
    alone loops over runs of K numbers. Batch 64: LeNet-5's conv1 output (28×28×6) 0.52 against
    0.05 ms, the CIFAR-10 net's (32×32×32) 1.43 against 0.57, the keypoints net's (94×94×32) 14.1
    against 10.7 ms."""
    if not y.flags.c_contiguous:
        y += bias
        return y
    line = line_length(y.shape)
    lines = y.reshape(-1, line)
    lines += np.tile(bias, line // y.shape[-1])
    return y


def stored_filters(w: np.ndarray) -> np.ndarray:
    """Filters as a network keeps them on this backend: H'×W'×D×K, C-contiguous, so that their
    matrix (H'W'D) × K is a view."""
    return np.ascontiguousarray(w)


PARALLEL_PRODUCT = 1 << 25  # multiply-adds from which a matrix product is split between threads


def matrix_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a · b, split between the threads along the longer side of the result when the product is
    large (BLAS itself runs on one thread: see parallel.py), each thread reading half of the larger
    operand. The keypoints net's first fully connected layer at batch 128 (15488 inputs, 500
    outputs): forward, dE/dx and dE/df 32, 35 and 40 ms on one thread, 17, 19 and 23 ms on two;
    its second (500 × 500, 2^25 multiply-adds) stays whole."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    if m * k * n < PARALLEL_PRODUCT or len(parallel.batch_parts(max(m, n))) == 1:
        return a @ b
    out = np.empty((m, n), dtype=np.result_type(a, b))
    if m >= n:
        parallel.over_batch(lambda p: np.matmul(a[p], b, out=out[p]), m)
    else:
        parallel.over_batch(lambda p: np.matmul(a, b[:, p], out=out[:, p]), n)
    return out


def affine(x, w, b=None) -> np.ndarray:
    """x·w + b for an N×M matrix x, M×K filters w and K biases b (or None), the bias added in
    place when that keeps NumPy's result type."""
    y = matrix_product(x, w)
    if b is None:
        return y
    if np.result_type(y, b) != y.dtype:
        return y + b
    y += b
    return y


def max_pool(x, kernel, stride, pads, out_spatial) -> np.ndarray:
    """Max pooling, batch parts in parallel (see _max_pool)."""
    shape = (x.shape[0], *out_spatial, x.shape[-1])
    return _batchwise(_max_pool, shape, x.dtype, (x,), kernel, stride, pads, out_spatial)


def max_pool_backward(x, dy, kernel, stride, pads, y=None) -> np.ndarray:
    """Max pooling's dE/dx, batch parts in parallel (see _max_pool_backward); y, the forward's
    output if at hand, saves recomputing the maxima."""
    if y is None:
        return _batchwise(_max_pool_backward, x.shape, dy.dtype, (x, dy), kernel, stride, pads)
    return _batchwise(_max_pool_backward_given_y, x.shape, dy.dtype, (x, dy, y), kernel, stride, pads)


def avg_pool(x, kernel, stride, pads, out_spatial) -> np.ndarray:
    """Average pooling, batch parts in parallel (see _avg_pool)."""
    shape = (x.shape[0], *out_spatial, x.shape[-1])
    return _batchwise(_avg_pool, shape, x.dtype, (x,), kernel, stride, pads, out_spatial)


def avg_pool_backward(x, dy, kernel, stride, pads) -> np.ndarray:
    """Average pooling's dE/dx, batch parts in parallel (see _avg_pool_backward)."""
    return _batchwise(_avg_pool_backward, x.shape, dy.dtype, (x, dy), kernel, stride, pads)


SPLIT_ELEMENTWISE = 1 << 18  # numbers from which an element-wise op runs on the batch's parts in parallel


def relu(x) -> np.ndarray:
    """y = max{0, x}, as the maximum with an array of zeros: NumPy's maximum against the scalar 0
    skips its vector loop (262k float32 numbers: 240 µs against 50 µs with zeros; NaN is kept
    either way); large batches in parallel parts (the keypoints net's first ReLU, 36M numbers:
    57 ms on one thread, 35 ms on two, both against the scalar)."""
    zeros = zeros_like(x)
    if x.size < SPLIT_ELEMENTWISE:
        return np.maximum(x, zeros)
    return _batchwise(np.maximum, x.shape, x.dtype, (x, zeros))


def zeros_like(x: np.ndarray) -> np.ndarray:
    """A read-only array of zeros shaped as x: one sample's zeros (x[0]'s shape) broadcast over the
    batch, so every inner loop still runs over contiguous zeros, which stay in cache."""
    return _zeros(x.shape, x.dtype)


@functools.lru_cache(maxsize=64)
def _zeros(shape, dtype) -> np.ndarray:
    sample = np.zeros(shape[1:], dtype=dtype)
    sample.flags.writeable = False
    return np.broadcast_to(sample, shape)


def relu_backward(x, dy) -> np.ndarray:
    """dE/dx = dE/dy · [x > 0]; large batches in parallel parts (the same layer: 78 against 49 ms)."""
    if x.size < SPLIT_ELEMENTWISE:
        return dy * (x > 0)
    return _batchwise(_times_positive, dy.shape, dy.dtype, (dy, x))


def channel_window_sum(a, before, after) -> np.ndarray:
    """Σ_{d'=d−before}^{d+after} a_{…,d'} along the last axis, cells outside [0, D) being zero (LRN's
    window), as one product a · B with the D×D band B_{d',d} = [d − before ≤ d' ≤ d + after]: 1M
    numbers in 32 channels, about 1.5 ms against 5 ms by shifted additions (runs of D − shift
    numbers). An infinite or NaN a_{…,d'} makes every sum at its position NaN (∞ · 0), not only
    those of the windows it is in."""
    flat = a.reshape(-1, a.shape[-1])
    return (flat @ _band(a.shape[-1], before, after, a.dtype)).reshape(a.shape)


@functools.lru_cache(maxsize=32)
def _band(channels: int, before: int, after: int, dtype) -> np.ndarray:
    d = np.arange(channels)
    band = ((d[:, None] >= d[None, :] - before) & (d[:, None] <= d[None, :] + after)).astype(dtype)
    band.flags.writeable = False
    return band


def negative_power(s, beta) -> np.ndarray:
    """s^(−β); for AlexNet's β = 3/4 as ⁴√s / s, two square roots and a division that NumPy runs
    in SIMD: 1.6 ms against 9.1 ms by `power` for 1M float32 numbers."""
    if beta == 0.75:
        return np.sqrt(np.sqrt(s)) / s
    return s ** (-beta)


def softmax_log_loss(x, labels, weights):
    """E = Σ ω_c ℓ / Σ ω_c, ℓ = log Σ_d e^{x_d} − x_c at each position (the plain mean without
    weights); see convscope.ops.softmax_log_loss."""
    onehot, omega = _classes(x, labels, weights)
    shifted = x - x.max(axis=-1, keepdims=True)
    per_position = np.log(np.exp(shifted).sum(axis=-1)) - (shifted * onehot).sum(axis=-1)
    if omega is None:
        return per_position.mean()
    return (omega * per_position).sum() / omega.sum()


def softmax_log_loss_backward(x, labels, dy, weights):
    """dE/dx = dE/dy · ω_c (softmax(x) − onehot(c)) / Σ ω_c."""
    onehot, omega = _classes(x, labels, weights)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    residual = e / e.sum(axis=-1, keepdims=True) - onehot
    if omega is None:
        return residual * (dy / labels.size)
    return residual * (dy * omega / omega.sum())[..., None]


def _classes(x, labels, weights):
    """One-hot labels (x's shape) and each position's class weight ω_c (None without weights)."""
    onehot = (labels[..., None] == np.arange(x.shape[-1])).astype(x.dtype)
    return onehot, None if weights is None else (onehot * weights).sum(axis=-1)


def _times_positive(dy, x, *, out):
    return np.multiply(dy, x > 0, out=out)


def _batchwise(serial, shape, dtype, batched, *rest) -> np.ndarray:
    """A new array of `shape` whose batch parts serial(*(a[part] for a in batched), *rest, out=its
    part) fill, in parallel."""
    out = np.empty(shape, dtype=dtype)
    parallel.over_batch(lambda p: serial(*(a[p] for a in batched), *rest, out=out[p]), shape[0])
    return out


def _conv_forward(x, w, stride, pads, dilate, groups, out_spatial, out=None, bias=None, *, tile=None,
                  filters=None):
    """y_{i,j,k} = b_k + Σ_{h,w,d} f_{h,w,d,k} · x_{S·i+dil·h, S·j+dil·w, d}: per block of output
    rows, im2col then one GEMM per group (tiles of the last axis against the banded filters; `tile`
    outputs per tile, by default `tile_width`'s. The rotated dE/dx runs untiled: tiles of its D
    filters measured slower, e.g. 29.9 against 21.1 ms for 64×64×10 inputs with 3×3×10×10 filters).
    `filters`: the product's right-hand matrices (`product_filters`), when the caller made them."""
    if tile is None:
        tile = forward_tile_width(out_spatial[-1], w.shape[-1], x.shape[-1], groups, dilate[-1])
    out_t, kernel_t, stride_t = tiled_geometry(out_spatial, w.shape[:-2], stride, tile)
    view = windows(grouped(pad_spatial(x, pads, "conv.pad"), groups), out_t, kernel_t, stride_t, dilate)
    y = np.empty((x.shape[0], *out_spatial, w.shape[-1]), np.result_type(x, w)) if out is None else out
    if filters is None:
        filters = product_filters(w, groups, tile, stride[-1], bias, y.dtype)
    for block in blocks(x.shape[0], out_t, filters[0].shape[0], tile * w.shape[-1]):
        cols = im2col(view[:, block[0] : block[1], block[2] : block[3]], "conv.cols", tiled=tile > 1,
                      ones=bias is not None)
        y_block = block_of(y, block)
        if groups == 1:
            np.matmul(cols[0], filters[0], out=y_block.reshape(-1, filters[0].shape[1]))
        else:
            for part, c, f in zip(per_group(y_block, groups), cols, filters):
                part[...] = c @ f
    return y


BOXES_MIN_PADDED = 0.02  # share of a convolution's products on padding zeros from which it goes by boxes
BOXES_MIN_CHANNELS = 16  # ... with this many input and output channels or more
BOXES_MIN_SAVED = 1_000_000  # ... and this many multiply-adds saved per box in a batch part


def by_boxes(x_shape, w_shape, out_spatial, stride, dilate, pads, groups: int) -> bool:
    """Whether a convolution of an x_shape input by H'×W'×D×K filters (or K×D, rotated) runs box by
    box (boxes.py): ungrouped, with BOXES_MIN_CHANNELS or more input and output channels, at least
    BOXES_MIN_PADDED of its multiply-adds on padding zeros (`padded_share`), and enough of them per
    box in a batch part, BOXES_MIN_SAVED, to pay for the box's own interpreter work (some 12 µs a
    box forward, 20 µs backward).

    benchmarks/padding_boxes.py, two threads, batch 128 (3D: 32), forward and backward, boxes /
    padded im2col in turns: CIFAR-10's conv2 0.91 and 0.90, its conv3 0.92 and 0.86,
    alexnet_small's conv2 0.90 and 0.89, the 3D net's conv2 0.88 and 0.90, 4×4×128 inputs with
    3×3×128×128 filters 0.80 and 0.81; 48×48×32 inputs with 3×3×32×64 filters, 2.8 % of the
    products on padding, 0.99 and 0.93. But 16×16×8 inputs with 5×5×8×16 filters 1.36 and 1.05:
    fewer channels go by tiles (`tile_width`), and the rotated dE/dx's product is only D wide.

    Forward and backward together over batch sizes (the saved multiply-adds per box and part in
    brackets, millions): CIFAR-10's conv3 batch 4, 16, 32, 64, 128: 1.52 (0.15), 1.82 (0.29),
    1.25 (0.58), 1.02 (1.16), 0.89 (2.33); its conv2 batch 8, 32, 64, 128: 1.08 (0.30), 1.13
    (0.61), 0.99 (1.21), 0.91 (2.42); the 3D conv2 batch 1, 4, 8, 32: 1.08 (0.19), 0.95 (0.77),
    0.89 (1.53), 0.89 (3.06)."""
    if groups != 1 or min(w_shape[-2:]) < BOXES_MIN_CHANNELS:
        return False
    in_spatial, kernel = x_shape[1:-1], w_shape[:-2]
    share = padded_share(in_spatial, out_spatial, kernel, stride, dilate, before(pads))
    if share < BOXES_MIN_PADDED:
        return False
    part = max(p.stop - p.start for p in parallel.batch_parts(x_shape[0]))
    products = part * math.prod(out_spatial) * math.prod(w_shape)
    boxes = len(padding_free_boxes(in_spatial, out_spatial, kernel, stride, dilate, before(pads)))
    return share * products / boxes >= BOXES_MIN_SAVED


def before(pads) -> tuple[int, ...]:
    """The padding before the first input along each spatial axis, of (before, after) pairs."""
    return tuple(a for a, _ in pads)


def box_products(x, w, out, dilate, box_list) -> list[tuple]:
    """Per box, made once before a batch split (slicing a part out of them is then all a part does
    in the interpreter): (box, the window view of the unpadded x over the box's taps, the matrix of
    those taps' filters (taps·D) × K, the box's outputs), views over the whole batch; view and
    matrix None for a box whose windows lie wholly in the padding."""
    spatial = x.ndim - 2
    # the windows of the whole kernel from every input position, [n, a, …, h, …, d] = x[n, a + dil·h, …, d]:
    # each box slices out its positions and taps (`Box.window`), which lie inside x (those of
    # windows running past x's end are never read). One strided view, then slicing: the 25 boxes
    # of the CIFAR-10 net's conv3 took 0.25 ms here, 0.42 ms with a strided view made per box, and
    # 0.11 ms (against 0.17–0.20 the same hour) once each box carried its index
    reach = window_view(x, x.shape[1:-1], w.shape[:spatial], (1,) * spatial, dilate)
    products = []
    for box in box_list:
        out_box = out[(slice(None), *box.outputs)]
        if box.empty:
            products.append((box, None, None, out_box))
            continue
        taps_filters = w[box.taps].reshape(-1, w.shape[-1])
        products.append((box, reach[(slice(None), *box.window)], taps_filters, out_box))
    return products


def box_columns(view: np.ndarray, columns: int, outputs: int):
    """(block, im2col columns) of one part's window view of a box, block by block (`blocks`)."""
    spatial = (view.ndim - 2) // 2
    for block in _box_blocks(view.shape[0], view.shape[1 : 1 + spatial], columns, outputs, BLOCK_FLOATS):
        windows_of_block = block_of(view, block)
        cols = workspace.buffer("conv.cols", windows_of_block.shape, view.dtype)
        np.copyto(cols, windows_of_block)
        yield block, cols.reshape(-1, columns)


@functools.lru_cache(maxsize=1024)
def _box_blocks(batch: int, out_spatial, columns: int, outputs: int, block_floats: int) -> tuple:
    """`blocks`, made once per box shape, batch part and block size."""
    return tuple(blocks(batch, out_spatial, columns, outputs, block_floats))


def _box_product_buffer(cols: np.ndarray, f: np.ndarray) -> np.ndarray:
    return workspace.buffer("conv.box", (cols.shape[0], f.shape[1]), np.result_type(cols, f))


def _conv_forward_by_boxes(p: slice, products, bias) -> None:
    """The forward of the batch part p box by box (`by_boxes`): y_box = cols_box · f_taps + b."""
    for _, view, f, y_box in products:
        y_box = y_box[p]
        if f is None:
            y_box[...] = 0 if bias is None else bias
            continue
        for block, cols in box_columns(view[p], *f.shape):
            y_part = block_of(y_box, block)
            product = np.matmul(cols, f, out=_box_product_buffer(cols, f)).reshape(y_part.shape)
            if bias is None:
                y_part[...] = product
            else:
                np.add(product, bias, out=y_part)


def _conv_backward_filter(x, dy, w_shape, stride, pads, dilate, groups, *, bias=False) -> tuple:
    """(dE/df, dE/db or None): dE/df_{h,w,d,k} = Σ_{n,i,j} dE/dy_{i,j,k} · x_{S·i+dil·h, S·j+dil·w, d}
    = Σ_blocks colsᵀ · dy (for tiles, the gradient of the banded matrix, folded back onto the filter
    taps), and with `bias` dE/db = Σ_blocks 1ᵀ · dy, from the same products: the columns end in a
    one (`im2col`'s `ones`), so the product's last row is 1ᵀ · dy. A second pass over each block's
    dy, in turns on one thread, took from 1 % less (the keypoints conv1) to 6 % more time (LeNet-5's
    conv1; its conv2, CIFAR-10's and the 3D conv1 2–4 % more)."""
    tile = tile_width(dy.shape[-2], w_shape[-1], x.shape[-1], groups, dilate[-1])
    out_t, kernel_t, stride_t = tiled_geometry(dy.shape[1:-1], w_shape[:-2], stride, tile)
    view = windows(grouped(pad_spatial(x, pads, "conv.pad"), groups), out_t, kernel_t, stride_t, dilate)
    columns = math.prod(kernel_t) * w_shape[-2]
    dt = np.zeros((columns + int(bias), tile * w_shape[-1]), dtype=np.result_type(x, dy))
    k_g = dt.shape[1] // groups
    for block in blocks(x.shape[0], out_t, columns):
        cols = im2col(view[:, block[0] : block[1], block[2] : block[3]], "conv.cols", tiled=tile > 1,
                      ones=bias)
        for g, (c, d) in enumerate(zip(cols, per_group(block_of(dy, block), groups, tile))):
            dt[:, g * k_g : (g + 1) * k_g] += _inner_products(c, d)
    db = dt[-1].reshape(tile, w_shape[-1]).sum(axis=0) if bias else None
    return untiled_filter_gradient(dt[:columns], w_shape, tile, stride[-1]), db


def _inner_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """aᵀ·b for tall M×P and M×Q matrices, as (bᵀ·a)ᵀ when Q > P: OpenBLAS runs the tall-skinny
    product faster with the wider matrix first (measured on the first layers)."""
    return (b.T @ a).T if b.shape[1] > a.shape[1] else a.T @ b


ROTATED_MIN_CHANNELS = 32  # input channels per group from which stride-1 dE/dx is a rotated convolution
ROTATED_FEW_CHANNELS = 8  # ... or from this many, with fewer than 4 filters per channel (rotated_is_faster)
COL2IM_MIN_FILTERS = 128  # ... unless the kernel has at most 4 taps and this many filters per group


def _conv_backward_data(dy, w, stride, pads, dilate, groups, filters=None, *, out) -> np.ndarray:
    """dE/dx: the transpose of the convolution applied to dy.

    With stride 1 it is itself a convolution of dy, padded by dil·(H'−1) − P, with the filters
    rotated by 180° and their d, k axes swapped within each group (no scatter-add), where
    `rotated_is_faster`. Otherwise the column gradient dy · fᵀ is scattered back over the windows
    (col2im). `filters`: `dx_filters`' matrices, when the caller made them.
    """
    if filters is None:
        filters = dx_filters(out.shape, w, dy.shape, stride, dilate, groups)
    if dx_by_rotation(out.shape, w.shape, dy.shape, stride, groups):
        return _conv_backward_data_rotated(dy, w, pads, dilate, groups, filters, out=out)
    return _conv_backward_data_col2im(dy, w, stride, pads, dilate, groups, filters, out=out)


def dx_filters(x_shape, w, dy_shape, stride, dilate, groups) -> list[np.ndarray]:
    """The right-hand matrices of dE/dx's products: the rotated filters (`_rotated_filters`), or
    for col2im the filters, banded for its tiles. Made once before a batch split (see
    `product_filters`)."""
    if dx_by_rotation(x_shape, w.shape, dy_shape, stride, groups):
        return filters_as_matrix(_rotated_filters(w, groups), groups)
    return filter_matrices(w, groups, _col2im_tile_of(dy_shape, w.shape, x_shape[-1], groups, dilate),
                           stride[-1])


def _col2im_tile_of(dy_shape, w_shape, channels, groups, dilate) -> int:
    return col2im_tile(tile_width(dy_shape[-2], w_shape[-1], channels, groups, dilate[-1]),
                       w_shape[-3], channels // groups)


def dx_by_rotation(x_shape, w_shape, dy_shape, stride, groups) -> bool:
    """Whether dE/dx goes by the rotated convolution: stride 1 and `rotated_is_faster`."""
    if any(s != 1 for s in stride):
        return False
    return rotated_is_faster(x_shape[-1] // groups, w_shape[-1] // groups, math.prod(w_shape[:-2]),
                             math.prod(x_shape[1:-1]), math.prod(dy_shape[1:-1]))


def rotated_is_faster(channels: int, filters: int, taps: int, x_positions: int, y_positions: int) -> bool:
    """Whether a stride-1 dE/dx runs faster as the rotated convolution than by col2im, for D/G
    `channels` and K/G `filters` per group, kernels of `taps` offsets, and x and dE/dy of
    `x_positions` and `y_positions` spatial positions.

    The rotated product has one row per position of x and only D/G columns, which BLAS runs
    poorly for few channels; col2im's product dy · fᵀ has one row per position of dE/dy, a long
    inner dimension K/G and H'W'·D/G columns, then one addition per kernel offset. So:

    - from ROTATED_MIN_CHANNELS channels on, rotated (CIFAR-10's conv2 and conv3, D = 32: about 21
      and 11 ms against 43 and 17 ms by col2im), except for kernels of at most 4 taps with
      COL2IM_MIN_FILTERS filters or more, whose col2im needs only 4 additions (2×2 kernels at
      batch 64, col2im / rotated: K = 128 with D = 32, 64, 128: 0.76, 0.86, 0.92; K = 64 with
      D = 32, 64: 1.01, 1.13; 3×3 and 5×5 kernels 1.07–1.79 for every K up to 128);
    - from ROTATED_FEW_CHANNELS channels on, rotated when there are fewer than 4 filters per
      channel and x has at most 1.5× the positions of dE/dy (a valid 5×5 convolution of a small
      image makes most of the rotated product's inputs padding zeros). Batch 128 unless noted,
      rotated against col2im, in turns: 32×32×16 inputs with 3×3×16×16 filters 15.6 against
      26.2 ms, with 3×3×16×32 28.0 against 32.3; 16×16×24 with 5×5×24×32 21.4 against 28.4;
      64×64×10 with 3×3×10×10 (batch 64) 21.1 against 29.9; convnet3d's 14×14×14×16 volumes with
      3×3×3×16×32 filters (batch 32) 53.6 against 72.2 and 14×14×14×8 with 3×3×3×8×16 26.2
      against 37.0. But 32×32×8 with 3×3×8×32 (4 filters per channel) 25.6 against 21.4, and
      mnist_lenet's 12×12×20 with 5×5×20×50, valid (2.25× the positions), 24.9 against 15.0;
    - with fewer channels, col2im (LeNet-5's conv2, D = 6: 3.1 against 6.5 ms; CIFAR-10's conv1,
      D = 3: 28 against 53 ms).
    """
    if taps <= 4 and filters >= COL2IM_MIN_FILTERS:
        return False
    if channels >= ROTATED_MIN_CHANNELS:
        return True
    return channels >= ROTATED_FEW_CHANNELS and filters < 4 * channels and 2 * x_positions <= 3 * y_positions


def _rotated_filters(w: np.ndarray, groups: int) -> np.ndarray:
    """f'[h, w, kg, g·Dg + dg] = f[H'−1−h, W'−1−w, dg, g·Kg + kg]: H'×W'×(K/G)×D."""
    spatial = w.ndim - 2
    d_g, k = w.shape[-2:]
    flipped = np.flip(w, axis=tuple(range(spatial)))
    per_group = flipped.reshape(*w.shape[:-1], groups, k // groups)  # …, Dg, G, Kg
    swapped = np.moveaxis(per_group, (-3, -2, -1), (-1, -2, -3))  # …, Kg, G, Dg
    return np.ascontiguousarray(swapped).reshape(*w.shape[:-2], k // groups, groups * d_g)


def rotated_padding(kernel, pads, dilate):
    """dE/dy's padding for the rotated convolution: dil·(H'−1) − P on each side (negative: a crop)."""
    full = tuple(d * (k - 1) for k, d in zip(kernel, dilate))
    return tuple((e - a, e - b) for e, (a, b) in zip(full, pads))


def _conv_backward_data_rotated(dy, w, pads, dilate, groups, filters, *, out):
    kernel, (d_g, k) = w.shape[:-2], w.shape[-2:]
    rotated = np.broadcast_to(np.zeros((), w.dtype), (*kernel, k // groups, groups * d_g))  # its shape
    return _conv_forward(dy, rotated, (1,) * len(kernel), rotated_padding(kernel, pads, dilate), dilate,
                         groups, out.shape[1:-1], out, tile=1, filters=filters)


def col2im_tile(tile: int, kernel_width: int, channels_per_group: int) -> int:
    """The tile col2im uses: `tile`, except with one channel per group, where the offset-major
    layout (whole rows added per kernel offset) beat tiles unless they are wide (6 outputs or
    more) and the kernel is 5 or more wide. dE/dx at batch 128, tiled against untiled, in turns:
    96×96×1 inputs, 3×3×1×32 filters (tiles of 2): 48.2 against 32.0 ms; 28×28×28×1 volumes,
    3×3×3×1×16 filters (tiles of 4): 83.5 against 58.2 ms; 30×30×1, 5×5×1×16 (tiles of 5): 7.7
    against 6.5 ms; but LeNet-5's conv1, 28×28×1 with 5×5×1×6 filters (tiles of 7): 5.1 against
    7.2 ms, and 24×24×1 with 5×5×1×12 (tiles of 6): 3.7–4.5 against 4.0–5.3 ms. With 3×3 kernels
    even tiles of 7 and 10 were no faster (2.1 against 1.7 ms, 2.7 against 2.3 ms)."""
    if channels_per_group == 1 and (tile < 6 or kernel_width < 5):
        return 1
    return tile


def _conv_backward_data_col2im(dy, w, stride, pads, dilate, groups, filters, *, out):
    """dE/dx = col2im(dy · fᵀ), block by block: the column gradient of a block, one product per
    group (against the banded filters for tiles), is added back over the windows. With one
    channel per group and no tiles it is computed offset-major, (H'W') × M as im2col lays such
    columns out, and added back one kernel offset at a time, each a run of whole output rows (the
    keypoints net's conv1, D = 1: 31 ms against 73 ms window by window)."""
    out_spatial, d_g = dy.shape[1:-1], out.shape[-1] // groups
    tile = _col2im_tile_of(dy.shape, w.shape, out.shape[-1], groups, dilate)
    out_t, kernel_t, stride_t = tiled_geometry(out_spatial, w.shape[:-2], stride, tile)
    columns = math.prod(kernel_t) * d_g
    dxp = padded_target(out, pads, "conv.dx")
    for n0, n1, i0, i1 in blocks(out.shape[0], out_t, columns):
        band = (i1 - i0, *out_t[1:])
        target = dxp[n0:n1, i0 * stride[0] :]
        for g, (dy_g, f_g) in enumerate(zip(per_group(dy[n0:n1, i0:i1], groups, tile), filters)):
            part = target[..., g * d_g : (g + 1) * d_g]
            if d_g == 1 and tile == 1:
                dcols = workspace.buffer("conv.dcols", (columns, dy_g.shape[0]), dxp.dtype)
                np.matmul(f_g, dy_g.T, out=dcols)
                scatter_add_offsets(part, dcols.reshape(columns, n1 - n0, *band, 1), kernel_t, stride_t,
                                    dilate)
                continue
            dcols = workspace.buffer("conv.dcols", (dy_g.shape[0], columns), dxp.dtype)
            np.matmul(dy_g, f_g.T, out=dcols)
            scatter_add_windows(part, dcols.reshape(n1 - n0, *band, *kernel_t, d_g), stride_t, dilate)
    return crop_into(dxp, pads, out)


def scatter_add_windows(target, cols, stride, dilate) -> None:
    """target[n, S·i + dil·h, …, d] += cols[n, i, …, h, …, d] for every window (col2im); cols is
    N×(H''×…)×(H'×…)×D.

    One addition per kernel offset of the leading axes and per phase of the last axis: windows taken
    every `phases`-th output along the last axis do not overlap, so each addition moves whole
    window rows (W'·D contiguous numbers when dil = 1) through one strided view of the target
    (CIFAR-10 conv1's dE/dx: 44 ms with one addition of D = 3 numbers per kernel offset).
    """
    spatial = len(stride)
    out_spatial, kernel = cols.shape[1 : 1 + spatial], cols.shape[1 + spatial : -1]
    view = window_view(target, out_spatial, kernel, stride, dilate, writeable=True)
    extent = dilate[-1] * (kernel[-1] - 1) + 1
    phases = min(out_spatial[-1], -(-extent // stride[-1]))
    for lead in product(*map(range, kernel[:-1])):
        for phase in range(phases):
            where = (slice(None), *(slice(None),) * (spatial - 1), slice(phase, None, phases), *lead)
            view[where] += cols[where]


def scatter_add_offsets(target, per_offset, kernel, stride, dilate) -> None:
    """target[n, S·i + dil·h, …] += per_offset[h, n, i, …] for every kernel offset h (col2im from
    offset-major columns)."""
    out_spatial = per_offset.shape[2:-1]
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


def clipped_window_slices(in_spatial, out_spatial, kernel, stride, pads):
    """For each kernel offset (row-major order): the offset, the strided slices of the unpadded
    input it reads and the slices of the output windows whose cell at that offset is a real (not
    padded) cell; offsets that reach only padding are left out. Max pooling needs no padded copy
    of x this way: a padded cell, −∞, is never a window's maximum."""
    for offset in product(*map(range, kernel)):
        inputs, outputs = [], []
        for o, s, n, m, (before, _) in zip(offset, stride, in_spatial, out_spatial, pads):
            first = max(0, -(-(before - o) // s))  # the first window whose cell is ≥ 0
            stop = min(m, (n - 1 - o + before) // s + 1)  # past the last whose cell is < n
            if first >= stop:
                break
            start = s * first + o - before
            inputs.append(slice(start, start + s * (stop - first - 1) + 1, s))
            outputs.append(slice(first, stop))
        else:
            yield offset, (slice(None), *inputs), (slice(None), *outputs)


def by_phases(kernel, stride) -> bool:
    """Whether max pooling's backward goes through `split_into_phases`: windows overlap along
    some axis (S < H') and skip no cell along any (S ≤ H'), as CIFAR-10's 3×3 pools with stride 2."""
    pairs = list(zip(stride, kernel))
    return any(s < k for s, k in pairs) and all(s <= k for s, k in pairs)


def phase_extent(out_spatial, kernel, stride) -> tuple[int, ...]:
    """Cells per phase along each axis: H'' + ⌊(H' − 1)/S⌋ (the windows' cells of one phase)."""
    return tuple(o + (k - 1) // s for o, k, s in zip(out_spatial, kernel, stride))


def split_into_phases(x, kernel, stride, pads, out_spatial, fill, name: str) -> np.ndarray:
    """The padded input regrouped by the phases of the stride, in the reusable buffer `name`:
    xs[n, a, b, r, c, d] = x_pad[n, S_H·r + a, S_W·c + b, d], padded cells set to `fill`.

    Kernel offset (h, w) then reads, in every window, the block xs[:, h mod S_H, w mod S_W,
    ⌊h/S_H⌋ : ⌊h/S_H⌋ + H'', ⌊w/S_W⌋ : ⌊w/S_W⌋ + W''] (see `phase_views`), whose rows are W''·D
    contiguous numbers, where the strided view x_pad[:, h::S_H, w::S_W] has runs of D numbers.
    Overlapping windows read each cell several times (3×3 windows with stride 2: 9/4 times), and
    max pooling's backward reads x and writes dE/dx once per offset, so one strided copy each way
    beats the repeated strided passes: CIFAR-10's pool1 backward (3×3, stride 2, D = 32, batch
    128 on two cores) 30.0 → 22.2 ms. The forward, one strided read per offset, gained nothing
    (8.9 against 8.7 ms) and keeps its strided views; so does average pooling (CIFAR-10's pool2:
    2.4 ms either way). The split and the split dE/dx are per-thread buffers the size of the
    batch part's input (`workspace.release` frees them).
    """
    extent = phase_extent(out_spatial, kernel, stride)
    split = workspace.buffer(name, (x.shape[0], *stride, *extent, x.shape[-1]), x.dtype)
    unfilled = set(product(*map(range, stride)))
    for phase, reads, cells in clipped_window_slices(x.shape[1:-1], extent, stride, stride, pads):
        block = split[(slice(None), *phase)]
        block[cells] = x[reads]
        fill_outside(block, cells, fill)
        unfilled.discard(phase)
    for phase in unfilled:  # a phase holding padding only
        split[(slice(None), *phase)] = fill
    return split


def phase_views(split, kernel, stride, out_spatial):
    """For each kernel offset (row-major order), the N×H''×W''×D block of a `split_into_phases`
    array holding that offset's cell of every window."""
    for offset in product(*map(range, kernel)):
        phase = tuple(o % s for o, s in zip(offset, stride))
        cells = tuple(slice(o // s, o // s + n) for o, s, n in zip(offset, stride, out_spatial))
        yield split[(slice(None), *phase, *cells)]


def merge_phases(split, stride, pads, out) -> np.ndarray:
    """The inverse of `split_into_phases` into `out`, padding dropped; input cells beyond the
    split (left over by the floor in H'') get 0."""
    spatial = len(stride)
    extent = split.shape[1 + spatial : -1]
    if any((n - 1 + before) // s >= e for n, (before, _), s, e in zip(out.shape[1:-1], pads, stride, extent)):
        out.fill(0)
    for phase, reads, cells in clipped_window_slices(out.shape[1:-1], extent, stride, stride, pads):
        out[reads] = split[(slice(None), *phase, *cells[1:])]
    return out


def fill_outside(a: np.ndarray, inside, value) -> None:
    """a = value outside the spatial slices `inside` (batch axis first, each a unit-step slice)."""
    for axis, part in enumerate(inside[1:], start=1):
        for margin in (slice(0, part.start), slice(part.stop, None)):
            where = [slice(None)] * a.ndim
            where[axis] = margin
            a[tuple(where)] = value


def _max_pool(x, kernel, stride, pads, out_spatial, *, out) -> np.ndarray:
    """y_{i,j,d} = max over the window of x, padded cells counting as −∞."""
    return _max_over_windows(x, kernel, stride, pads, out)


def _max_over_windows(x, kernel, stride, pads, y):
    """y = the maximum of each window of x, over its real cells: by whole rows where the windows
    tile x, by axes where they are wider than one cell along the last axis and another, else one
    strided slice per window cell."""
    if tiles_exactly(x.shape[1:-1], kernel, stride, pads):
        return _max_over_window_rows(x, kernel, y)
    if max(kernel[:-1]) > 1 and kernel[-1] > 1:
        return _max_over_windows_by_axes(x, kernel, stride, pads, y)
    return _max_over_window_cells(x, kernel, stride, pads, y)


def _max_over_windows_by_axes(x, kernel, stride, pads, y):
    """The maximum over H'×W' windows as the maximum over W' of the maxima over H' (max is
    separable), a block of samples at a time (BY_AXES_FLOATS): the first pass reads whole W·D
    rows of x per offset, the second runs of D numbers of a result still in cache, W' offsets
    where the windows have H'·W'. Against one pass per window cell, batch part of 64 (16 for 3D),
    in turns: CIFAR-10's pool1 (3×3, stride 2, 32×32×32) 7.3 → 3.8 ms, its 16×16×32 pool 1.2 → 0.8
    ms, AlexNet's 3×3 pools on 55×55×64 43 → 15 ms, 3×3×3 windows on 28×28×28×16 volumes 59 → 13
    ms. (Without blocks, CIFAR-10's pool1 gained nothing: its 4 MB of row maxima left the cache.)"""
    lead = len(kernel) - 1
    one = (1,) * lead
    per_sample = math.prod(y.shape[1:-2]) * x.shape[-2] * x.shape[-1]
    step = max(1, BY_AXES_FLOATS // per_sample)
    for n0 in range(0, x.shape[0], step):
        xb, yb = x[n0 : n0 + step], y[n0 : n0 + step]
        rows = workspace.buffer("pool.by_axes", (*yb.shape[:-2], *x.shape[-2:]), x.dtype)
        _max_over_window_cells(xb, (*kernel[:-1], 1), (*stride[:-1], 1), (*pads[:-1], (0, 0)), rows)
        _max_over_window_cells(rows, (*one, kernel[-1]), (*one, stride[-1]),
                               (*((0, 0),) * lead, pads[-1]), yb)
    return y


BY_AXES_FLOATS = 1 << 19  # row maxima per block of samples (2 MB of float32; 0.5 and 32 MB were slower)


def _max_over_window_cells(x, kernel, stride, pads, y):
    """y = the window maxima of x, one strided slice of x per kernel offset."""
    cells = ((x[reads], windows) for _, reads, windows in
             clipped_window_slices(x.shape[1:-1], y.shape[1:-1], kernel, stride, pads))
    first, windows = next(cells)
    if _every_window(windows, y.shape[1:-1]):
        np.copyto(y, first)
    else:  # some windows start in the padding
        y.fill(lowest(y.dtype))
        np.maximum(y[windows], first, out=y[windows])
    for values, windows in cells:
        np.maximum(y[windows], values, out=y[windows])
    return y


def lowest(dtype):
    """The value below every other of `dtype`, which no window maximum is: −∞ (−∞ − ∞j for complex
    numbers, which NumPy orders by real part, then imaginary part), False, or an integer type's
    minimum (an integer image pooled with padding)."""
    kind = np.dtype(dtype).kind
    if kind in "fc":
        return -np.inf if kind == "f" else complex(-np.inf, -np.inf)
    return False if kind == "b" else np.iinfo(dtype).min


def _every_window(windows, out_spatial) -> bool:
    """Whether the output slices `windows` (batch axis first) take every window."""
    return all(w.start == 0 and w.stop == n for w, n in zip(windows[1:], out_spatial))


def _max_pool_backward(x, dy, kernel, stride, pads, *, out) -> np.ndarray:
    """Routes dE/dy_{i,j,d} to the first maximum (row-major within the window) of its window."""
    y = _max_over_windows(x, kernel, stride, pads, workspace.buffer("pool.max", dy.shape, x.dtype))
    return _route_to_maxima(x, dy, y, kernel, stride, pads, out)


def _max_pool_backward_given_y(x, dy, y, kernel, stride, pads, *, out) -> np.ndarray:
    return _route_to_maxima(x, dy, y, kernel, stride, pads, out)


def _route_to_maxima(x, dy, y, kernel, stride, pads, out) -> np.ndarray:
    """dE/dx of max pooling from the input x and the maxima y, written into `out`: no padded copy of
    x or of dE/dx (padded cells never hold a maximum). When the windows tile the padded input
    exactly (stride = kernel, no cell left over, as in LeNet-5 and the keypoints net), every cell is
    written once and dE/dx needs no zero fill (the keypoints net's pool1: a 145 MB array).
    Overlapping windows of a floating-point x go through `split_into_phases` (its padding is NaN);
    windows that tile x with few channels go by whole rows (`_route_to_maxima_by_rows`)."""
    if by_phases(kernel, stride) and x.dtype.kind == "f":
        return _route_to_maxima_by_phases(x, dy, y, kernel, stride, pads, out)
    if tiles_exactly(x.shape[1:-1], kernel, stride, pads) and routes_by_rows(x.shape[-1], kernel):
        return _route_to_maxima_by_rows(x, dy, y, kernel, out)
    out_spatial = dy.shape[1:-1]
    padded = (n + a + b for n, (a, b) in zip(x.shape[1:-1], pads))
    if not all(s == k and o * k == n for s, k, o, n in zip(stride, kernel, out_spatial, padded)):
        out.fill(0)
    offsets = list(clipped_window_slices(x.shape[1:-1], out_spatial, kernel, stride, pads))
    cells = [(x[reads], windows) for _, reads, windows in offsets]
    share = np.empty(dy.shape, dtype=dy.dtype)
    overlapping = any(s < k for s, k in zip(stride, kernel))
    for (_, reads, windows), first in zip(offsets, _first_maxima(cells, y)):
        if overlapping:
            routed = share[windows]
            np.multiply(dy[windows], first, out=routed)
            out[reads] += routed
        else:
            np.multiply(dy[windows], first, out=out[reads])
    return out


def _route_to_maxima_by_phases(x, dy, y, kernel, stride, pads, out) -> np.ndarray:
    """`_route_to_maxima` through `split_into_phases`: every comparison and addition reads
    contiguous rows; the phases of dE/dx are merged back at the end. Padded cells are NaN, equal
    to no maximum, so a window whose real cells are all −∞ still routes to the first of them."""
    out_spatial = dy.shape[1:-1]
    split = split_into_phases(x, kernel, stride, pads, out_spatial, np.nan, "pool.phases")
    grads = phase_gradients(dy.shape, stride, kernel, dy.dtype)
    cells = [(view, (slice(None),)) for view in phase_views(split, kernel, stride, out_spatial)]
    share = np.empty(dy.shape, dtype=dy.dtype)
    offsets = product(*map(range, kernel))
    targets = phase_views(grads, kernel, stride, out_spatial)
    for offset, target, first in zip(offsets, targets, _first_maxima(cells, y)):
        if _first_of_its_phase(offset, stride):
            np.multiply(dy, first, out=target)
        else:
            target += np.multiply(dy, first, out=share)
    return merge_phases(grads, stride, pads, out)


def phase_gradients(dy_shape, stride, kernel, dtype) -> np.ndarray:
    """A buffer for dE/dx split into phases (see `split_into_phases`), zero outside the first
    H''×W'' cells of each phase: the offsets of the kernel that come first in their phase
    (`_first_of_its_phase`) write those cells, every later offset adds to them."""
    extent = phase_extent(dy_shape[1:-1], kernel, stride)
    grads = workspace.buffer("pool.phase_grads", (dy_shape[0], *stride, *extent, dy_shape[-1]), dtype)
    for phase in product(*map(range, stride)):
        first_cells = tuple(slice(0, n) for n in dy_shape[1:-1])
        fill_outside(grads[(slice(None), *phase)], (slice(None), *first_cells), 0)
    return grads


def _first_of_its_phase(offset, stride) -> bool:
    """Whether a kernel offset is the first, in row-major order, to reach its phase (S ≤ H')."""
    return all(o < s for o, s in zip(offset, stride))


def _first_maxima(cells, y):
    """For each (the cells of x at one kernel offset, the windows they are in) in row-major offset
    order, the mask over those windows of the ones whose first maximum is that cell: up to three
    passes per offset, no temporaries."""
    unrouted = np.empty(y.shape, dtype=bool)
    hit = np.empty(y.shape, dtype=bool)
    every = _every_window(cells[0][1], y.shape[1:-1])  # the first offset reaches every window
    if not every:
        unrouted.fill(True)
    for t, (values, windows) in enumerate(cells):
        h, u = hit[windows], unrouted[windows]
        np.equal(values, y[windows], out=h)
        if t == 0 and every:
            np.logical_not(h, out=u)
        else:
            np.logical_and(h, u, out=h)  # a maximum not yet routed: the first one
            if t < len(cells) - 1:
                np.greater(u, h, out=u)  # unrouted ∧ ¬hit
        yield h


def tiles_exactly(in_spatial, kernel, stride, pads) -> bool:
    """Whether pooling windows tile the input exactly: stride = kernel, no padding, no cell left
    over (LeNet-5's and the keypoints net's 2×2 pools)."""
    return all(s == k and n % k == 0 and a == b == 0
               for n, k, s, (a, b) in zip(in_spatial, kernel, stride, pads))


def window_rows(a: np.ndarray, kernel):
    """For each row of the windows (their offsets on every axis but the last, row-major), the view
    M×…×(W·D) of that row of every window of `a`, a N×H×W×D (or N×T×H×W×D) array that the windows
    tile exactly: row h of 2D windows is a[n, H'·i + h, :, :] for every window row i, whose W·D
    numbers are contiguous."""
    shape = [a.shape[0]]
    for n, k in zip(a.shape[1:-2], kernel[:-1]):
        shape += [n // k, k]
    split = a.reshape(*shape, a.shape[-2] * a.shape[-1])
    for offset in product(*map(range, kernel[:-1])):
        yield split[(slice(None), *(index for o in offset for index in (slice(None), o)))]


def pixels(a: np.ndarray, channels: int, per: int = 1) -> np.ndarray:
    """A C-contiguous (…, W·D) array as (…, W/per, per) pixels: each one opaque scalar of its D
    numbers, so that a copy moves a pixel per step instead of looping over its D channels."""
    whole = a.reshape(*a.shape[:-1], a.shape[-1] // channels, channels)
    return whole.view(f"V{channels * a.itemsize}").reshape(*a.shape[:-1], -1, per)


def _max_over_window_rows(x, kernel, y):
    """Max pooling over windows that tile x exactly, channels of few numbers (LeNet-5's six):
    strided slices per kernel offset would loop over runs of D numbers, so the rows of the windows
    are reduced first, whole W·D rows at a time; then each cell takes the maximum with the next
    kernel−1 cells of its row (every cell, wasting the products of the cells not first in their
    window, in long contiguous runs); then each window's first cell is copied out, a pixel per step.
    LeNet-5's pool1 (batch part of 64 on one core): 0.59 → 0.32 ms; the keypoints net's pools
    0.60–0.69×, convnet3d's 0.59–0.71×."""
    d, width = x.shape[-1], kernel[-1]
    rows = list(window_rows(x, kernel))
    rowmax = rows[0]
    if len(rows) > 1:
        rowmax = np.maximum(rows[0], rows[1], out=workspace.buffer("pool.rowmax", rowmax.shape, x.dtype))
        for row in rows[2:]:
            np.maximum(rowmax, row, out=rowmax)
    maxima = rowmax
    if width > 1:
        maxima = workspace.buffer("pool.maxima", rowmax.shape, x.dtype)
        span = rowmax.shape[-1] - (width - 1) * d  # the cells with `width` − 1 cells after them
        np.maximum(rowmax[..., :span], rowmax[..., d : d + span], out=maxima[..., :span])
        for c in range(2, width):
            np.maximum(maxima[..., :span], rowmax[..., c * d : c * d + span], out=maxima[..., :span])
    np.copyto(pixels(y.reshape(*rowmax.shape[:-1], -1), d), pixels(maxima, d, width)[..., :1])
    return y


ROUTE_BY_ROWS_CHANNELS = 8  # max pooling's backward goes by rows below 8 channels per window row


def routes_by_rows(channels: int, kernel) -> bool:
    """Whether max pooling's backward goes through `_route_to_maxima_by_rows`: fewer than
    ROUTE_BY_ROWS_CHANNELS channels per row of the window. (Batch parts of 64, one core: LeNet-5's
    pool1, D = 6, 0.75×; 2×2×2 volumes with D = 16: 0.76× (D = 32: 0.88×, left out by this simple
    bound); 2×2 pools with D = 8: 0.87×, D = 16: 1.06×, D = 24–128: 1.09–1.23×: there the strided
    slices loop over runs long enough.)"""
    return channels < ROUTE_BY_ROWS_CHANNELS * math.prod(kernel[:-1])


def _route_to_maxima_by_rows(x, dy, y, kernel, out) -> np.ndarray:
    """`_route_to_maxima` for windows that tile x exactly, by whole rows of W·D numbers (see
    `_max_over_window_rows`): y and dE/dy are widened to every cell of their window; then, row by
    row of the windows, a cell gets dE/dy where it equals y, no earlier cell of its window row does
    and no earlier row of its window holds a maximum. The "earlier cell" and "window holds" masks
    are shifts by D of flat boolean arrays, masked by the cell's column in its window."""
    d, width = x.shape[-1], kernel[-1]
    rows = list(window_rows(x, kernel))
    shape = rows[0].shape
    y_wide, dy_wide = (_widened(a, shape, d, width, name) for a, name in
                       ((y, "pool.y_wide"), (dy, "pool.dy_wide")))
    after_first, before_last = _window_columns(math.prod(shape), d, width)
    hit, seen, first, taken = (workspace.buffer(name, (math.prod(shape),), bool) for name in
                               ("pool.hit", "pool.seen", "pool.first", "pool.taken"))
    for r, (x_row, dx_row) in enumerate(zip(rows, window_rows(out, kernel))):
        np.equal(x_row, y_wide, out=hit.reshape(shape))
        if r:
            np.greater(hit, taken, out=hit)  # hit ∧ ¬taken
        seen[:d] = False  # seen: a hit earlier in the cell's window row
        np.logical_and(hit[:-d], after_first, out=seen[d:])
        for _ in range(width - 2):
            np.logical_and(seen[:-d], after_first, out=first[d:])
            np.logical_or(seen[d:], first[d:], out=seen[d:])
        np.greater(hit, seen, out=first)  # hit ∧ ¬seen
        np.multiply(dy_wide, first.reshape(shape), out=dx_row)
        if r < len(rows) - 1:  # taken ∨= whether the window's row holds a hit, on all its cells
            np.logical_or(seen, hit, out=seen)
            for _ in range(width - 1):
                np.logical_and(seen[d:], before_last, out=first[:-d])
                np.logical_or(seen[:-d], first[:-d], out=seen[:-d])
            np.logical_or(taken, seen, out=taken) if r else np.copyto(taken, seen)
    return out


def _widened(a, shape, channels, width, name) -> np.ndarray:
    """a (M×…×W''×D) with each pixel repeated `width` times along the last spatial axis: M×…×(W·D)."""
    wide = workspace.buffer(name, shape, a.dtype)
    source = pixels(np.ascontiguousarray(a).reshape(*shape[:-1], -1), channels)[..., 0]
    target = pixels(wide, channels, width)
    for c in range(width):  # one copy per column: long runs, where broadcasting loops over `width`
        np.copyto(target[..., c], source)
    return wide


@functools.lru_cache(maxsize=16)
def _window_columns(size: int, channels: int, width: int):
    """Masks over `size` flat cells of window rows (runs of W·D, W a multiple of `width`): the cells
    with a cell before them in their window (shifted to line up with the cell D earlier) and those
    with a cell after them (lined up with the cell D later)."""
    column = np.resize(np.repeat(np.arange(width), channels), size)
    return column[channels:] >= 1, column[:-channels] <= width - 2


def _avg_pool(x, kernel, stride, pads, out_spatial, *, out) -> np.ndarray:
    """y_{i,j,d} = (1 / |window ∩ input|) Σ over the window of x: padded cells are not counted."""
    xp = pad_spatial(x, pads, "pool.pad")
    cells = (xp[(slice(None), *where)] for where in window_slices(out_spatial, kernel, stride))
    np.copyto(out, next(cells))
    for values in cells:
        out += values
    out /= window_counts(x.shape[1:-1], kernel, stride, pads, out_spatial, x.dtype)
    return out


def _avg_pool_backward(x, dy, kernel, stride, pads, *, out) -> np.ndarray:
    """dE/dx_{p,d} = Σ over the windows holding p of dE/dy_{i,j,d} / |window ∩ input|."""
    out_spatial = dy.shape[1:-1]
    share = dy / window_counts(x.shape[1:-1], kernel, stride, pads, out_spatial, dy.dtype)
    dxp = padded_target(out, pads, "pool.dx")
    for where in window_slices(out_spatial, kernel, stride):
        dxp[(slice(None), *where)] += share
    return crop_into(dxp, pads, out)


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


def padded_target(out: np.ndarray, pads, name: str) -> np.ndarray:
    """Where a backward pass accumulates dE/dx, zero-filled: `out` itself when nothing is padded,
    else the reusable buffer `name` of the padded shape (see crop_into)."""
    if any(a or b for a, b in pads):
        shape = (out.shape[0], *(n + a + b for n, (a, b) in zip(out.shape[1:-1], pads)), out.shape[-1])
        target = workspace.buffer(name, shape, out.dtype)
    else:
        target = out
    target.fill(0)
    return target


def crop_into(xp: np.ndarray, pads, out: np.ndarray) -> np.ndarray:
    """out = the unpadded interior of xp (a padded_target); nothing to copy when xp is out."""
    if xp is not out:
        out[...] = xp[(slice(None), *(slice(a, a + n) for n, (a, _) in zip(out.shape[1:-1], pads)))]
    return out
