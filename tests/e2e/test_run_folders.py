"""A finished run's folder is never clobbered: a resume with nothing to do, a resume that would change what the run
computes (another arch, image size, or data whose class names differ), a leftover CSPDARKNET53_RUN_NAME and a
run name with ``../`` all leave every file of the run byte-identical with its mtime; the run's files follow the
user's umask; older checkpoints and best.ckpt are weights-only.

cspdarknet_tiny at 32 px, 3 classes x 8 images, one epoch."""
import os
import shutil

import pytest

from src.checkpoint import read_state_dict, training_checkpoints


def _args(data, out, **over):
    args = dict(arch="cspdarknet_tiny", max_epoch=2, data_dir=data, num_classes=3, image_size="32,32",
                per_batch_size=8, warmup_epochs=0, lr=0.05, num_parallel_workers=1, ckpt_path=out)
    args.update(over)
    return [f"--{k}={v}" for k, v in args.items()]


def _snapshot(root):
    """Every path under ``root``: a file with its bytes, mode and mtime, a folder with None."""
    found = {}
    for folder, dirs, files in os.walk(root):
        found.update({os.path.join(folder, name): None for name in dirs})
        for name in files:
            path = os.path.join(folder, name)
            st = os.stat(path)
            found[path] = (st.st_mtime_ns, st.st_mode, open(path, "rb").read())
    return found


@pytest.fixture(scope="module")
def finished(tmp_path_factory, make_tiny_data, run_script):
    """A finished two-epoch run (umask 027) on its own copy of the data: ``(data, ckpt_path, run folder)``."""
    base = tmp_path_factory.mktemp("finished")
    data = base / "data"
    shutil.copytree(make_tiny_data(3, 8, 40), data)
    proc = run_script.popen("train.py", _args(data, base / "out"), cwd=base, preexec_fn=lambda: os.umask(0o027))
    assert proc.wait(timeout=600) == 0
    (run,) = [str(p) for p in (base / "out").iterdir()]
    return data, base / "out", run


def test_the_run_is_small_and_follows_the_umask(finished):
    _, _, run = finished
    modes = {os.path.relpath(os.path.join(d, n), run): os.stat(os.path.join(d, n)).st_mode & 0o777
             for d, _, names in os.walk(run) for n in names}
    assert set(modes.values()) == {0o640}, modes
    (newest, older) = [p for _, _, p in training_checkpoints(os.path.join(run, "ckpt_0"))][::-1]
    assert any(k.startswith("moments.") for k in read_state_dict(newest)[0])  # resumable
    for weights_only in (older, os.path.join(run, "ckpt_0", "best.ckpt")):
        if os.path.exists(weights_only):
            assert not any(k.startswith("moments.") or k == "global_step" for k in read_state_dict(weights_only)[0])


@pytest.mark.parametrize("case", ["nothing_to_do", "arch", "image_size", "class_names", "leftover_name", "escape"])
def test_a_finished_run_is_left_byte_identical(finished, run_script, tmp_path, case):
    data, out, run = finished
    before = _snapshot(out)
    renamed = None
    if case == "nothing_to_do":
        proc = run_script("train.py", [f"--resume={run}"], cwd=tmp_path)
        assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.output
    elif case in ("arch", "image_size"):
        flag = "--arch=cspdarknet53" if case == "arch" else "--image_size=64,64"
        proc = run_script("train.py", [f"--resume={run}", "--max_epoch=3", flag], cwd=tmp_path)
        assert proc.returncode == 2 and f"{case} " in proc.stderr and "would change what it computes" in proc.stderr
    elif case == "class_names":
        renamed = data / "classX"
        os.rename(data / "class2", renamed)  # same folder, other class names
        try:
            proc = run_script("train.py", [f"--resume={run}", "--max_epoch=3"], cwd=tmp_path)
        finally:
            os.rename(renamed, data / "class2")
        assert proc.returncode == 2 and "classes differ" in proc.stderr and "'classX'" in proc.stderr, proc.output
    elif case == "leftover_name":
        proc = run_script("train.py", _args(data, out), cwd=tmp_path,
                          env={"CSPDARKNET53_RUN_NAME": os.path.basename(run)})
        assert proc.returncode == 2 and "already holds another run" in proc.stderr, proc.output
    else:
        proc = run_script("train.py", _args(data, out / "inner"), cwd=tmp_path,
                          env={"CSPDARKNET53_RUN_NAME": "../escaped"})
        assert proc.returncode == 2 and "CSPDARKNET53_RUN_NAME" in proc.stderr, proc.output
        assert not (out / "escaped").exists() and not (out / "inner").exists()
    assert len([t for t in proc.stderr.splitlines() if t.startswith("error: ")]) == (0 if proc.returncode == 0 else 1)
    assert "Traceback" not in proc.output
    assert _snapshot(out) == before
