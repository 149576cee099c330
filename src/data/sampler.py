"""The train sampler: equal rank shards of an order reshuffled every epoch from (seed, epoch).

Every rank draws the same permutation for an epoch, so the shards of one epoch are disjoint up to the
padding, and a resumed run replays exactly the order an uninterrupted run would have used.
"""
import math

import numpy as np


class _EpochShardOrder:
    """Equal shards of a (re)shuffled order, like the engine's DistributedSampler but seeded on its own:
    epoch e uses the permutation drawn from (seed, e), the same on every rank; the order is padded by
    wrapping around to ceil(n / group_size) * group_size and rank r takes positions r, r + G, ...
    ``set_epoch(e)`` sets the next epoch's number (for a resumed run)."""

    def _setup(self, n, rank, group_size, shuffle, seed):
        self.n, self.rank, self.group_size = int(n), int(rank), int(group_size)
        self.shuffle, self.seed, self.epoch = bool(shuffle), int(seed), 0
        self.per_shard = math.ceil(self.n / self.group_size)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def indices(self, epoch):
        if self.shuffle:
            order = np.random.default_rng([self.seed % (2 ** 32), int(epoch)]).permutation(self.n)
        else:
            order = np.arange(self.n)
        total = self.per_shard * self.group_size
        if total > self.n:
            order = np.resize(order, total)  # wrap around
        return order[self.rank:total:self.group_size]

    def __iter__(self):
        idx = self.indices(self.epoch)
        self.epoch += 1
        return iter(idx.tolist())

    def __len__(self):
        return self.per_shard


_sampler_cls = None


def epoch_shard_sampler(n, rank=0, group_size=1, shuffle=True, seed=0):
    """A ``mindspore.dataset.Sampler`` with ``_EpochShardOrder``'s behaviour (built lazily, so importing
    this module does not import mindspore)."""
    global _sampler_cls
    if _sampler_cls is None:
        import mindspore.dataset as ds

        class EpochShardSampler(_EpochShardOrder, ds.Sampler):
            def __init__(self, n, rank, group_size, shuffle, seed):
                self._setup(n, rank, group_size, shuffle, seed)
                ds.Sampler.__init__(self)

        _sampler_cls = EpochShardSampler
    return _sampler_cls(n, rank, group_size, shuffle, seed)
