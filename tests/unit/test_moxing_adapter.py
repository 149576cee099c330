"""Tests of the ModelArts adapter with a fake `moxing` module (no MindSpore, no ModelArts)."""

import os
import sys
import threading
import time
import types
import uuid
import zipfile

import pytest

from model_utils import moxing_adapter
from src.config import ConfigError, load_config
from model_utils.moxing_adapter import (ModelArtsError, localize_paths, modelarts_unzip, run_on_modelarts,
                                        sync_data)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Fresh lock dir and job id, device 0 of 1, fast polling."""
    monkeypatch.setattr(moxing_adapter, "LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr(moxing_adapter, "POLL_INTERVAL", 0.02)
    monkeypatch.setenv("JOB_ID", "test-" + uuid.uuid4().hex)
    monkeypatch.setenv("DEVICE_ID", "0")
    monkeypatch.setenv("RANK_SIZE", "1")
    monkeypatch.setenv("RANK_ID", "0")
    return tmp_path


@pytest.fixture
def fake_moxing(monkeypatch):
    """Inject a fake `moxing` whose file.copy_parallel records its calls (and creates the target)."""
    calls = []

    def copy_parallel(src, dst):
        calls.append((src, dst))
        if not dst.startswith("obs://"):
            os.makedirs(dst, exist_ok=True)

    mod = types.ModuleType("moxing")
    mod.file = types.SimpleNamespace(copy_parallel=copy_parallel)
    monkeypatch.setitem(sys.modules, "moxing", mod)
    return calls


def _modelarts_config(tmp_path, *extra):
    return load_config([
        "--enable_modelarts=true",
        "--data_url=obs://bucket/data", "--checkpoint_url=obs://bucket/ckpt",
        "--train_url=obs://bucket/out",
        "--data_path=%s" % (tmp_path / "data"), "--load_path=%s" % (tmp_path / "ckpt"),
        "--output_path=%s" % (tmp_path / "out"), *extra])


# --------------------------------------------------------------------------- run_on_modelarts
def test_wrapper_syncs_localizes_runs_and_uploads(env, fake_moxing):
    cfg = _modelarts_config(env, "--need_modelarts_dataset_unzip=false", "--data_dir=train", "--pretrained=w.ckpt",
                            "--ckpt_path=outputs/", "--file_name=/abs/model")
    seen = []

    def job(c):
        seen.append((len(fake_moxing), c))
        assert os.path.isdir(c.modelarts.output_path)
        return 42

    assert run_on_modelarts(cfg, job) == 42
    assert fake_moxing == [
        ("obs://bucket/data", str(env / "data")),
        ("obs://bucket/ckpt", str(env / "ckpt")),
        ("obs://bucket/out", str(env / "out")),
        (str(env / "out"), "obs://bucket/out"),
    ]
    (downloads, local), = seen
    assert downloads == 3  # the three downloads before the job, the upload after
    # one rule for every script: data keys in the dataset, weights in load_path, outputs in output_path
    assert local.data.data_dir == str(env / "data" / "train")
    assert local.weights.pretrained == str(env / "ckpt" / "w.ckpt")
    assert local.train.ckpt_path == str(env / "out" / "outputs") + "/"
    assert local.eval.log_path == str(env / "out" / "outputs") + "/"
    assert local.export.file_name == "/abs/model"  # absolute paths stay
    assert cfg.data.data_dir == "train"              # the caller's config is not changed


def test_localize_paths_empty_data_dir_is_the_dataset_root(env):
    cfg = _modelarts_config(env)
    local = localize_paths(cfg, str(env / "data" / "ImageNet"))
    assert local.data.data_dir == str(env / "data" / "ImageNet") and local.is_explicit("data_dir")
    assert localize_paths(cfg, None).data.data_dir == ""  # export/predict: no dataset


def test_wrapper_skips_unset_urls(env, fake_moxing):
    cfg = load_config(["--enable_modelarts", "--data_url=obs://b/d", "--need_modelarts_dataset_unzip=false",
                       "--data_path=%s" % (env / "d"), "--output_path=%s" % (env / "o")])
    run_on_modelarts(cfg, lambda c: None)
    assert fake_moxing == [("obs://b/d", str(env / "d"))]   # no train_url: nothing uploaded


def test_wrapper_uploads_after_failure_and_reraises(env, fake_moxing):
    cfg = _modelarts_config(env, "--need_modelarts_dataset_unzip=false")

    def job(c):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_on_modelarts(cfg, job)
    assert fake_moxing[-1] == (str(env / "out"), "obs://bucket/out")


def test_wrapper_without_moxing_gives_clear_error(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "moxing", None)   # `import moxing` raises ImportError
    cfg = _modelarts_config(env)
    ran = []
    with pytest.raises(ConfigError) as e:
        run_on_modelarts(cfg, lambda c: ran.append(1))
    assert "moxing" in str(e.value) and "ModelArts" in str(e.value)
    assert "enable_modelarts" in str(e.value)
    assert ran == []


# --------------------------------------------------------------------------- sync_data
def test_sync_data_copies_once_per_server(env, fake_moxing):
    assert sync_data("obs://b/x", str(env / "x"), device_id=0, device_num=8) is True
    # the other devices of the server find the lock and do not copy
    assert sync_data("obs://b/x", str(env / "x"), device_id=3, device_num=8) is False
    assert fake_moxing == [("obs://b/x", str(env / "x"))]
    # device 8 of a 16-device job is the first device of the second server
    assert moxing_adapter.is_server_leader(8, 16) and not moxing_adapter.is_server_leader(9, 16)
    assert moxing_adapter.is_server_leader(2, 2) and not moxing_adapter.is_server_leader(1, 2)


def test_waiter_times_out(env, fake_moxing):
    with pytest.raises(ModelArtsError, match="timed out"):
        sync_data("obs://b/y", str(env / "y"), device_id=1, device_num=8, timeout=0.1)
    assert fake_moxing == []


# --------------------------------------------------------------------------- unzip
def _make_zip(path, root="ImageNet"):
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(25):
            zf.writestr("%s/train/class_%d/img_%d.txt" % (root, i % 3, i), "x%d" % i)
    return str(path)


def test_unzip_once(env, monkeypatch):
    zip_path = _make_zip(env / "ImageNet.zip")
    dest = env / "data"
    logs = []
    extracted = []
    real_extract = moxing_adapter._extract
    monkeypatch.setattr(moxing_adapter, "_extract",
                        lambda *a: extracted.append(a[0]) or real_extract(*a))

    target = modelarts_unzip(zip_path, dest, device_id=0, device_num=8, log=logs.append)
    assert target == str(dest / "ImageNet")
    assert os.path.isfile(dest / "ImageNet" / "train" / "class_1" / "img_1.txt")
    assert any("100%" in m for m in logs)
    # again (same job): leader and the other devices see the lock, nothing is extracted again
    assert modelarts_unzip(zip_path, dest, device_id=0, device_num=8, log=logs.append) == target
    assert modelarts_unzip(zip_path, dest, device_id=5, device_num=8, log=logs.append) == target
    assert extracted == [zip_path]


def test_unzip_skips_existing_folder(env):
    dest = env / "data"
    (dest / "ImageNet").mkdir(parents=True)
    logs = []
    # no zip at all: the folder is already there, so this is fine
    assert modelarts_unzip(dest / "ImageNet.zip", dest, device_id=0, device_num=1,
                           log=logs.append) == str(dest / "ImageNet")
    assert any("already exists" in m for m in logs)


def test_waiters_wait_for_the_leader(env, monkeypatch):
    """The leader's extraction is held on an Event the test releases. The waiter (device 1) must look at the
    lock file again and again and keep waiting while the leader is held, and return only after the
    leader's extraction finished, with the files in place."""
    zip_path = _make_zip(env / "ImageNet.zip")
    dest = env / "data"
    extracting, release = threading.Event(), threading.Event()
    events, results = [], {}
    polls = []  # one entry per poll of a waiting process (moxing_adapter sleeps between two looks)
    real_extract = moxing_adapter._extract

    def held_extract(*args):
        extracting.set()
        assert release.wait(60), "the test never released the leader"
        real_extract(*args)
        events.append("leader extracted")

    def counting_sleep(seconds):
        polls.append(threading.current_thread().name)
        time.sleep(seconds)

    monkeypatch.setattr(moxing_adapter, "_extract", held_extract)
    monkeypatch.setattr(moxing_adapter, "time", types.SimpleNamespace(
        monotonic=time.monotonic, time=time.time, sleep=counting_sleep))

    def device(device_id):
        try:
            results[device_id] = modelarts_unzip(zip_path, dest, device_id=device_id, device_num=8, timeout=120,
                                                 log=lambda m: None)
            files = dest / "ImageNet" / "train" / "class_1" / "img_1.txt"
            results[f"{device_id} saw the files"] = os.path.isfile(files)
        except Exception as e:  # pylint: disable=broad-except
            results[device_id] = e
        events.append(f"device {device_id} returned")

    leader = threading.Thread(target=device, args=(0,), name="leader")
    waiter = threading.Thread(target=device, args=(1,), name="waiter")
    leader.start()
    try:
        assert extracting.wait(60), "the leader never started extracting"
        waiter.start()
        while polls.count("waiter") < 5:      # five looks at the lock file, the leader still held
            assert waiter.is_alive(), f"the waiter returned while the leader was still extracting: {results}"
            time.sleep(0.01)
        assert waiter.is_alive() and events == []
    finally:
        release.set()
        leader.join(60)
        waiter.join(60)
    assert not leader.is_alive() and not waiter.is_alive()
    assert results[0] == results[1] == str(dest / "ImageNet"), results
    assert events == ["leader extracted", "device 0 returned", "device 1 returned"] or \
        events == ["leader extracted", "device 1 returned", "device 0 returned"], events
    assert results["1 saw the files"]


def test_leader_failure_reaches_waiters(env):
    missing = env / "Missing.zip"
    with pytest.raises(ConfigError, match="Missing.zip"):
        modelarts_unzip(missing, env / "data", device_id=0, device_num=8)
    with pytest.raises(ModelArtsError, match="Missing.zip"):
        modelarts_unzip(missing, env / "data", device_id=1, device_num=8, timeout=5)


def test_bad_zip_is_a_clear_error(env):
    bad = env / "ImageNet.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a valid zip"):
        modelarts_unzip(bad, env / "data", device_id=0, device_num=1)


def test_the_wrapper_unzips_the_configured_dataset(env, fake_moxing):
    _make_zip(env / "ImageNet.zip")
    seen = []
    run_on_modelarts(load_config(["--data_path=%s" % env, "--output_path=%s" % (env / "o")]), seen.append)
    run_on_modelarts(load_config(["--data_path=%s" % env, "--output_path=%s" % (env / "o"),
                                  "--need_modelarts_dataset_unzip=false"]), seen.append)
    run_on_modelarts(load_config(["--data_path=%s" % env, "--output_path=%s" % (env / "o")]), seen.append,
                     uses_data=False)
    assert [c.data.data_dir for c in seen] == [str(env / "ImageNet"), str(env), ""]
    assert os.path.isdir(env / "ImageNet" / "train")


# --------------------------------------------------------------------------- ids and adapters
def test_job_id(monkeypatch):
    monkeypatch.delenv("JOB_ID", raising=False)
    assert moxing_adapter.get_job_id() == "default"
    monkeypatch.setenv("JOB_ID", "")
    assert moxing_adapter.get_job_id() == "default"
    monkeypatch.setenv("JOB_ID", "job-42")
    assert moxing_adapter.get_job_id() == "job-42"


def test_server_leader_from_the_launcher_variables(monkeypatch):
    for name in ("DEVICE_ID", "RANK_SIZE", "RANK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert moxing_adapter.is_server_leader()  # device 0 of 1
    monkeypatch.setenv("RANK_SIZE", "16")
    for device, leader in (("3", False), ("8", True), ("0", True)):
        monkeypatch.setenv("DEVICE_ID", device)
        assert moxing_adapter.is_server_leader() is leader
    monkeypatch.setenv("RANK_SIZE", "eight")
    with pytest.raises(ConfigError, match="RANK_SIZE"):
        moxing_adapter.is_server_leader()
