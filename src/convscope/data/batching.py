"""Mini-batches: seeded shuffling per epoch, augmentation on the fly, a prefetching thread.

``batches(data, batch_size, *, shuffle=True, seed=0, rng=None, drop_last=False, augment=None,
preprocess=None, prefetch=True, epoch=0) -> BatchIterator``

``data`` is a :class:`~convscope.data.dataset.Dataset`, a pair ``(x, y)`` or an array ``x``
(then y is None). Iterating the returned object runs **one epoch** and yields ``(x_b, y_b)``
with ``x_b`` B×H×W×D (B×T×H×W×D for volumes), B = ``batch_size`` except a last partial batch
(kept unless ``drop_last``). Each new ``iter()`` starts the next epoch; ``len()`` is the number
of batches per epoch; ``set_epoch(e)`` jumps to epoch e (to resume a run).

Randomness: epoch e draws its order and its augmentations from two generators spawned from
``SeedSequence([seed, e])``, so the batches of epoch e depend only on (seed, e): the same seed
gives the same batches, and a resumed run sees the same batches as an uninterrupted one.
``rng`` (a Generator) may be given instead of ``seed``; one seed is then drawn from it.

Per batch, in order: x_b, y_b = data[index]; ``augment(x_b, y_b, rng)`` (see
:mod:`convscope.data.augment`; give it for training batches only); ``preprocess(x_b)`` (a fitted
:mod:`~convscope.data.preprocess` object, for every split). Without ``preprocess`` x_b keeps the
stored dtype (uint8 for the real data sets). With ``prefetch`` (True, or a queue depth) a
background thread prepares the next batch while the current one is used; exceptions in it are
re-raised in the consumer, and leaving the loop early stops the thread.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

from convscope.data.dataset import Dataset
from convscope.errors import ConfigError, ShapeError


def _unpack(data):
    if isinstance(data, Dataset):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        if y is not None and len(y) != len(x):
            raise ShapeError(f"batches: x has N={len(x)} samples, y has {len(y)}")
        return x, y
    return data, None


class BatchIterator:
    """One epoch of mini-batches per ``iter()``; see the module docstring."""

    def __init__(self, data, batch_size: int, *, shuffle=True, seed=0, rng=None,
                 drop_last=False, augment: Callable | None = None,
                 preprocess: Callable | None = None, prefetch=True, epoch: int = 0):
        self.x, self.y = _unpack(data)
        if int(batch_size) < 1:
            raise ConfigError(f"batches: batch_size must be ≥ 1, got {batch_size}")
        if rng is not None:
            seed = int(rng.integers(2**63))
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.drop_last, self.augment, self.preprocess = bool(drop_last), augment, preprocess
        self.prefetch = int(prefetch)
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The next ``iter()`` runs epoch ``epoch``."""
        self.epoch = int(epoch)

    def _generators(self, epoch: int):
        order, aug = np.random.SeedSequence([self.seed, epoch]).spawn(2)
        return np.random.default_rng(order), np.random.default_rng(aug)

    def indices(self, epoch: int) -> list[np.ndarray]:
        """The sample indices of each batch of epoch ``epoch``."""
        n = len(self.x)
        order_rng, _ = self._generators(epoch)
        order = order_rng.permutation(n) if self.shuffle else np.arange(n)
        return [order[s:s + self.batch_size] for s in range(0, len(self) * self.batch_size,
                                                             self.batch_size)]

    def _batch(self, index, rng):
        xb = self.x[index]
        yb = None if self.y is None else self.y[index]
        if self.augment is not None:
            xb, yb = self.augment(xb, yb, rng)
        if self.preprocess is not None:
            xb = self.preprocess(xb)
        return xb, yb

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        self.epoch += 1
        _, aug_rng = self._generators(epoch)
        produce = (self._batch(index, aug_rng) for index in self.indices(epoch))
        return _prefetched(produce, self.prefetch) if self.prefetch > 0 else produce


_DONE = object()


def _prefetched(items: Iterator, depth: int) -> Iterator:
    """Run ``items`` in a background thread, up to ``depth`` results ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _DONE))
        except BaseException as e:  # handed to the consumer, re-raised there
            put((False, e))

    thread = threading.Thread(target=work, name="convscope-batches", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def batches(data, batch_size: int, *, shuffle=True, seed=0, rng=None, drop_last=False,
            augment=None, preprocess=None, prefetch=True, epoch: int = 0) -> BatchIterator:
    """Mini-batches of ``data``; see the module docstring for the full contract."""
    return BatchIterator(data, batch_size, shuffle=shuffle, seed=seed, rng=rng,
                         drop_last=drop_last, augment=augment, preprocess=preprocess,
                         prefetch=prefetch, epoch=epoch)
