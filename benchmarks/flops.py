"""Multiply-accumulates of a registered architecture, counted from its ``CspArch`` (no MindSpore import).

Counts the convolutions and the classifier (FLOPs = 2 x MACs; BatchNorm, activations, adds and pooling, under
1 % here, are left out), walking the structure as ``src.cspdarknet53`` builds it, with output sizes
``ceil(H / stride)`` (both paddings). It equals ``torch.utils.flop_counter`` on timm's network (tested).
Training counts 3x the forward pass (a data and a weight gradient per layer, the usual convention).
"""
import math


def conv_layers(arch, image_size=224):
    """``(name, in_ch, out_ch, kernel, out_h, out_w)`` for every conv, in network order."""
    from src.archs import get_arch

    a = get_arch(arch)
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    out = [("stem.conv1", 3, a.stem_channels, a.stem_kernel, h, w)]
    cin = a.stem_channels
    for i, depth in enumerate(a.depths):
        width = a.widths[i]
        split = int(width * a.expand_ratios[i]) // 2
        block = int(width * a.block_ratios[i])
        hidden = int(block * a.bottle_ratios[i])
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        p = f"stages.{i}."
        out.append((p + "conv_down", cin, width, 3, h, w))
        if a.split == "merged":
            out.append((p + "conv_exp", width, 2 * split, 1, h, w))
        else:
            out.append((p + "conv_main", width, split, 1, h, w))
            out.append((p + "conv_bypass", width, split, 1, h, w))
        for j in range(depth):
            out.append((p + f"blocks.{j}.conv1", block, hidden, 1, h, w))
            out.append((p + f"blocks.{j}.conv2", hidden, block, 3, h, w))
        out.append((p + "conv_transition_b", block, block, 1, h, w))
        out.append((p + "conv_transition", split + block, width, 1, h, w))
        cin = width
    return out


def forward_macs(arch, image_size=224, num_classes=1000):
    """Multiply-accumulates of one image's forward pass (convs + classifier)."""
    from src.archs import get_arch

    macs = sum(ci * co * k * k * h * w for _, ci, co, k, h, w in conv_layers(arch, image_size))
    return macs + get_arch(arch).num_features * num_classes


def forward_flops(arch, image_size=224, num_classes=1000):
    """FLOPs (2 per MAC) of one image's forward pass."""
    return 2 * forward_macs(arch, image_size, num_classes)


def step_flops(arch, mode, batch_size, image_size=224, num_classes=1000):
    """FLOPs of one benchmark step: ``batch * forward`` for inference, ``3 * batch * forward`` for training."""
    per_image = forward_flops(arch, image_size, num_classes)
    return batch_size * per_image * (3 if mode == "train" else 1)
