"""Build a small DAG by hand (MatConvNet DagNN style), check its gradient, save and reload it.

    python examples/dag_network.py
"""

import numpy as np

from convscope.debug import gradcheck
from convscope.nn import Add, Conv, FullyConnected, Network, Pool, ReLU, SoftmaxLogLoss

net = Network({"input": (28, 28, 1), "label": ()}, dtype=np.float64)
net.add("conv1", Conv(8, 3, pad=1), "input")
net.add("relu1", ReLU(), "conv1")
net.add("conv2", Conv(8, 3, pad=1), "relu1")
net.add("skip", Add(), ["conv2", "conv1"])           # a residual join
net.add("pool", Pool(4), "skip")
net.add("fc", FullyConnected(10), "pool", output="prediction")
net.add("objective", SoftmaxLogLoss(), ["prediction", "label"])
print(net.summary())

x = np.random.default_rng(0).standard_normal((2, 28, 28, 1))
labels = np.array([3, 7])
w = net.params()["conv2.w"]


def forward(x, w_value):
    w.value = w_value
    return net.forward({"input": x, "label": labels})["objective"]


def backward(x, w_value, dy):
    forward(x, w_value)
    grads = net.backward({"objective": dy})
    return grads["input"], w.grad


print("max relative errors:", gradcheck(forward, backward, [x, w.value]))
net.save("dag.safetensors")
print("reloaded:", Network.load("dag.safetensors"))
