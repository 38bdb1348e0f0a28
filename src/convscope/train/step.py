"""One training step, eager or captured whole as a CUDA graph.

A step is the lecture's loop body: the forward pass, the objective, the backward pass by the chain
rule, and the optimiser's update of every learnable parameter. The lecture's networks are small
enough that on a GPU the time goes to launching kernels, not to arithmetic; a CUDA graph records
the step's kernels once and replays them with one launch (PyTorch's ``torch.cuda.CUDAGraph``),
which needs fixed shapes and no reads of values inside the step.
"""

from __future__ import annotations

from convscope.errors import ConfigError


def train_step(net, optimizer, feed, *, rng=None) -> dict:
    """forward (training mode), backward from the objective (no dE/dx of the data), update;
    returns the forward's values (the objective, the prediction, …)."""
    values = net.forward(feed, train=True, rng=rng)
    net.backward({net.roles["objective"]: 1.0}, input_grads=False)
    optimizer.step(net.params())
    return values


class CudaGraphStep:
    """``step(x, y)``: :func:`train_step` on a CUDA network, replayed from a CUDA graph.

    The first ``warmup`` calls run eagerly (on a side stream, as capture requires; they are real
    training steps); the next call records the step into a graph and replays it, and every later
    call copies the batch into the graph's static input tensors and replays. The optimiser's
    ``live`` hyper-parameters (η, α for momentum, and Adam's step count t in its bias corrections:
    what the lecture's schedules and Adam change every step) are device scalars that the graph
    reads and each call fills; any other hyper-parameter (weight decay λ, RMSProp's ρ, Adam's β),
    a change of batch shape, and a change of which parameters learn or of their factors c_η, c_λ
    (``net.freeze``) are baked in, and trigger a new capture. ``captures`` counts them.
    Batches must keep one shape (drop or run eagerly a last partial batch). Layers that draw on the
    host during the step (dropout masks come from a NumPy generator) cannot be captured.
    Returns the forward's values: static tensors, overwritten by the next call.
    """

    def __init__(self, net, optimizer, *, warmup=3):
        import torch

        if not str(net.device).startswith("cuda"):
            raise ConfigError(f"cuda_graph: the network is on {net.device!r}; move it with "
                              f"net.to('cuda') first")
        random = [n for n, node in net.nodes.items()
                  if type(node.layer).__name__ in ("Dropout", "DropConnect")]
        if random:
            raise ConfigError(f"cuda_graph: layers {random} draw random masks on the host in every "
                              f"step and cannot be captured; train without --cuda-graph")
        self.net, self.optimizer, self.warmup = net, optimizer, warmup
        self.torch = torch
        self.calls, self.graph, self.static, self.values, self.baked = 0, None, None, None, None
        self.scalars: dict | None = None  # the live hyper-parameters' device scalars
        self.updated: tuple = ()  # the parameters the captured step moves
        self.captures = 0

    def _feed(self, x, y):
        roles = self.net.roles
        return self.net._check_feed(roles["input"], x), self.net._check_feed(roles["label"], y)

    def __call__(self, x, y) -> dict:
        torch = self.torch
        x, y = self._feed(x, y)
        if self.calls < self.warmup:
            self.calls += 1
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                values = self._step(x, y)
            torch.cuda.current_stream().wait_stream(stream)
            return values
        baked = self._baked(x)
        if self.graph is None or baked != self.baked:
            self._capture(x, y, baked)
        self.optimizer.count(self.updated)
        for name, scalar in self.scalars.items():
            scalar.fill_(getattr(self.optimizer, name))
        self.static[0].copy_(x)
        self.static[1].copy_(y)
        self.graph.replay()
        return self.values

    def _baked(self, x) -> tuple:
        """What a captured graph holds fixed: the batch shape, the optimiser's hyper-parameters
        other than its live ones, and each parameter's learning state and factors."""
        hyper = {k: v for k, v in self.optimizer.hyper().items()
                 if k not in ("t", "steps") and k not in self.optimizer.live}
        params = tuple((name, p.learnable, p.lr_factor, p.decay_factor)
                       for name, p in self.net.params().items())
        return tuple(x.shape), hyper, params

    def _step(self, x, y):
        roles = self.net.roles
        return train_step(self.net, self.optimizer, {roles["input"]: x, roles["label"]: y})

    def _capture(self, x, y, baked) -> None:
        torch = self.torch
        optimizer = self.optimizer
        if self.scalars is None:  # in the parameters' dtype (none: nothing reads them)
            params = [p.value for p in self.net.params().values()]
            dtype = params[0].dtype if params else torch.float32
            self.scalars = {name: torch.zeros((), dtype=dtype, device=x.device)
                            for name in optimizer.live}
        optimizer.prepare(self.net.params())
        self.static = (x.clone(), y.clone())
        self.graph = torch.cuda.CUDAGraph()
        counts = optimizer.t, dict(optimizer.steps)
        optimizer.scalars = self.scalars
        try:
            with torch.cuda.graph(self.graph):
                self.values = self._step(*self.static)
        finally:
            optimizer.scalars = None  # eager steps (a last partial batch) read the numbers
            optimizer.t, optimizer.steps = counts  # capture records the step without running it
        self.updated = tuple(optimizer.updated(self.net.params()))
        self.baked = baked
        self.captures += 1
