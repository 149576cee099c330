"""The one owner of random seeds. Weight init and the train order use private generators; the engine's
augmentations read global seeds, set per (epoch, rank) before each epoch, so a resumed run draws what an
uninterrupted one would."""


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
