"""src.utils.run_folder: run names from the environment, atomic claims, the per-rank lock."""
import os
import threading

import pytest

from src.errors import ConfigError
from src.utils import run_folder
from src.utils.run_folder import RUN_NAME_ENV, RunLock, check_not_locked, claim_run_dir, new_run_dir, run_name_from_env


@pytest.mark.parametrize("name", ["..", ".", "../escape", "a/b", "/abs", " padded", "x\0y"])
def test_a_run_name_is_one_folder_name(name):
    with pytest.raises(ConfigError, match=RUN_NAME_ENV):
        run_name_from_env({RUN_NAME_ENV: name})


def test_run_name_from_env_accepts_plain_names_and_unset():
    assert run_name_from_env({RUN_NAME_ENV: "job_2026-01-01"}) == "job_2026-01-01"
    assert run_name_from_env({}) is None and run_name_from_env({RUN_NAME_ENV: ""}) is None


def test_a_leftover_name_never_reuses_a_finished_run(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_NAME_ENV, "shared")
    first = new_run_dir(tmp_path, token="job-a")
    assert first == str(tmp_path / "shared")
    (tmp_path / "shared" / "config.yaml").write_text("x: 1\n")
    assert new_run_dir(tmp_path, token="job-a") == first  # another rank of the same job joins
    with pytest.raises(ConfigError, match="already holds another run.*unset CSPDARKNET53_RUN_NAME"):
        new_run_dir(tmp_path, token="job-b")  # a later job with the name left in its environment
    assert (tmp_path / "shared" / "config.yaml").read_text() == "x: 1\n"


def test_a_folder_with_an_older_runs_outputs_counts_as_claimed(tmp_path):
    for marker in ("config.yaml", "run.json", "metrics.csv", "ckpt_0"):
        folder = tmp_path / marker.replace(".", "_")
        folder.mkdir()
        (folder / marker).mkdir() if marker == "ckpt_0" else (folder / marker).write_text("")
        with pytest.raises(ConfigError, match="already holds another run"):
            claim_run_dir(str(folder), "job")
    launcher_made = tmp_path / "fresh"
    launcher_made.mkdir()
    (launcher_made / "msrun.log").write_text("")  # what the launch scripts put there before the job
    assert claim_run_dir(str(launcher_made), "job") == str(launcher_made)


def test_new_run_folders_are_never_shared(tmp_path, monkeypatch):
    """Sixteen claims at once (one second, one timestamp): sixteen folders, each claimed by its own token."""
    monkeypatch.delenv(RUN_NAME_ENV, raising=False)
    got, barrier = {}, threading.Barrier(16)

    def claim(i):
        barrier.wait()
        got[i] = new_run_dir(tmp_path, token=f"job-{i}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got.values())) == 16
    for i, path in got.items():
        assert open(os.path.join(path, run_folder.CLAIM_FILE)).read().strip() == f"job-{i}"


def test_concurrent_claims_of_one_name_let_exactly_one_job_in(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_NAME_ENV, "same")
    results, barrier = [], threading.Barrier(8)

    def claim(i):
        barrier.wait()
        try:
            results.append(new_run_dir(tmp_path, token=f"job-{i}"))
        except ConfigError:
            results.append(None)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert not [n for n in os.listdir(tmp_path / "same") if n.endswith(".tmp")]


def test_the_lock_refuses_a_second_holder_with_the_first_ones_pid(tmp_path):
    first = RunLock(str(tmp_path), rank=0).acquire()
    try:
        with pytest.raises(ConfigError, match=f"process {os.getpid()} is training into it"):
            RunLock(str(tmp_path), rank=0).acquire()  # flock: a second open file description conflicts
        with pytest.raises(ConfigError, match=f"process {os.getpid()}"):
            check_not_locked(str(tmp_path), 0)
        with RunLock(str(tmp_path), rank=1):  # another rank of the same job has its own lock
            pass
    finally:
        first.release()
    with RunLock(str(tmp_path), rank=0):  # released: free again
        pass


def test_checking_the_lock_creates_nothing(tmp_path):
    check_not_locked(str(tmp_path), 0)
    assert os.listdir(tmp_path) == []


def test_the_early_check_of_the_run_name_creates_nothing(tmp_path, monkeypatch):
    from src.utils.run_folder import check_run_name

    monkeypatch.setenv(RUN_NAME_ENV, "done")
    check_run_name(tmp_path)  # no such folder yet: fine, and still none
    assert os.listdir(tmp_path) == []
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "run.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds another run"):
        check_run_name(tmp_path)
    check_run_name(tmp_path, single=False)  # a distributed job's ranks decide when they claim it
    monkeypatch.setenv(RUN_NAME_ENV, "../up")
    with pytest.raises(ConfigError, match="one folder name"):
        check_run_name(tmp_path)
