"""MindSpore Hub entry point: ``create_network``, the project's stable public way to get a model.

Unlike the model zoo's version (which returned the bare backbone class and needed a ``block``
argument), this returns the full classifier, weights loaded when ``checkpoint_path`` is given,
switched to inference mode.
"""
from src.checkpoint import load_weights
from src.archs import REGISTRY
from src.image_classification import create_model


def create_network(name="cspdarknet53", num_classes=1000, checkpoint_path=None, **kwargs):
    """Returns an eval-ready ``ImageClassificationNetwork``.

    name: any architecture of ``src.archs.REGISTRY`` (``cspdarknet53``: model-zoo numerics,
    ``cspdarknet53_timm``: timm numerics, loads timm weights, ``cspdarknet_tiny``). ``checkpoint_path``: any format ``src.checkpoint`` reads (this
    project's .ckpt, the model zoo's .ckpt, timm .safetensors/.pth); loading is strict, and weights that are not
    finite raise ``src.errors.CheckpointError``.
    Other keyword arguments go to ``src.image_classification.create_model`` (``fp16_head``,
    ``features_only``, ``out_indices``, ``activation``).
    """
    if name not in REGISTRY:
        raise NotImplementedError(f"{name} is not implemented in the repo, please try one of {list(REGISTRY)}.")
    net = create_model(name, num_classes=num_classes, **kwargs)
    if checkpoint_path:
        load_weights(net, checkpoint_path)
    net.set_train(False)
    return net
