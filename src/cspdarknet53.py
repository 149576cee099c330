"""CSPDarkNet53 backbone for MindSpore, built from a small architecture description.

Reference: Wang et al., "CSPNet: A New Backbone that can Enhance Learning Capability of CNN",
CVPR Workshops 2020; the darknet cfg ``csdarknet53-omega.cfg``; the MindSpore model zoo's
``research/cv/cspdarknet53`` (numerics of ``cspdarknet53``) and timm's ``cspnet.py``
(numerics and channel layout of ``cspdarknet53_timm``).

Network layout (both named architectures; 27,642,184 trainable parameters with a 1000-way head):
a 3x3 stride-1 stem to 32 channels, then five cross stages (depths 1, 2, 8, 8, 4; widths 64 .. 1024).
Each stage downsamples with a 3x3 stride-2 conv, splits into a *cross* path and a *blocks* path,
runs residual "dark" blocks (1x1 then 3x3 conv, plain add, no activation after the add) on the
blocks path, applies a 1x1 transition to it, concatenates both paths and fuses them with a 1x1 conv.
Every conv is Conv (no bias) -> BatchNorm (momentum 0.9, eps 1e-5) -> activation.

The architecture descriptions (``CspArch``) and the registry live in ``src.archs``.

Module names follow timm (``stem.conv1``, ``stages.{i}.conv_down`` ... ``conv_transition``,
``blocks.{j}.conv1/conv2``, each unit ``.conv``/``.bn``), so timm state dicts map by four renames;
``src/checkpoint.py`` maps the zoo's flat ``conv0..conv27`` names.
"""
from collections import OrderedDict

import numpy as np
from mindspore import Tensor, nn, ops

from src.archs import get_arch
from src.utils.custom_op import create_activation


class ConvNormAct(nn.Cell):
    """Conv2d (no bias) -> BatchNorm2d -> activation; named ``conv``/``bn``/``act`` like timm."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, arch):
        super().__init__()
        if arch.padding == "same" or kernel_size == 1:
            # TF-style SAME: for a stride-2 3x3 conv on even input, pad 0 top/left, 1 bottom/right,
            # as the zoo does.
            conv_kwargs = dict(pad_mode="same")
        else:
            conv_kwargs = dict(pad_mode="pad", padding=kernel_size // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, has_bias=False,
                              weight_init="zeros", **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, momentum=arch.bn_momentum, eps=arch.bn_eps)
        self.act = create_activation(arch.activation, arch.leaky_slope)

    def construct(self, x):
        return self.act(self.bn(self.conv(x)))


class DarkBlock(nn.Cell):
    """1x1 conv -> 3x3 conv, plus the input (a linear shortcut: no activation after the add)."""

    def __init__(self, channels, hidden_channels, arch):
        super().__init__()
        self.conv1 = ConvNormAct(channels, hidden_channels, 1, 1, arch)
        self.conv2 = ConvNormAct(hidden_channels, channels, 3, 1, arch)

    def zero_init_last(self):
        """Zeroes the last BatchNorm's gamma, so the block starts as the identity (timm's zero_init_last)."""
        gamma = self.conv2.bn.gamma
        gamma.set_data(Tensor(np.zeros(gamma.shape, np.float32)))

    def construct(self, x):
        return self.conv2(self.conv1(x)) + x


class CrossStage(nn.Cell):
    """One CSP stage: downsample, split into cross and blocks paths, dark blocks, transition, fuse."""

    def __init__(self, in_channels, out_channels, depth, expand_ratio, bottle_ratio, block_ratio, arch):
        super().__init__()
        split_channels = int(out_channels * expand_ratio) // 2
        block_channels = int(out_channels * block_ratio)
        if block_channels != split_channels:
            raise ValueError(f"CspArch {arch.name!r}: blocks path has {split_channels} channels but blocks are "
                             f"{block_channels} wide; the residual add needs them equal")
        self.merged = arch.split == "merged"
        self.cross_first = arch.concat_order == "cross_first"
        self.split_channels = split_channels
        self.conv_down = ConvNormAct(in_channels, out_channels, 3, 2, arch)
        if self.merged:
            self.conv_exp = ConvNormAct(out_channels, 2 * split_channels, 1, 1, arch)
        else:
            self.conv_main = ConvNormAct(out_channels, split_channels, 1, 1, arch)
            self.conv_bypass = ConvNormAct(out_channels, split_channels, 1, 1, arch)
        hidden = int(block_channels * bottle_ratio)
        self.blocks = nn.SequentialCell([DarkBlock(block_channels, hidden, arch) for _ in range(depth)])
        self.conv_transition_b = ConvNormAct(block_channels, block_channels, 1, 1, arch)
        self.conv_transition = ConvNormAct(split_channels + block_channels, out_channels, 1, 1, arch)
        self.concat = ops.Concat(axis=1)

    def construct(self, x):
        x = self.conv_down(x)
        if self.merged:
            x = self.conv_exp(x)
            cross = x[:, :self.split_channels]
            main = x[:, self.split_channels:]
        else:
            main = self.conv_main(x)
            cross = self.conv_bypass(x)
        main = self.conv_transition_b(self.blocks(main))
        if self.cross_first:
            x = self.concat((cross, main))
        else:
            x = self.concat((main, cross))
        return self.conv_transition(x)


class CspDarkNet53(nn.Cell):
    """The backbone: ``construct`` returns the last feature map (N, num_features, H/32, W/32).

    ``feature_maps(x)`` returns all six levels (stem at stride 1, stages at strides 2..32), the
    multi-scale outputs that detection users need; the zoo's ``detect=True`` outputs are levels
    ``arch.detect_levels`` (3, 4, 5: 256/512/1024 channels at strides 8/16/32).
    Weights are left at their layer defaults; ``create_model`` applies the zoo initialisation.
    """

    def __init__(self, arch="cspdarknet53"):
        super().__init__()
        self.arch = get_arch(arch)
        a = self.arch
        self.stem = nn.SequentialCell(OrderedDict(
            conv1=ConvNormAct(3, a.stem_channels, a.stem_kernel, 1, a)))
        stages = []
        in_channels = a.stem_channels
        for i, depth in enumerate(a.depths):
            stages.append(CrossStage(in_channels, a.widths[i], depth, a.expand_ratios[i], a.bottle_ratios[i],
                                     a.block_ratios[i], a))
            in_channels = a.widths[i]
        self.stages = nn.CellList(stages)
        self.num_features = a.num_features

    def construct(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def feature_maps(self, x):
        """All six feature levels as a tuple, shallowest first."""
        x = self.stem(x)
        features = (x,)
        for stage in self.stages:
            x = stage(x)
            features = features + (x,)
        return features
