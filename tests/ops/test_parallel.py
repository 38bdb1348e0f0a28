"""The NumPy kernels split a batch into parts run on threads: results equal the one-part ones."""

import warnings

import numpy as np
import pytest
from torch_oracle import relative_error

from convscope import ops
from convscope.backend import numpy_kernels, parallel

RNG = np.random.default_rng(5)


def _run_all(x, w, b, pool_x):
    y = ops.conv(x, w, b, pad=1)
    dy = RNG.standard_normal(y.shape)
    grads = ops.conv_backward(x, w, b, dy, pad=1)
    strided = ops.conv_backward(x, w, b, RNG.standard_normal(ops.conv(x, w, b, stride=2).shape), stride=2)
    x8, w8, b8 = (RNG.standard_normal(s) for s in ((len(x), 6, 5, 8), (3, 3, 8, 8), (8,)))
    dy8 = RNG.standard_normal((len(x), 6, 5, 8))
    rotated = ops.conv_backward(x8, w8, b8, dy8, pad=1)  # both products from dE/dy's columns
    pools = []
    for method in ("max", "avg"):
        p = ops.pool(pool_x, kernel=3, stride=2, pad=1, method=method)
        pools += [p, ops.pool_backward(pool_x, np.ones_like(p), kernel=3, stride=2, pad=1, method=method)]
    return [y, *grads, *strided, *rotated, *pools]


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_batch_parts_on_threads_give_the_one_part_results(monkeypatch, parts):
    x, w, b = RNG.standard_normal((37, 9, 8, 3)), RNG.standard_normal((3, 3, 3, 4)), RNG.standard_normal(4)
    pool_x = RNG.permutation(37 * 9 * 8 * 3).reshape(37, 9, 8, 3) * 1e-2
    monkeypatch.setattr(parallel, "thread_count", lambda: 1)
    RNG.bit_generator.state = np.random.default_rng(9).bit_generator.state
    serial = _run_all(x, w, b, pool_x)
    monkeypatch.setattr(parallel, "thread_count", lambda: parts)
    assert len(parallel.batch_parts(37)) == min(parts, 37 // parallel.MIN_PART)
    RNG.bit_generator.state = np.random.default_rng(9).bit_generator.state
    split = _run_all(x, w, b, pool_x)
    for a, c in zip(serial, split, strict=True):
        assert relative_error(c, a) < 1e-14


def test_batch_parts_cover_the_batch_once():
    parts = parallel.batch_parts(100)
    assert sum(p.stop - p.start for p in parts) == 100 and parts[0].start == 0 and parts[-1].stop == 100


def _recording_bands(box_blocks, bands: list):
    """box_blocks, noting in `bands` whether each block it gives is a band of one sample's rows."""
    def recorded(*args):
        made = box_blocks(*args)
        bands.extend(block[2] > 0 for block in made)
        return made
    return recorded


@pytest.mark.parametrize("block_floats", [1, 700])
def test_blocks_of_output_rows_give_the_whole_batch_results(monkeypatch, block_floats):
    """Convolution runs block by block (whole samples, or bands of one sample's output rows);
    tiny blocks (bands of a few rows, several per sample) must give the one-block results."""
    from convscope.backend import numpy_kernels

    x, x8, x16 = (RNG.standard_normal((3, 20, 19, d)) for d in (2, 8, 16))
    monkeypatch.setattr(numpy_kernels, "BOXES_MIN_SAVED", 0)  # this small batch goes by boxes too
    settings = [
        (x, RNG.standard_normal((3, 3, 2, 4)), {"pad": 1}),
        (x, RNG.standard_normal((3, 2, 1, 4)), {"stride": 2, "groups": 2}),
        (x, RNG.standard_normal((2, 3, 2, 4)), {"stride": (2, 1), "dilate": 2, "pad": (1, 0, 2, 1)}),
        # 8 channels per group, fewer than 4 filters per channel: both products from dE/dy's columns
        (x8, RNG.standard_normal((3, 3, 8, 8)), {"pad": 1}),
        (x16, RNG.standard_normal((3, 2, 8, 16)), {"groups": 2, "dilate": (1, 2)}),
        (x16, RNG.standard_normal((3, 3, 16, 16)), {"pad": 1}),  # box by box, forward and dE/dx
    ]
    for x, w, hyper in settings:
        b = RNG.standard_normal(w.shape[-1])
        dy = RNG.standard_normal(ops.conv(x, w, b, **hyper).shape)
        stride = np.broadcast_to(hyper.get("stride", 1), 2)
        rotated = numpy_kernels.dx_by_rotation(x.shape, w.shape, dy.shape, stride, hyper.get("groups", 1))
        assert rotated == (x.shape[-1] >= 8)
        whole = [ops.conv(x, w, b, **hyper), *ops.conv_backward(x, w, b, dy, **hyper)]
        with monkeypatch.context() as patch:
            patch.setattr(numpy_kernels, "BLOCK_FLOATS", block_floats)
            assert len(list(numpy_kernels.blocks(3, dy.shape[1:-1], 9))) > 3
            bands = []  # per box block, whether it is a band of one sample's rows (the size took effect)
            patch.setattr(numpy_kernels, "_box_blocks", _recording_bands(numpy_kernels._box_blocks, bands))
            split = [ops.conv(x, w, b, **hyper), *ops.conv_backward(x, w, b, dy, **hyper)]
            assert any(bands) == (w.shape[-2:] == (16, 16))  # only the last setting goes by boxes
        for a, c in zip(whole, split, strict=True):
            assert relative_error(c, a) < 1e-14


@pytest.mark.parametrize("columns, outputs", [(12, 64), (800, 32), (9, 0)])
def test_blocks_cover_every_output_row_once_within_the_block_size(columns, outputs):
    """Blocks are sized by the wider side of their product (the columns, or the outputs of a first
    layer with few columns and many filters), and together cover each output row exactly once."""
    from convscope.backend import numpy_kernels

    batch, out_spatial = 5, (94, 94)
    seen = np.zeros((batch, out_spatial[0]), dtype=int)
    for n0, n1, i0, i1 in numpy_kernels.blocks(batch, out_spatial, columns, outputs):
        seen[n0:n1, i0:i1] += 1
        rows = (n1 - n0) * (i1 - i0) * out_spatial[1]
        assert rows * max(columns, outputs) <= numpy_kernels.BLOCK_FLOATS
    assert (seen == 1).all()


def test_relu_on_parallel_parts_is_the_formula(monkeypatch):
    from convscope.backend import numpy_kernels

    monkeypatch.setattr(numpy_kernels, "SPLIT_ELEMENTWISE", 1)  # split at any size
    monkeypatch.setattr(parallel, "thread_count", lambda: 3)
    x, dy = RNG.standard_normal((40, 5, 5, 3)), RNG.standard_normal((40, 5, 5, 3))
    x[0, 0, 0] = 0.0  # the derivative at 0 is taken as 0
    np.testing.assert_array_equal(ops.relu(x), np.maximum(x, 0))
    np.testing.assert_array_equal(ops.relu_backward(x, dy), np.where(x > 0, dy, 0))


@pytest.mark.parametrize("failing_part", [0, 1])
def test_an_error_in_any_part_reaches_the_caller_after_every_part_ends(monkeypatch, failing_part):
    monkeypatch.setattr(parallel, "thread_count", lambda: 3)
    parts = parallel.batch_parts(48)
    finished = []

    def work(part):
        if part == parts[failing_part]:
            raise ValueError(f"part {part.start}")
        finished.append(part.start)
        return part.start

    with pytest.raises(ValueError, match=f"part {parts[failing_part].start}"):
        parallel.over_batch(work, 48)
    assert len(finished) == 2
    assert parallel.over_batch(lambda p: p.start, 48) == [p.start for p in parts]  # still usable


def test_a_kernel_splitting_inside_a_part_runs_its_parts_in_turn(monkeypatch):
    """A nested split must not wait on workers that are busy with the outer parts."""
    monkeypatch.setattr(parallel, "thread_count", lambda: 2)
    inner = parallel.over_batch(lambda p: parallel.over_batch(lambda q: (q.start, q.stop), 32), 32)
    assert inner == [[(0, 16), (16, 32)]] * 2


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_workers(monkeypatch):
    """A data loader forked after training began must not wait on the parent's worker threads."""
    import os

    monkeypatch.setattr(parallel, "thread_count", lambda: 2)
    assert parallel.over_batch(lambda p: p.start, 32) == [0, 16]  # the parent's workers run
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the split completes, killed after 20 s if it hangs
        import signal

        signal.alarm(20)
        ok = parallel.over_batch(lambda p: p.start, 32) == [0, 16]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def assert_within_rounding_of_sums(result, expected, a, b):
    """|result − a·b| within the rounding of a sum of K products in another order, element-wise:
    2·K·ε·(|a|·|b|) (a fixed fraction of the result fails where the sum cancels to near zero)."""
    bound = 2 * a.shape[1] * np.finfo(expected.dtype).eps * (np.abs(a) @ np.abs(b))
    assert np.all(np.abs(result - expected) <= bound), np.max(np.abs(result - expected) / bound)


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize(("a_shape", "b_shape", "dtypes"), [
    ((64, 70), (70, 20), (np.float64, np.float64)),  # split along the rows of the result
    ((20, 70), (70, 64), (np.float64, np.float64)),  # along its columns
    ((40, 30), (30, 50), (np.float32, np.float64)),  # promoted as a @ b is
])
def test_products_split_between_threads_equal_one_product(monkeypatch, parts, a_shape, b_shape, dtypes):
    """A large matrix product (a fully connected layer's three) is split between the threads along
    the longer side of its result: a @ b to within the rounding of its sums, transposed operands
    included. (BLAS may sum a part in another order than the whole: OpenBLAS's small-matrix kernels
    on an AVX-512 machine differed from the whole product by 5.7e-15 on a sum of 0.05.)"""
    a, b = RNG.standard_normal(a_shape).astype(dtypes[0]), RNG.standard_normal(b_shape).astype(dtypes[1])
    monkeypatch.setattr(numpy_kernels, "PARALLEL_PRODUCT", 1)
    monkeypatch.setattr(parallel, "thread_count", lambda: parts)
    calls, split = [], parallel.over_batch
    monkeypatch.setattr(parallel, "over_batch", lambda fn, n: calls.append(n) or split(fn, n))
    for left, right in ((a, b), (np.asfortranarray(a), b), (a, np.asfortranarray(b))):
        expected = left @ right
        result = numpy_kernels.matrix_product(left, right)
        assert result.dtype == expected.dtype
        assert_within_rounding_of_sums(result, expected, left, right)
    assert calls == [max(a_shape[0], b_shape[1])] * 3


def _overflows_outside_the_first_part(part):
    big = np.full(4, 3e38, np.float32)
    return np.multiply(big, 10 if part.start else 1)


def test_worker_parts_keep_the_callers_numpy_error_state(monkeypatch):
    """np.errstate is a context variable: without the caller's context a worker's overflow warned
    while the trainer had overflow warnings off (raw RuntimeWarnings from numpy_kernels)."""
    monkeypatch.setattr(parallel, "thread_count", lambda: 2)
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        parallel.over_batch(_overflows_outside_the_first_part, 64)
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        parts = parallel.over_batch(_overflows_outside_the_first_part, 64)
    assert np.isinf(parts[1]).all() and np.isfinite(parts[0]).all()


AFFINITY = hasattr(__import__("os"), "sched_setaffinity") and parallel._SCHED_GETCPU is not None


@pytest.mark.skipif(not AFFINITY or len(__import__("os").sched_getaffinity(0)) < 2,
                    reason="needs Linux thread affinity and two cores")
def test_workers_may_run_on_every_core_but_the_callers(monkeypatch):
    """A worker woken while its caller runs must not queue behind it on the caller's core."""
    import os

    cores = sorted(os.sched_getaffinity(0))
    monkeypatch.setattr(parallel, "thread_count", lambda: 2)
    seen = []
    for core in (cores[0], cores[-1], cores[0]):  # the caller moves: the workers follow
        monkeypatch.setattr(parallel, "_SCHED_GETCPU", lambda core=core: core)

        def where(part):
            return os.sched_getaffinity(0)  # the affinity of the thread running this part

        worker_cores = parallel.over_batch(where, 32)[1]
        seen.append(worker_cores)
        assert worker_cores == set(cores) - {core}
    assert seen[0] != seen[1]
    monkeypatch.setattr(parallel, "thread_count", lambda: len(cores) + 1)  # more workers than others
    assert all(c == set(cores) for c in parallel.over_batch(where, 16 * (len(cores) + 1))[1:])


@pytest.mark.skipif(not AFFINITY, reason="needs Linux thread affinity")
def test_a_refused_affinity_change_leaves_the_workers_where_they_are(monkeypatch):
    refused, tried = [], []

    def refuse(*args):
        refused.append(args)
        raise PermissionError("not allowed here")

    monkeypatch.setattr(parallel, "thread_count", lambda: 2)
    monkeypatch.setattr(parallel.os, "sched_setaffinity", refuse)
    monkeypatch.setattr(parallel, "_SCHED_GETCPU", lambda: tried.append(1) or 10**6)  # a new core
    assert parallel.over_batch(lambda p: p.start, 32) == [0, 16]
    assert tried and refused
