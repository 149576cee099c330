"""scripts/run_tests.sh keeps the runtime environment .venv as README's first command made it: the tests get
their own environment (.venv-test), the reference packages (torch, timm) only for tests/reference/ or tests that import them,
the C++ app's build dependencies only when selected tests build the app. Checked in a copy of the script with
a stand-in interpreter that logs every call (no package is installed, no test is run)."""

import os
import shutil
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("bash") is None,
                                reason="run_tests.sh needs Linux and bash")

# python3 stand-in: logs "<its own path> <arguments>"; `-m venv DIR` makes DIR/bin/python a copy of it
FAKE_PYTHON = """#!/bin/bash
echo "$0 $*" >> "$CALL_LOG"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
if [ "$1" = --version ]; then echo "Python 3.11.2"; fi
exit 0
"""
FAKE_CXX_DEPS = """#!/bin/bash
echo "install_cxx_deps.sh PYTHON=$PYTHON" >> "$CALL_LOG"
"""
TEST_MODULES = {
    "tests/unit/test_plain.py": "def test_x():\n    pass\n",
    "tests/reference/test_parity.py": "import torch\n\n\ndef test_x():\n    pass\n",
    "tests/reference/test_tool.py": "def test_x():\n    pass\n",  # runs a torch tool in a child, say
    "tests/e2e/test_app.py": "APP = 'ascend310_infer'\n\n\ndef test_x():\n    pass\n",
}


@pytest.fixture
def repo(tmp_path):
    """A repository with run_tests.sh, the requirement files, one module per tier and a runtime .venv whose
    python is the stand-in too (so that any use of it shows in the log)."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "scripts", "run_tests.sh"), root / "scripts")
    for name in ("requirements.txt", "requirements-test.txt", "requirements-reference.txt"):
        shutil.copy(os.path.join(REPO, name), root)
    (root / ".ci").mkdir()
    (root / ".ci" / "install_cxx_deps.sh").write_text(FAKE_CXX_DEPS)
    for path, text in TEST_MODULES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    (root / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(fake, root / ".venv" / "bin" / "python")
    return root


def _run_tests(run_script, repo, *args, **env):
    log = repo.parent / "calls.log"
    log.write_text("")
    full = dict(CSPDARKNET53_TEST_VENV=None, CSPDARKNET53_VENV=None, SKIP_CXX_DEPS=None,
                PYTHON_BIN=repo.parent / "bin" / "python3", CALL_LOG=log)
    full.update(env)
    proc = run_script.cmd(["bash", repo / "scripts" / "run_tests.sh", *args], cwd=repo.parent, env=full, timeout=120)
    return proc, log.read_text().splitlines()


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes()) for p in folder.rglob("*") if p.is_file())


def test_tiers_get_their_own_environment_and_only_what_they_need(repo, run_script):
    runtime = _tree(repo / ".venv")
    test_python = f"{repo}/.venv-test/bin/python"

    proc, calls = _run_tests(run_script, repo, "unit", "-x")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any(c.endswith(f"-m venv {repo}/.venv-test") for c in calls), calls
    installs = [c for c in calls if " -m pip install -q -r " in c]
    assert installs == [f"{test_python} -m pip install -q -r {repo}/requirements-test.txt"], calls
    assert calls[-1] == f"{test_python} -m pytest -q tests/unit -x", calls
    assert not any("install_cxx_deps" in c for c in calls), calls  # no C++ test selected
    assert f"test environment {repo}/.venv-test: " in proc.stdout

    proc, calls = _run_tests(run_script, repo, "unit")  # unchanged requirement files: reused, nothing installed
    assert proc.returncode == 0 and calls == [f"{test_python} -m pytest -q tests/unit"], calls

    proc, calls = _run_tests(run_script, repo)  # the whole suite: the reference packages and the C++ app's dependencies
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installs = [c for c in calls if " -m pip install -q -r " in c]
    assert installs == [f"{test_python} -m pip install -q -r {repo}/requirements-reference.txt"], calls
    assert f"install_cxx_deps.sh PYTHON={test_python}" in calls
    assert calls[-1] == f"{test_python} -m pytest -q", calls

    proc, calls = _run_tests(
        run_script, repo, "tests/reference/test_tool.py"
    )  # the reference tier needs them, imports or not
    assert "(requirements-reference.txt, reused)" in proc.stdout and not any(" pip " in c for c in calls), calls

    proc, calls = _run_tests(run_script, repo, "e2e")
    assert "install_cxx_deps.sh PYTHON=" + test_python in calls and not any(" pip " in c for c in calls), calls

    with open(repo / "requirements-test.txt", "a") as f:
        f.write("# changed\n")
    proc, calls = _run_tests(run_script, repo, "tests/unit/test_plain.py::test_x")
    assert f"{test_python} -m pip install -q -r {repo}/requirements-test.txt" in calls, calls
    # the runtime environment was never run and never changed
    assert not any(c.startswith(f"{repo}/.venv/") for c in calls)
    assert _tree(repo / ".venv") == runtime


def test_the_runtime_environment_is_refused_as_the_test_environment(repo, run_script):
    for env in (
        {"CSPDARKNET53_TEST_VENV": str(repo / ".venv")},
        {"CSPDARKNET53_TEST_VENV": str(repo / "x" / ".." / ".venv")},
        {"CSPDARKNET53_VENV": str(repo / ".venv")},
    ):  # the old variable, which meant the runtime .venv
        proc, calls = _run_tests(run_script, repo, "unit", **env)
        assert proc.returncode == 2 and proc.stderr.startswith("run_tests.sh: error: "), proc.stderr
        assert calls == [] and not (repo / ".venv-test").exists()


def test_dry_run_says_what_it_would_do_and_changes_nothing(repo, tmp_path, run_script):
    proc, calls = _run_tests(run_script, repo, DRY_RUN="1", CSPDARKNET53_TEST_VENV=str(tmp_path / "tv"))
    assert proc.returncode == 0, proc.stderr
    assert f"test environment: {tmp_path / 'tv'} (create; requirements-reference.txt)" in proc.stdout
    assert "C++ build dependencies: bash .ci/install_cxx_deps.sh" in proc.stdout
    assert calls == [] and not (tmp_path / "tv").exists()
    proc, _ = _run_tests(run_script, repo, "unit", DRY_RUN="1")
    assert "(create; requirements-test.txt)" in proc.stdout and "C++ build dependencies: not needed" in proc.stdout


def test_bad_tier_or_path_is_a_usage_error_before_any_setup(repo, run_script):
    for args in (["tests/nowhere"], ["unit", "tests/unit/test_missing.py"]):
        proc, calls = _run_tests(run_script, repo, *args)
        assert proc.returncode == 2 and "no such test file or folder" in proc.stderr, proc.stderr
        assert calls == []
    shutil.rmtree(repo / "tests" / "reference")
    proc, calls = _run_tests(run_script, repo, "reference")
    assert proc.returncode == 2 and "no folder tests/reference" in proc.stderr and calls == []
