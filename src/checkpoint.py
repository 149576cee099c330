"""Checkpoint I/O: one entry point, ``load_weights``, for every format the project accepts.

Layouts recognised from the key names (a leading ``network.`` or ``module.`` wrapper prefix is
stripped first, as the zoo's loader stripped ``network.``):

* ``own``  - this project's checkpoints (``backbone.stem.conv1.conv.weight`` ... ``head.fc.bias``), as
  ``.ckpt`` (MindSpore) or ``.safetensors``. Training checkpoints also hold optimizer state
  (``moments.*``, ``global_step``, ``learning_rate``, ...) and EMA weights (``ema.*``); those are
  not network weights and are skipped (``use_ema`` picks the ``ema.*`` copies instead).
* ``zoo``  - the MindSpore model zoo's CSPDarkNet53 (``backbone.conv0.0.weight`` ...
  ``backbone.layer5.3.conv2.1.gamma``, ``head.fc.*``): flat ``conv0..conv27`` names mapped to
  their stages; loads only into ``cspdarknet53`` (Mish, TF SAME padding).
* ``timm`` - timm's ``cspdarknet53`` state dicts (``stem.conv1.conv.weight``, ``stages.{i}...``,
  BN ``weight/bias/running_mean/running_var``) as ``.safetensors`` (read here without torch) or
  ``.pth``/``.pt``/``.bin`` (needs torch); loads only into ``cspdarknet53_timm``.

Loading is strict: missing keys, unexpected keys and shape mismatches are collected and reported
in one ``CheckpointError``. (MindSpore's ``load_param_into_net(strict_load=True)`` only makes dtype
mismatches fatal; missing and unexpected keys pass silently, which is how the zoo's eval ended up
scoring random weights.) A head for another number of classes is dropped, with a warning, only
when the caller asks to fine-tune.
"""
import json
import logging
import os
import re
import struct
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

# Entries of a training checkpoint that are not network weights: optimizer state and the run's
# scalars (MindSpore stores numeric ``append_dict`` values as 0-d tensors beside the weights).
NON_WEIGHT_PREFIXES = ("moments.", "accum.", "ema.", "stat.", "optimizer.")
NON_WEIGHT_SCALARS = frozenset({"global_step", "learning_rate", "momentum", "scale_sense", "loss_scale",
                                "current_iterator_step", "last_overflow_iterator_step", "epoch_num", "step_num",
                                "epoch", "step", "cur_step_num", "best_top1", "num_classes", "ema_updates"})
HEAD_KEYS = ("head.fc.weight", "head.fc.bias")
# The architecture a foreign layout's numerics belong to.
LAYOUT_ARCH = {"zoo": "cspdarknet53", "timm": "cspdarknet53_timm"}
WRAPPER_PREFIXES = ("network.", "module.", "_backbone.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the network; the message names the file."""


@dataclass
class LoadReport:
    path: str
    layout: str
    num_loaded: int
    skipped_non_weights: int
    head_reinitialized: bool
    used_ema: bool
    metadata: dict


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _read_safetensors(path):
    """Parses a safetensors file with NumPy alone (8-byte header length, JSON header, raw data)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file ({len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise CheckpointError(f"{path}: corrupt safetensors header (claims {header_len} bytes, file has "
                              f"{len(data) - 8} after the length field)")
    try:
        header = json.loads(data[8:8 + header_len])
    except ValueError as err:
        raise CheckpointError(f"{path}: corrupt safetensors header ({err})") from None
    base = 8 + header_len
    arrays, meta = {}, dict(header.pop("__metadata__", None) or {})
    for name, info in header.items():
        dtype_name, shape = info["dtype"], info["shape"]
        begin, end = info["data_offsets"]
        raw = data[base + begin:base + end]
        if dtype_name == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype_name in _SAFETENSORS_DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(_SAFETENSORS_DTYPES[dtype_name]).newbyteorder("<"))
        else:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype_name}")
        expected = int(np.prod(shape)) if shape else 1
        if arr.size != expected:
            raise CheckpointError(f"{path}: tensor {name!r} is truncated ({arr.size} of {expected} values)")
        arrays[name] = arr.reshape(shape).copy()
    return arrays, meta


def _read_torch(path, use_ema):
    try:
        import torch  # optional: only for .pth files
    except ImportError:
        raise CheckpointError(f"{path}: reading a PyTorch .pth file needs torch, which is not installed; "
                              "install torch or convert the file to .safetensors") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({err})") from None
    if isinstance(obj, dict):
        for key in (("state_dict_ema", "model_ema") if use_ema else ()) + ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.cpu().numpy()
            for k, v in obj.items() if hasattr(v, "detach")}, {}


def _read_mindspore(path):
    import mindspore as ms
    try:
        params = ms.load_checkpoint(path)
    except Exception as err:  # MindSpore raises ValueError/RuntimeError for corrupt files
        raise CheckpointError(f"{path}: cannot be read as a MindSpore checkpoint ({err})") from None
    arrays, meta = {}, {}
    for name, value in params.items():
        if isinstance(value, (str, bytes)):
            meta[name] = value
        else:
            arrays[name] = value.asnumpy()
    return arrays, meta


def read_state_dict(path, use_ema=False):
    """Reads a checkpoint file into ``(arrays, metadata)``: name -> ndarray, name -> str."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path {path!r} is a directory, expected a file")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"checkpoint file {path!r} is not readable (permissions)")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint file {path!r} is empty")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".safetensors":
        return _read_safetensors(path)
    if ext in (".pth", ".pt", ".bin"):
        return _read_torch(path, use_ema)
    if ext == ".ckpt":
        return _read_mindspore(path)
    raise CheckpointError(f"checkpoint file {path!r}: unknown extension {ext!r}; expected .ckpt, .safetensors, "
                          ".pth, .pt or .bin")


# ----------------------------------------------------------------------------------------------
# Layouts
# ----------------------------------------------------------------------------------------------

def _strip_wrappers(name):
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
# Zoo stage layout: stage 0 is conv1..conv7 with its one block inlined as conv3/conv4; stage s>0
# starts at conv(8+5(s-1)) with its blocks in layer(s+1).
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
    if name in HEAD_KEYS:
        return name
    return None


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


def _to_own_layout(arrays, layout, path):
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


def _is_non_weight(name):
    return name.startswith(NON_WEIGHT_PREFIXES) or name in NON_WEIGHT_SCALARS


def _format_list(names, limit=12):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


# ----------------------------------------------------------------------------------------------
# Loading into a network
# ----------------------------------------------------------------------------------------------

def load_weights(net, path, fine_tune=False, use_ema=False):
    """Loads ``path`` into ``net`` (an ``ImageClassificationNetwork`` or ``FeatureExtractor``), strictly.

    ``fine_tune``: a head whose shape differs from the network's is left at its fresh
    initialisation (warned), instead of being an error. A ``FeatureExtractor`` ignores the head.
    ``use_ema``: take the ``ema.*`` weights of a training checkpoint (an error if it has none).
    Returns a ``LoadReport``; raises ``CheckpointError`` listing every problem at once.
    """
    import mindspore as ms

    path = os.fspath(path)
    raw, meta = read_state_dict(path, use_ema=use_ema)
    arrays = {}
    for name, arr in raw.items():
        arrays[_strip_wrappers(name)] = arr
    layout = detect_layout(arrays)
    arch_name = net.arch.name
    if layout == "unknown":
        raise CheckpointError(f"{path}: no CSPDarkNet53 weights found (first keys: {_format_list(list(arrays), 5)}); "
                              "expected this project's, the MindSpore model zoo's or timm's key names")
    ckpt_arch = meta.get("arch") or LAYOUT_ARCH.get(layout)
    if ckpt_arch and ckpt_arch != arch_name:
        raise CheckpointError(f"{path}: holds weights for arch {ckpt_arch!r} ({layout} layout) but the network is "
                              f"{arch_name!r}; build it with arch={ckpt_arch}")

    used_ema = False
    if use_ema:
        ema = {n[len("ema."):]: a for n, a in arrays.items() if n.startswith("ema.")}
        if not ema and layout == "own":
            raise CheckpointError(f"{path}: use_ema was requested but the checkpoint has no EMA weights (ema.*)")
        if ema:
            arrays.update(ema)
            used_ema = True
    skipped = [n for n in arrays if _is_non_weight(n)]
    arrays = {n: a for n, a in arrays.items() if not _is_non_weight(n)}
    arrays, unmapped = _to_own_layout(arrays, layout, path)

    params = net.parameters_dict()
    expected = set(params)
    has_head = all(k in expected for k in HEAD_KEYS)
    if not has_head:  # a feature extractor: the classifier is not part of the network
        for k in HEAD_KEYS:
            arrays.pop(k, None)

    head_reinitialized = False
    shape_errors = []
    for name in sorted(set(arrays) & expected):
        want, got = tuple(params[name].shape), tuple(arrays[name].shape)
        if want == got:
            continue
        if name in HEAD_KEYS and fine_tune:
            head_reinitialized = True
            continue
        shape_errors.append(f"{name}: checkpoint {got} vs network {want}")
    if head_reinitialized:
        for k in HEAD_KEYS:
            arrays.pop(k, None)
        logger.warning("%s: classifier head has another number of classes; it is re-initialised for %d classes "
                       "(fine-tuning)", path, net.num_classes)
    missing = expected - set(arrays) - (set(HEAD_KEYS) if head_reinitialized else set())
    unexpected = (set(arrays) - expected) | set(unmapped)

    problems = []
    head_shape_error = [e for e in shape_errors if e.startswith("head.fc.weight")]
    if head_shape_error:
        ckpt_classes = arrays["head.fc.weight"].shape[0]
        problems.append(f"the checkpoint's head has {ckpt_classes} classes and the network's {net.num_classes}: "
                        f"set num_classes={ckpt_classes}, or fine-tune (the head is then re-initialised)")
        shape_errors = [e for e in shape_errors if not e.startswith("head.fc.")]
    if shape_errors:
        problems.append(f"{len(shape_errors)} shape mismatches: {_format_list(shape_errors, 6)}")
    if missing:
        problems.append(f"{len(missing)} network parameters missing from the checkpoint: {_format_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected checkpoint entries: {_format_list(unexpected)}")
    if problems:
        raise CheckpointError(f"{path} ({layout} layout) does not fit arch {arch_name!r}: " + "; ".join(problems))

    to_load = {}
    for name, arr in arrays.items():
        dtype = params[name].dtype
        to_load[name] = ms.Parameter(ms.Tensor(np.ascontiguousarray(arr), dtype), name=name)
    not_loaded, _ = ms.load_param_into_net(net, to_load, strict_load=True)
    not_loaded = [n for n in not_loaded if not (head_reinitialized and n in HEAD_KEYS)]
    if not_loaded:  # cannot happen after the checks above; kept so a silent partial load is impossible
        raise CheckpointError(f"{path}: MindSpore did not load {_format_list(not_loaded)}")
    logger.info("loaded %s (%s layout, %d tensors%s)", path, layout, len(to_load), ", EMA" if used_ema else "")
    return LoadReport(path=path, layout=layout, num_loaded=len(to_load), skipped_non_weights=len(skipped),
                      head_reinitialized=head_reinitialized, used_ema=used_ema, metadata=meta)


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------

def save_checkpoint_atomic(params, path, metadata=None):
    """Saves a Cell, or a list of ``{"name", "data"}`` entries, so that ``path`` is never half-written.

    MindSpore's ``save_checkpoint`` deletes an existing file of the same name before writing its
    replacement (measured: a kill during the write loses the old file), so the data goes to a
    temporary name in the same folder first and is moved over ``path`` with ``os.replace``.
    ``metadata``: str/int/float values stored alongside (``arch``, ``epoch`` ...).
    """
    import mindspore as ms

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.partial.ckpt")
    ms.save_checkpoint(params, tmp, append_dict=dict(metadata or {}))
    os.replace(tmp, path)
    return path


def network_metadata(net):
    """What an own checkpoint records about the network it came from."""
    return {"arch": net.arch.name, "num_classes": int(net.num_classes)}
