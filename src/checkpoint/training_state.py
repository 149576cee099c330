"""Training-state I/O: every parameter of the train step (weights, BN statistics, optimizer moments, global step,
loss-scale state), ``ema.*``, ``epoch``, ``best_top1`` and the metadata; the LR array is rebuilt from the config.
A mid-epoch checkpoint (a stop signal) adds ``step_in_epoch`` and ``epoch_step_losses`` (NaN: a skipped update),
so the resumed epoch continues at the next step and reports the uninterrupted mean loss.
"""
import numpy as np

from src.checkpoint.formats import CheckpointError, read_state_dict
from src.checkpoint.metadata import read_metadata
from src.checkpoint.store import is_weights_only


def training_state_entries(train_step, ema, epoch, best_top1, step_in_epoch=0, step_losses=()):
    """The ``[{"name", "data"}]`` list that ``save_checkpoint_atomic`` writes for a training checkpoint:
    ``epoch`` epochs finished, plus ``step_in_epoch`` steps of the next one (with their ``step_losses``)."""
    import mindspore as ms

    entries = [{"name": p.name, "data": p} for p in train_step.get_parameters()]
    if ema is not None:
        entries += ema.checkpoint_entries()
    entries.append({"name": "epoch", "data": ms.Tensor(np.array(epoch, np.int32))})
    entries.append({"name": "best_top1", "data": ms.Tensor(np.array(best_top1, np.float64))})
    if step_in_epoch:
        entries.append({"name": "step_in_epoch", "data": ms.Tensor(np.array(step_in_epoch, np.int32))})
        entries.append({"name": "epoch_step_losses", "data": ms.Tensor(np.asarray(step_losses, np.float64))})
    return entries


def restore_training_state(path, train_step, ema, arch_name, log):
    """Loads the train step (and EMA) from ``path``; returns its metadata plus ``epoch``, ``best_top1``,
    ``step_in_epoch``, ``step_losses``. ``CheckpointError``, nothing changed, when it does not fit."""
    import mindspore as ms

    arrays, meta = read_state_dict(path)
    recorded = read_metadata(path, arrays, meta)
    if recorded["epoch"] is None:
        raise CheckpointError(f"{path}: not a training checkpoint of this project (no epoch counter); "
                              "use pretrained= to start from its weights")
    if is_weights_only(arrays):
        raise CheckpointError(f"{path}: holds weights only, no optimizer state (best.ckpt and a run's older "
                              "checkpoints are kept that way); resume from the run folder (its newest checkpoint), "
                              f"or start a new run from these weights with pretrained={path}")
    if recorded["arch"] and recorded["arch"] != arch_name:
        raise CheckpointError(f"{path}: was trained with arch {recorded['arch']!r}, the config says {arch_name!r}")
    targets = {p.name: p for p in train_step.get_parameters()}
    if ema is not None:
        targets.update({e["name"]: e["data"] for e in ema.checkpoint_entries()})
    head = next((p for n, p in targets.items() if n.endswith("head.fc.weight") and not n.startswith(
        ("ema.", "moments.", "accum."))), None)
    if head is not None and recorded["num_classes"] is not None and recorded["num_classes"] != int(head.shape[0]):
        raise CheckpointError(f"{path}: was trained with num_classes={recorded['num_classes']}, the config says "
                              f"num_classes={int(head.shape[0])}")
    wanted = {n for n in targets if n != "learning_rate"}  # the LR array is rebuilt from the config
    if ema is not None and not any(n.startswith("ema.") for n in arrays):
        log.warning("%s has no EMA weights: the EMA starts from the restored weights", path)
        wanted -= {n for n in wanted if n.startswith("ema")}
    missing = sorted(n for n in wanted if n not in arrays)
    shape_errors = sorted(n for n in wanted if n in arrays and tuple(arrays[n].shape) != tuple(targets[n].shape))
    parts = [f"{what} {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}"
             for what, names in (("missing", missing), ("other shapes for", shape_errors)) if names]
    if parts:
        raise CheckpointError(f"{path}: does not fit this config's network ({'; '.join(parts)})")
    for name in wanted:
        param = targets[name]
        param.set_data(ms.Tensor(arrays[name].astype(ms.dtype_to_nptype(param.dtype)), param.dtype))
    if ema is not None and "ema_updates" not in wanted:
        ema.reset_from_network()
    return {**meta, "epoch": recorded["epoch"],
            "best_top1": -1.0 if recorded["best_top1"] is None else recorded["best_top1"],
            "step_in_epoch": int(arrays["step_in_epoch"]) if "step_in_epoch" in arrays else 0,
            "step_losses": np.asarray(arrays.get("epoch_step_losses", []), np.float64).reshape(-1).tolist()}
