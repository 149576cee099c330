"""Checkpoint key layouts, recognised after stripping a ``network.``/``module.`` wrapper prefix: ``own``
(``backbone.stem.conv1.conv.weight`` ... ``head.fc.bias``), ``zoo`` (the model zoo's flat ``backbone.conv0..27``
/ ``layer2..5``) and ``timm`` (``stem.*``, ``stages.{i}.*``, BN ``weight/bias/running_*``), and the renames to
``own``. Which architecture a foreign layout belongs to is ``src.archs``'s business."""
import re

# training-checkpoint entries that are not weights: optimizer state and the run's scalars (0-d tensors)
NON_WEIGHT_PREFIXES = ("moments.", "accum.", "ema.", "stat.", "optimizer.")
NON_WEIGHT_SCALARS = frozenset({"global_step", "learning_rate", "momentum", "scale_sense", "loss_scale",
                                "current_iterator_step", "last_overflow_iterator_step", "epoch_num", "step_num",
                                "epoch", "step", "cur_step_num", "best_top1", "num_classes", "ema_updates",
                                "loss_scale_good_steps", "step_in_epoch", "epoch_step_losses"})
HEAD_KEYS = ("head.fc.weight", "head.fc.bias")
WRAPPER_PREFIXES = ("network.", "module.", "_backbone.")


def strip_wrappers(name):
    """Removes training-wrapper prefixes (``network.`` of the zoo's TrainOneStepCell, ``module.`` of DDP)."""
    while name.startswith(WRAPPER_PREFIXES):
        name = name.split(".", 1)[1]
    return name


def detect_layout(names):
    names = set(names)
    if any(n.startswith(("backbone.stem.", "backbone.stages.")) for n in names):
        return "own"
    if any(n.startswith("backbone.conv0.") for n in names):
        return "zoo"
    if any(n.startswith(("stem.conv1.", "stages.0.")) for n in names):
        return "timm"
    return "unknown"


_ZOO_UNIT_SUFFIX = {"0.weight": "conv.weight", "1.gamma": "bn.gamma", "1.beta": "bn.beta",
                    "1.moving_mean": "bn.moving_mean", "1.moving_variance": "bn.moving_variance"}
# zoo: stage 0 is conv1..conv7 (its one block inlined as conv3/conv4); stage s > 0 starts at conv(8+5(s-1)),
# its blocks in layer(s+1)
_ZOO_STAGE0 = {1: "conv_down", 2: "conv_main", 3: "blocks.0.conv1", 4: "blocks.0.conv2", 5: "conv_transition_b",
               6: "conv_bypass", 7: "conv_transition"}
_ZOO_STAGE_ROLES = ("conv_down", "conv_main", "conv_transition_b", "conv_bypass", "conv_transition")


def _zoo_unit_name(index):
    if index == 0:
        return "stem.conv1"
    if index in _ZOO_STAGE0:
        return f"stages.0.{_ZOO_STAGE0[index]}"
    stage, role = divmod(index - 8, 5)
    return f"stages.{stage + 1}.{_ZOO_STAGE_ROLES[role]}"


def zoo_name_to_own(name):
    """``backbone.conv12.1.gamma`` -> ``backbone.stages.1.conv_transition.bn.gamma``; None if not a zoo weight."""
    m = re.fullmatch(r"backbone\.conv(\d+)\.(\d\.\w+)", name)
    if m and int(m.group(1)) <= 27 and m.group(2) in _ZOO_UNIT_SUFFIX:
        return f"backbone.{_zoo_unit_name(int(m.group(1)))}.{_ZOO_UNIT_SUFFIX[m.group(2)]}"
    m = re.fullmatch(r"backbone\.layer([2-5])\.(\d+)\.(conv[12])\.(\d\.\w+)", name)
    if m and m.group(4) in _ZOO_UNIT_SUFFIX:
        stage = int(m.group(1)) - 1
        return f"backbone.stages.{stage}.blocks.{m.group(2)}.{m.group(3)}.{_ZOO_UNIT_SUFFIX[m.group(4)]}"
    return name if name in HEAD_KEYS else None


_TIMM_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def timm_name_to_own(name):
    """``stages.0.conv_exp.bn.running_var`` -> ``backbone.stages.0.conv_exp.bn.moving_variance``."""
    if name in HEAD_KEYS:
        return name
    if not name.startswith(("stem.", "stages.")):
        return None
    m = re.fullmatch(r"(.*)\.bn\.(\w+)", name)
    if m:
        if m.group(2) == "num_batches_tracked":
            return ""  # a PyTorch counter, not a weight
        if m.group(2) not in _TIMM_BN:
            return None
        return f"backbone.{m.group(1)}.bn.{_TIMM_BN[m.group(2)]}"
    return f"backbone.{name}"


def to_own_layout(arrays, layout):
    """Renames a foreign layout's keys; returns (own-named arrays, names that map to nothing)."""
    rename = {"zoo": zoo_name_to_own, "timm": timm_name_to_own}.get(layout)
    if rename is None:
        return dict(arrays), []
    out, unmapped = {}, []
    for name, arr in arrays.items():
        new = rename(name)
        if new is None:
            unmapped.append(name)
        elif new:
            out[new] = arr
    return out, unmapped


def is_non_weight(name):
    return name.startswith(NON_WEIGHT_PREFIXES) or name in NON_WEIGHT_SCALARS


def unknown_layout(names):
    """Why no network can load a checkpoint whose keys are ``names`` (layout ``unknown``)."""
    return (f"no CSPDarkNet53 weights found (first keys: {format_list(names, 5)}); expected this project's, the "
            "MindSpore model zoo's or timm's key names")


def format_list(names, limit=12):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
