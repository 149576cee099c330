"""The architecture registry: every network variant as data (``ArchSpec``: the ``CspArch`` structure
``src.cspdarknet53`` builds, the ``preprocess`` defaults of its reference weights as timm's
``resolve_data_config``, the foreign ``checkpoint_layouts`` whose numerics are its own, its timm twin). No
MindSpore or NumPy import, so command lines and the config schema list architectures cheaply.

``cspdarknet53`` (zoo) and ``cspdarknet53_timm`` differ only in: activation Mish vs LeakyReLU 0.01; padding TF
SAME (stride 2: 0 top/left, 1 bottom/right) vs k//2; split two 1x1 convs (``conv_main``/``conv_bypass``) vs one
``conv_exp`` halved; concat [blocks, cross] vs [cross, blocks]. Parameter counts are identical.
"""
from dataclasses import dataclass
from typing import Dict, Tuple

EVAL_RESIZE_MODES = ("squash", "shorter")


@dataclass(frozen=True)
class CspArch:
    """Everything that defines a CSPDarkNet-style backbone. Variants are instances, not classes."""

    name: str
    stem_channels: int = 32
    stem_kernel: int = 3
    depths: Tuple[int, ...] = (1, 2, 8, 8, 4)
    widths: Tuple[int, ...] = (64, 128, 256, 512, 1024)
    expand_ratios: Tuple[float, ...] = (2.0, 1.0, 1.0, 1.0, 1.0)  # split width / stage width (timm's expand_ratio)
    bottle_ratios: Tuple[float, ...] = (0.5, 1.0, 1.0, 1.0, 1.0)  # dark block hidden width / block width
    block_ratios: Tuple[float, ...] = (1.0, 0.5, 0.5, 0.5, 0.5)   # dark block width / stage width
    activation: str = "mish"            # "mish" | "leaky_relu"
    leaky_slope: float = 0.01
    padding: str = "same"               # "same" (TF SAME, zoo) | "symmetric" (PyTorch k//2)
    split: str = "separate"             # "separate" (zoo conv_main/conv_bypass) | "merged" (timm conv_exp)
    concat_order: str = "blocks_first"  # "blocks_first" (zoo) | "cross_first" (timm)
    bn_momentum: float = 0.9            # MindSpore convention: moving = 0.9*moving + 0.1*batch
    bn_eps: float = 1e-5
    detect_levels: Tuple[int, ...] = (3, 4, 5)  # the zoo's detect=True levels (0 = stem): strides 8, 16, 32

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


@dataclass(frozen=True)
class ArchSpec:
    """One registry entry: the structure, its preprocessing, checkpoint layouts and timm twin."""

    net: CspArch
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
        checkpoint_layouts=("zoo",),
        # timm's like-for-like network is its cspdarknet53 with Mish (its default is LeakyReLU).
        timm_model="cspdarknet53", timm_kwargs=(("act_layer", "mish"),)),
    ArchSpec(
        net=CspArch(name="cspdarknet53_timm", activation="leaky_relu", leaky_slope=0.01, padding="symmetric",
                    split="merged", concat_order="cross_first"),
        # timm's cspdarknet53.ra_in1k: 256 px, shorter side resized to 256/0.887, centre crop.
        preprocess=Preprocess(input_size=(256, 256), eval_resize="shorter", crop_pct=0.887),
        checkpoint_layouts=("timm",), timm_model="cspdarknet53"),
    ArchSpec(
        # A narrow, shallow variant with the zoo's numerics, for smoke runs and fast tests.
        net=CspArch(name="cspdarknet_tiny", stem_channels=8, depths=(1, 1, 1, 1, 1), widths=(16, 16, 32, 64, 128)),
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
    return name if isinstance(name, CspArch) else get_arch_spec(name).net


def arch_for_layout(layout):
    """The architecture whose numerics a foreign checkpoint layout holds (``zoo``, ``timm``); None if none."""
    return next((spec.name for spec in _SPECS if layout in spec.checkpoint_layouts), None)


def resolve_preprocess(arch, image_size="auto", eval_resize="auto", crop_pct=0.0, recorded=None, given=()):
    """``{"image_size": "H,W", "eval_resize", "crop_pct"}`` to use; per item the first of: a value the user set
    (named in ``given``), the checkpoint's ``recorded`` one, a config value that is not auto, the arch's."""
    pre = get_arch_spec(arch).preprocess
    recorded = {k: v for k, v in (recorded or {}).items() if v not in (None, "")}
    arch_values = {"image_size": "%d,%d" % pre.input_size, "eval_resize": pre.eval_resize,
                   "crop_pct": pre.crop_pct}
    config_values = {"image_size": image_size, "eval_resize": eval_resize, "crop_pct": crop_pct}
    auto = {"image_size": "auto", "eval_resize": "auto", "crop_pct": 0}
    out = {}
    for k, value in config_values.items():
        is_set = value != auto[k]
        out[k] = value if is_set and k in given else recorded.get(k, value if is_set else arch_values[k])
    out["crop_pct"] = float(out["crop_pct"])
    try:
        hw = [int(v) for v in str(out["image_size"]).replace(" ", "").split(",")]
    except ValueError:
        raise ValueError(f"image_size={out['image_size']!r}: expected 'height,width'") from None
    out["image_size"] = "%d,%d" % tuple((hw * 2)[:2] if len(hw) == 1 else hw)
    if out["eval_resize"] not in EVAL_RESIZE_MODES:
        raise ValueError(f"eval_resize={out['eval_resize']!r}: expected one of {EVAL_RESIZE_MODES}")
    return out
