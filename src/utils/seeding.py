"""The one owner of random seeds.

Three kinds of randomness, each seeded here and nowhere else:

* weight initialisation: a private ``numpy.random.RandomState(seed)`` inside ``create_model`` (no
  global state), identical on every rank;
* the train data order: ``src.data.sampler`` draws each epoch's permutation from ``(seed, epoch)``,
  the same on every rank (no global state either);
* the engine's random augmentations (crops, flips, jitter) and MindSpore's global generators: these
  read global seeds, set by :func:`seed_everything` at the start of a run and by
  :func:`set_augmentation_seed` before each epoch's iterator is created. The augmentation seed
  depends on the epoch (so a resumed run draws what an uninterrupted one would) and on the rank (so
  ranks draw different augmentations); one process, epoch 0, is ``seed`` itself.
"""

__all__ = ["seed_everything", "augmentation_seed", "set_augmentation_seed"]


def seed_everything(seed):
    """Seeds MindSpore's, NumPy's legacy and the data engine's global generators with ``seed``."""
    import mindspore as ms
    import mindspore.dataset as ds
    import numpy as np

    ms.set_seed(int(seed))
    np.random.seed(int(seed) % 2 ** 32)
    ds.config.set_seed(int(seed) % 2 ** 32)


def augmentation_seed(seed, rank=0, epoch=0, group_size=1):
    """The engine seed of ``rank`` in ``epoch``: ``seed + epoch * group_size + rank`` (mod 2**32), distinct for
    every (epoch, rank) pair of a run."""
    return (int(seed) + int(epoch) * int(group_size) + int(rank)) % 2 ** 32


def set_augmentation_seed(seed, rank=0, epoch=0, group_size=1):
    """Sets the data engine's seed (read when an iterator is created) to :func:`augmentation_seed`."""
    import mindspore.dataset as ds

    value = augmentation_seed(seed, rank, epoch, group_size)
    ds.config.set_seed(value)
    return value
