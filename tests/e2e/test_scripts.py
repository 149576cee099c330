"""The launch scripts (scripts/*.sh): argument checks with the usage message, the rank-table launcher's
launches (dry run) and its stop-all on a failed rank (with a stand-in interpreter, no Ascend needed), the
msrun launcher's command line, and a real 1-epoch standalone training plus eval from another directory."""
import json
import os
import shutil
import sys
import uuid

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPTS = os.path.join(REPO, "scripts")
STANDALONE = os.path.join(SCRIPTS, "run_standalone_train.sh")
EVAL = os.path.join(SCRIPTS, "run_eval.sh")
RANK_TABLE = os.path.join(SCRIPTS, "run_distribute_train.sh")
MSRUN = os.path.join(SCRIPTS, "run_distribute_train_msrun.sh")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("bash") is None,
                                reason="the launch scripts need Linux and bash")


def _run(run_script, args, cwd, timeout=60, **env):
    """``bash args`` with this interpreter as the launchers' PYTHON (``env`` wins)."""
    return run_script.cmd(["bash", *args], cwd=cwd, env={"PYTHON": sys.executable, **env}, timeout=timeout)


def _rank_table(path, servers, **top):
    """servers: [(server_id, [(device_id, rank_id), ...])] -> a version 1.0 HCCL rank table."""
    table = {"version": "1.0", "server_count": str(len(servers)), "status": "completed",
             "server_list": [{"server_id": sid, "host_nic_ip": "reserve",
                              "device": [{"device_id": str(d), "device_ip": f"192.98.{i}.{d}", "rank_id": str(r)}
                                         for d, r in devs]}
                             for i, (sid, devs) in enumerate(servers)]}
    table.update(top)
    path.write_text(json.dumps(table))
    return path


@pytest.fixture(scope="module")
def tiny_data(make_tiny_data):
    return make_tiny_data(classes=2, per_class=4, size=36, seed=1)


# --------------------------------------------------------------------------- argument errors
def _assert_usage_error(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Usage: bash scripts/" in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.mark.parametrize("script, args", [
    (STANDALONE, []), (STANDALONE, ["0"]), (EVAL, ["0", "DATA"]), (RANK_TABLE, ["TABLE"]),
    (MSRUN, ["2", "DATA"]),
])
def test_too_few_arguments(tmp_path, script, args, run_script):
    args = [str(tmp_path) if a in ("DATA", "TABLE") else a for a in args]
    _assert_usage_error(_run(run_script, [script, *args], tmp_path), "expected")


def test_missing_data_dir(tmp_path, run_script):
    table = _rank_table(tmp_path / "rt.json", [("10.0.0.1", [(0, 0), (1, 1)])])
    missing = str(tmp_path / "no_such_dir")
    ckpt = tmp_path / "x.ckpt"
    ckpt.write_bytes(b"")
    for args in ([STANDALONE, "0", missing], [EVAL, "0", missing, str(ckpt)], [RANK_TABLE, str(table), missing],
                 [MSRUN, "2", missing, "CPU"]):
        _assert_usage_error(_run(run_script, args, tmp_path), "DATA_DIR is not a folder", missing)


def test_other_argument_errors(tmp_path, tiny_data, run_script):
    data = str(tiny_data)
    for bad in ("x", "-1", "4096", "99999999999999999999"):
        _assert_usage_error(_run(run_script, [STANDALONE, bad, data], tmp_path),
                            "DEVICE_ID must be an integer in 0..4095", f"'{bad}'")
        _assert_usage_error(
            _run(run_script, [EVAL, bad, data, data], tmp_path), "DEVICE_ID must be an integer in 0..4095"
        )
    _assert_usage_error(
        _run(run_script, [STANDALONE, "0", data, str(tmp_path / "none.ckpt")], tmp_path), "PATH_CHECKPOINT not found"
    )
    _assert_usage_error(_run(run_script, [STANDALONE, "0", data, "max_epoch=1"], tmp_path), "PATH_CHECKPOINT not found")
    _assert_usage_error(
        _run(run_script, [STANDALONE, "0", data, "--max_epoch=1", "oops"], tmp_path), "--key=value flags", "'oops'"
    )
    _assert_usage_error(
        _run(run_script, [EVAL, "0", data, str(tmp_path / "none.ckpt")], tmp_path), "PATH_CHECKPOINT not found"
    )
    # msrun launcher: device count, target, multi-node settings
    for bad in ("0", "two", "-1", "4097", "99999999999999999999"):
        _assert_usage_error(
            _run(run_script, [MSRUN, bad, data, "CPU"], tmp_path), "DEVICE_NUM must be an integer in 1..4096"
        )
    _assert_usage_error(_run(run_script, [MSRUN, "2", data, "CPU"], tmp_path, NODE_NUM="99999999999999999999"),
                        "NODE_NUM must be an integer in 1..4096")
    _assert_usage_error(
        _run(run_script, [MSRUN, "4096", data, "CPU"], tmp_path, NODE_NUM="17", NODE_RANK="0", MASTER_ADDR="10.0.0.1"),
        "at most 65536 workers",
    )
    for port in ("0", "65536", "http"):
        _assert_usage_error(
            _run(run_script, [MSRUN, "2", data, "CPU"], tmp_path, MASTER_PORT=port), "MASTER_PORT must be a port"
        )
    _assert_usage_error(
        _run(run_script, [MSRUN, "2", data, "CPU"], tmp_path, EXIT_GRACE_S="1" + "0" * 30), "EXIT_GRACE_S"
    )
    _assert_usage_error(
        _run(run_script, [MSRUN, "2", data, "TPU"], tmp_path), "DEVICE_TARGET must be GPU, CPU or Ascend"
    )
    _assert_usage_error(
        _run(run_script, [MSRUN, "2", data, "CPU"], tmp_path, NODE_NUM=2, NODE_RANK=0), "set MASTER_ADDR"
    )
    _assert_usage_error(
        _run(run_script, [MSRUN, "2", data, "CPU"], tmp_path, NODE_NUM=2, NODE_RANK=2, MASTER_ADDR="10.0.0.1"),
        "NODE_RANK must be in 0..1",
    )
    assert not (tmp_path / "outputs").exists()  # nothing is created for a refused command line


@pytest.mark.parametrize("content, message", [
    (None, "RANK_TABLE_FILE not found"),
    ("{not json", "cannot be parsed as JSON"),
    ('["a list"]', "is not a JSON object"),
    ('{"version": "1.0"}', "lists no devices"),
    ('{"version": "1.0", "server_count": "1", "server_list": [{"server_id": "a", "device": []}]}', "lists no devices"),
    ('{"version": "1.0", "server_count": "2", "server_list": [{"server_id": "a", "device": '
     '[{"device_id": "0", "rank_id": "0"}]}]}', "server_count is 2 but server_list has 1"),
    ('{"server_list": [{"server_id": "a", "device": [{"device_id": "0", "rank_id": "0"}, '
     '{"device_id": "1", "rank_id": "2"}]}]}', "rank_id values must be 0..1"),
    ('{"server_list": [{"server_id": "a", "device": [{"device_id": "0", "rank_id": "0"}, '
     '{"device_id": "0", "rank_id": "1"}]}]}', "lists a device_id twice"),
    ('{"server_list": [{"server_id": "a", "device": [{"device_id": "x", "rank_id": "0"}]}]}',
     "integer rank_id and device_id"),
    # numbers out of range or not whole: one error line, never a traceback or a silently truncated id
    *[('{"server_list": [{"server_id": "a", "device": [{"device_id": %s, "rank_id": "0"}]}]}' % device, message)
      for device, message in (("1e999", "got device_id Infinity"), ('"-1"', 'got device_id "-1"'),
                              ("2.7", "got device_id 2.7"), ("true", "got device_id true"),
                              ('"4096"', "device_id 4096 is out of range 0..4095"),
                              ('"99999999999999999999"', "is out of range 0..4095"))],
    ('{"group_list": [{"instance_list": [{"server_id": "a", "rank_id": "%s", "devices": [{"device_id": "0"}]}]}]}'
     % ("9" * 5000), "rank_id 99999999999999999999... is out of range 0..65535"),
])
def test_bad_rank_table(tmp_path, tiny_data, content, message, run_script):
    table = tmp_path / "rank_table.json"
    if content is not None:
        table.write_text(content)
    proc = _run(run_script, [RANK_TABLE, str(table), str(tiny_data)], tmp_path)
    _assert_usage_error(proc, message)
    assert "Traceback" not in proc.stderr


def test_multi_server_rank_table_needs_to_know_this_server(tmp_path, tiny_data, run_script):
    table = _rank_table(tmp_path / "rt.json", [("10.9.9.1", [(0, 0), (1, 1)]), ("10.9.9.2", [(0, 2), (1, 3)])])
    _assert_usage_error(_run(run_script, [RANK_TABLE, str(table), str(tiny_data)], tmp_path), "set SERVER_ID")


# --------------------------------------------------------------------------- which interpreter
LAUNCHERS = {  # launcher -> its arguments, {data} and {ckpt} filled in
    STANDALONE: ["0", "{data}"], EVAL: ["0", "{data}", "{ckpt}"], RANK_TABLE: ["{table}", "{data}"],
    MSRUN: ["2", "{data}", "CPU"], "run_infer_310.sh": ["{onnx}", "{data}"],
}


def _stand_in(path, python, *flags):
    """An interpreter at ``path`` that runs ``python`` (with ``flags``; -S hides site-packages, MindSpore
    included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec {python} {" ".join(flags)} "$@"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_repo(tmp_path):
    """A copy of scripts/ in a repository of its own (everything else linked), so that its .venv is the
    test's to make; PATH holds a python3 and a python without MindSpore, then the system's folders."""
    repo = tmp_path / "repo"
    shutil.copytree(SCRIPTS, repo / "scripts")
    for name in set(os.listdir(REPO)) - {"scripts", ".venv", ".venv-test", ".git"}:
        (repo / name).symlink_to(os.path.join(REPO, name))
    bin_dir = tmp_path / "bin"
    for name in ("python3", "python"):
        _stand_in(bin_dir / name, sys.executable, "-S")
    return repo, f"{bin_dir}:/usr/bin:/bin"


def _launch(run_script, repo, script, tmp_path, tiny_data, **env):
    table = _rank_table(tmp_path / "rt.json", [("10.0.0.1", [(0, 0)])])
    (tmp_path / "net.onnx").write_bytes(b"x")
    (tmp_path / "w.ckpt").write_bytes(b"x")
    args = [a.format(data=tiny_data, ckpt=tmp_path / "w.ckpt", table=table, onnx=tmp_path / "net.onnx")
            for a in LAUNCHERS[script]]
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    env = {"OUTPUT_ROOT": tmp_path / "out", "BUILD_DIR": tmp_path / "build", "PYTHON": "", **env}
    return _run(run_script, [os.path.join(repo, "scripts", os.path.basename(script)), *args], cwd, **env), cwd


@pytest.mark.parametrize("script", list(LAUNCHERS), ids=lambda s: os.path.basename(s))
def test_launcher_without_mindspore_is_one_line_and_creates_nothing(tmp_path, tiny_data, fake_repo, script, run_script):
    repo, path = fake_repo
    for env, chosen in (({"PATH": path}, tmp_path / "bin" / "python3"),  # no PYTHON, no .venv: PATH's python3
                        ({"PYTHON": str(tmp_path / "bin" / "python")}, tmp_path / "bin" / "python")):
        proc, cwd = _launch(run_script, repo, script, tmp_path, tiny_data, **env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: no MindSpore in "), proc.stderr
        assert str(chosen) in errors[0] and "PYTHON=" in errors[0] and ".venv" in errors[0], errors[0]
        assert not (tmp_path / "out").exists() and not os.listdir(cwd) and not (tmp_path / "build").exists()


def test_launcher_python_that_does_not_exist(tmp_path, tiny_data, fake_repo, run_script):
    repo, path = fake_repo
    proc, _ = _launch(run_script, repo, STANDALONE, tmp_path, tiny_data, PATH=path, PYTHON=tmp_path / "no_such_python")
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: PYTHON={tmp_path / 'no_such_python'} "), proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", [STANDALONE, EVAL, RANK_TABLE, MSRUN], ids=os.path.basename)
def test_launcher_finds_the_repository_venv_and_honours_python(tmp_path, tiny_data, fake_repo, script, run_script):
    repo, path = fake_repo
    venv_python = _stand_in(repo / ".venv" / "bin" / "python", sys.executable)
    proc, _ = _launch(
        run_script, repo, script, tmp_path, tiny_data, PATH=path, DRY_RUN=1
    )  # PATH's pythons have no MindSpore
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f" {venv_python} " in proc.stdout, proc.stdout  # the job runs with the repository's .venv
    other = _stand_in(tmp_path / "elsewhere" / "python", sys.executable)
    proc, _ = _launch(run_script, repo, script, tmp_path, tiny_data, PATH=path, DRY_RUN=1, PYTHON=other)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f" {other} " in proc.stdout and str(venv_python) not in proc.stdout, proc.stdout


FAKE_MSRUN = """#!/bin/sh
echo "fake msrun GLOG_v=${GLOG_v:-unset}"
"""


def test_msrun_launcher_silences_mindspore_logs(tmp_path, tiny_data, run_script):
    fake = tmp_path / "fake_msrun"
    fake.write_text(FAKE_MSRUN)
    fake.chmod(0o755)
    base = dict(GLOG_v=None, PYTHON=sys.executable, MSRUN=fake, OUTPUT_ROOT=tmp_path / "out", QUIET="1")
    for run, extra, expected in (("default", {}, "GLOG_v=3"), ("own", {"GLOG_v": "1"}, "GLOG_v=1")):  # the user's wins
        proc = run_script.cmd(["bash", MSRUN, "1", tiny_data, "CPU"], cwd=tmp_path, timeout=60,
                              env={**base, "CSPDARKNET53_RUN_NAME": run, **extra})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        log = (tmp_path / "out" / run / "msrun.log").read_text()
        assert f"fake msrun {expected}" in log, log


# --------------------------------------------------------------------------- rank table launches
def _dry_run_launches(stdout):
    launches = {}
    for line in stdout.splitlines():
        if line.startswith("[dry run] rank "):
            fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok and not tok.startswith("--"))
            launches[int(fields["RANK_ID"])] = (fields, line)
    return launches


def test_rank_table_dry_run_one_launch_per_device(tmp_path, tiny_data, run_script):
    table = _rank_table(tmp_path / "rt.json", [("10.0.0.1", [(d, d) for d in range(8)])])
    ckpt = tmp_path / "warm.ckpt"
    ckpt.write_bytes(b"")
    (tmp_path / "cwd").mkdir()
    proc = _run(run_script, [RANK_TABLE, os.path.relpath(table, tmp_path / "cwd"), str(tiny_data), "../warm.ckpt",
                 "--per_batch_size=16"], tmp_path / "cwd", DRY_RUN=1, OUTPUT_ROOT=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    launches = _dry_run_launches(proc.stdout)
    assert sorted(launches) == list(range(8))
    run_dirs = set()
    for rank, (env, line) in launches.items():
        assert env["DEVICE_ID"] == str(rank) and env["RANK_SIZE"] == "8"
        assert env["RANK_TABLE_FILE"] == str(table)  # made absolute
        assert f"{REPO}/train.py --is_distributed=1 --device_target=Ascend --data_dir={tiny_data}" in line
        assert f"--pretrained={ckpt}" in line and "--per_batch_size=16" in line
        assert f"--ckpt_path={tmp_path / 'out'}" in line
        run_dirs.add(env["CSPDARKNET53_RUN_NAME"])
        assert f"cd {tmp_path / 'out'}/{env['CSPDARKNET53_RUN_NAME']}/rank{rank};" in line  # one folder per rank
    assert len(run_dirs) == 1  # every rank writes into one run folder
    assert not (tmp_path / "out").exists()  # a dry run creates nothing


def test_rank_table_dry_run_binds_cores_and_picks_this_server(tmp_path, tiny_data, run_script):
    table = _rank_table(tmp_path / "rt.json", [("10.9.9.1", [(0, 0), (1, 1)]), ("10.9.9.2", [(0, 2), (1, 3)])])
    proc = _run(run_script, [RANK_TABLE, str(table), str(tiny_data)], tmp_path, DRY_RUN=1, SERVER_ID="10.9.9.2")
    assert proc.returncode == 0, proc.stderr
    launches = _dry_run_launches(proc.stdout)
    assert sorted(launches) == [2, 3]  # global ranks of the second server, on its devices 0 and 1
    assert launches[2][0]["DEVICE_ID"] == "0" and launches[3][0]["DEVICE_ID"] == "1"
    assert all(env["RANK_SIZE"] == "4" for env, _ in launches.values())
    cores = os.cpu_count() or 1
    if shutil.which("taskset") and cores >= 2:
        per = cores // 2
        assert f"taskset -c 0-{per - 1} " in launches[2][1] and f"taskset -c {per}-{2 * per - 1} " in launches[3][1]
    proc = _run(
        run_script, [RANK_TABLE, str(table), str(tiny_data)], tmp_path, DRY_RUN=1, SERVER_ID="10.9.9.2", BIND_CORES=0
    )
    assert "taskset -c" not in proc.stdout and "no core binding (BIND_CORES=0" in proc.stdout


FAKE_PYTHON = """#!/bin/bash
# stands in for python: runs the rank table check with the real interpreter, fakes train.py
if [ "$1" = - ]; then exec {python} "$@"; fi
echo "fake train.py rank $RANK_ID device $DEVICE_ID of $RANK_SIZE in $PWD"
if [ "$RANK_ID" = "{fail_rank}" ]; then sleep 1; echo "Traceback: rank $RANK_ID fails" >&2; exit 3; fi
sleep 60
echo "fake train.py rank $RANK_ID ran to the end"
"""


def test_rank_table_failed_rank_stops_the_others(tmp_path, tiny_data, job_processes, run_script):
    table = _rank_table(tmp_path / "rt.json", [("10.0.0.1", [(d, d) for d in range(4)])])
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable, fail_rank=2))
    fake.chmod(0o755)
    run_name = "rt_" + uuid.uuid4().hex[:8]
    proc = _run(run_script, [RANK_TABLE, str(table), str(tiny_data)], tmp_path, timeout=50, PYTHON=fake,
                OUTPUT_ROOT=tmp_path / "out", CSPDARKNET53_RUN_NAME=run_name, STOP_GRACE_S=5)
    assert proc.returncode == 1
    assert "error: rank 2 (device 2, pid" in proc.stderr and "exited with status 3" in proc.stderr, proc.stderr
    assert "stopping the other ranks" in proc.stderr
    assert "Traceback: rank 2 fails" in proc.stderr  # the tail of its log
    # the other ranks were stopped, not waited for: none of their processes (the fake ranks and their
    # `sleep 60`) is left, and none ran to the end
    left = job_processes(run_name, settle=5)
    assert not left, f"processes of the job left behind: {left}"
    run = tmp_path / "out" / run_name
    for rank in range(4):
        log = (run / f"rank{rank}" / "console.log").read_text()
        assert f"fake train.py rank {rank} device {rank} of 4 in {run}/rank{rank}" in log
        assert "ran to the end" not in log, log
        assert "RANK_TABLE_FILE=" in (run / f"rank{rank}" / "env.log").read_text()


def test_rank_table_all_ranks_succeed(tmp_path, tiny_data, run_script):
    table = _rank_table(tmp_path / "rt.json", [("10.0.0.1", [(0, 0), (1, 1)])])
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable, fail_rank="none").replace("sleep 60", "exit 0"))
    fake.chmod(0o755)
    proc = _run(
        run_script, [RANK_TABLE, str(table), str(tiny_data)], tmp_path, PYTHON=fake, OUTPUT_ROOT=tmp_path / "out"
    )
    assert proc.returncode == 0, proc.stderr
    assert "done: all 2 ranks finished" in proc.stdout


# --------------------------------------------------------------------------- msrun launcher
def test_msrun_dry_run_single_and_multi_node(tmp_path, tiny_data, run_script):
    proc = _run(run_script, [MSRUN, "2", str(tiny_data), "GPU", "--per_batch_size=32"], tmp_path, DRY_RUN=1)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    for part in ("--worker_num=2", "--local_worker_num=2", "--master_addr=127.0.0.1", "--join=True",
                 "--cluster_time_out=600", f"{REPO}/train.py --is_distributed=1 --device_target=GPU",
                 f"--data_dir={tiny_data}", f"--ckpt_path={tmp_path}/outputs", "--per_batch_size=32"):
        assert part in line, line
    assert "--node_rank" not in line and "--master_port=" in line
    proc = _run(run_script, [MSRUN, "8", str(tiny_data), "Ascend"], tmp_path, DRY_RUN=1, NODE_NUM=2, NODE_RANK=1,
                MASTER_ADDR="10.0.0.1", CSPDARKNET53_RUN_NAME="shared")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    for part in ("--worker_num=16", "--local_worker_num=8", "--node_rank=1", "--master_addr=10.0.0.1",
                 "--master_port=8118", f"msrun_node1.log", f"cd {tmp_path}/outputs/shared;"):
        assert part in line, line


# --------------------------------------------------------------------------- real runs
def test_standalone_train_then_eval_from_another_directory(tmp_path, tiny_data, run_script):
    cwd = tmp_path / "somewhere" / "else"
    cwd.mkdir(parents=True)
    flags = ["--arch=cspdarknet_tiny", "--num_classes=2", "--image_size=32,32", "--per_batch_size=4",
             "--max_epoch=1", "--warmup_epochs=0", "--num_parallel_workers=1"]
    proc = _run(run_script, [os.path.relpath(STANDALONE, cwd), "0", os.path.relpath(tiny_data, cwd), *flags,
                 "--ckpt_path=../runs"], cwd, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = os.listdir(tmp_path / "somewhere" / "runs")  # --ckpt_path, relative to the caller's directory
    assert len(runs) == 1
    run = tmp_path / "somewhere" / "runs" / runs[0]
    assert f"run folder: {run}" in proc.stdout
    for name in ("log.txt", "console.log", "config.yaml", "env.log"):
        assert (run / name).is_file(), name
    assert "training finished: 1 epochs" in (run / "log.txt").read_text()
    assert "DEVICE_ID=0" in (run / "env.log").read_text()
    ckpts = sorted((run / "ckpt_0").glob("0-1_*.ckpt"))
    assert len(ckpts) == 1

    proc = _run(run_script, [EVAL, "0", str(tiny_data), str(ckpts[0]), "--per_batch_size=4", "--image_size=32,32"], cwd,
                timeout=300, OUTPUT_ROOT=tmp_path / "eval_out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (eval_run,) = list((tmp_path / "eval_out").iterdir())
    assert eval_run.name.startswith("eval_")
    result = json.loads((eval_run / "eval_result.json").read_text())
    assert result["images"] == 8 and result["checkpoint"] == str(ckpts[0])
    assert "acc=" in (eval_run / "log.txt").read_text()
