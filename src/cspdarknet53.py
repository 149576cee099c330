"""CSPDarkNet53 backbone built from a ``src.archs.CspArch`` (Wang et al., "CSPNet", CVPRW 2020; the MindSpore
model zoo's ``research/cv/cspdarknet53`` for ``cspdarknet53``'s numerics, timm's ``cspnet.py`` for
``cspdarknet53_timm``'s). A 3x3 stem, then cross stages: a stride-2 conv, a split into a cross and a blocks path,
residual dark blocks (no activation after the add), a 1x1 transition, concat, a 1x1 fuse; every unit is
Conv (no bias) -> BatchNorm -> activation. Module names follow timm (``stem.conv1``, ``stages.{i}.conv_down`` ...,
``blocks.{j}.conv1/conv2``), so timm state dicts map by four renames (``src.checkpoint.layouts``).
"""
from collections import OrderedDict

import numpy as np
from mindspore import Tensor, nn, ops

from src.archs import get_arch
from src.utils.custom_op import LeakyReLU, Mish


class ConvNormAct(nn.Cell):
    """Conv2d (no bias) -> BatchNorm2d -> activation; named ``conv``/``bn``/``act`` like timm."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, arch):
        super().__init__()
        if arch.padding == "same" or kernel_size == 1:  # TF SAME (zoo): stride 2 pads 0 top/left, 1 bottom/right
            conv_kwargs = dict(pad_mode="same")
        else:
            conv_kwargs = dict(pad_mode="pad", padding=kernel_size // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, has_bias=False,
                              weight_init="zeros", **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, momentum=arch.bn_momentum, eps=arch.bn_eps)
        self.act = Mish() if arch.activation == "mish" else LeakyReLU(alpha=arch.leaky_slope)  # slope explicit

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
        return self.conv_transition(self.concat((cross, main) if self.cross_first else (main, cross)))


class CspDarkNet53(nn.Cell):
    """The backbone: ``construct`` returns the last feature map (N, num_features, H/32, W/32), ``feature_maps``
    all six levels (stem, then stages at strides 2..32). ``create_model`` initialises the weights."""

    def __init__(self, arch="cspdarknet53"):
        super().__init__()
        self.arch = get_arch(arch)
        a = self.arch
        self.stem = nn.SequentialCell(OrderedDict(
            conv1=ConvNormAct(3, a.stem_channels, a.stem_kernel, 1, a)))
        ins = a.feature_channels  # stage i reads level i (the stem, then stage i - 1)
        self.stages = nn.CellList([CrossStage(ins[i], a.widths[i], depth, a.expand_ratios[i], a.bottle_ratios[i],
                                              a.block_ratios[i], a) for i, depth in enumerate(a.depths)])
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
