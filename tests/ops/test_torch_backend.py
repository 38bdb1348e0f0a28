"""Every op on PyTorch tensors equals the NumPy result, across the settings of the op tests.

float64: relative error < 1e-10; float32: < 1e-5. Forward and backward, on the CPU by default; set
CONVSCOPE_TEST_DEVICE=cuda to run the same comparisons on CUDA tensors (benchmarks/gpu_run.sh does).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from settings import CONV_SETTINGS, POOL_SETTINGS, TRANSPOSE_SETTINGS, conv_inputs, distinct
from torch_oracle import relative_error

from convscope import ops

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-5}
DEVICE = os.environ.get("CONVSCOPE_TEST_DEVICE", "cpu")
torch.backends.cudnn.allow_tf32 = False  # float32 convolutions in full float32, as NumPy computes them
RNG = np.random.default_rng(11)
X = RNG.standard_normal((2, 5, 4, 6))


def _torch(a):
    return torch.from_numpy(np.ascontiguousarray(a)).to(DEVICE) if isinstance(a, np.ndarray) else a


def _numpy(t):
    return t.detach().cpu().numpy()


def _flat(result):
    """Arrays of an op's result (tuples, lists, moments pairs), None dropped, in order."""
    if isinstance(result, tuple | list):
        return [a for item in result for a in _flat(item)]
    return [] if result is None else [result]


def assert_backends_agree(forward, backward, inputs, dtype, **hyper):
    inputs = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in inputs]
    tensors = [_torch(a) for a in inputs]
    y_np, y_t = forward(*inputs, **hyper), forward(*tensors, **hyper)
    out_np = y_np[0] if isinstance(y_np, tuple) else y_np
    dy = RNG.standard_normal(np.shape(out_np)).astype(dtype)
    g_np, g_t = backward(*inputs, dy, **hyper), backward(*tensors, _torch(dy), **hyper)
    for ours, theirs in zip(_flat((y_np, g_np)), _flat((y_t, g_t)), strict=True):
        assert isinstance(theirs, torch.Tensor), type(theirs)
        assert theirs.dtype == torch.from_numpy(np.asarray(ours)).dtype
        assert theirs.device.type == DEVICE
        assert relative_error(_numpy(theirs), ours) < TOLERANCE[dtype]


DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CONV_SETTINGS)
def test_conv_on_torch_equals_numpy(name, dtype):
    x_shape, w_shape, bias, hyper = CONV_SETTINGS[name]
    inputs = conv_inputs(x_shape, w_shape, bias, w_shape[-1])
    assert_backends_agree(ops.conv, ops.conv_backward, inputs, dtype, **hyper)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TRANSPOSE_SETTINGS)
def test_conv_transpose_on_torch_equals_numpy(name, dtype):
    x_shape, w_shape, bias, hyper = TRANSPOSE_SETTINGS[name]
    inputs = conv_inputs(x_shape, w_shape, bias, w_shape[-2] * hyper.get("groups", 1))
    assert_backends_agree(ops.conv_transpose, ops.conv_transpose_backward, inputs, dtype, **hyper)


@pytest.mark.parametrize("name", ["stride2-asymmetric-pad", "5x5-odd", "3d"])
def test_conv_backward_on_torch_without_input_gradient(name):
    """input_grad=False: no dE/dx, the same dE/df and dE/db (one PyTorch call for all three)."""
    x_shape, w_shape, bias, hyper = CONV_SETTINGS[name]
    inputs = conv_inputs(x_shape, w_shape, bias, w_shape[-1])
    dy = RNG.standard_normal(ops.conv(*inputs, **hyper).shape)
    full = ops.conv_backward(*inputs, dy, **hyper)
    lean = ops.conv_backward(*[_torch(a) for a in inputs], _torch(dy), **hyper, input_grad=False)
    assert lean[0] is None
    for ours, theirs in zip(_flat(full[1:]), _flat(lean[1:]), strict=True):
        assert relative_error(_numpy(theirs), ours) < TOLERANCE[np.float64]


@pytest.fixture(params=["padding as chosen", "explicit padding"])
def pool_padding(request, monkeypatch):
    """Pooling on torch with PyTorch's own padding where it fits (as chosen), or always padding x
    explicitly and cropping dE/dx."""
    from convscope.backend import torch_kernels

    if request.param == "explicit padding":
        monkeypatch.setattr(torch_kernels, "_native_padding", lambda *args: None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("name", POOL_SETTINGS)
def test_pool_on_torch_equals_numpy(name, method, dtype, pool_padding):
    shape, hyper = POOL_SETTINGS[name]
    assert_backends_agree(ops.pool, ops.pool_backward, [distinct(shape)], dtype, method=method, **hyper)


def test_pytorch_pads_the_pooling_itself_where_its_windows_are_the_same():
    """PyTorch pads P ≤ H'/2 on both sides; more padding after is its ceil mode where the output
    sizes agree; otherwise convscope pads (None)."""
    from convscope.backend.torch_kernels import _native_padding

    assert _native_padding((8, 8), (3, 3), (2, 2), ((1, 1), (1, 1)), (4, 4)) == ((1, 1), False)
    assert _native_padding((8, 7), (3, 3), (2, 2), ((0, 1), (0, 1)), (4, 3)) == ((0, 0), True)
    assert _native_padding((7, 8), (3, 3), (2, 2), ((1, 1), (0, 1)), (4, 4)) == ((1, 0), True)
    assert _native_padding((8, 8), (3, 3), (2, 2), ((1, 0), (1, 0)), (4, 4)) is None  # more before
    assert _native_padding((8, 8), (3, 3), (1, 1), ((2, 2), (2, 2)), (10, 10)) is None  # P > H'/2
    assert _native_padding((8, 8), (2, 2), (1, 1), ((0, 2), (0, 2)), (9, 9)) is None  # ceil: 8 × 8


@pytest.mark.parametrize("name", POOL_SETTINGS)
def test_max_pool_backward_on_torch_given_the_forwards_maxima_equals_numpy(name, monkeypatch):
    """Given y, the torch kernel routes by the positions its forward found, without pooling again;
    given a y of other values (x changed in place since), it finds them anew."""
    from convscope.backend import torch_kernels

    poolings = []
    pool_with_indices = torch_kernels._max_pool_with_indices
    monkeypatch.setattr(torch_kernels, "_max_pool_with_indices",
                        lambda *a: poolings.append(a) or pool_with_indices(*a))
    shape, hyper = POOL_SETTINGS[name]
    x = np.maximum(np.round(RNG.standard_normal(shape)), 0)  # ties: a ReLU's zeros, rounded values
    xt = _torch(x).clone()  # not sharing x's memory: it is changed in place below
    y = ops.pool(xt, **hyper)
    dy = RNG.standard_normal(y.shape)
    expected = ops.pool_backward(x, dy, **hyper)
    assert relative_error(_numpy(ops.pool_backward(xt, _torch(dy), **hyper, y=y)), expected) < 1e-14
    assert len(poolings) == 1
    xt.mul_(-1)
    flipped = ops.pool_backward(-x, dy, **hyper)
    assert relative_error(_numpy(ops.pool_backward(xt, _torch(dy), **hyper, y=y)), flipped) < 1e-14
    assert len(poolings) == 2


GAMMA, BETA, LABELS = RNG.standard_normal(6), RNG.standard_normal(6), RNG.integers(0, 6, (2, 5, 4))
MASK = RNG.random(X.shape) > 0.2
FC_W, FC_B = RNG.standard_normal((5, 4, 6, 3)), RNG.standard_normal(3)
SEED = 5


def _seeded(op):
    """op with a new generator of one seed at every call: the same mask on both backends (drawn on
    the CPU from the NumPy generator), and in the forward and the backward."""
    return lambda *args, **hyper: op(*args, rng=np.random.default_rng(SEED), **hyper)


def _joined(op):
    """A join (concat, add) of its positional inputs, as the table calls every op."""
    return lambda *xs, **hyper: op(list(xs), **hyper)


def _joined_backward(op):
    return lambda *args, **hyper: op(list(args[:-1]), args[-1], **hyper)


def _dropout_backward(x, dy, *, rate):
    return ops.dropout_backward(dy, _seeded(ops.dropout)(x, rate=rate)[1], rate=rate)


def _dropconnect_backward(x, w, b, dy, *, rate):
    mask = _seeded(ops.dropconnect)(x, w, b, rate=rate)[1]
    return ops.dropconnect_backward(x, w, b, dy, mask, rate=rate)


def _no_backward(*_):
    """softmax has no backward of its own (it is the loss's): the forward alone is compared."""


ELEMENTWISE = {
    "relu": (ops.relu, ops.relu_backward, [X], {}),
    "leaky_relu": (ops.leaky_relu, ops.leaky_relu_backward, [X], {"slope": 0.2}),
    "elu": (ops.elu, ops.elu_backward, [X], {"alpha": 0.5}),
    "sigmoid": (ops.sigmoid, ops.sigmoid_backward, [X], {}),
    "tanh": (ops.tanh, ops.tanh_backward, [X], {}),
    "softplus": (ops.softplus, ops.softplus_backward, [X], {}),
    "lrn-5": (ops.lrn, ops.lrn_backward, [X], {"alpha": 0.1}),
    "lrn-4": (ops.lrn, ops.lrn_backward, [X], {"size": 4, "alpha": 0.1, "kappa": 1.0}),
    "lrn-3-beta": (ops.lrn, ops.lrn_backward, [X], {"size": 3, "alpha": 0.1, "beta": 0.6}),
    "batch_norm": (ops.batch_norm, ops.batch_norm_backward, [X, GAMMA, BETA], {}),
    "batch_norm-test": (ops.batch_norm, ops.batch_norm_backward, [X, GAMMA, BETA],
                        {"moments": (GAMMA, np.abs(BETA))}),
    "fully_connected": (ops.fully_connected, ops.fully_connected_backward, [X, FC_W, FC_B], {}),
    "dropout": (_seeded(ops.dropout), _dropout_backward, [X], {"rate": 0.3}),
    "dropconnect": (_seeded(ops.dropconnect), _dropconnect_backward, [X, FC_W, FC_B],
                    {"rate": 0.4}),
    "dropconnect-rows": (_seeded(ops.dropconnect), _dropconnect_backward,
                         [X.reshape(2, 120), FC_W.reshape(120, 3), None], {"rate": 0.4}),
    "softmax": (ops.softmax, _no_backward, [X], {}),
    "softmax-large-logits": (ops.softmax, _no_backward, [80 * X.reshape(40, 6)], {}),
    "softmax_log_loss": (ops.softmax_log_loss, ops.softmax_log_loss_backward, [X, LABELS], {}),
    "softmax_log_loss-weighted": (ops.softmax_log_loss, ops.softmax_log_loss_backward, [X, LABELS],
                                  {"weights": np.linspace(0.5, 2, 6)}),
    "softmax_log_loss-rows-int32": (ops.softmax_log_loss, ops.softmax_log_loss_backward,
                                    [X.reshape(40, 6), LABELS.reshape(40).astype(np.int32)], {}),
    "l2_loss": (ops.l2_loss, ops.l2_loss_backward, [X, RNG.standard_normal(X.shape)], {}),
    "l2_loss-masked": (ops.l2_loss, ops.l2_loss_backward, [X, RNG.standard_normal(X.shape)],
                       {"mask": MASK}),
    "flatten": (ops.flatten, ops.flatten_backward, [X], {}),
    "concat": (_joined(ops.concat), _joined_backward(ops.concat_backward),
               [X, RNG.standard_normal((2, 5, 4, 3)), RNG.standard_normal((2, 5, 4, 1))], {}),
    "concat-axis1": (_joined(ops.concat), _joined_backward(ops.concat_backward),
                     [X, RNG.standard_normal((2, 2, 4, 6))], {"axis": 1}),
    "add": (_joined(ops.add), _joined_backward(ops.add_backward),
            [X, RNG.standard_normal(X.shape), RNG.standard_normal(X.shape)], {}),
}


def _tensor_hyper(hyper, dtype):
    """Array-valued hyper-parameters (moments, weights, masks) as tensors of the test's dtype."""
    def convert(v):
        if isinstance(v, np.ndarray):
            return _torch(v.astype(dtype) if v.dtype.kind == "f" else v)
        if isinstance(v, tuple):
            return tuple(convert(a) for a in v)
        return v

    return {k: convert(v) for k, v in hyper.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_ops_on_torch_equal_numpy(name, dtype):
    forward, backward, inputs, hyper = ELEMENTWISE[name]
    np_hyper = {k: (tuple(a.astype(dtype) for a in v) if isinstance(v, tuple) else
                    v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
                for k, v in hyper.items()}
    t_hyper = _tensor_hyper(hyper, dtype)

    def forward_any(*args, **_):
        return forward(*args, **(t_hyper if isinstance(args[0], torch.Tensor) else np_hyper))

    def backward_any(*args, **_):
        return backward(*args, **(t_hyper if isinstance(args[0], torch.Tensor) else np_hyper))

    assert_backends_agree(forward_any, backward_any, inputs, dtype)


@pytest.mark.parametrize("op", [ops.dropout, ops.dropconnect])
def test_dropout_masks_on_torch_are_the_numpy_masks_and_drop_units(op):
    """The table above compares the masks too; here: they really drop (not all kept), and the
    kept fraction is about 1 − rate."""
    inputs = [X] if op is ops.dropout else [X, FC_W, FC_B]
    _, m_np = _seeded(op)(*inputs, rate=0.3)
    _, m_t = _seeded(op)(*[_torch(a) for a in inputs], rate=0.3)
    assert m_t.dtype == torch.bool and np.array_equal(_numpy(m_t), m_np)
    assert 0.6 < m_np.mean() < 0.8


def test_convscope_imports_and_runs_without_torch():
    code = (
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is not installed')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import numpy as np, convscope\n"
        "from convscope import ops\n"
        "from convscope.debug import gradcheck\n"
        "x = np.random.default_rng(0).standard_normal((1, 5, 5, 2))\n"
        "w = np.ones((3, 3, 2, 2))\n"
        "assert gradcheck(ops.conv, ops.conv_backward, [x, w, None])[1] < 1e-6\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr


def test_loss_weights_of_another_array_kind_are_a_named_error():
    logits, labels = _torch(X.reshape(40, 6)), _torch(LABELS.reshape(40))
    for op in (ops.softmax_log_loss, lambda *a, **k: ops.softmax_log_loss_backward(*a, 1.0, **k)):
        with pytest.raises(ValueError, match="weights must be the same kind of array"):
            op(logits, labels, weights=np.ones(6))


def test_constant_tensors_that_a_cuda_graph_reads_are_never_evicted():
    """A captured step reads cached constants (−1 for the loss, pooling's window counts) by
    address: an evicting cache would free them under a live graph, which then reads garbage."""
    from convscope.backend import torch_kernels

    for cached in (torch_kernels._minus_ones, torch_kernels._window_counts):
        assert cached.cache_info().maxsize is None, cached.__name__


def test_average_pooling_backward_pads_explicitly_on_cuda_where_pytorch_misroutes():
    """PyTorch's CUDA average-pooling backward on channels-last input misroutes its own padding
    (pytorch/pytorch#188344): there convscope pads x itself; without padding, or off CUDA, not."""
    from types import SimpleNamespace

    from convscope.backend.torch_kernels import _avg_backward_misroutes_padding

    on_cuda, on_cpu = SimpleNamespace(is_cuda=True), SimpleNamespace(is_cuda=False)
    assert _avg_backward_misroutes_padding(on_cuda, ((1, 1), (0, 0)))
    assert not _avg_backward_misroutes_padding(on_cuda, ((0, 1), (0, 1)))  # after only: ceil mode
    assert not _avg_backward_misroutes_padding(on_cpu, ((1, 1), (1, 1)))
