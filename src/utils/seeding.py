"""The one owner of random seeds. Weight init and the train data order use private generators from ``seed``
(``create_model``, ``src.data.sampler``); the engine's random augmentations and MindSpore's global generators
read global seeds, set by :func:`seed_everything` at the start and :func:`set_augmentation_seed` before each
epoch's iterator: per (epoch, rank), so a resumed run draws what an uninterrupted one would.
"""


def seed_everything(seed):
    """Seeds MindSpore's, NumPy's legacy and the data engine's global generators with ``seed``."""
    import mindspore as ms
    import mindspore.dataset as ds
    import numpy as np

    ms.set_seed(int(seed))
    np.random.seed(int(seed) % 2 ** 32)
    ds.config.set_seed(int(seed) % 2 ** 32)


def set_augmentation_seed(seed, rank=0, epoch=0, group_size=1):
    """Sets the data engine's seed (read when an iterator is created) to ``seed + epoch * group_size + rank``
    (mod 2**32), distinct for every (epoch, rank) pair of a run; returns it."""
    import mindspore.dataset as ds

    value = (int(seed) + int(epoch) * int(group_size) + int(rank)) % 2 ** 32
    ds.config.set_seed(value)
    return value
