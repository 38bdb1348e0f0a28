"""Networks: layer objects around :mod:`convscope.ops`, the :class:`Network` DAG, initialisers,
and summaries."""

from convscope.nn import init
from convscope.nn.layers import (
    ELU,
    LAYERS,
    LRN,
    Add,
    BatchNorm,
    Concat,
    Conv,
    ConvTranspose,
    DropConnect,
    Dropout,
    Flatten,
    FullyConnected,
    L2Loss,
    Layer,
    LeakyReLU,
    Pool,
    ReLU,
    Sigmoid,
    SoftmaxLogLoss,
    Softplus,
    Tanh,
    make_layer,
)
from convscope.nn.network import Network, Sequential
from convscope.nn.parameter import Parameter
from convscope.nn.summary import summary

__all__ = [
    "ELU", "LAYERS", "LRN", "Add", "BatchNorm", "Concat", "Conv", "ConvTranspose", "DropConnect",
    "Dropout", "Flatten", "FullyConnected", "L2Loss", "Layer", "LeakyReLU", "Network",
    "Parameter", "Pool", "ReLU", "Sequential", "Sigmoid", "SoftmaxLogLoss", "Softplus", "Tanh",
    "init", "make_layer", "summary",
]
