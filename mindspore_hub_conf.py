"""MindSpore Hub entry point. Unlike the model zoo's (the bare backbone class, with a ``block`` argument),
``create_network`` returns the full classifier, eval-ready, with the weights of ``checkpoint_path`` (any format
``src.checkpoint`` reads; strict, non-finite weights refused) when given."""
from src.archs import REGISTRY
from src.checkpoint import load_weights
from src.image_classification import create_model


def create_network(name="cspdarknet53", num_classes=1000, checkpoint_path=None, **kwargs):
    """``name``: an architecture of ``src.archs.REGISTRY``; other keyword arguments go to ``create_model``."""
    if name not in REGISTRY:
        raise NotImplementedError(f"{name} is not implemented in the repo, please try one of {list(REGISTRY)}.")
    net = create_model(name, num_classes=num_classes, **kwargs)
    if checkpoint_path:
        load_weights(net, checkpoint_path)
    net.set_train(False)
    return net
