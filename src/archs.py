"""The architecture registry: every network variant as data, and what travels with it.

Importing this module imports neither MindSpore nor NumPy, so command lines, the benchmark parent
process and the config schema can list the architectures cheaply.

Each registry entry (``ArchSpec``) holds:

* ``net``: the ``CspArch`` structure the backbone builder (``src.cspdarknet53``) reads;
* ``preprocess``: the input size, eval resize mode and crop fraction of its reference weights, the
  defaults of eval / predict / export (and of training) when the user gives none, as timm's
  ``resolve_data_config`` does;
* ``checkpoint_layouts``: the foreign key layouts (``zoo``: the MindSpore model zoo's flat
  ``conv0..conv27`` names; ``timm``: timm's state dicts) whose numerics are this network's, so that
  ``src.checkpoint`` loads them into it and nothing else;
* ``timm_model`` / ``timm_kwargs``: the like-for-like timm network, for the benchmark and parity runs.

What the two full architectures differ in (all data in ``CspArch``):

=================  ================================  =====================================
field              ``cspdarknet53`` (model zoo)       ``cspdarknet53_timm``
=================  ================================  =====================================
activation         Mish (Softplus/Tanh/Mul)           LeakyReLU, slope 0.01 (PyTorch's)
padding            ``same``: TF SAME, stride-2 convs  ``symmetric``: k//2 on every side
                   pad 0 top/left and 1 bottom/right
split              ``separate``: two 1x1 convs        ``merged``: one 1x1 ``conv_exp`` whose
                   (``conv_main`` feeds the blocks,   output is split in halves, first half
                   ``conv_bypass`` is the cross path)  the cross path
concat order       ``blocks_first`` [main, bypass]    ``cross_first`` [cross, blocks]
=================  ================================  =====================================

The two are the same function up to these choices; the parameter counts are identical
(one C->C 1x1 conv holds as many weights as two C->C/2 ones).
"""
from dataclasses import dataclass, field
from typing import Dict, Tuple

__all__ = ["CspArch", "Preprocess", "ArchSpec", "REGISTRY", "arch_names", "get_arch", "get_arch_spec",
           "arch_for_layout", "resolve_preprocess", "EVAL_RESIZE_MODES"]

EVAL_RESIZE_MODES = ("squash", "shorter")


@dataclass(frozen=True)
class CspArch:
    """Everything that defines a CSPDarkNet-style backbone. Variants are instances, not classes."""

    name: str
    stem_channels: int = 32
    stem_kernel: int = 3
    depths: Tuple[int, ...] = (1, 2, 8, 8, 4)
    widths: Tuple[int, ...] = (64, 128, 256, 512, 1024)
    # Width of the split point relative to the stage width (timm's expand_ratio): 2.0 in the first
    # stage gives two 64-channel paths, 1.0 later gives two C/2 paths.
    expand_ratios: Tuple[float, ...] = (2.0, 1.0, 1.0, 1.0, 1.0)
    # Hidden width of a dark block relative to its width: only the first stage halves it (64->32->64).
    bottle_ratios: Tuple[float, ...] = (0.5, 1.0, 1.0, 1.0, 1.0)
    # Dark block width relative to the stage width.
    block_ratios: Tuple[float, ...] = (1.0, 0.5, 0.5, 0.5, 0.5)
    activation: str = "mish"            # "mish" | "leaky_relu"
    leaky_slope: float = 0.01
    padding: str = "same"               # "same" (TF SAME, zoo) | "symmetric" (PyTorch k//2)
    split: str = "separate"             # "separate" (zoo conv_main/conv_bypass) | "merged" (timm conv_exp)
    concat_order: str = "blocks_first"  # "blocks_first" (zoo) | "cross_first" (timm)
    bn_momentum: float = 0.9            # MindSpore convention: moving = 0.9*moving + 0.1*batch
    bn_eps: float = 1e-5
    # Feature levels (0 = stem at stride 1, 1..5 = stages at strides 2..32) returned by the
    # zoo's ``detect=True`` mode: strides 8, 16, 32.
    detect_levels: Tuple[int, ...] = field(default=(3, 4, 5))

    def __post_init__(self):
        n = len(self.depths)
        for key in ("widths", "expand_ratios", "bottle_ratios", "block_ratios"):
            if len(getattr(self, key)) != n:
                raise ValueError(f"CspArch {self.name!r}: {key} has {len(getattr(self, key))} entries, "
                                 f"depths has {n}")
        choices = {"activation": ("mish", "leaky_relu"), "padding": ("same", "symmetric"),
                   "split": ("separate", "merged"), "concat_order": ("blocks_first", "cross_first")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"CspArch {self.name!r}: {key}={getattr(self, key)!r}, expected one of {allowed}")

    @property
    def num_features(self):
        return self.widths[-1]

    @property
    def feature_channels(self):
        """Channels of the six feature levels: stem, then each stage."""
        return (self.stem_channels,) + tuple(self.widths)

    @property
    def feature_strides(self):
        return tuple(2 ** i for i in range(len(self.depths) + 1))


@dataclass(frozen=True)
class Preprocess:
    """Input size and eval preprocessing of an architecture's reference weights."""

    input_size: Tuple[int, int] = (224, 224)   # (height, width)
    eval_resize: str = "squash"                # zoo: squash to 256x256 then centre crop 224
    crop_pct: float = 0.875

    def __post_init__(self):
        if self.eval_resize not in EVAL_RESIZE_MODES:
            raise ValueError(f"eval_resize={self.eval_resize!r}: expected one of {EVAL_RESIZE_MODES}")


@dataclass(frozen=True)
class ArchSpec:
    """One registry entry: the structure, its preprocessing, checkpoint layouts and timm twin."""

    net: CspArch
    summary: str
    preprocess: Preprocess = Preprocess()
    checkpoint_layouts: Tuple[str, ...] = ()
    timm_model: str = ""                       # "" = no timm twin
    timm_kwargs: Tuple[Tuple[str, str], ...] = ()

    @property
    def name(self):
        return self.net.name


_SPECS = (
    ArchSpec(
        net=CspArch(name="cspdarknet53"),
        summary="model zoo numerics: Mish, TF-SAME padding; loads zoo checkpoints",
        checkpoint_layouts=("zoo",),
        # timm's like-for-like network is its cspdarknet53 with Mish (its default is LeakyReLU).
        timm_model="cspdarknet53", timm_kwargs=(("act_layer", "mish"),)),
    ArchSpec(
        net=CspArch(name="cspdarknet53_timm", activation="leaky_relu", leaky_slope=0.01, padding="symmetric",
                    split="merged", concat_order="cross_first"),
        summary="timm numerics: LeakyReLU 0.01, symmetric padding; loads timm weights unchanged",
        # timm's cspdarknet53.ra_in1k: 256 px, shorter side resized to 256/0.887, centre crop.
        preprocess=Preprocess(input_size=(256, 256), eval_resize="shorter", crop_pct=0.887),
        checkpoint_layouts=("timm",), timm_model="cspdarknet53"),
    ArchSpec(
        # A narrow, shallow variant with the zoo's numerics, for smoke runs and fast tests.
        net=CspArch(name="cspdarknet_tiny", stem_channels=8, depths=(1, 1, 1, 1, 1), widths=(16, 16, 32, 64, 128)),
        summary="zoo numerics, depths 1x5, widths 16..128: smoke runs and tests",
        preprocess=Preprocess(input_size=(64, 64))),
)

REGISTRY: Dict[str, ArchSpec] = {spec.name: spec for spec in _SPECS}


def arch_names():
    """Registered architecture names, in registry order."""
    return tuple(REGISTRY)


def get_arch_spec(name):
    """The ``ArchSpec`` registered under ``name`` (an ``ArchSpec`` passes through)."""
    if isinstance(name, ArchSpec):
        return name
    if isinstance(name, CspArch):
        name = name.name
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown arch {name!r}: expected one of {list(REGISTRY)}") from None


def get_arch(name):
    """The ``CspArch`` of ``name`` (a ``CspArch`` passes through, so unregistered variants can be built)."""
    if isinstance(name, CspArch):
        return name
    return get_arch_spec(name).net


def arch_for_layout(layout):
    """The architecture whose numerics a foreign checkpoint layout holds (``zoo``, ``timm``); None if none."""
    owners = [spec.name for spec in _SPECS if layout in spec.checkpoint_layouts]
    return owners[0] if owners else None


def resolve_preprocess(arch, image_size="auto", eval_resize="auto", crop_pct=0.0, recorded=None, given=()):
    """The input size and eval preprocessing to use, as ``{"image_size": "H,W", "eval_resize", "crop_pct"}``.

    Per item, first match wins: a value in ``given`` (the names the user set explicitly); the value
    ``recorded`` with a checkpoint (its training run's, a dict of the same keys); a config value that is
    not "auto" (``image_size`` "auto", ``eval_resize`` "auto", ``crop_pct`` 0); the architecture's.
    """
    pre = get_arch_spec(arch).preprocess
    recorded = {k: v for k, v in (recorded or {}).items() if v not in (None, "")}
    arch_values = {"image_size": "%d,%d" % pre.input_size, "eval_resize": pre.eval_resize,
                   "crop_pct": pre.crop_pct}
    config_values = {"image_size": image_size, "eval_resize": eval_resize, "crop_pct": crop_pct}
    auto = {"image_size": "auto", "eval_resize": "auto", "crop_pct": 0}
    out = {}
    for k, value in config_values.items():
        if k in given and value != auto[k]:
            out[k] = value
        elif k in recorded:
            out[k] = recorded[k]
        elif value != auto[k]:
            out[k] = value
        else:
            out[k] = arch_values[k]
    out["crop_pct"] = float(out["crop_pct"])
    try:
        hw = [int(v) for v in str(out["image_size"]).replace(" ", "").split(",")]
    except ValueError:
        raise ValueError(f"image_size={out['image_size']!r}: expected 'height,width'") from None
    out["image_size"] = "%d,%d" % tuple((hw * 2)[:2] if len(hw) == 1 else hw)
    if out["eval_resize"] not in EVAL_RESIZE_MODES:
        raise ValueError(f"eval_resize={out['eval_resize']!r}: expected one of {EVAL_RESIZE_MODES}")
    return out
