"""Every layer of the lecture as a pair of pure functions: ``y = op(x, *params, **hyper)`` and
``dx, *dparams = op_backward(x, *params, dy, **hyper)``.

No state, no caches: a backward takes the forward's inputs (and, where documented, its auxiliary
outputs such as a dropout mask) and returns dE/dx (and dE/dparams) given dE/dy, so every op is
checkable by :func:`convscope.debug.gradcheck`. Inputs are channels-last (N×H×W×D, or N×T×H×W×D
for volumes), NumPy arrays or PyTorch tensors; each docstring states the formula.

Each op's derivative is ``<op>_backward`` (softmax has none of its own: it is the loss's).

| layer | forward | module | tests, in tests/ops/ |
| --- | --- | --- | --- |
| convolution | conv | conv.py | test_conv.py |
| deconvolution | conv_transpose | conv.py | test_conv.py |
| fully connected | fully_connected | fully_connected.py | test_elementwise.py, test_conv.py |
| activations | relu, leaky_relu, elu, sigmoid, tanh, softplus | activations.py | test_elementwise.py |
| pooling | pool | pool.py | test_pool.py |
| LRN | lrn | normalization.py | test_elementwise.py |
| batch norm | batch_norm | normalization.py | test_elementwise.py |
| dropout, DropConnect | dropout, dropconnect | dropout.py | test_elementwise.py |
| losses | softmax, softmax_log_loss, l2_loss | losses.py | test_elementwise.py |
| DAG joins | flatten, concat, add | joins.py | test_elementwise.py |

Each op's tests check it against central differences in float64 (`gradcheck`) and against
PyTorch's function and autograd in float32 and float64 (`torch_oracle.py`);
`test_torch_backend.py` runs them on PyTorch tensors against the NumPy results. The heavy kernels
behind the ops (im2col convolution, pooling, LRN's channel sums) are in :mod:`convscope.backend`;
each of their paths (tiles, the rotated dE/dx, pooling by rows or by axes, the bias by lines) is
pinned against the path it replaces in test_conv.py and test_pool.py, and the batch split between
threads (parts, blocks, large matrix products) in test_parallel.py.
"""

from convscope.ops._args import output_size
from convscope.ops.activations import (
    elu,
    elu_backward,
    leaky_relu,
    leaky_relu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)
from convscope.ops.conv import conv, conv_backward, conv_transpose, conv_transpose_backward
from convscope.ops.dropout import dropconnect, dropconnect_backward, dropout, dropout_backward
from convscope.ops.fully_connected import fully_connected, fully_connected_backward
from convscope.ops.joins import (
    add,
    add_backward,
    concat,
    concat_backward,
    flatten,
    flatten_backward,
)
from convscope.ops.losses import (
    l2_loss,
    l2_loss_backward,
    softmax,
    softmax_log_loss,
    softmax_log_loss_backward,
)
from convscope.ops.normalization import batch_norm, batch_norm_backward, lrn, lrn_backward
from convscope.ops.pool import pool, pool_backward

__all__ = [
    "add", "add_backward", "batch_norm", "batch_norm_backward", "concat", "concat_backward",
    "conv", "conv_backward", "conv_transpose", "conv_transpose_backward", "dropconnect",
    "dropconnect_backward", "dropout", "dropout_backward", "elu", "elu_backward", "flatten",
    "flatten_backward", "fully_connected", "fully_connected_backward", "l2_loss",
    "l2_loss_backward", "leaky_relu", "leaky_relu_backward", "lrn", "lrn_backward",
    "output_size", "pool", "pool_backward", "relu", "relu_backward", "sigmoid",
    "sigmoid_backward", "softmax", "softmax_log_loss", "softmax_log_loss_backward", "softplus",
    "softplus_backward", "tanh", "tanh_backward",
]
