"""Backbone + head = classifier, and ``create_model``, the one way the project builds a network. The zoo's
``backbone``/``head`` attribute names (checkpoint keys ``backbone.*``, ``head.fc.*``) and its output activation
("None", "Softmax", "Sigmoid"; anything else is a ValueError where the zoo raised NotImplementedError)."""
from mindspore import nn

from src.archs import get_arch
from src.cspdarknet53 import CspDarkNet53
from src.head import CommonHead
from src.utils.var_init import DEFAULT_INIT, init_weights

_ACTIVATIONS = {None: None, "None": None, "Softmax": nn.Softmax, "Sigmoid": nn.Sigmoid}


class ImageClassificationNetwork(nn.Cell):
    def __init__(self, backbone, head, activation="None", init=DEFAULT_INIT):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: expected 'None', 'Softmax' or 'Sigmoid'")
        self.init_scheme = init
        self.backbone = backbone
        self.head = head
        self.arch = backbone.arch
        self.num_features = backbone.num_features
        self.num_classes = head.num_classes
        self.activation = _ACTIVATIONS[activation]() if _ACTIVATIONS[activation] else None
        self.use_activation = self.activation is not None

    def forward_features(self, x):
        """The last feature map, (N, num_features, H/32, W/32)."""
        return self.backbone(x)

    def forward_head(self, x, pre_logits=False):
        """Pooled features (``pre_logits``) or logits from a feature map."""
        return self.head(x, pre_logits)

    def feature_maps(self, x):
        """The backbone's six feature levels (stem, then each stage), shallowest first."""
        return self.backbone.feature_maps(x)

    def construct(self, x):
        x = self.head(self.backbone(x))
        if self.use_activation:
            x = self.activation(x)
        return x

    def reset_classifier(self, num_classes, seed=0, fp16=None):
        """Replaces the head with a freshly initialised one for ``num_classes`` (fine-tuning)."""
        if fp16 is None:
            fp16 = getattr(self.head.fc, "to_float_flag", False)
        head = CommonHead(self.num_features, num_classes, fp16=fp16)
        init_weights(head, self.init_scheme, seed=seed + 1)
        self.head = head
        self.num_classes = num_classes
        self.head.update_parameters_name("head.")  # names are relative to the root cell once attached
        return self


class FeatureExtractor(nn.Cell):
    """Backbone only, returning the feature levels in ``out_indices`` as a tuple (timm's features_only)."""

    def __init__(self, backbone, out_indices):
        super().__init__()
        self.backbone = backbone
        self.out_indices = tuple(out_indices)
        channels, strides = backbone.arch.feature_channels, backbone.arch.feature_strides
        for i in self.out_indices:
            if not 0 <= i < len(channels):
                raise ValueError(f"out_indices entry {i} is outside 0..{len(channels) - 1}")
        self.feature_info = [dict(level=i, num_chs=channels[i], reduction=strides[i]) for i in self.out_indices]

    def construct(self, x):
        features = self.backbone.feature_maps(x)
        return tuple(features[i] for i in self.out_indices)


def create_model(arch="cspdarknet53", num_classes=1000, fp16_head=False, features_only=False, out_indices=None,
                 activation="None", seed=0, init=DEFAULT_INIT):
    """A classifier (``features_only``: a feature extractor, default the zoo's detection levels) initialised by
    scheme ``init`` from a private RNG seeded with ``seed``: every rank builds identical weights."""
    arch = get_arch(arch)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    backbone = CspDarkNet53(arch)
    if features_only:
        net = FeatureExtractor(backbone, arch.detect_levels if out_indices is None else out_indices)
    else:
        net = ImageClassificationNetwork(backbone, CommonHead(arch.num_features, num_classes, fp16=fp16_head),
                                         activation, init=init)
    init_weights(net, init, seed=seed)
    return net


def count_parameters(net, trainable_only=True):
    params = net.trainable_params() if trainable_only else net.get_parameters()
    return int(sum(p.size for p in params))
