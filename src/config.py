"""The configuration: one declaration per key, typed sections per concern, strict loading.

Every key is declared once, below, as a field of the dataclass of its section, with its type (the
annotation), help text, allowed values and range check (``key(...)``). ``default_config.yaml``
holds the value of every key and nothing else (the model zoo's ImageNet recipe); profiles such as
``configs/demo.yaml`` hold values for a subset. ``load_config`` merges, from lowest to highest
precedence, ``default_config.yaml``, a profile (when a script applies one), a user YAML
(``--config_path``) and the command line, and validates the result:

* unknown keys, values of the wrong type (an int is accepted where a float is expected), values outside
  the allowed set and values out of range raise ``ConfigError`` naming the key and where it came
  from, with a "did you mean" suggestion where one is close; cross-key rules too (``validate``);
* what is odd but legitimate (a warmup longer than the run, an interval longer than the run, a
  milestone after the last epoch) is allowed and reported in ``Config.warnings``.

The result is immutable: ``cfg.data.per_batch_size``. Runtime state (rank, device, run folder) lives in
``src.utils.runtime.RunContext``, never on the config. Keys keep the model zoo's names and the zoo's
command lines work (``--is_distributed=0``, ``--per_batch_size=64``; ``--key value`` or ``--key=value``),
and a zoo-style YAML (one mapping of keys, optionally followed by help documents) loads as a user YAML.

Importing this module has no side effects: nothing is parsed or printed until ``load_config`` runs.
"""
import argparse
import dataclasses
import difflib
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Tuple

import yaml

from src.archs import EVAL_RESIZE_MODES, arch_names
from src.errors import ConfigError

__all__ = ["ConfigError", "Config", "SECTIONS", "DEFAULT_CONFIG_PATH", "PROFILES_DIR", "load_config",
           "save_config", "parse_int_list", "parse_number_list", "resolve_is_distributed", "key_help"]

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
DEFAULT_CONFIG_PATH = os.path.join(REPO_ROOT, "default_config.yaml")
PROFILES_DIR = os.path.join(REPO_ROOT, "configs")


# --------------------------------------------------------------------------- value parsing
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_bool(value):
    """True/False for a bool, 0/1, or a true/false/yes/no/on/off/1/0 string (any case); else None."""
    if isinstance(value, bool):
        return value
    if _is_int(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        s = value.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    return None


def parse_int_list(value, key="value", length=None):
    """Parse "224,224" (or an int, or a list of ints) into a list of ints; ``ConfigError`` names ``key``."""
    if _is_int(value):
        out = [value]
    elif isinstance(value, (list, tuple)) and all(_is_int(x) for x in value):
        out = list(value)
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        try:
            if not value.strip() or any(p == "" for p in parts):
                raise ValueError
            out = [int(p, 10) for p in parts]
        except ValueError:
            raise ConfigError("%s: expected comma-separated integers such as '224,224', got %r"
                              % (key, value)) from None
    else:
        raise ConfigError("%s: expected comma-separated integers such as '224,224', got %r" % (key, value))
    if length is not None and len(out) != length:
        raise ConfigError("%s: expected %d comma-separated integers, got %r" % (key, length, value))
    return out


def parse_number_list(value, key="value"):
    """Parse "30,60,90" (or a number, or a list) into a list of floats; "" is the empty list."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        items = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
    else:
        raise ConfigError("%s: expected comma-separated numbers such as '30,60,90', got %r" % (key, value))
    try:
        out = [float(p) for p in items]
    except (TypeError, ValueError):
        raise ConfigError("%s: expected comma-separated numbers such as '30,60,90', got %r" % (key, value)) from None
    if not all(math.isfinite(v) for v in out):
        raise ConfigError("%s: expected finite numbers, got %r" % (key, value))
    return out


# --------------------------------------------------------------------------- key declarations
def key(help, choices=None, check=None):
    """Declares a config key: its help text, allowed values and range check (``check(value)`` returns
    None when the value is fine, else what it must be, e.g. ">= 1")."""
    return field(metadata={"help": help, "choices": tuple(choices) if choices else None, "check": check})


def _at_least(low):
    return lambda v: None if v >= low else f">= {low}"


def _between(low, high, low_open=False, high_open=False):
    def check(v):
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        return None if ok else f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return check


def _image_size(v):
    if v == "auto":
        return None
    try:
        hw = parse_int_list(v, "image_size")
    except ConfigError:
        return "'auto' or 'height,width' (e.g. 224,224)"
    return None if len(hw) in (1, 2) and min(hw) >= 1 else "'auto' or positive 'height,width' (e.g. 224,224)"


def _numbers(v):
    try:
        values = parse_number_list(v)
    except ConfigError:
        return "comma-separated numbers such as 30,60,90"
    return None if all(x > 0 for x in values) else "comma-separated epochs > 0 such as 30,60,90"


def _crop_pct(v):
    return None if v == 0 or 0 < v <= 1 else "0 (the architecture's) or in (0, 1]"


def _class_weights(v):
    if str(v).strip().lower() in ("none", "balanced") or os.path.isfile(str(v)):
        return None
    return "none, balanced or an existing weights file"


_SEED_MAX = 2 ** 32 - 1


@dataclass(frozen=True)
class ModelArtsConfig:
    enable_modelarts: bool = key("Run on Huawei ModelArts: sync data_url/checkpoint_url/train_url with OBS "
                                 "through moxing (only available on ModelArts).")
    data_url: str = key("ModelArts: OBS URL of the dataset, copied to data_path before the run.")
    train_url: str = key("ModelArts: OBS URL for the outputs; output_path is copied there at the end.")
    checkpoint_url: str = key("ModelArts: OBS URL of a checkpoint folder, copied to load_path before the run.")
    data_path: str = key("ModelArts: local dataset cache, also the unzip target.")
    output_path: str = key("ModelArts: local output folder; ckpt_path and log_path are placed under it.")
    load_path: str = key("ModelArts: local folder for the checkpoint_url download.")
    need_modelarts_dataset_unzip: bool = key("ModelArts: unzip <data_path>/<modelarts_dataset_unzip_name>.zip "
                                             "once per server before the run.")
    modelarts_dataset_unzip_name: str = key("ModelArts: base name of the dataset zip file and of the folder "
                                            "it extracts to.")


@dataclass(frozen=True)
class DeviceConfig:
    device_target: str = key("Device to run on; auto picks Ascend if present, else GPU, else CPU.",
                             choices=("auto", "Ascend", "GPU", "CPU"))
    is_distributed: str = key("Data-parallel run; auto turns it on under msrun (MS_ROLE / MS_WORKER_NUM>1) or "
                              "when RANK_SIZE>1.", choices=("auto", "0", "1"))
    seed: int = key("Global random seed (weight init, data order, augmentation).", check=_between(0, _SEED_MAX))
    amp_level: str = key("Mixed-precision level (O0 float32, O2 float16 except BatchNorm, O3 float16); auto "
                         "picks O2 on Ascend/GPU and O0 on CPU.", choices=("auto", "O0", "O2", "O3"))


@dataclass(frozen=True)
class ModelConfig:
    arch: str = key("Network: " + ", ".join(arch_names()) + " (see src/archs.py).", choices=arch_names())
    init: str = key("Weight initialisation: timm (timm's cspnet scheme: conv Kaiming-normal fan_out, dense "
                    "Normal(0, 0.01), the last BatchNorm gamma of each residual block 0; trains well from scratch, "
                    "docs/convergence.md) or zoo (the model zoo's exact Kaiming-uniform a=sqrt(5), every gamma 1).",
                    choices=("timm", "zoo"))
    num_classes: int = key("Number of output classes of the classifier.", check=_at_least(1))
    fp16_head: bool = key("Compute the classifier in float16 (model zoo behaviour); false: float32.")


@dataclass(frozen=True)
class DataConfig:
    data_dir: str = key("Dataset root: an ImageFolder (one sub-folder per class); empty uses the embedded demo "
                        "data (train.py, eval.py).")
    data_list: str = key("Optional text file of 'relative/path label' lines (relative to data_dir), used "
                         "instead of scanning data_dir.")
    dataset_format: str = key("How data_dir / val_data_dir are stored: folder (an ImageFolder tree) or mindrecord "
                              "(the PREFIX given to tools/convert_to_mindrecord.py --output).",
                              choices=("folder", "mindrecord"))
    verify_files: bool = key("Decode every file once in full, in worker processes that may crash without ending "
                             "the run, and skip (and name) the unusable ones; false: only the first and last "
                             "bytes are checked, and a corrupt file can crash the run inside the decoder.")
    verify_manifest: str = key("Where the results of the full decode check are kept (keyed by path, size and "
                               "mtime, so later runs and other ranks only stat each file): empty = "
                               "<data_dir>/.cspdarknet53_verified.jsonl, or the user cache when data_dir is not "
                               "writable; none = nowhere (check every file in every run); else that file.")
    sampler: str = key("Train order: epoch_shard (every image once per epoch, reshuffled from seed and epoch) or "
                       "class_balanced (each class an equal share of every epoch; rare images repeat; "
                       "folder format only).", choices=("epoch_shard", "class_balanced"))
    val_data_dir: str = key("Train: ImageFolder validated every val_interval epochs; empty: no validation.")
    image_size: str = key("Train crop and eval input size as 'height,width'; auto: the architecture's.",
                          check=_image_size)
    per_batch_size: int = key("Batch size per device (the global batch is per_batch_size x devices).",
                              check=_at_least(1))
    num_parallel_workers: int = key("Data-loading workers per device; 0 uses the machine's cores (divided "
                                    "among local devices).", check=_at_least(0))
    eval_resize: str = key("Eval resize: squash (both sides to size/crop_pct, model zoo) or shorter (the "
                           "shorter side, keeping the aspect ratio), then a centre crop; auto: the "
                           "architecture's.", choices=("auto",) + EVAL_RESIZE_MODES)
    crop_pct: float = key("Eval centre-crop fraction (0.875: 256 -> 224); 0: the architecture's.",
                          check=_crop_pct)
    auto_augment: str = key("Extra train augmentation: none, randaugment or autoaugment (ImageNet policy).",
                            choices=("none", "randaugment", "autoaugment"))
    re_prob: float = key("Random-erasing probability in training (0 disables).", check=_between(0, 1))
    color_jitter: float = key("Train colour-jitter strength for brightness, contrast and saturation (0 "
                              "disables).", check=_at_least(0))
    crop_scale_min: float = key("Smallest area fraction of the train random-resized crop (the zoo's 0.08).",
                                check=_between(0, 1, low_open=True))
    mixup_alpha: float = key("Mixup Beta(alpha, alpha) parameter; 0 disables mixup.", check=_at_least(0))
    cutmix_alpha: float = key("CutMix Beta(alpha, alpha) parameter; 0 disables CutMix.", check=_at_least(0))
    mixup_prob: float = key("Probability of mixing a batch when mixup or CutMix is on.", check=_between(0, 1))


@dataclass(frozen=True)
class OptimConfig:
    lr: float = key("Peak learning rate, reached at the end of the warmup; not scaled by the number of "
                    "devices.", check=_at_least(0))
    lr_scheduler: str = key("cosine_annealing (model zoo, per-epoch staircase), cosine_step (per-step cosine "
                            "to eta_min) or exponential / multistep (decay by lr_gamma at lr_epochs; "
                            "exponential is the zoo's name).",
                            choices=("cosine_annealing", "cosine_step", "exponential", "multistep"))
    lr_epochs: str = key("Milestone epochs of the exponential/multistep schedule, comma separated.",
                         check=_numbers)
    lr_gamma: float = key("Decay factor at each milestone of the exponential/multistep schedule.",
                          check=_at_least(0))
    eta_min: float = key("Floor of the cosine schedules.", check=_at_least(0))
    T_max: int = key("Period of the cosine_annealing schedule in epochs; 0: max_epoch.", check=_at_least(0))
    max_epoch: int = key("Number of training epochs.", check=_at_least(1))
    warmup_epochs: float = key("Linear warmup length in epochs (may be fractional).", check=_at_least(0))
    weight_decay: float = key("Weight decay (L2) of the conv and dense weights; biases and BatchNorm get none.",
                              check=_at_least(0))
    momentum: float = key("SGD momentum.", check=_between(0, 1, high_open=True))
    is_dynamic_loss_scale: bool = key("Dynamic loss scaling (skips steps whose gradients overflow); false: "
                                      "the fixed loss_scale.")
    loss_scale: float = key("Fixed loss scale, or the initial one with is_dynamic_loss_scale.",
                            check=_at_least(1))
    class_weights: str = key("Per-class loss weights: none; balanced (inverse class frequency of the training "
                             "data, mean 1); or a file: one weight per line in class-index order, a JSON list, or "
                             "a JSON object {class name: weight} (others 1).", check=lambda v: _class_weights(v))
    label_smooth: bool = key("Label-smoothed cross entropy with label_smooth_factor; false: plain cross "
                             "entropy.")
    label_smooth_factor: float = key("Label-smoothing epsilon (how much target mass leaves the true class).",
                                     check=_between(0, 1, high_open=True))
    label_smooth_style: str = key("Label-smoothing convention: pytorch (true class 1 - eps + eps/K, others eps/K; "
                                  "PyTorch, timm, mindcv) or zoo (true class 1 - eps, others eps/(K-1); the "
                                  "model zoo's). See docs/convergence.md.",
                                  choices=("pytorch", "zoo"))  # src.loss.SMOOTH_STYLES (tested equal)
    ema: bool = key("Keep an exponential moving average (EMA) of the weights with decay ema_decay.")
    ema_decay: float = key("Decay of the weight EMA.", check=_between(0, 1))


@dataclass(frozen=True)
class TrainConfig:
    resume: str = key("Checkpoint file or run folder to resume training from; empty starts from scratch.")
    ckpt_interval: int = key("Save a checkpoint every ckpt_interval epochs (and after the last).",
                             check=_at_least(1))
    ckpt_save_max: int = key("Number of epoch checkpoints to keep, the newest included (best.ckpt is kept "
                             "besides).", check=_at_least(1))
    ckpt_older_weights_only: bool = key("Keep the older epoch checkpoints (all but the newest) weights-only: half "
                                        "the size, for eval/export/predict/pretrained, not resumable; false keeps "
                                        "the optimizer state in every kept checkpoint.")
    ckpt_path: str = key("Root of the training output folders (checkpoints, logs, metrics).")
    is_save_on_master: bool = key("Only rank 0 saves checkpoints; false: every rank does.")
    dump_shard_files: bool = key("For tests: each rank writes <run>/shard_rank<r>.txt, one 'epoch<TAB>path' "
                                 "line per image file it read.")
    log_interval: int = key("Log the loss and speed every log_interval steps.", check=_at_least(1))
    val_interval: int = key("Validate on val_data_dir every val_interval epochs (and after the last).",
                            check=_at_least(1))
    tensorboard_dir: str = key("TensorBoard scalars (loss, lr, img/s, loss scale per step; val top-1/top-5 per "
                               "epoch) to <tensorboard_dir>/<run name>/, rank 0 only; empty: off. Needs "
                               "tensorboardX (pip install tensorboardX==2.6.5).")
    dataset_sink_mode: str = key("Sink mode: run sink_size steps per host call (train step, EMA update and a "
                                 "record of each step's loss in one compiled step; the host reads the losses "
                                 "once per sink); auto: on for Ascend/GPU (data fed from the device queue), off "
                                 "on CPU (1 on CPU feeds from the host, same numerics as 0).",
                                 choices=("auto", "0", "1"))
    sink_size: int = key("Steps per sink in sink mode; 0: a whole epoch. Rounded down to a divisor of the steps "
                         "per epoch (an epoch ends on a sink boundary); progress lines come once per sink.",
                         check=_at_least(0))


@dataclass(frozen=True)
class WeightsConfig:
    pretrained: str = key("Checkpoint to load: train warm start; eval: the checkpoint file or folder to score.")
    ckpt_file: str = key("Export/predict: the checkpoint file to load.")
    use_ema: bool = key("Eval/export/predict: use the checkpoint's EMA weights.")


@dataclass(frozen=True)
class EvalConfig:
    log_path: str = key("Root of the eval output folders.")
    result_file: str = key("Eval/predict: also write the result JSON here; empty writes none.")
    no_plots: bool = key("Eval: skip confusion_matrix.png and worst_mistakes.png; the CSVs are always written.")
    worst_mistakes: int = key("Eval: how many of the most confident wrong predictions worst_mistakes.png shows "
                              "(0: none).", check=_at_least(0))
    class_map: str = key("Eval: a file mapping the data's class folders to the model's classes (JSON {\"folder\": "
                         "\"trained class name or index\" or null} or 'folder target' lines); needed when the "
                         "folder names differ from the training run's class index, which is an error otherwise.")


@dataclass(frozen=True)
class ExportConfig:
    export_batch_size: int = key("Batch dimension of the exported model input.", check=_at_least(1))
    file_name: str = key("Exported file name without extension.")
    file_format: str = key("Export format (AIR needs an Ascend device).", choices=("MINDIR", "ONNX", "AIR"))
    width: int = key("Exported input width in pixels; 0: from the checkpoint (or the architecture).",
                     check=_at_least(0))
    height: int = key("Exported input height in pixels; 0: from the checkpoint (or the architecture).",
                      check=_at_least(0))


@dataclass(frozen=True)
class PredictConfig:
    image_path: str = key("Image file or folder, or a comma separated list of them.")
    topk: int = key("Number of top classes reported per image.", check=_at_least(1))
    class_names_file: str = key("Class names: a names file (line i = class i) or a run's class_index.json; "
                                "empty: the checkpoint's own, else ImageNet's or class_<i>.")
    cam: bool = key("Predict: also save a Grad-CAM heatmap overlay per image (<index>_<name>_cam.png).")
    cam_class: int = key("Predict: the class the Grad-CAM heatmap explains; -1: each image's predicted class.",
                         check=_at_least(-1))
    cam_dir: str = key("Predict: folder of the Grad-CAM PNGs; empty: beside result_file, else ./cam.")


SECTIONS = {"modelarts": ModelArtsConfig, "device": DeviceConfig, "model": ModelConfig, "data": DataConfig,
            "optim": OptimConfig, "train": TrainConfig, "weights": WeightsConfig, "eval": EvalConfig,
            "export": ExportConfig, "predict": PredictConfig}


def _declared_keys():
    out = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            out[f.name] = (section, f)
    return out


_KEYS = _declared_keys()  # key -> (section, dataclass field); built from the class bodies, no I/O


def key_help(name):
    """The help text of a key (with its choices), for command lines and docs."""
    _, f = _KEYS[name]
    text = f.metadata["help"]
    if f.metadata["choices"]:
        text += " Choices: %s." % ", ".join(f.metadata["choices"])
    return text


# --------------------------------------------------------------------------- the config object
@dataclass(frozen=True)
class Config:
    """The merged, validated config. Sections are attributes (``cfg.optim.lr``); immutable."""

    modelarts: ModelArtsConfig
    device: DeviceConfig
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig
    weights: WeightsConfig
    eval: EvalConfig
    export: ExportConfig
    predict: PredictConfig
    explicit: FrozenSet[str] = frozenset()   # keys the user set (command line, or a YAML value != default)
    profile: str = ""                        # the profile applied, if any
    config_path: str = ""                    # the user YAML, if any
    warnings: Tuple[str, ...] = ()           # odd but legitimate settings, for the run's log

    def flat(self):
        """Every key and its value, in declaration order."""
        return {k: getattr(getattr(self, section), k) for k, (section, _) in _KEYS.items()}

    def is_explicit(self, name):
        """True if ``name`` was given on the command line, or in a user YAML with a non-default value."""
        return name in self.explicit

    def replace(self, _mark_explicit=False, **values):
        """A copy with the given keys changed (validated again); ``_mark_explicit`` marks them as set by
        the user (for values a script derives from the user's, e.g. ModelArts paths)."""
        flat = self.flat()
        for k in values:
            if k not in flat:
                raise ConfigError("unknown key %r%s" % (k, _did_you_mean(_suggest_key(k, flat), "'%s'")))
        flat.update(values)
        explicit = self.explicit | set(values) if _mark_explicit else self.explicit
        return _build(flat, explicit, {k: "%s (set by the program)" % k for k in values}, profile=self.profile,
                      config_path=self.config_path)

    def with_profile(self, name):
        """``(config, changed)``: the profile's values for every key the user did not set explicitly."""
        values = _read_values(_profile_path(name), "profile %r" % name, allow_extra_documents=False)
        changed = {k: v for k, v in values.items() if not self.is_explicit(k)}
        flat = self.flat()
        flat.update(changed)
        cfg = _build(flat, self.explicit, {k: "%s in %s" % (k, _profile_path(name)) for k in changed},
                     profile=name, config_path=self.config_path)
        return cfg, {k: getattr(getattr(cfg, _KEYS[k][0]), k) for k in changed}


# --------------------------------------------------------------------------- YAML reading
class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys in a mapping (PyYAML silently keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        k = loader.construct_object(key_node, deep=deep)
        if k in seen:
            raise yaml.constructor.ConstructorError(None, None, "duplicate key %r" % (k,), key_node.start_mark)
        seen.add(k)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# Keys that older saved configs or the zoo's file hold and that mean nothing now: accepted, ignored.
_IGNORED_KEYS = ("runtime",)


def _read_values(path, what, allow_extra_documents=True):
    """The key -> value mapping of a YAML file (its first document); a zoo-style file's further
    documents (help, choices) are ignored when ``allow_extra_documents``."""
    if not os.path.exists(path):
        raise ConfigError("%s: file not found: %s" % (what, path))
    if not os.path.isfile(path):
        raise ConfigError("%s: not a file: %s" % (what, path))
    try:
        with open(path, "r", encoding="utf-8") as f:
            docs = list(yaml.load_all(f, Loader=_StrictLoader))
    except yaml.YAMLError as e:
        raise ConfigError("cannot parse YAML file %s: %s" % (path, e)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("cannot read config file %s: %s" % (path, e)) from None
    docs = [{} if d is None else d for d in docs] or [{}]
    if len(docs) > 1 and not allow_extra_documents:
        raise ConfigError("%s has %d YAML documents; expected one mapping of key: value" % (path, len(docs)))
    values = docs[0]
    if not isinstance(values, dict):
        raise ConfigError("%s must be a mapping of key: value, got %s" % (path, type(values).__name__))
    out = {}
    for k, v in values.items():
        if k in _IGNORED_KEYS:
            continue
        if not isinstance(k, str) or k not in _KEYS:
            raise ConfigError("unknown key %r in %s%s" % (k, path, _did_you_mean(_suggest_key(k, _KEYS), "'%s'")))
        out[k] = v
    return out


def _profile_path(name):
    path = os.path.join(PROFILES_DIR, "%s.yaml" % name)
    if not os.path.isfile(path):
        available = sorted(os.path.splitext(n)[0] for n in os.listdir(PROFILES_DIR) if n.endswith(".yaml")) \
            if os.path.isdir(PROFILES_DIR) else []
        raise ConfigError("unknown profile %r (available: %s)%s" % (name, ", ".join(available) or "none",
                                                                  _did_you_mean(_suggest(name, available, 0.6),
                                                                                "'%s'")))
    return path


# --------------------------------------------------------------------------- suggestions
def _suggest(word, candidates, cutoff, n=3):
    word_l = str(word).lower()
    by_lower = {}
    for c in candidates:
        by_lower.setdefault(str(c).lower(), str(c))
    hits = difflib.get_close_matches(word_l, list(by_lower), n=n, cutoff=cutoff)
    if not hits:
        return []
    best = difflib.SequenceMatcher(None, word_l, hits[0]).ratio()  # keep those about as close as the best
    return [by_lower[h] for h in hits if difflib.SequenceMatcher(None, word_l, h).ratio() >= best - 0.1]


# Names other tools use for some keys (timm, mindcv, ...): suggested before any spelling match.
_ALIASES = {
    "epochs": "max_epoch", "num_epochs": "max_epoch", "batch_size": "per_batch_size",
    "workers": "num_parallel_workers", "num_workers": "num_parallel_workers", "model": "arch",
    "device": "device_target", "img_size": "image_size", "input_size": "image_size",
    "wd": "weight_decay", "smoothing": "label_smooth_factor", "data": "data_dir",
    "checkpoint": "pretrained", "sched": "lr_scheduler", "warmup": "warmup_epochs",
    "model_ema": "ema", "model_ema_decay": "ema_decay", "reprob": "re_prob", "mixup": "mixup_alpha",
    "cutmix": "cutmix_alpha", "aa": "auto_augment", "min_lr": "eta_min",
}


def _suggest_key(name, keys):
    normalized = str(name).replace("-", "_")
    if normalized in keys:
        return [normalized]
    alias = _ALIASES.get(normalized.lower())
    if alias in keys:
        return [alias]
    return _suggest(normalized, sorted(keys), 0.6)


def _did_you_mean(hits, fmt="%s"):
    return " (did you mean %s?)" % " or ".join(fmt % h for h in hits) if hits else ""


# --------------------------------------------------------------------------- coercion and checks
def _type_name(tp):
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _coerce(name, value, where):
    """Converts a YAML value or a command-line string to the declared type of ``name``; checks choices
    and range. ``where`` names the source in messages (``--max_epoch``, ``lr in x.yaml``)."""
    _, f = _KEYS[name]
    tp, choices, check = f.type, f.metadata["choices"], f.metadata["check"]
    bad = ConfigError("%s: expected %s, got %r" % (where, _type_name(tp), value))
    if isinstance(value, (dict, list)) and tp is not list:
        raise bad
    if tp is bool:
        out = _parse_bool(value)
        if out is None:
            raise bad
    elif tp is int:
        if _is_int(value):
            out = value
        elif isinstance(value, str):
            try:
                out = int(value.strip(), 10)
            except ValueError:
                raise bad from None
        else:
            raise bad
    elif tp is float:
        if _is_int(value) or isinstance(value, float):
            out = float(value)
        elif isinstance(value, str):  # also YAML 1.1 reading "1e-5" (no dot) as a string
            try:
                out = float(value.strip())
            except ValueError:
                raise bad from None
        else:
            raise bad
        if not math.isfinite(out):
            raise ConfigError("%s: expected a finite number, got %r" % (where, value))
    else:  # str
        if value is None:
            out = ""
        elif isinstance(value, bool) and choices:
            out = str(int(value))           # is_distributed: true -> "1"
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            out = str(value)
        else:
            raise bad
    if choices:
        match = [c for c in choices if c.lower() == str(out).strip().lower()]
        if not match:
            hits = _suggest(out, choices, 0.75)
            raise ConfigError("%s: invalid choice %r (choose from %s)%s"
                              % (where, value, ", ".join(choices), _did_you_mean(hits, "'%s'")))
        out = match[0]
    if check is not None:
        problem = check(out)
        if problem:
            raise ConfigError("%s: must be %s, got %r" % (where, problem, value))
    return out


def validate(flat):
    """Cross-key rules. Raises ``ConfigError`` for contradictions; returns warnings for what is odd but
    legitimate."""
    warnings = []
    if flat["label_smooth"] and flat["label_smooth_factor"] > 0 and flat["num_classes"] < 2:
        raise ConfigError("label_smooth needs num_classes >= 2 (got num_classes=%d); set --label_smooth=0 or "
                          "--label_smooth_factor=0 for a single class" % flat["num_classes"])
    if flat["dataset_format"] == "mindrecord":
        if flat["data_list"]:
            raise ConfigError("data_list does not apply to dataset_format=mindrecord (convert the list with "
                              "tools/convert_to_mindrecord.py --data_list)")
        if flat["sampler"] == "class_balanced":
            raise ConfigError("sampler=class_balanced needs dataset_format=folder (MindRecord's reader takes only "
                              "MindSpore's built-in samplers); use class_weights=balanced instead")
    max_epoch = flat["max_epoch"]
    if flat["warmup_epochs"] > max_epoch:
        warnings.append("warmup_epochs=%g is longer than max_epoch=%d: the learning rate never reaches lr=%g"
                        % (flat["warmup_epochs"], max_epoch, flat["lr"]))
    for k in ("ckpt_interval", "val_interval"):
        if flat[k] > max_epoch:
            warnings.append("%s=%d is longer than max_epoch=%d: only the last epoch gets one"
                            % (k, flat[k], max_epoch))
    if flat["lr_scheduler"] in ("exponential", "multistep"):
        late = [m for m in parse_number_list(flat["lr_epochs"], "lr_epochs") if m >= max_epoch]
        if late:
            warnings.append("lr_epochs milestones %s are at or after max_epoch=%d and never take effect"
                            % (", ".join("%g" % m for m in late), max_epoch))
    if flat["T_max"] and flat["lr_scheduler"] == "cosine_annealing" and flat["T_max"] < max_epoch:
        warnings.append("T_max=%d is shorter than max_epoch=%d: the cosine rises again after epoch %d"
                        % (flat["T_max"], max_epoch, flat["T_max"]))
    if flat["eta_min"] > flat["lr"]:
        warnings.append("eta_min=%g is above lr=%g: the schedule rises instead of decaying"
                        % (flat["eta_min"], flat["lr"]))
    return tuple(warnings)


def _build(flat, explicit, where, profile="", config_path=""):
    """Coerces every value (``where[k]`` names its source), applies the cross-key rules and builds a Config."""
    values = {k: _coerce(k, flat[k], where.get(k, k)) for k in _KEYS}
    warnings = validate(values)
    sections = {name: cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})
                for name, cls in SECTIONS.items()}
    return Config(**sections, explicit=frozenset(explicit), profile=profile, config_path=config_path,
                  warnings=warnings)


# --------------------------------------------------------------------------- command line
class _ArgumentParser(argparse.ArgumentParser):
    """ArgumentParser that raises ConfigError instead of printing usage and exiting."""

    def error(self, message):
        raise ConfigError("command line: %s" % message)


def _build_parser(prog=None):
    parser = _ArgumentParser(
        prog=prog, allow_abbrev=False, argument_default=argparse.SUPPRESS,
        description="CSPDarkNet53. Every key is a --key flag (--key value or --key=value); precedence: command "
                    "line > --config_path YAML > profile > default_config.yaml.")
    parser.add_argument("--config_path", metavar="PATH", help="YAML of key: value overriding the defaults.")
    groups = {name: parser.add_argument_group(name) for name in SECTIONS}
    for name, (section, f) in _KEYS.items():
        kwargs = {"dest": name, "help": key_help(name).replace("%", "%%"), "metavar": f.type.__name__.upper()}
        if f.metadata["choices"]:
            kwargs["metavar"] = "{%s}" % ",".join(f.metadata["choices"])
        if f.type is bool:
            kwargs.update(nargs="?", const="true", metavar="BOOL")  # `--flag` alone means true
        groups[section].add_argument("--" + name, **kwargs)
    return parser


def _check_unknown_cli(argv):
    """Raise ConfigError for the first unknown option in argv, with a suggestion."""
    known = set(_KEYS) | {"config_path", "help"}
    for a in argv:
        if a == "--":
            break
        if a.startswith("--"):
            name = a[2:].split("=", 1)[0]
            if name in known:
                continue
            raise ConfigError("command line: unknown option --%s%s"
                              % (name, _did_you_mean(_suggest_key(name, _KEYS), "--%s")))


# --------------------------------------------------------------------------- loading
def load_config(argv=None, config_path=None):
    """Load the config: ``default_config.yaml`` < user YAML < command line.

    argv: command-line arguments without the program name (None: ``sys.argv[1:]``).
    config_path: user YAML; a ``--config_path`` in argv takes precedence. The repository's default file
    (or "") means no user YAML.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    _check_unknown_cli(argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else None
    args, extra = _build_parser(prog).parse_known_args(argv)
    if extra:
        raise ConfigError("command line: unexpected argument(s): %s" % " ".join(extra))
    cli = vars(args)
    config_path = cli.pop("config_path", config_path) or None

    defaults = _read_values(DEFAULT_CONFIG_PATH, "default config", allow_extra_documents=False)
    missing = [k for k in _KEYS if k not in defaults]
    if missing:
        raise ConfigError("%s lacks a value for %s" % (DEFAULT_CONFIG_PATH, ", ".join(missing)))
    flat = dict(defaults)
    where = {k: "%s in %s" % (k, DEFAULT_CONFIG_PATH) for k in flat}
    explicit = set()
    used_path = ""
    if config_path is not None:
        path = os.path.abspath(os.path.expanduser(str(config_path)))
        if not (os.path.exists(path) and os.path.samefile(path, DEFAULT_CONFIG_PATH)):
            used_path = path
            default_values = {k: _coerce(k, v, where[k]) for k, v in defaults.items()}
            for k, v in _read_values(path, "config_path").items():
                flat[k] = v
                where[k] = "%s in %s" % (k, path)
                if _coerce(k, v, where[k]) != default_values[k]:
                    explicit.add(k)
    for k, v in cli.items():
        flat[k] = v
        where[k] = "--%s" % k
        explicit.add(k)
    return _build(flat, explicit, where, config_path=used_path)


def save_config(cfg, path):
    """Writes the config's values to ``path`` as one YAML mapping, atomically (with the umask's file mode); it
    loads back with ``--config_path`` to the same values."""
    from src.utils.fileio import write_text_atomic

    data = cfg.flat()
    return write_text_atomic(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True),
                             path)


# --------------------------------------------------------------------------- helpers
def _env_int(environ, name):
    raw = environ.get(name)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ConfigError("environment variable %s=%r is not an integer" % (name, raw)) from None


def resolve_is_distributed(value, environ=None):
    """``is_distributed`` as a bool: "1"/"0" (or 1/0/True/False) as given; "auto" -> True iff launched by
    msrun (MS_ROLE set, or MS_WORKER_NUM > 1) or RANK_SIZE > 1 in ``environ`` (default: os.environ)."""
    parsed = _parse_bool(value)
    if parsed is not None:
        return parsed
    if isinstance(value, str) and value.strip().lower() == "auto":
        env = os.environ if environ is None else environ
        if str(env.get("MS_ROLE", "")).strip():
            return True
        workers = _env_int(env, "MS_WORKER_NUM")
        if workers is not None and workers > 1:
            return True
        rank_size = _env_int(env, "RANK_SIZE")
        return rank_size is not None and rank_size > 1
    raise ConfigError("is_distributed: invalid value %r (choose from auto, 0, 1)" % (value,))
