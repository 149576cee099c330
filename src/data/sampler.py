"""The train samplers' contract: each rank takes positions ``r, r + G, ...`` of one epoch order drawn from
``(seed, epoch)`` alone, padded by wrapping to ``ceil(N / G) * G``; so shards are disjoint (up to the padding) and a
resumed run (``set_epoch(e)``) replays the uninterrupted order.
"""
import functools
import math

import numpy as np


class EpochOrder:
    """The common part; a subclass defines ``epoch_indices(epoch)``: all ``per_shard * group_size`` positions."""

    def __init__(self, n, rank=0, group_size=1, seed=0):
        self.n, self.rank, self.group_size, self.seed, self.epoch = int(n), int(rank), int(group_size), int(seed), 0
        self.per_shard = math.ceil(self.n / self.group_size)

    def rng(self, epoch, *salt):
        return np.random.default_rng([self.seed % (2 ** 32), int(epoch), *salt])

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def indices(self, epoch):
        return self.epoch_indices(epoch)[self.rank::self.group_size]

    def __iter__(self):
        idx = self.indices(self.epoch)
        self.epoch += 1
        return iter(idx.tolist())

    def __len__(self):
        return self.per_shard


class EpochShardOrder(EpochOrder):
    """Like the engine's DistributedSampler, seeded on its own: epoch e is the permutation drawn from (seed, e)."""

    def __init__(self, n, rank=0, group_size=1, shuffle=True, seed=0):
        super().__init__(n, rank, group_size, seed)
        self.shuffle = bool(shuffle)

    def epoch_indices(self, epoch):
        order = self.rng(epoch).permutation(self.n) if self.shuffle else np.arange(self.n)
        return np.resize(order, self.per_shard * self.group_size)  # padded by wrapping around


@functools.lru_cache(maxsize=None)
def _sampler_class(order_cls):
    import mindspore.dataset as ds

    def __init__(self, *args, **kwargs):
        order_cls.__init__(self, *args, **kwargs)
        ds.Sampler.__init__(self)
    return type(order_cls.__name__ + "Sampler", (order_cls, ds.Sampler), {"__init__": __init__})


def mindspore_sampler(order_cls, *args, **kwargs):
    """``order_cls(*args, **kwargs)`` as a ``mindspore.dataset.Sampler`` (built on first use: no MindSpore import)."""
    return _sampler_class(order_cls)(*args, **kwargs)
