"""Every layer of the lecture as a pair of pure functions: ``y = op(x, *params, **hyper)`` and
``dx, *dparams = op_backward(x, *params, dy, **hyper)``.

No state, no caches: a backward takes the forward's inputs (and, where documented, its auxiliary
outputs such as a dropout mask) and returns dE/dx (and dE/dparams) given dE/dy, so every op is
checkable by :func:`convscope.debug.gradcheck`. Inputs are channels-last (N×H×W×D, or N×T×H×W×D
for volumes), NumPy arrays or PyTorch tensors; each docstring states the formula.

| layer | forward | backward | module |
| --- | --- | --- | --- |
| convolution | conv | conv_backward | conv.py |
| deconvolution | conv_transpose | conv_transpose_backward | conv.py |
| fully connected | fully_connected | fully_connected_backward | fully_connected.py |
| activations | relu, leaky_relu, elu, sigmoid, tanh, softplus | <name>_backward | activations.py |
| pooling | pool | pool_backward | pool.py |
| LRN | lrn | lrn_backward | normalization.py |
| batch norm | batch_norm | batch_norm_backward | normalization.py |
| dropout, DropConnect | dropout, dropconnect | dropout_backward, dropconnect_backward | dropout.py |
| losses | softmax, softmax_log_loss, l2_loss | softmax_log_loss_backward, l2_loss_backward | losses.py |
| DAG joins | flatten, concat, add | flatten_backward, concat_backward, add_backward | joins.py |
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
