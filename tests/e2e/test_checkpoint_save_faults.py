"""Checkpoint saves that fail mid-write, in a child process whose files may not grow past a limit (RLIMIT_FSIZE):
a write error (as on a full disk) names the path and the free space, removes the temporary file and keeps the
old checkpoint; a save killed mid-write leaves only temporary files that are never taken for checkpoints and
are removed at the next start."""
import json
import os
import signal

import numpy as np


SAVE_CHILD = """
import json, os, resource, signal, sys
import numpy as np
import mindspore as ms
from src.checkpoint import CheckpointSaveError, save_checkpoint_atomic
entries = [{{"name": "w%d" % i, "data": ms.Tensor(np.full((256, 256), {value}, np.float32))}} for i in range(8)]
signal.signal(signal.SIGXFSZ, signal.{handler})
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
try:
    save_checkpoint_atomic(entries, {path!r}, metadata={{"arch": "x"}})
    print(json.dumps({{"ok": True}}))
except CheckpointSaveError as err:
    print(json.dumps({{"error": str(err)}}))
"""


def _save_in_child(run_script, path, limit, value=1.0, killed=False):
    """Runs ``save_checkpoint_atomic`` in a child whose files may not grow past ``limit`` bytes: writes past
    it fail with EFBIG (as on a full disk), or with ``killed`` the kernel kills the child mid-write."""
    code = SAVE_CHILD.format(path=str(path), limit=limit, value=value, handler="SIG_DFL" if killed else "SIG_IGN")
    return run_script(None, ["-c", code], timeout=120)


def _save_here(path):
    """The same 2 MiB checkpoint (every value 1.0), saved in this process without a size limit."""
    import mindspore as ms

    from src.checkpoint import save_checkpoint_atomic
    entries = [{"name": "w%d" % i, "data": ms.Tensor(np.full((256, 256), 1.0, np.float32))} for i in range(8)]
    save_checkpoint_atomic(entries, str(path), metadata={"arch": "x"})


def test_failed_save_names_path_and_free_space_removes_temp_and_keeps_the_old_file(tmp_path, run_script):
    from src.checkpoint import read_state_dict

    path = tmp_path / "0-1_4.ckpt"
    _save_here(path)
    before = path.read_bytes()
    proc = _save_in_child(run_script, path, 500_000, value=2.0)  # the same name again, 2 MB: does not fit
    result = json.loads(proc.stdout)
    assert result["error"].startswith(f"cannot write checkpoint {path} (")
    assert "MiB free there): [Errno 27] File too large" in result["error"]
    assert "Failed to save the checkpoint file" not in proc.stderr  # MindSpore's line about the temp file
    assert os.listdir(tmp_path) == ["0-1_4.ckpt"]  # no .partial.ckpt, no MindSpore .tmp
    assert path.read_bytes() == before
    assert float(read_state_dict(path)[0]["w0"][0, 0]) == 1.0


def test_killed_save_leaves_only_temporary_files_that_are_never_checkpoints_and_get_removed(tmp_path, run_script):
    from src.checkpoint import (CheckpointManager, checkpoint_files, find_resume_checkpoint, is_partial_file,
                                training_checkpoints)

    folder = tmp_path / "ckpt_0"
    folder.mkdir()
    _save_here(folder / "0-1_4.ckpt")
    proc = _save_in_child(run_script, folder / "0-2_4.ckpt", 500_000, killed=True)
    assert proc.returncode == -signal.SIGXFSZ
    left = sorted(n for n in os.listdir(folder) if n != "0-1_4.ckpt")
    assert left and all(is_partial_file(n) for n in left), left  # e.g. .0-2_4.ckpt.<pid>.partial.tmp
    assert [os.path.basename(p) for _, _, p in training_checkpoints(str(folder))] == ["0-1_4.ckpt"]
    assert [os.path.basename(p) for p in checkpoint_files(str(folder))] == ["0-1_4.ckpt"]
    assert find_resume_checkpoint(str(tmp_path)).endswith("0-1_4.ckpt")
    manager = CheckpointManager(str(folder), 0, 10, steps_per_epoch=4, optimizer_names=[])
    assert sorted(os.path.basename(p) for p in manager.removed_partials) == left
    assert os.listdir(folder) == ["0-1_4.ckpt"]
