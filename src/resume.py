"""Resuming a run: what a resume may change, its class names, and whether anything is left to do.

``--resume=RUN`` continues RUN with its own ``config.yaml`` (``src.config.load_config``), ``cfg.changed_on_resume``
listing each change on top: how the run is carried out (``CARRIED_OUT``) is allowed and logged, ``max_epoch`` is a
deliberate change (logged with its effect on the schedule), ``IGNORED`` keys do not matter, and anything else would
change what the run computes: refused, one error naming every such change. A checkpoint outside a run folder
resumes with the config given now; its arch, num_classes and class names are checked all the same.
"""
import json
import os

from src.checkpoint import find_resume_checkpoint, read_state_dict
from src.data.listing import load_class_index
from src.errors import CheckpointError, ClassIndexError, ConfigError


CARRIED_OUT = frozenset({
    "ckpt_interval", "ckpt_save_max", "ckpt_older_weights_only", "is_save_on_master", "dump_shard_files",
    "log_interval", "val_interval", "tensorboard_dir", "dataset_sink_mode", "sink_size", "num_parallel_workers",
    "verify_files", "verify_manifest", "val_data_dir", "device_target", "is_distributed"})
DELIBERATE = frozenset({"max_epoch"})
IGNORED = frozenset({"ckpt_path", "enable_modelarts", "data_url", "train_url", "checkpoint_url", "data_path",
                     "output_path", "load_path", "need_modelarts_dataset_unzip", "modelarts_dataset_unzip_name"})


def resume_config(cfg):
    """``(cfg, notes)``: the config a resumed run trains with and the log lines about it (module docstring)."""
    if not cfg.resumed_from:
        return cfg, []
    changed = {k: v for k, v in cfg.changed_on_resume.items() if k not in IGNORED}
    refused = [k for k in changed if k not in CARRIED_OUT | DELIBERATE]
    if refused:
        listed = ", ".join(f"{k} {changed[k][0]!r} -> {changed[k][1]!r}" for k in refused)
        raise ConfigError(f"resume={cfg.train.resume}: a resumed run continues with its own config "
                          f"({cfg.resumed_from}), and these options would change what it computes: {listed}; drop "
                          "them, or start a new run (pretrained=<its checkpoint> starts one from its weights)")
    carried = [k for k in changed if k in CARRIED_OUT]
    notes = [f"resume: the run's config {cfg.resumed_from}"
             + (f", with {', '.join(f'{k}={changed[k][1]!r}' for k in carried)} changed" if carried else "")]
    if "max_epoch" in changed:
        old, new = changed["max_epoch"]
        notes.append(f"resume: max_epoch changed from {old} to {new} (deliberately); the learning-rate schedule of "
                     f"the remaining steps is that of a {new}-epoch run")
    if "ckpt_path" in cfg.changed_on_resume:  # the run's own folder is where it goes on
        cfg = cfg.replace(ckpt_path=cfg.changed_on_resume["ckpt_path"][0])
    return cfg, notes


def nothing_left(cfg):
    """A sentence when the resumed run's newest checkpoint already has ``max_epoch`` epochs, else None."""
    path = find_resume_checkpoint(cfg.train.resume)
    arrays, _ = read_state_dict(path)
    if "epoch" not in arrays:
        return None  # not a training checkpoint: restore() says so
    done, step = int(arrays["epoch"]), int(arrays["step_in_epoch"]) if "step_in_epoch" in arrays else 0
    if step == 0 and done >= cfg.optim.max_epoch:
        return (f"nothing to do: {path} already has {done} of max_epoch={cfg.optim.max_epoch} epochs (raise "
                "max_epoch to train on); nothing was written")
    return None


def trained_class_names(meta, run_dir):
    """The run's class names (index order): from its checkpoint's ``meta``, else ``class_index.json``, else None."""
    if meta.get("class_names"):
        try:
            return [str(n) for n in json.loads(meta["class_names"])]
        except (TypeError, ValueError):
            pass
    if run_dir and os.path.isfile(os.path.join(run_dir, "class_index.json")):
        try:
            index = load_class_index(os.path.join(run_dir, "class_index.json"))
        except ValueError:
            return None
        return [n for n, _ in sorted(index.items(), key=lambda kv: kv[1])]
    return None


def check_same_classes(trained, class_to_idx, checkpoint):
    """``ClassIndexError`` unless the training data's classes are ``trained`` (names in index order): a resumed
    run on data with other class names would train other labels under the same outputs."""
    if trained is None:
        return
    now = [n for n, _ in sorted(class_to_idx.items(), key=lambda kv: kv[1])]
    if now == list(trained):
        return
    gone, new = [n for n in trained if n not in class_to_idx], [n for n in now if n not in set(trained)]
    detail = "; ".join(part for part in (
        f"classes of the run missing from the data: {', '.join(map(repr, gone[:5]))}" if gone else "",
        f"classes new in the data: {', '.join(map(repr, new[:5]))}" if new else "") if part)
    if not detail:
        i = next(i for i, (a, b) in enumerate(zip(trained, now)) if a != b)
        detail = f"the same names in another order (index {i}: {trained[i]!r} in the run, {now[i]!r} in the data)"
    raise ClassIndexError(f"resume: the training data's classes differ from those {checkpoint} was trained on "
                          f"({detail}); resuming would relabel the data. Resume on the run's data, or start a new "
                          "run (pretrained=<checkpoint> fine-tunes its weights on new classes)")


def check_group_size(run_dir, group_size, checkpoint):
    """``CheckpointError`` when the run (its ``run.json``) trained on another number of devices."""
    try:
        with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
            before = int(json.load(f)["group_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no record: nothing to compare
    if before != group_size:
        raise CheckpointError(f"{checkpoint}: the run trained on {before} device(s), this process is one of "
                              f"{group_size}: the data shards and steps per epoch would change; resume it on {before}")
