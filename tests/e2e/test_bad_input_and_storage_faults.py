"""What each entry point answers to bad input and faults run as a user runs it: a subprocess.

Every user-caused error is one ``error:`` line on stderr with exit status 2, nothing before it, and nothing
of a run written: no run folder for a rejected command line, a rejected resume leaves its run folder
byte-identical, a failed checkpoint save keeps every earlier checkpoint and leaves no temporary file,
and temporary files of killed saves are removed at the next start. ``docs/errors.md`` lists every bad
input tried and which test here covers it.
"""
import csv
import glob
import hashlib
import json
import os
import resource
import shutil
import signal
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(REPO, "scripts")
TRAIN_FLAGS = ["--arch=cspdarknet_tiny", "--image_size=32,32", "--num_classes=2", "--per_batch_size=4",
               "--max_epoch=1", "--warmup_epochs=0", "--num_parallel_workers=1", "--log_interval=1"]


# --------------------------------------------------------------------------- helpers and fixtures
def _run(run_script, script, args, cwd, timeout=300, preexec_fn=None, **env):
    """``script`` as a user runs it: MindSpore's log level left to the entry scripts (no GLOG_v)."""
    return run_script.cmd(run_script.command(script, args), cwd=cwd, env=dict(env, GLOG_v=None), timeout=timeout,
                          preexec_fn=preexec_fn)


def _error_line(proc):
    """The one ``error:`` line a user error prints; asserts it is all stderr holds and there is no traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr  # nothing buries the message
    return lines[0]


def _tree_digest(folder):
    """{relative path: sha256} of every file under ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory, write_images):
    root = tmp_path_factory.mktemp("failures_data")
    for split, classes, n in (("train", 2, 4), ("val", 2, 2), ("one_class", 1, 4)):
        for c in range(classes):
            write_images(root / split / f"class{c}", n, 30 + 90 * c, seed=(len(split), c), size=(36, 36))
    (root / "no_images" / "a").mkdir(parents=True)
    (root / "no_images" / "b").mkdir()
    (root / "a_file").write_text("not a folder")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data, run_script):
    """A finished 2-epoch run (a full checkpoint after each epoch: older ones are not slimmed, so that a test can
    remove the newest and resume from the one before; validation each epoch); copy it before changing it."""
    out = tmp_path_factory.mktemp("failures_run")
    proc = _run(run_script, "train.py", TRAIN_FLAGS + [f"--data_dir={data / 'train'}", f"--val_data_dir={data / 'val'}",
                                          "--max_epoch=2", "--ckpt_older_weights_only=0",
                                          f"--ckpt_path={out / 'runs'}"], out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = glob.glob(str(out / "runs" / "*"))
    return run


def _copy_run(run, dest):
    shutil.copytree(run, dest)
    return str(dest)


def _train_args(data, out, *extra):
    return TRAIN_FLAGS + [f"--data_dir={data / 'train'}", f"--ckpt_path={out}"] + list(extra)


def _limit_file_size(limit):
    """preexec_fn: writes past ``limit`` bytes fail with EFBIG (a full disk, as far as the writer can tell)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return apply


# --------------------------------------------------------------------------- train: values, before anything
# Each of these used to be accepted and fail deep in the run (a traceback, a run folder left behind, and for
# the intervals a ZeroDivisionError after the first epoch, before any checkpoint). Both flag styles.
BAD_TRAIN_VALUES = [
    (["--ckpt_interval", "0"], "--ckpt_interval: must be >= 1"),
    (["--val_interval=0", "--val_data_dir={val}"], "--val_interval: must be >= 1"),
    (["--lr", "-1"], "--lr: must be >= 0"),
    (["--max_epoch", "0"], "--max_epoch: must be >= 1"),
    (["--warmup_epochs=-3"], "--warmup_epochs: must be >= 0"),
    (["--lr_epochs", "a,b", "--lr_scheduler=multistep"], "--lr_epochs: must be comma-separated numbers"),
    (["--num_classes=0"], "--num_classes: must be >= 1"),
    (["--seed", "-1"], "--seed: must be in [0, 4294967295]"),
    (["--num_classes=1", "--data_dir={one_class}", "--label_smooth=1", "--label_smooth_factor=0.1"],
     "label_smooth needs num_classes >= 2"),
]


@pytest.mark.parametrize("extra, message", BAD_TRAIN_VALUES, ids=[e[0].lstrip("-").split("=")[0] + "-" + str(i)
                                                                 for i, (e, _) in enumerate(BAD_TRAIN_VALUES)])
def test_bad_train_value_is_one_error_line_and_creates_nothing(tmp_path, data, extra, message, run_script):
    out = tmp_path / "out"
    extra = [e.format(val=data / "val", one_class=data / "one_class") for e in extra]
    proc = _run(run_script, "train.py", _train_args(data, out, *extra), tmp_path, timeout=120)
    assert message in _error_line(proc)
    assert not out.exists()  # no run folder, not even the output root


@pytest.mark.parametrize("extra, message", [
    (["--device_target", "GPU"], "device_target=GPU: this MindSpore installation has no usable GPU backend"),
    (["--is_distributed", "1"], "distributed init failed: launch with msrun"),
], ids=["gpu-on-cpu-only", "distributed-without-launcher"])
def test_device_and_launcher_errors_fail_before_a_run_folder(tmp_path, data, extra, message, run_script):
    import mindspore as ms

    if extra[0] == "--device_target" and ms.hal.is_available("GPU"):
        pytest.skip("this installation has a GPU backend")
    out = tmp_path / "out"
    proc = _run(run_script, "train.py", _train_args(data, out, *extra), tmp_path, timeout=120)
    assert message in _error_line(proc)
    assert not out.exists()


def test_odd_but_legitimate_values_run_with_warnings(tmp_path, data, run_script):
    """A warmup longer than the run and an interval longer than the run are allowed; the log says why odd."""
    out = tmp_path / "out"
    proc = _run(
        run_script,
        "train.py",
        _train_args(
            data, out, "--warmup_epochs=5", "--ckpt_interval=3", "--val_interval=4", f"--val_data_dir={data / 'val'}"
        ),
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warmup_epochs=5 is longer than max_epoch=1" in proc.stdout
    assert "ckpt_interval=3 is longer than max_epoch=1: only the last epoch gets one" in proc.stdout
    assert "val_interval=4 is longer than max_epoch=1" in proc.stdout
    (run,) = glob.glob(str(out / "*"))
    assert glob.glob(os.path.join(run, "ckpt_0", "0-1_*.ckpt"))  # the last epoch still saved and validated
    with open(os.path.join(run, "metrics.csv"), newline="") as f:
        assert [r["val_top1"] != "" for r in csv.DictReader(f)] == [True]


# --------------------------------------------------------------------------- unwritable outputs
# A regular file on the way (NotADirectoryError) and a location nobody may write, not even root (/sys);
# each used to be an OSError traceback, for train after the device was set up.
def _unwritable(data, where):
    return {"under_a_file": str(data / "a_file" / "sub"), "read_only": "/sys/cspdarknet53_out"}[where]


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_unwritable_ckpt_path(tmp_path, data, where, run_script):
    target = _unwritable(data, where)
    line = _error_line(_run(run_script, "train.py", _train_args(data, target), tmp_path, timeout=120))
    assert line.startswith(f"error: ckpt_path={target!r}: cannot ")
    assert ("is a file, not a folder" if where == "under_a_file" else "Permission denied") in line


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_unwritable_eval_outputs(tmp_path, data, trained, where, run_script):
    target = _unwritable(data, where)
    ckpt = os.path.join(trained, "ckpt_0", "0-2_2.ckpt")
    common = [f"--pretrained={ckpt}", f"--data_dir={data / 'val'}", "--per_batch_size=2"]
    line = _error_line(_run(run_script, "eval.py", common + [f"--log_path={target}"], tmp_path, timeout=120))
    assert line.startswith(f"error: log_path={target!r}: cannot ")
    result = os.path.join(target, "r.json")
    line = _error_line(
        _run(
            run_script,
            "eval.py",
            common + [f"--log_path={tmp_path / 'logs'}", f"--result_file={result}"],
            tmp_path,
            timeout=120,
        )
    )
    assert line.startswith(f"error: result_file={result!r}: cannot ")
    assert not (tmp_path / "logs").exists()  # refused before the eval run folder was made


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_unwritable_export_and_predict_outputs(tmp_path, data, trained, where, run_script):
    target = _unwritable(data, where)
    ckpt = os.path.join(trained, "ckpt_0", "0-2_2.ckpt")
    line = _error_line(
        _run(run_script, "export.py", [f"--ckpt_file={ckpt}", f"--file_name={target}/net"], tmp_path, timeout=120)
    )
    assert line.startswith(f"error: file_name='{target}/net.mindir': cannot ")
    image = glob.glob(str(data / "val" / "class0" / "*.jpg"))[0]
    line = _error_line(_run(run_script, "predict.py", [f"--ckpt_file={ckpt}", f"--image_path={image}",
                                           f"--result_file={target}/p.json"], tmp_path, timeout=120))
    assert line.startswith(f"error: result_file='{target}/p.json': cannot ")


def test_export_to_a_full_disk_is_one_error_line_and_leaves_nothing(tmp_path, trained, run_script):
    ckpt = os.path.join(trained, "ckpt_0", "0-2_2.ckpt")
    out = tmp_path / "exported"
    proc = _run(run_script, "export.py", [f"--ckpt_file={ckpt}", f"--file_name={out}/net"], tmp_path,
                preexec_fn=_limit_file_size(200_000))
    line = _error_line(proc)
    assert line.startswith(f"error: cannot write {out / 'net.mindir'} (") and line.endswith("File too large")
    assert not out.exists() or os.listdir(out) == []  # the temporary export folder is gone too


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("extra, message", [
    (["--arch", "cspdarknet53"], "arch 'cspdarknet_tiny' -> 'cspdarknet53'"),
    (["--num_classes", "3"], "num_classes 2 -> 3"),
], ids=["other-arch", "other-num-classes"])
def test_rejected_resume_leaves_the_run_folder_byte_identical(tmp_path, data, trained, extra, message, run_script):
    run = _copy_run(trained, tmp_path / "run")
    before = _tree_digest(run)
    proc = _run(
        run_script,
        "train.py",
        _train_args(data, tmp_path / "unused", "--max_epoch=3", "--resume", run, *extra),
        tmp_path,
    )
    assert message in _error_line(proc)
    assert _tree_digest(run) == before  # config.yaml, class_index.json, run.json, log.txt, metrics.csv ...
    assert not (tmp_path / "unused").exists()


def test_failed_checkpoint_save_keeps_earlier_checkpoints_and_no_temp_file(tmp_path, data, trained, run_script):
    """Disk full while a checkpoint is written (simulated: a file size limit makes the write fail with
    EFBIG inside MindSpore's writer): one error line naming the path and the free space, exit 2, the
    temporary file removed, the earlier checkpoints untouched."""
    run = _copy_run(trained, tmp_path / "run")
    ckpt_dir = os.path.join(run, "ckpt_0")
    before = _tree_digest(ckpt_dir)
    size = os.path.getsize(os.path.join(ckpt_dir, "0-2_2.ckpt"))
    proc = _run(
        run_script,
        "train.py",
        _train_args(data, tmp_path / "unused", "--max_epoch=3", f"--resume={run}"),
        tmp_path,
        preexec_fn=_limit_file_size(size // 2),
    )
    line = _error_line(proc)
    assert line.startswith(f"error: cannot write checkpoint {os.path.join(ckpt_dir, '0-3_2.ckpt')} (")
    assert "MiB free there): [Errno 27] File too large" in line
    assert sorted(os.listdir(ckpt_dir)) == sorted(before)  # no .partial / .tmp file, nothing removed
    assert _tree_digest(ckpt_dir) == before
    with open(os.path.join(run, "log.txt"), encoding="utf-8") as f:
        assert line in f.read()  # the run's log ends with the same line


def _tmpfs(run_script, path, size):
    os.makedirs(path, exist_ok=True)
    proc = run_script.cmd(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], timeout=60)
    return proc.returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="needs root to mount a small tmpfs")
def test_disk_full_on_a_real_small_file_system(tmp_path, data, trained, run_script):
    """The same on a real full disk (ENOSPC): a tmpfs with room for one checkpoint but not two."""
    size = os.path.getsize(os.path.join(trained, "ckpt_0", "0-2_2.ckpt"))
    mnt = tmp_path / "small_disk"
    if not _tmpfs(run_script, mnt, size * 3 // 2 + 256 * 1024):
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        proc = _run(run_script, "train.py", _train_args(data, mnt, "--max_epoch=2"), tmp_path)
        line = _error_line(proc)
        (run,) = glob.glob(str(mnt / "*"))
        ckpt_dir = os.path.join(run, "ckpt_0")
        assert line.startswith(f"error: cannot write checkpoint {os.path.join(ckpt_dir, '0-2_2.ckpt')} (")
        assert "[Errno 28] No space left on device" in line
        assert os.listdir(ckpt_dir) == ["0-1_2.ckpt"]  # the epoch-1 checkpoint kept, no temporary file
        from src.checkpoint import read_state_dict
        assert int(read_state_dict(os.path.join(ckpt_dir, "0-1_2.ckpt"))[0]["epoch"]) == 1
    finally:
        run_script.cmd(["umount", mnt], timeout=60)


KILLED_SAVE = """
import os, resource, signal, sys
import numpy as np
import mindspore as ms
from src.checkpoint import save_checkpoint_atomic
entries = [{{"name": "w%d" % i, "data": ms.Tensor(np.ones((256, 256), np.float32))}} for i in range(8)]
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; by default it kills the process
resource.setrlimit(resource.RLIMIT_FSIZE, (100000, resource.RLIM_INFINITY))  # ... in the middle of the write
save_checkpoint_atomic(entries, os.path.join({folder!r}, "0-2_2.ckpt"))
"""


def _killed_save(run_script, folder):
    """Leaves in ``folder`` exactly what a save killed mid-write leaves: MindSpore's temporary file of ours."""
    proc = run_script(None, ["-c", KILLED_SAVE.format(folder=folder)], timeout=120)
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr
    left = [n for n in os.listdir(folder) if ".partial." in n]
    assert left, os.listdir(folder)
    return left


def test_killed_saves_are_cleaned_up_and_metrics_hold_one_row_per_epoch_after_a_resume(
    tmp_path, data, trained, run_script
):
    """A run killed after epoch 2's metrics row but before its checkpoint was complete: its temporary file
    is removed at the next start (never counted as a checkpoint) and the redone epoch has one row. (Later
    resumes append as this one: tests/e2e/test_train_resume.py.)"""
    from src.checkpoint import checkpoint_files, find_resume_checkpoint

    run = _copy_run(trained, tmp_path / "run")
    ckpt_dir = os.path.join(run, "ckpt_0")
    os.remove(os.path.join(ckpt_dir, "0-2_2.ckpt"))   # epoch 2 metrics written, its checkpoint never finished
    left = _killed_save(run_script, ckpt_dir)
    assert find_resume_checkpoint(run).endswith("0-1_2.ckpt")
    assert not any(".partial." in p for p in checkpoint_files(ckpt_dir))
    proc = _run(run_script, "train.py", _train_args(data, tmp_path / "unused", "--max_epoch=3", f"--resume={run}",
                                                    f"--val_data_dir={data / 'val'}"), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [n for n in os.listdir(ckpt_dir) if n.startswith(".") or n in left]  # removed at the start
    with open(os.path.join(run, "metrics.csv"), newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]  # epoch 2 redone: still one row


# --------------------------------------------------------------------------- eval and predict
def test_eval_folder_with_bad_checkpoints_keeps_the_results_of_the_others(tmp_path, data, trained, run_script):
    """A truncated file, one whose tensors are not CSPDarkNet53's and one that lacks a tensor (it fails only
    when loaded into the network, after others were scored): the good one is scored and its result
    written; then one error line names the three, exit 2."""
    import mindspore as ms

    from src.checkpoint import read_state_dict

    folder = tmp_path / "ckpts"
    folder.mkdir()
    good = os.path.join(trained, "ckpt_0", "0-2_2.ckpt")
    shutil.copy(good, folder / "b_good.ckpt")
    with open(good, "rb") as f:
        (folder / "c_truncated.ckpt").write_bytes(f.read()[:30000])
    ms.save_checkpoint([{"name": "foo", "data": ms.Tensor(np.ones(3, np.float32))}], str(folder / "a_foreign.ckpt"))
    arrays, meta = read_state_dict(good)
    dropped = next(n for n in arrays if n.endswith("bn.gamma") and not n.startswith(("moments.", "ema.")))
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(a)} for n, a in arrays.items() if n != dropped],
                       str(folder / "d_incomplete.ckpt"), append_dict={"arch": meta["arch"]})
    proc = _run(run_script, "eval.py", [f"--pretrained={folder}", f"--data_dir={data / 'val'}", "--per_batch_size=2",
                            f"--log_path={tmp_path / 'logs'}"], tmp_path)
    line = _error_line(proc)
    assert "3 of 4 checkpoints could not be read or loaded and were not scored" in line
    assert "a_foreign.ckpt: no CSPDarkNet53 weights found" in line and "c_truncated.ckpt: cannot be read" in line
    assert "d_incomplete.ckpt (own layout) does not fit arch 'cspdarknet_tiny': 1 network parameters missing" in line
    (result,) = glob.glob(str(tmp_path / "logs" / "*" / "eval_result.json"))
    with open(result) as f:
        result = json.load(f)
    assert [r["checkpoint"] for r in result["results"]] == [str(folder / "b_good.ckpt")]
    assert result["results"][0]["images"] == 4
    assert sorted(os.path.basename(u["checkpoint"]) for u in result["unreadable"]) == [
        "a_foreign.ckpt", "c_truncated.ckpt", "d_incomplete.ckpt"]


def test_eval_of_a_checkpoint_without_cspdarknet53_weights_leaves_no_run_folder(tmp_path, data, run_script):
    import mindspore as ms

    ckpt = tmp_path / "foreign.ckpt"
    ms.save_checkpoint([{"name": "foo", "data": ms.Tensor(np.ones(3, np.float32))}], str(ckpt))
    line = _error_line(_run(run_script, "eval.py", [f"--pretrained={ckpt}", f"--data_dir={data / 'val'}",
                                        f"--log_path={tmp_path / 'logs'}"], tmp_path, timeout=120))
    assert line.startswith(f"error: {ckpt}: no CSPDarkNet53 weights found (first keys: foo)")
    assert not (tmp_path / "logs").exists()


def test_eval_checkpoint_that_does_not_fit_the_asked_network_leaves_no_run_folder(tmp_path, data, trained, run_script):
    ckpt = os.path.join(trained, "ckpt_0", "0-2_2.ckpt")
    line = _error_line(
        _run(
            run_script,
            "eval.py",
            [
                f"--pretrained={ckpt}",
                f"--data_dir={data / 'val'}",
                "--arch=cspdarknet53",
                f"--log_path={tmp_path / 'logs'}",
            ],
            tmp_path,
            timeout=120,
        )
    )
    assert "holds weights for arch 'cspdarknet_tiny' but --arch=cspdarknet53" in line
    assert not (tmp_path / "logs").exists()


def test_predict_with_only_unusable_images_names_the_users_files(tmp_path, trained, run_script):
    ckpt = os.path.join(trained, "ckpt_0", "0-2_2.ckpt")
    images = tmp_path / "photos"
    images.mkdir()
    (images / "a.jpg").write_text("not an image")
    (images / "b.png").write_bytes(os.urandom(64))
    line = _error_line(
        _run(run_script, "predict.py", [f"--ckpt_file={ckpt}", f"--image_path={images}"], tmp_path, timeout=120)
    )
    assert f"image_path={str(images)!r}: none of its 2 file(s) is a readable image" in line
    assert str(images / "a.jpg") in line and str(images / "b.png") in line
    assert "predict_list" not in line  # not the internal temporary list


# --------------------------------------------------------------------------- postprocess, label tool
def _post_inputs(tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    np.array([[0.1, 0.9]], np.float32).tofile(res / "a_0.bin")
    (tmp_path / "labels.json").write_text(json.dumps({"a.JPEG": 1}))
    (tmp_path / "latin1.json").write_bytes('{"caf\xe9.JPEG": 1}'.encode("latin-1"))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "a_file").write_text("x")
    return res


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: --result_path, --label_path"),
    (["--result_path={res}", "--label_path={tmp}/labels.json", "--num_classes=abc"], "--num_classes: invalid int"),
    (["--result_path={res}", "--label_path={tmp}/labels.json", "--dtype=float64"], "--dtype: invalid choice"),
    (["--result_path={res}", "--label_path={tmp}/labels.json", "--num_classes=-1"], "--num_classes must be >= 0"),
    (["--result_path={tmp}/a_file", "--label_path={tmp}/labels.json"], "is a file; expected the folder"),
    (["--result_path={tmp}/missing", "--label_path={tmp}/labels.json"], "result folder not found"),
    (["--result_path={res}", "--label_path={tmp}"], "is a folder; expected the label JSON file"),
    (["--result_path={res}", "--label_path={tmp}/latin1.json"], "cannot read label file"),
    (["--result_path={res}", "--label_path={tmp}/list.json"], "expected a JSON object"),
    (["--result_path={res}", "--label_path={tmp}/labels.json", "--num_classes=3"], "fits neither float16 nor"),
], ids=["no-args", "classes-text", "dtype", "classes-negative", "result-is-file", "result-missing", "label-is-dir",
        "label-not-utf8", "label-list", "wrong-classes"])
def test_postprocess_errors_are_one_line(tmp_path, args, message, run_script):
    res = _post_inputs(tmp_path)
    args = [a.format(res=res, tmp=tmp_path) for a in args]
    assert message in _error_line(_run(run_script, "postprocess.py", args, tmp_path, timeout=60))


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: --img_path"),
    (["--img_path={tmp}/missing", "--output={tmp}/l.json"], "image folder not found"),
    (["--img_path={tmp}/a_file", "--output={tmp}/l.json"], "not a folder"),
    (["--img_path={tmp}/imgs", "--output={tmp}/a_file/l.json"], "is a file, not a folder"),
    (["--img_path={tmp}/imgs", "--output={tmp}"], "is a folder; expected a file name"),
    (["--img_path={tmp}/imgs", "--output=/sys/cspdarknet53/l.json"], "cannot write in /sys: Permission denied"),
    (["--img_path={tmp}/dup", "--output={tmp}/l.json"], "is in two class folders"),
    (["--img_path={tmp}/imgs", "--bogus"], "unrecognized arguments: --bogus"),
], ids=["no-args", "missing", "file", "output-under-file", "output-is-dir", "output-read-only", "duplicate",
        "unknown-flag"])
def test_label_tool_errors_are_one_line(tmp_path, args, message, run_script):
    (tmp_path / "a_file").write_text("x")
    for folder in ("imgs/c0", "dup/c0", "dup/c1"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("imgs/c0/x.JPEG", "dup/c0/y.JPEG", "dup/c1/y.JPEG"):
        (tmp_path / name).write_text("x")
    args = [a.format(tmp=tmp_path) for a in args]
    assert message in _error_line(_run(run_script, "create_imagenet2012_label.py", args, tmp_path, timeout=60))
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_label_tool_takes_file_names_that_are_not_utf8(tmp_path, run_script):
    folder = os.path.join(os.fsencode(str(tmp_path)), b"imgs", b"c0")
    os.makedirs(folder)
    for name in (b"caf\xe9.JPEG", b"caf\xe9.png"):  # and they clash: a warning names them
        with open(os.path.join(folder, name), "w") as f:
            f.write("x")
    proc = _run(
        run_script,
        "create_imagenet2012_label.py",
        [f"--img_path={tmp_path / 'imgs'}", f"--output={tmp_path / 'l.json'}"],
        tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "differ only in their extension" in proc.stderr
    with open(tmp_path / "l.json") as f:
        assert len(json.load(f)) == 2


# --------------------------------------------------------------------------- launch scripts
RECORDING_PYTHON = """#!/bin/bash
# stands in for python: the launchers' own checks (python - / python -c) run for real, train.py / eval.py
# only record their arguments, one per line
if [ "$1" = - ] || [ "$1" = -c ]; then exec {python} "$@"; fi
printf '%s\\n' "$@" > {record}
echo "recorded $# arguments"
"""


def _recording_python(tmp_path):
    record = tmp_path / "argv.txt"
    fake = tmp_path / "fake_python"
    fake.write_text(RECORDING_PYTHON.format(python=sys.executable, record=record))
    fake.chmod(0o755)
    return fake, record


def _bash(run_script, args, cwd, **env):
    return run_script.cmd(["bash", *args], cwd=cwd, env=dict(env, GLOG_v=None), timeout=300)


needs_bash = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("bash") is None,
                                reason="the launch scripts need Linux and bash")


@needs_bash
@pytest.mark.parametrize("launcher", ["standalone", "eval", "msrun"])
def test_launchers_forward_both_flag_styles_and_values_with_spaces(tmp_path, data, trained, launcher, run_script):
    fake, record = _recording_python(tmp_path)
    spaced = tmp_path / "my val data"
    shutil.copytree(data / "val", spaced)
    flags = ["--image_size", "32,32", "--max_epoch=1", "--lr", "0.001", "--val_data_dir", spaced, "--ema",
             "--fp16_head", "0", "--log_interval", "3"]
    out = tmp_path / "out"
    if launcher == "standalone":
        args = [os.path.join(SCRIPTS, "run_standalone_train.sh"), "0", data / "train", *flags]
    elif launcher == "eval":
        args = [os.path.join(SCRIPTS, "run_eval.sh"), "0", data / "val", os.path.join(trained, "ckpt_0"), *flags]
    else:
        msrun = tmp_path / "fake_msrun"
        msrun.write_text(f"#!/bin/bash\nprintf '%s\\n' \"$@\" > {record}\n")
        msrun.chmod(0o755)
        args = [os.path.join(SCRIPTS, "run_distribute_train_msrun.sh"), "2", data / "train", "CPU", *flags]
    proc = _bash(
        run_script, args, tmp_path, PYTHON=fake, OUTPUT_ROOT=out, **({"MSRUN": msrun} if launcher == "msrun" else {})
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    argv = record.read_text().splitlines()
    for flag in ("--image_size=32,32", "--max_epoch=1", "--lr=0.001", f"--val_data_dir={spaced}", "--ema",
                 "--fp16_head=0", "--log_interval=3"):
        assert flag in argv, (flag, argv)  # one argument each, the space kept
    assert argv.index("--ema") + 1 == argv.index("--fp16_head=0")  # a bare switch stays a switch


@needs_bash
@pytest.mark.parametrize("args, message", [
    (["run_standalone_train.sh", "0", "{train}", "--lr", "-1"], "error: --lr: must be >= 0, got '-1'"),
    (["run_distribute_train_msrun.sh", "2", "{train}", "CPU", "--image_size", "0,0"], "error: --image_size: must be"),
    (["run_eval.sh", "0", "{val}", "{ckpt}", "--per_batch_size=0"], "error: --per_batch_size: must be >= 1"),
    (["run_standalone_train.sh", "0", "{train}", "--max_epoch", "1", "oops"], "error: extra arguments must be"),
], ids=["train-value", "msrun-value", "eval-value", "stray-word"])
def test_launchers_refuse_bad_flags_before_a_run_folder(tmp_path, data, trained, args, message, run_script):
    out = tmp_path / "out"
    args = [a.format(train=data / "train", val=data / "val", ckpt=os.path.join(trained, "ckpt_0")) for a in args]
    proc = _bash(
        run_script, [os.path.join(SCRIPTS, args[0])] + args[1:], tmp_path, PYTHON=sys.executable, OUTPUT_ROOT=out
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(message), proc.stderr
    if "extra" in message:
        assert "Usage: bash scripts/run_standalone_train.sh" in proc.stderr  # a wrong command line: the usage too
    else:
        assert len(lines) == 1  # the job's own message, as train.py / eval.py print it
    assert not out.exists()


@needs_bash
def test_launcher_removes_the_run_folder_of_a_job_that_refused_its_input(tmp_path, data, run_script):
    out = tmp_path / "out"
    proc = _bash(
        run_script,
        [os.path.join(SCRIPTS, "run_standalone_train.sh"), "0", data / "no_images", *TRAIN_FLAGS],
        tmp_path,
        PYTHON=sys.executable,
        OUTPUT_ROOT=out,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: dataset folder has no image files: {data / 'no_images'} "
                                                "(looked for .jpg, .jpeg, .jpe, .jfif, .png, .bmp, ... in its class "
                                                "folders)"]
    assert not out.exists() or not os.listdir(out)


@needs_bash
@pytest.mark.parametrize("script, args, message", [
    ("run_standalone_train.sh", [], "error: expected at least 2 arguments, got 0"),
    ("run_eval.sh", ["0", "{val}", "{missing}"], "error: PATH_CHECKPOINT not found"),
    ("run_distribute_train_msrun.sh", ["0", "{train}", "CPU"], "error: DEVICE_NUM must be an integer in 1..4096"),
    ("run_distribute_train.sh", ["{missing}", "{train}"], "error: RANK_TABLE_FILE not found"),
    ("run_infer_310.sh", [], "error: expected 2 or 3 arguments, got 0"),
    ("run_infer_310.sh", ["{missing}", "{val}"], "error: model file not found"),
])
def test_launcher_usage_errors_exit_2(tmp_path, data, script, args, message, run_script):
    args = [a.format(train=data / "train", val=data / "val", missing=tmp_path / "missing") for a in args]
    proc = _bash(
        run_script, [os.path.join(SCRIPTS, script)] + args, tmp_path, PYTHON=sys.executable, OUTPUT_ROOT=tmp_path / "o"
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    first, *rest = proc.stderr.splitlines()
    assert first.startswith(message) and "Usage: bash" in proc.stderr, proc.stderr
    assert not any(line.startswith("error:") for line in rest)
