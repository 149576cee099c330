"""Resuming a run: its own config, what a resume may change, its classes, and whether anything is left to do.

``--resume=RUN`` (a run folder, or a checkpoint in one) continues RUN with the config it was trained with
(``RUN/config.yaml``); what the command line (or a ``--config_path`` YAML) sets overrides it, and each change
is judged by what it does to the run:

* how the run is carried out (``CARRIED_OUT``: checkpoint and validation intervals, retention, logging,
  TensorBoard, workers, the file check, sink mode, the device, the validation data): allowed, logged;
* ``max_epoch`` (train longer, or stop earlier): allowed, logged as a deliberate change, with what it does to
  the learning-rate schedule of the remaining epochs;
* anything else changes what the run computes (model, data, image size, batch, schedule, loss, augmentation,
  seed, precision, warm start): refused, one error line naming every such change;
* keys that train.py does not read (eval, export, predict, ModelArts) pass silently, and ``ckpt_path`` does not
  matter (a resumed run writes into its own folder).

A run folder without ``config.yaml`` (a bare checkpoint) resumes with the command line's config; the
checkpoint's arch, num_classes and class names are checked against it all the same.
"""
import json
import os

from src.checkpoint import find_resume_checkpoint, run_folder_of
from src.config import load_config
from src.errors import ClassIndexError, ConfigError

__all__ = ["CARRIED_OUT", "DELIBERATE", "NOT_TRAIN_KEYS", "resume_config", "trained_class_names",
           "check_same_classes"]

CARRIED_OUT = frozenset({
    "ckpt_interval", "ckpt_save_max", "ckpt_older_weights_only", "is_save_on_master", "dump_shard_files",
    "log_interval", "val_interval", "tensorboard_dir", "dataset_sink_mode", "sink_size", "num_parallel_workers",
    "verify_files", "verify_manifest", "val_data_dir", "device_target", "is_distributed"})
DELIBERATE = frozenset({"max_epoch"})
#: not read by train.py, or meaningless for a resumed run
NOT_TRAIN_KEYS = frozenset({
    "resume", "ckpt_path", "ckpt_file", "use_ema", "log_path", "result_file", "no_plots", "worst_mistakes",
    "class_map", "export_batch_size", "file_name", "file_format", "width", "height", "image_path", "topk",
    "class_names_file", "cam", "cam_class", "cam_dir", "enable_modelarts", "data_url", "train_url",
    "checkpoint_url", "data_path", "output_path", "load_path", "need_modelarts_dataset_unzip",
    "modelarts_dataset_unzip_name"})


def _saved_config(cfg):
    """``(run folder, its config.yaml or None)`` of ``cfg.train.resume``."""
    run_dir = run_folder_of(find_resume_checkpoint(cfg.train.resume))
    path = os.path.join(run_dir, "config.yaml") if run_dir else None
    return run_dir, path if path and os.path.isfile(path) else None


def resume_config(cfg):
    """The config a resumed run trains with, and the log lines about it: ``(cfg, notes)`` (module docstring).

    Raises ``ConfigError`` naming every override that changes what the run computes."""
    run_dir, saved_path = _saved_config(cfg)
    if saved_path is None:
        return cfg, [f"resume={cfg.train.resume}: no config.yaml in the run folder, so this command line's config "
                     "is used (the checkpoint's arch, num_classes and class names are checked against it)"]
    saved = load_config([], config_path=saved_path)
    now, before = cfg.flat(), saved.flat()
    overrides = {k: now[k] for k in sorted(cfg.explicit) if k in now and k not in NOT_TRAIN_KEYS}
    changed = {k: (before[k], v) for k, v in overrides.items() if v != before[k]}
    refused = [k for k in changed if k not in CARRIED_OUT | DELIBERATE]
    if refused:
        listed = ", ".join(f"{k} {changed[k][0]!r} -> {changed[k][1]!r}" for k in refused)
        raise ConfigError(f"resume={cfg.train.resume}: a resumed run continues with its own config ({saved_path}), "
                          f"and these options would change what it computes: {listed}; drop them, or start a new "
                          "run (pretrained=<its checkpoint> starts one from its weights)")
    merged = saved.replace(_mark_explicit=True, **{k: now[k] for k in overrides}, resume=cfg.train.resume,
                           ckpt_path=before["ckpt_path"])
    notes = [f"resume: the run's config {saved_path}"
             + (f", with {', '.join(f'{k}={v[1]!r}' for k, v in changed.items() if k in CARRIED_OUT)} from the "
                "command line" if any(k in CARRIED_OUT for k in changed) else "")]
    if "max_epoch" in changed:
        old, new = changed["max_epoch"]
        notes.append(f"resume: max_epoch changed from {old} to {new} (deliberately, on the command line); the "
                     f"learning-rate schedule of the remaining steps is that of a {new}-epoch run")
    return merged, notes


def trained_class_names(meta, run_dir):
    """The class names a run trains (index order): recorded in its checkpoint's metadata ``meta``, else in the
    run folder's ``class_index.json``; None when neither says."""
    from src.data.listing import load_class_index

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
