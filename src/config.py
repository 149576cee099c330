"""The configuration: one declaration per key (a field of its section's dataclass: type and ``key(help, choices,
check, scripts)``), strict loading. Precedence: command line (``--key value`` / ``--key=value``) > ``--config_path``
YAML > a resumed run's ``config.yaml`` (instead of the next two) > profile > ``default_config.yaml`` (the zoo's
ImageNet recipe). A script's command line takes its keys and ``ALIASES`` only; a YAML's other keys are ignored.
Bad input is a ``ConfigError`` naming the key and its source; odd settings are ``Config.warnings``.
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
from src.utils.host import available_cpus

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
DEFAULT_CONFIG_PATH = os.path.join(REPO_ROOT, "default_config.yaml")
PROFILES_DIR = os.path.join(REPO_ROOT, "configs")
SCRIPTS = ("train", "eval", "export", "predict")
ALIASES = {s: {"pretrained": "ckpt_file"} for s in ("eval", "export", "predict")}  # the zoo's other spellings
_TRAIN, _IMAGES = ("train",), ("train", "eval", "predict")  # the scripts that read images
MAX_SIDE = 4096  # image_size, export width/height (docs/errors.md, "Bounds")
_SIDE_WHY = "a training step at 4096 x 4096 holds about 64 GiB of activations for one image"


def _cut(text, limit=120):
    """``text`` cut to ``limit`` characters with a marker: an error line stays one readable line."""
    return text if len(text) <= limit else "%s...(%d characters)" % (text[:limit], len(text))


def _show(value):
    return _cut(repr(value))


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _epochs(text):
    """lr_epochs "30,60,90" as floats (ValueError when they are not numbers)."""
    return [float(p) for p in str(text).replace(";", ",").split(",") if p.strip()]


# --------------------------------------------------------------------------- key declarations
def key(help, choices=None, check=None, scripts=None):
    """A config key: help, allowed values, ``check(value)`` (None, or what it must be, e.g. ">= 1") and the
    scripts that read it (None: the section's ``USED_BY``)."""
    return field(metadata={"help": help, "choices": tuple(choices) if choices else None, "check": check,
                           "scripts": scripts})


def _at_least(low, high=None, why=""):
    """``>= low``; and ``<= high`` (``why``: the reason a larger value cannot work)."""
    return lambda v: f">= {low}" if v < low else f"<= {high} ({why})" if high is not None and v > high else None


def _between(low, high, low_open=False, high_open=False):
    def check(v):
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        return None if ok else f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return check


def _image_size(v):
    try:
        hw = [] if v == "auto" else [int(p, 10) for p in v.split(",")]
    except ValueError:
        return "'auto' or 'height,width' (e.g. 224,224)"
    if hw and (len(hw) > 2 or min(hw) < 1):
        return "'auto' or positive 'height,width' (e.g. 224,224)"
    return f"at most {MAX_SIDE} per side ({_SIDE_WHY})" if hw and max(hw) > MAX_SIDE else None


def _numbers(v):
    try:
        values = _epochs(v)
    except ValueError:
        return "comma-separated numbers such as 30,60,90"
    return None if all(0 < x < math.inf for x in values) else "comma-separated epochs > 0 such as 30,60,90"


def _workers(v):
    limit = 4 * available_cpus()
    return ">= 0" if v < 0 else None if v <= limit else (
        f"<= {limit} (4 x the {limit // 4} core(s) this process may use; more workers than cores are capped to "
        "the cores with a warning)")


@dataclass(frozen=True)
class ModelArtsConfig:
    USED_BY = SCRIPTS
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
    modelarts_dataset_unzip_name: str = key("ModelArts: base name of the dataset zip file and its folder.")


@dataclass(frozen=True)
class DeviceConfig:
    USED_BY = SCRIPTS
    device_target: str = key("Device to run on; auto picks Ascend if present, else GPU, else CPU.",
                             choices=("auto", "Ascend", "GPU", "CPU"))
    is_distributed: str = key("Data-parallel run; auto turns it on under msrun (MS_ROLE / MS_WORKER_NUM>1) or "
                              "when RANK_SIZE>1.", choices=("auto", "0", "1"), scripts=_IMAGES)
    seed: int = key("Global random seed (weight init, data order, augmentation).", check=_between(0, 2 ** 32 - 1),
                    scripts=("train", "eval"))
    amp_level: str = key("Mixed-precision level (O0 float32, O2 float16 except BatchNorm, O3 float16); auto "
                         "picks O2 on Ascend/GPU and O0 on CPU.", choices=("auto", "O0", "O2", "O3"), scripts=_TRAIN)


@dataclass(frozen=True)
class ModelConfig:
    USED_BY = SCRIPTS
    arch: str = key("Network: " + ", ".join(arch_names()) + " (see src/archs.py).", choices=arch_names())
    init: str = key("Weight init: timm (Kaiming-normal fan_out, zero-init last BN gamma of each residual block; "
                    "trains well) or zoo (Kaiming-uniform a=sqrt(5)).", choices=("timm", "zoo"), scripts=_TRAIN)
    num_classes: int = key("Number of output classes of the classifier.",
                           check=_at_least(1, 100000, "a larger classifier alone holds over 10^8 weights"))
    fp16_head: bool = key("Compute the classifier in float16 (model zoo behaviour); false: float32.",
                          scripts=("export",))


@dataclass(frozen=True)
class DataConfig:
    USED_BY = ("train", "eval")
    data_dir: str = key("Dataset root: an ImageFolder (one sub-folder per class); empty uses the embedded demo "
                        "data (train.py, eval.py).")
    data_list: str = key("Optional text file of 'relative/path label' lines (relative to data_dir), used "
                         "instead of scanning data_dir.")
    dataset_format: str = key("How data_dir / val_data_dir are stored: folder (an ImageFolder) or mindrecord (the "
                              "PREFIX given to tools/convert_to_mindrecord.py --output).",
                              choices=("folder", "mindrecord"))
    verify_files: bool = key("Decode every file once in isolated workers, skipping (and naming) unusable ones; "
                             "false: check first and last bytes only (a corrupt file can crash the run).",
                             scripts=_IMAGES)
    verify_manifest: str = key("Cache of the decode check's results: empty = <data_dir>/.cspdarknet53_verified.jsonl "
                               "(a user cache if read-only); none = nowhere; else that file.")
    max_image_pixels: int = key("Images whose header declares more pixels (width x height; 10^8: 10000 x 10000) "
                                "are named and skipped undecoded.", check=_at_least(1), scripts=_IMAGES)
    sampler: str = key("Train order: epoch_shard (every image once per epoch) or class_balanced (equal class "
                       "shares; folder format only).", choices=("epoch_shard", "class_balanced"), scripts=_TRAIN)
    val_data_dir: str = key("Train: ImageFolder validated every val_interval epochs; empty: no validation.",
                            scripts=_TRAIN)
    image_size: str = key("Train crop and eval input size as 'height,width'; auto: the architecture's.",
                          check=_image_size, scripts=_IMAGES)
    per_batch_size: int = key("Batch size per device (the global batch is per_batch_size x devices).",
                              check=_at_least(1), scripts=_IMAGES)
    num_parallel_workers: int = key("Data-loading workers per device; 0 uses the machine's cores (divided "
                                    "among local devices).", check=_workers, scripts=_IMAGES)
    eval_resize: str = key("Eval resize before the centre crop: squash (both sides, model zoo) or shorter (the "
                           "shorter side, keeping the aspect ratio); auto: the architecture's.",
                           choices=("auto",) + EVAL_RESIZE_MODES, scripts=_IMAGES)
    crop_pct: float = key("Eval centre-crop fraction (0.875: 256 -> 224); 0: the architecture's.", scripts=_IMAGES,
                          check=lambda v: None if v == 0 or 0 < v <= 1 else "0 (the architecture's) or in (0, 1]")
    auto_augment: str = key("Extra train augmentation: none, randaugment or autoaugment (ImageNet policy).",
                            choices=("none", "randaugment", "autoaugment"), scripts=_TRAIN)
    re_prob: float = key("Random-erasing probability in training (0 disables).", check=_between(0, 1),
                         scripts=_TRAIN)
    color_jitter: float = key("Train colour-jitter strength for brightness, contrast and saturation (0 "
                              "disables).", check=_at_least(0), scripts=_TRAIN)
    crop_scale_min: float = key("Smallest area fraction of the train random-resized crop (the zoo's 0.08).",
                                check=_between(0, 1, low_open=True), scripts=_TRAIN)
    mixup_alpha: float = key("Mixup Beta(alpha, alpha) parameter; 0 disables mixup.", check=_at_least(0),
                             scripts=_TRAIN)
    cutmix_alpha: float = key("CutMix Beta(alpha, alpha) parameter; 0 disables CutMix.", check=_at_least(0),
                              scripts=_TRAIN)
    mixup_prob: float = key("Probability of mixing a batch when mixup or CutMix is on.", check=_between(0, 1),
                            scripts=_TRAIN)


@dataclass(frozen=True)
class OptimConfig:
    USED_BY = _TRAIN
    lr: float = key("Peak learning rate (end of warmup); not scaled by the number of devices.", check=_at_least(0))
    lr_scheduler: str = key("cosine_annealing (zoo, per-epoch staircase), cosine_step (per-step cosine to eta_min) "
                            "or exponential (the zoo's name) / multistep: decay by lr_gamma at lr_epochs.",
                            choices=("cosine_annealing", "cosine_step", "exponential", "multistep"))
    lr_epochs: str = key("Milestone epochs of the exponential/multistep schedule, comma separated.",
                         check=_numbers)
    lr_gamma: float = key("Decay factor at each milestone of the exponential/multistep schedule.",
                          check=_at_least(0))
    eta_min: float = key("Floor of the cosine schedules.", check=_at_least(0))
    T_max: int = key("Period of the cosine_annealing schedule in epochs; 0: max_epoch.", check=_at_least(0))
    max_epoch: int = key("Number of training epochs.",
                         check=_at_least(1, 10000, "the LR schedule holds one value per step of the whole run"))
    warmup_epochs: float = key("Linear warmup length in epochs (may be fractional).", check=_at_least(0))
    weight_decay: float = key("Weight decay (L2) of the conv and dense weights; biases and BatchNorm get none.",
                              check=_at_least(0))
    momentum: float = key("SGD momentum.", check=_between(0, 1, high_open=True))
    is_dynamic_loss_scale: bool = key("Dynamic loss scaling (skips steps whose gradients overflow); false: "
                                      "the fixed loss_scale.")
    loss_scale: float = key("Fixed loss scale, or the initial one with is_dynamic_loss_scale.",
                            check=_at_least(1))
    class_weights: str = key("Per-class loss weights: none; balanced (inverse class frequency, mean 1); or a file: "
                             "one weight per line by class index, a JSON list, or a JSON {class name: weight} "
                             "(others 1).",
                             check=lambda v: None if v.strip().lower() in ("none", "balanced") or os.path.isfile(v)
                             else "none, balanced or an existing weights file")
    label_smooth: bool = key("Label-smoothed cross entropy with label_smooth_factor; false: plain cross "
                             "entropy.")
    label_smooth_factor: float = key("Label-smoothing epsilon (how much target mass leaves the true class).",
                                     check=_between(0, 1, high_open=True))
    label_smooth_style: str = key("pytorch (true class 1 - eps + eps/K, others eps/K; timm, mindcv) or zoo (true "
                                  "class 1 - eps, others eps/(K-1)).", choices=("pytorch", "zoo"))
    ema: bool = key("Keep an exponential moving average (EMA) of the weights with decay ema_decay.")
    ema_decay: float = key("Decay of the weight EMA.", check=_between(0, 1))


@dataclass(frozen=True)
class TrainConfig:
    USED_BY = _TRAIN
    resume: str = key("Run folder (or a checkpoint in one) to resume: its config.yaml is the base, the command "
                      "line changes it; empty starts from scratch.")
    ckpt_interval: int = key("Save a checkpoint every ckpt_interval epochs (and after the last).",
                             check=_at_least(1))
    ckpt_save_max: int = key("Number of epoch checkpoints to keep, the newest included (best.ckpt is kept "
                             "besides).", check=_at_least(1))
    ckpt_older_weights_only: bool = key("Keep older epoch checkpoints weights-only (half the size, not resumable); "
                                        "false keeps the optimizer state in every kept checkpoint.")
    ckpt_path: str = key("Root of the training output folders (checkpoints, logs, metrics).")
    is_save_on_master: bool = key("Only rank 0 saves checkpoints; false: every rank does.")
    dump_shard_files: bool = key("For tests: each rank writes <run>/shard_rank<r>.txt, one 'epoch<TAB>path' "
                                 "line per image file it read.")
    log_interval: int = key("Log the loss and speed every log_interval steps.", check=_at_least(1))
    val_interval: int = key("Validate on val_data_dir every val_interval epochs (and after the last).",
                            check=_at_least(1))
    tensorboard_dir: str = key("TensorBoard scalars to <tensorboard_dir>/<run name>/ (rank 0; needs tensorboardX "
                               "2.6.5); empty: off.")
    dataset_sink_mode: str = key("Run sink_size steps per host call; auto: on for Ascend/GPU, off on CPU (where 1 "
                                 "gives the same numerics as 0).", choices=("auto", "0", "1"))
    sink_size: int = key("Steps per sink in sink mode, rounded down to a divisor of the steps per epoch; 0: a "
                         "whole epoch.", check=_at_least(0))


@dataclass(frozen=True)
class WeightsConfig:
    USED_BY = ("eval", "export", "predict")
    pretrained: str = key("Train: a checkpoint to start from (warm start). Eval, export and predict take "
                          "--pretrained as another name of --ckpt_file.", scripts=_TRAIN)
    ckpt_file: str = key("The checkpoint to load: eval scores a file, or every checkpoint of a folder; export and "
                         "predict load one file.")
    use_ema: bool = key("Use the checkpoint's EMA weights.")
    calibration_file: str = key("The checkpoint's temperature record (eval --calibrate writes it): empty = "
                                "<checkpoint>.calibration.json if it exists (predict --model_path: the model's own); "
                                "none = temperature 1; else that file. A record of another checkpoint is refused.")


@dataclass(frozen=True)
class EvalConfig:
    USED_BY = ("eval",)
    log_path: str = key("Root of the eval output folders.")
    result_file: str = key("Also write the result JSON here; empty writes none.", scripts=("eval", "predict"))
    no_plots: bool = key("Skip confusion_matrix.png and worst_mistakes.png; the CSVs are always written.")
    worst_mistakes: int = key("How many of the most confident wrong predictions worst_mistakes.png shows "
                              "(0: none).", check=_at_least(0))
    class_map: str = key("A file mapping the data's class folders to the model's classes (JSON {\"folder\": class "
                         "name, index or null} or 'folder target' lines), for folders named unlike the classes.")
    calibrate: bool = key("Fit a temperature on the scored images and write calibration_file (ECE/NLL before and "
                          "after reported); score a held-out split for it, never the test set you report.")
    tta: str = key("Test-time augmentation: none, or flip (each image's logits averaged with its mirror "
                   "image's).", choices=("none", "flip"), scripts=("eval", "predict"))


@dataclass(frozen=True)
class ExportConfig:
    USED_BY = ("export",)
    export_batch_size: int = key("Batch dimension of the exported model input.",
                                 check=_at_least(1, 1024, "a deployment batch; a larger one is a typo"))
    file_name: str = key("Exported file name without extension.")
    file_format: str = key("Export format (AIR needs an Ascend device).", choices=("MINDIR", "ONNX", "AIR"))
    width: int = key("Exported input width in pixels; 0: from the checkpoint (or the architecture).",
                     check=_at_least(0, MAX_SIDE, _SIDE_WHY))
    height: int = key("Exported input height in pixels; 0: from the checkpoint (or the architecture).",
                      check=_at_least(0, MAX_SIDE, _SIDE_WHY))
    quantize: str = key("int8: also write <file_name>.int8.onnx, INT8 post-training quantized (onnxruntime QDQ) on "
                        "calib_data_dir's images (ONNX; needs onnxruntime).", choices=("none", "int8"))
    calib_data_dir: str = key("quantize=int8: an ImageFolder of training images to calibrate on (root/<class>/"
                              "<image>), read with the model's eval preprocessing.")
    calib_images: int = key("quantize=int8: how many calib_data_dir images calibrate (in turn from each class); "
                            "the rest check INT8 against FP32.",
                            check=_at_least(1, 100000, "a few hundred suffice; more only slows the calibration"))
    calib_seed: int = key("quantize=int8: seed of the calibration image choice.", check=_between(0, 2 ** 32 - 1))


@dataclass(frozen=True)
class PredictConfig:
    USED_BY = ("predict",)
    image_path: str = key("Image file or folder, or a comma separated list of them.")
    topk: int = key("Number of top classes reported per image.", check=_at_least(1))
    class_names_file: str = key("Class names: a names file (line i = class i) or a run's class_index.json; "
                                "empty: the checkpoint's own, else ImageNet's or class_<i>.")
    cam: bool = key("Also save a Grad-CAM heatmap overlay per image (<index>_<name>_cam.png).")
    cam_class: int = key("The class the Grad-CAM heatmap explains; -1: each image's predicted class.",
                         check=_at_least(-1))
    cam_dir: str = key("Folder of the Grad-CAM PNGs; empty: beside result_file, else ./cam.")
    model_path: str = key("An exported model (ONNX, or MINDIR with its <model>.json record) to predict with instead "
                          "of a checkpoint: its record gives the class names, preprocessing and temperature.")


SECTIONS = {"modelarts": ModelArtsConfig, "device": DeviceConfig, "model": ModelConfig, "data": DataConfig,
            "optim": OptimConfig, "train": TrainConfig, "weights": WeightsConfig, "eval": EvalConfig,
            "export": ExportConfig, "predict": PredictConfig}
_KEYS = {f.name: (name, f) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}  # in order


def used_by(name):
    """The entry scripts that read key ``name``."""
    section, f = _KEYS[name]
    return f.metadata["scripts"] or SECTIONS[section].USED_BY


def script_keys(script=None):
    """The keys ``script`` reads, in declaration order (every key for None)."""
    return [k for k in _KEYS if script is None or script in used_by(k)]


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
    profile: str = ""
    config_path: str = ""                    # the user YAML
    warnings: Tuple[str, ...] = ()           # odd but legitimate settings, for the run's log
    script: str = ""                         # the entry script it was loaded for ("": every key)
    resumed_from: str = ""                   # the run's config.yaml that --resume made the base
    #: {key: (saved value, value now)} of each key a YAML or the command line changed on resume
    changed_on_resume: Dict[str, tuple] = field(default_factory=dict, hash=False)

    def flat(self):
        """Every key and its value, in declaration order."""
        return {k: getattr(getattr(self, section), k) for k, (section, _) in _KEYS.items()}

    def is_explicit(self, name):
        return name in self.explicit

    def replace(self, _mark_explicit=False, **values):
        """A copy with the given keys changed (validated again); ``_mark_explicit``: as if the user set them."""
        for k in values:
            if k not in _KEYS:
                raise ConfigError("unknown key %s%s" % (_show(k), _did_you_mean(_suggest_key(k, _KEYS), "'%s'")))
        explicit = self.explicit | set(values) if _mark_explicit else self.explicit
        return self._rebuild(values, {k: "%s (set by the program)" % k for k in values}, explicit)

    def with_profile(self, name):
        """``(config, changed)``: the profile's values for each of the script's keys not set explicitly (none on
        resume: the run's profile was applied when it started)."""
        path = _profile_path(name)
        values = _read_values(path, "profile %r" % name, extra_documents=False)
        if self.resumed_from:
            return self, {}
        keys = script_keys(self.script or None)
        changed = {k: v for k, v in values.items() if k in keys and not self.is_explicit(k)}
        cfg = self._rebuild(changed, {k: "%s in %s" % (k, path) for k in changed}, self.explicit, profile=name)
        return cfg, {k: v for k, v in cfg.flat().items() if k in changed}

    def _rebuild(self, values, where, explicit, **meta):
        meta = {k: getattr(self, k) for k in ("profile", "config_path", "script", "resumed_from",
                                              "changed_on_resume")} | meta
        return _build({**self.flat(), **values}, explicit, where, **meta)


# --------------------------------------------------------------------------- YAML files
_MAX_FILE_BYTES = 1 << 20     # a config file holds one short value per key: about 3 KB
_IGNORED_KEYS = ("runtime",)  # in configs earlier versions saved


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader refusing duplicate keys (PyYAML keeps the last), aliases (nested ones expand to gigabytes) and
    nesting deeper than 8 levels."""

    depth = 0

    def compose_node(self, parent, index):
        problem = "aliases (*name) are not accepted in config files" if self.check_event(yaml.AliasEvent) \
            else "nested deeper than 8 levels" if self.depth >= 8 else None
        if problem:
            raise yaml.composer.ComposerError(None, None, problem, self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        for i, (key_node, _) in enumerate(node.value):
            if isinstance(keys[i], str) and keys[i] in keys[:i]:
                raise yaml.constructor.ConstructorError(None, None, "duplicate key %s" % _show(keys[i]),
                                                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _read_values(path, what, extra_documents=True):
    """The key -> value mapping of a YAML file's first document (a zoo-style file's help and choices documents
    ignored with ``extra_documents``); keys that are not the config's are refused."""
    if not os.path.exists(path):
        raise ConfigError("%s: file not found: %s" % (what, path))
    if not os.path.isfile(path):
        raise ConfigError("%s: not a file: %s" % (what, path))
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
        text = data[:_MAX_FILE_BYTES].decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("cannot read config file %s: %s" % (path, e)) from None
    if len(data) > _MAX_FILE_BYTES:
        raise ConfigError("%s: %s is larger than 1 MiB; a config file holds one value per key" % (what, path))
    try:
        docs = [{} if d is None else d for d in yaml.load_all(text, Loader=_StrictLoader)] or [{}]
    except (yaml.YAMLError, ValueError) as e:  # ValueError: e.g. an integer of more than 4300 digits
        mark = getattr(e, "problem_mark", None)
        text = ": ".join(p for p in (getattr(e, "context", None), getattr(e, "problem", None)) if p) or str(e)
        where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark else ""
        raise ConfigError("cannot parse YAML file %s: %s%s" % (path, _cut(text, 300), where)) from None
    if len(docs) > 1 and not extra_documents:
        raise ConfigError("%s has %d YAML documents; expected one mapping of key: value" % (path, len(docs)))
    if not isinstance(docs[0], dict):
        raise ConfigError("%s must be a mapping of key: value, got %s" % (path, type(docs[0]).__name__))
    for k in docs[0]:
        if k not in _KEYS and k not in _IGNORED_KEYS:
            hint = _did_you_mean(_suggest_key(k, _KEYS), "'%s'")
            raise ConfigError("unknown key %s in %s%s" % (_show(k), path, hint))
    return {k: v for k, v in docs[0].items() if k in _KEYS}


def _profile_path(name):
    path, names = os.path.join(PROFILES_DIR, "%s.yaml" % name), sorted(os.listdir(PROFILES_DIR))
    if not os.path.isfile(path):
        names = [n[:-5] for n in names if n.endswith(".yaml")]
        raise ConfigError("unknown profile %s (available: %s)%s" % (
            _show(name), ", ".join(names), _did_you_mean(_suggest(name, names, 0.6), "'%s'")))
    return path


def run_config_of(resume):
    """The ``config.yaml`` of the run folder ``resume`` names (it, its ``ckpt_<rank>/`` or a checkpoint there);
    None when there is none."""
    path = os.path.abspath(os.path.expanduser(str(resume)))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.basename(folder).startswith("ckpt_"):
        folder = os.path.dirname(folder)
    elif folder != path:
        return None  # a checkpoint file outside a run folder
    found = os.path.join(folder, "config.yaml")
    return found if os.path.isfile(found) else None


# --------------------------------------------------------------------------- suggestions
# other tools' names (timm, mindcv ...), suggested before any spelling match
_HINTS = {
    "epochs": "max_epoch", "num_epochs": "max_epoch", "batch_size": "per_batch_size",
    "workers": "num_parallel_workers", "num_workers": "num_parallel_workers", "model": "arch",
    "device": "device_target", "img_size": "image_size", "input_size": "image_size",
    "wd": "weight_decay", "smoothing": "label_smooth_factor", "data": "data_dir",
    "checkpoint": "pretrained", "sched": "lr_scheduler", "warmup": "warmup_epochs",
    "model_ema": "ema", "model_ema_decay": "ema_decay", "reprob": "re_prob", "mixup": "mixup_alpha",
    "cutmix": "cutmix_alpha", "aa": "auto_augment", "min_lr": "eta_min",
}


def _suggest(word, candidates, cutoff):
    """The candidate (any case) closest to ``word``, if it is close enough: [] or [it]."""
    by_lower = {str(c).lower(): str(c) for c in reversed(list(candidates))}
    return [by_lower[h] for h in difflib.get_close_matches(str(word).lower()[:200], by_lower, 1, cutoff)]


def _suggest_key(name, keys):
    normalized = str(name).replace("-", "_")
    hint = normalized if normalized in keys else _HINTS.get(normalized.lower())
    return [hint] if hint in keys else _suggest(normalized, sorted(keys), 0.6)


def _did_you_mean(hits, fmt="%s"):
    return " (did you mean %s?)" % " or ".join(fmt % h for h in hits) if hits else ""


# --------------------------------------------------------------------------- values and rules
_TYPE_NAMES = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}


def _convert(tp, value, has_choices):
    """A YAML value or command-line text as type ``tp``; None when it is not one."""
    if isinstance(value, (dict, list)):
        return None
    if tp is bool:  # a bool, 0/1, or true/false/yes/no/on/off/1/0 in any case
        if isinstance(value, bool) or (_is_int(value) and value in (0, 1)):
            return bool(value)
        text = value.strip().lower() if isinstance(value, str) else None
        return True if text in ("true", "yes", "on", "1") else False if text in ("false", "no", "off", "0") else None
    if tp is str:
        if isinstance(value, bool):
            return str(int(value)) if has_choices else None  # is_distributed: true -> "1"
        return "" if value is None else str(value) if isinstance(value, (str, int, float)) else None
    try:
        if isinstance(value, str):  # also YAML 1.1 reading "1e-5" (no dot) as a string
            return tp(value.strip())
        if tp is int:
            return value if _is_int(value) else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    except (ValueError, OverflowError):
        return None


def _coerce(name, value, where):
    """``value`` as key ``name``'s type, checked; ``where`` names the source (``--max_epoch``, ``lr in x.yaml``)."""
    f = _KEYS[name][1]
    choices, check = f.metadata["choices"], f.metadata["check"]
    out = _convert(f.type, value, bool(choices))
    if out is None:
        raise ConfigError("%s: expected %s, got %s" % (where, _TYPE_NAMES[f.type], _show(value)))
    if f.type is float and not math.isfinite(out):
        raise ConfigError("%s: expected a finite number, got %s" % (where, _show(value)))
    if choices:
        match = [c for c in choices if c.lower() == out.strip().lower()]
        if not match:
            raise ConfigError("%s: invalid choice %s (choose from %s)%s" % (
                where, _show(value), ", ".join(choices), _did_you_mean(_suggest(out, choices, 0.75), "'%s'")))
        out = match[0]
    problem = check(out) if check else None
    if problem:
        raise ConfigError("%s: must be %s, got %s" % (where, problem, _show(value)))
    return out


def check_input_size(batch, height, width):
    """Refuses (``ConfigError``) a model input of ``batch x 3 x height x width`` float32 above 4 GiB."""
    size = batch * 3 * height * width * 4
    if size > 4 << 30:
        raise ConfigError("export_batch_size=%d x 3 x height=%d x width=%d float32 is %.1f GiB; the exported "
                          "input may be at most 4 GiB (lower export_batch_size, width or height)"
                          % (batch, height, width, size / 2 ** 30))


def validate(flat):
    """Cross-key rules: ``ConfigError`` for contradictions; returns warnings for the odd but legitimate."""
    warnings = []
    if flat["label_smooth"] and flat["label_smooth_factor"] > 0 and flat["num_classes"] < 2:
        raise ConfigError("label_smooth needs num_classes >= 2 (got num_classes=%d); set --label_smooth=0 or "
                          "--label_smooth_factor=0 for a single class" % flat["num_classes"])
    if flat["dataset_format"] == "mindrecord" and flat["data_list"]:
        raise ConfigError("data_list does not apply to dataset_format=mindrecord (convert the list with "
                          "tools/convert_to_mindrecord.py --data_list)")
    if flat["dataset_format"] == "mindrecord" and flat["sampler"] == "class_balanced":
        raise ConfigError("sampler=class_balanced needs dataset_format=folder (MindRecord's reader takes only "
                          "MindSpore's built-in samplers); use class_weights=balanced instead")
    if flat["quantize"] == "int8" and flat["file_format"] != "ONNX":
        raise ConfigError("quantize=int8 needs file_format=ONNX (the INT8 model is an ONNX QDQ graph), got "
                          "file_format=%s" % flat["file_format"])
    if flat["quantize"] == "int8" and not flat["calib_data_dir"]:
        raise ConfigError("quantize=int8 needs calib_data_dir: a folder of training images (root/<class>/<image>) "
                          "to calibrate on")
    if flat["calib_data_dir"] and flat["quantize"] != "int8":
        raise ConfigError("calib_data_dir=%s is only read with quantize=int8 (add --quantize=int8 for an INT8 model)"
                          % _show(flat["calib_data_dir"]))
    if flat["width"] and flat["height"]:
        check_input_size(flat["export_batch_size"], flat["height"], flat["width"])
    max_epoch = flat["max_epoch"]
    if flat["warmup_epochs"] > max_epoch:
        warnings.append("warmup_epochs=%g is longer than max_epoch=%d: the learning rate never reaches lr=%g"
                        % (flat["warmup_epochs"], max_epoch, flat["lr"]))
    warnings += ["%s=%d is longer than max_epoch=%d: only the last epoch gets one" % (k, flat[k], max_epoch)
                 for k in ("ckpt_interval", "val_interval") if flat[k] > max_epoch]
    late = [m for m in _epochs(flat["lr_epochs"]) if m >= max_epoch]
    if late and flat["lr_scheduler"] in ("exponential", "multistep"):
        warnings.append("lr_epochs milestones %s are at or after max_epoch=%d and never take effect"
                        % (", ".join("%g" % m for m in late), max_epoch))
    if flat["T_max"] and flat["lr_scheduler"] == "cosine_annealing" and flat["T_max"] < max_epoch:
        warnings.append("T_max=%d is shorter than max_epoch=%d: the cosine rises again after epoch %d"
                        % (flat["T_max"], max_epoch, flat["T_max"]))
    if flat["eta_min"] > flat["lr"]:
        warnings.append("eta_min=%g is above lr=%g: the schedule rises instead of decaying"
                        % (flat["eta_min"], flat["lr"]))
    return tuple(warnings)


def _build(flat, explicit, where, **meta):
    """Coerces every value (``where[k]`` names its source), applies the cross-key rules, builds a Config."""
    values = {k: _coerce(k, flat[k], where.get(k, k)) for k in _KEYS}
    sections = {name: cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})
                for name, cls in SECTIONS.items()}
    return Config(**sections, explicit=frozenset(explicit), warnings=validate(values), **meta)


# --------------------------------------------------------------------------- command line
class _ArgumentParser(argparse.ArgumentParser):
    """ArgumentParser that raises ConfigError instead of printing usage and exiting."""

    def error(self, message):
        raise ConfigError("command line: %s" % _cut(message, 600))


def _build_parser(script, defaults):
    """``script``'s options (every key for None) by section, ModelArts last, with defaults and choices."""
    parser = _ArgumentParser(
        prog="%s.py" % script if script else os.path.basename(sys.argv[0] or "") or None,
        usage="%(prog)s [--key value | --key=value ...]", allow_abbrev=False, argument_default=argparse.SUPPRESS,
        description="Precedence: command line > --config_path YAML > profile (train.py, eval.py without data_dir: "
                    "configs/demo.yaml) > default_config.yaml; train.py --resume=RUN: RUN's config.yaml replaces "
                    "profile and defaults.")
    parser.add_argument("--config_path", metavar="PATH", help="YAML of key: value (other scripts' keys ignored).")
    keys, aliases = script_keys(script), ALIASES.get(script, {})
    for section in [s for s in SECTIONS if s != "modelarts"] + ["modelarts"]:
        group = parser.add_argument_group(section)
        for k in (k for k in keys if _KEYS[k][0] == section):
            f, value = _KEYS[k][1], defaults[k]
            shown = '""' if value == "" else str(value).lower() if isinstance(value, bool) else value
            kwargs = {"dest": k, "help": ("%s (default: %s)" % (f.metadata["help"], shown)).replace("%", "%%"),
                      "metavar": "{%s}" % ",".join(f.metadata["choices"]) if f.metadata["choices"]
                      else f.type.__name__.upper()}
            if f.type is bool:
                kwargs.update(nargs="?", const="true", metavar="BOOL")  # `--flag` alone means true
            group.add_argument("--" + k, *["--" + a for a, target in aliases.items() if target == k], **kwargs)
    return parser


def unknown_option(name, script=None, known=None):
    """The error line for ``--name`` on ``script``'s command line (``known``: its options; default: its keys and
    aliases): another script's key names the scripts using it, else the nearest option is suggested."""
    if name in _KEYS and script is not None:
        return "command line: --%s is not an option of %s.py; it is used by %s" % (
            name, script, ", ".join("%s.py" % s for s in used_by(name)))
    known = list(known) if known is not None else script_keys(script) + list(ALIASES.get(script, {}))
    return "command line: unknown option --%s%s" % (_cut(name), _did_you_mean(_suggest_key(name, known), "--%s"))


def _parse_cli(argv, script, defaults):
    """``{key: text}`` of the options in ``argv`` (aliases under their key's name), ``config_path`` included."""
    names = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    for alias, name in ALIASES.get(script, {}).items():
        if alias in names and name in names:
            raise ConfigError("command line: --%s and --%s are one option; give one of them" % (name, alias))
    args, extra = _build_parser(script, defaults).parse_known_args(argv)
    if extra and extra[0].startswith("--") and extra[0] != "--":
        raise ConfigError(unknown_option(extra[0][2:].split("=", 1)[0], script))
    if extra:
        raise ConfigError("command line: unexpected argument(s): %s" % _cut(" ".join(extra)))
    return vars(args)


# --------------------------------------------------------------------------- loading
def load_config(argv=None, config_path=None, script=None, environ=None):
    """The config of ``argv`` (None: ``sys.argv[1:]``) for ``script`` (one of ``SCRIPTS``; None: every key);
    ``config_path``: a user YAML unless argv has one; ``environ``: checked with ``launch_env`` (os.environ)."""
    if script not in SCRIPTS + (None,):
        raise ValueError("script must be one of %s, got %r" % (SCRIPTS, script))
    defaults = _read_values(DEFAULT_CONFIG_PATH, "default config", extra_documents=False)
    missing = [k for k in _KEYS if k not in defaults]
    if missing:
        raise ConfigError("%s lacks a value for %s" % (DEFAULT_CONFIG_PATH, ", ".join(missing)))
    cli = _parse_cli(list(sys.argv[1:] if argv is None else argv), script, defaults)
    launch_env(environ)
    config_path = cli.pop("config_path", config_path) or None
    flat, where = dict(defaults), {k: "%s in %s" % (k, DEFAULT_CONFIG_PATH) for k in defaults}
    default_values = {k: _coerce(k, v, where[k]) for k, v in defaults.items()}
    keys, layers, warnings = set(script_keys(script)), [("", {})], []
    path = os.path.abspath(os.path.expanduser(str(config_path or "")))
    if config_path and not (os.path.exists(path) and os.path.samefile(path, DEFAULT_CONFIG_PATH)):
        layers = [(path, _read_values(path, "config_path"))]
    resume = cli.get("resume", layers[0][1].get("resume")) if "resume" in keys else None
    saved_path = run_config_of(resume) if resume else None
    if saved_path:
        layers.insert(0, (saved_path, _read_values(saved_path, "resume")))
    elif resume and os.path.exists(os.path.expanduser(str(resume))):
        warnings.append("resume=%s: no config.yaml in its run folder, so the run continues with the settings "
                        "given now (defaults, profile, command line), which may differ from the run's" % resume)
    explicit, saved = set(), {}
    for path, values in layers:
        for k, v in values.items():
            if k in keys:  # another script's key in a YAML: accepted, ignored (it keeps its default)
                flat[k], where[k] = v, "%s in %s" % (k, path)
                (explicit.add if _coerce(k, v, where[k]) != default_values[k] else explicit.discard)(k)
        if path == saved_path:
            saved = {k: _coerce(k, flat[k], where[k]) for k in keys if k != "resume"}
    for k, v in cli.items():
        flat[k], where[k] = v, "--%s" % k
        explicit.add(k)
    cfg = _build(flat, explicit, where, config_path=layers[-1][0], script=script or "",
                 resumed_from=saved_path or "")
    now = cfg.flat()
    return dataclasses.replace(cfg, warnings=tuple(warnings) + cfg.warnings,
                               changed_on_resume={k: (v, now[k]) for k, v in saved.items() if now[k] != v})


def save_config(cfg, path):
    """Every key's value as one YAML mapping, written atomically (it loads back to the same values)."""
    from src.utils.fileio import write_text_atomic

    text = yaml.safe_dump(cfg.flat(), sort_keys=False, default_flow_style=False, allow_unicode=True)
    return write_text_atomic(text, path)


# --------------------------------------------------------------------------- launcher variables, "auto"
_LAUNCH_VARS = {"DEVICE_ID": (0, 4095), "RANK_ID": (0, 65535), "RANK_SIZE": (1, 65536), "MS_WORKER_NUM": (1, 65536)}


def launch_env(environ=None):
    """``{name: int}`` of the launcher variables set; ``ConfigError`` naming one not an integer or out of range."""
    env, out = os.environ if environ is None else environ, {}
    for name, (low, high) in _LAUNCH_VARS.items():
        raw = str(env.get(name) or "").strip()
        try:
            out.update({name: int(raw, 10)} if raw else {})
        except ValueError:
            raise ConfigError("environment variable %s=%s is not an integer" % (name, _show(raw))) from None
        if raw and not low <= out[name] <= high:
            raise ConfigError("environment variable %s=%d is out of range: must be in [%d, %d]"
                              % (name, out[name], low, high))
    if out.get("RANK_ID", 0) >= out.get("RANK_SIZE", math.inf):
        raise ConfigError("environment variable RANK_ID=%d is out of range: must be below RANK_SIZE=%d"
                          % (out["RANK_ID"], out["RANK_SIZE"]))
    return out


def resolve_is_distributed(value, environ=None):
    """``is_distributed`` as a bool; "auto": launched by msrun (MS_ROLE set, or MS_WORKER_NUM > 1) or
    RANK_SIZE > 1."""
    value, env = _coerce("is_distributed", value, "is_distributed"), os.environ if environ is None else environ
    counts = launch_env(env) if value == "auto" else {}
    return value == "1" or (value == "auto" and (bool(str(env.get("MS_ROLE", "")).strip()) or
                                                 max(counts.get("MS_WORKER_NUM", 1), counts.get("RANK_SIZE", 1)) > 1))


def resolve_amp_level(value, device_target):
    """``amp_level`` -> O0, O2 or O3; auto: O2 on Ascend and GPU (the zoo's), O0 on CPU (float16 is slower there)."""
    value = _coerce("amp_level", value, "amp_level")
    return value if value != "auto" else "O0" if device_target == "CPU" else "O2"


def resolve_sink_mode(value, device_target):
    """``dataset_sink_mode`` -> bool; auto: on for Ascend/GPU, off on CPU."""
    value = _coerce("dataset_sink_mode", value, "dataset_sink_mode")
    return device_target in ("Ascend", "GPU") if value == "auto" else value == "1"
