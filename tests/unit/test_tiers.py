"""The test tiers keep their promises (README's Tests section): tests/unit runs in this process without
PyTorch and without a compiler, so that it stays fast and needs only requirements-test.txt; the shared
tests/conftest.py imports no MindSpore at import time (a MindSpore-free test pays nothing for it)."""
import ast
import os

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(TESTS, "unit")
UNIT_MODULES = sorted(f for f in os.listdir(UNIT) if f.endswith(".py"))

#: module -> why tests/unit must not import it
NOT_IN_UNIT = {"subprocess": "a child process (tests/e2e)", "multiprocessing": "a child process (tests/e2e)",
               "torch": "PyTorch (tests/reference)", "torchvision": "PyTorch (tests/reference)",
               "timm": "PyTorch (tests/reference)"}
#: names whose use means a child process or the C++ compiler
NOT_CALLED_IN_UNIT = {"run_script": "a child process (tests/e2e)", "Popen": "a child process (tests/e2e)",
                      "fork": "a child process (tests/e2e)", "kernel_library": "the g++ kernel build (tests/reference)",
                      "build_kernel": "the g++ kernel build (tests/reference)"}


def _imports(tree, top_level_only=False):
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def _tree(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def violations(path):
    """What in the test module ``path`` does not belong in tests/unit, one line each."""
    tree = _tree(path)
    found = [f"imports {name}: {NOT_IN_UNIT[name.split('.')[0]]}" for name in _imports(tree)
             if name.split(".")[0] in NOT_IN_UNIT]
    for node in ast.walk(tree):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if name in NOT_CALLED_IN_UNIT:
            found.append(f"line {node.lineno}: {name}: {NOT_CALLED_IN_UNIT[name]}")
    return found


@pytest.mark.parametrize("module", UNIT_MODULES)
def test_unit_modules_start_no_process_no_pytorch_no_compiler(module):
    assert violations(os.path.join(UNIT, module)) == []


def test_the_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "test_bad.py"
    bad.write_text("import subprocess\nfrom torch import nn\n\n\ndef test_x(run_script):\n"
                   "    run_script('train.py')\n    from src.utils.fused_ops import kernel_library\n"
                   "    kernel_library()\n")
    found = violations(bad)
    assert [line.split(":")[0] for line in found] == ["imports subprocess", "imports torch", "line 6", "line 8"], found


def test_the_shared_conftest_imports_no_mindspore_at_import_time():
    top = list(_imports(_tree(os.path.join(TESTS, "conftest.py")), top_level_only=True))
    assert not [m for m in top if m.split(".")[0] in ("mindspore", "src")], top


def test_modules_sharing_a_session_run_share_a_worker():
    """pytest-xdist's work units (tests/conftest.py worker_group): a module is its own unit, and the modules that
    use one of the session runs that train or build (directly, or through a fixture named beside it in another
    module) are one unit, so that the run is made once and no two workers build into one cache folder."""
    from tests.conftest import worker_group

    assert worker_group("tests/unit/test_config.py") == "tests/unit/test_config.py"
    assert worker_group("tests/e2e/test_train.py") == worker_group("tests/e2e/test_train_resume.py")  # reference_run
    # flowers_run (deploy, quantize) and the C++ app build (cpp, deploy: it imports app_build) in one unit
    assert len({worker_group(f"tests/e2e/{m}.py") for m in ("test_deploy_e2e", "test_quantize_int8",
                                                              "test_cpp_infer")}) == 1
    assert worker_group("tests/e2e/test_train.py") != worker_group("tests/e2e/test_cpp_infer.py")


def test_mindspore_in_pytest_runs_with_the_projects_onednn_cap_and_children_choose_their_own():
    """tests/conftest.py's pytest_configure: the cap train/eval/predict apply holds in the pytest process (on an
    AVX-512 CPU, AVX2), and script_env does not hand it to children."""
    from src.utils.perf import _resolve_onednn_isa
    from tests import conftest  # (a bare `import conftest` may be tests/e2e's, whichever pytest loaded last)

    wanted = _resolve_onednn_isa("auto")
    set_here = os.environ.get(conftest.ONEDNN_CAP_MARK)
    if wanted is None:
        assert set_here is None  # nothing to cap on this CPU: nothing set
    else:
        assert os.environ.get("ONEDNN_MAX_CPU_ISA") == wanted
        if set_here:  # set by pytest_configure (not by whoever started pytest)
            child = conftest.script_env()
            assert "ONEDNN_MAX_CPU_ISA" not in child and conftest.ONEDNN_CAP_MARK not in child
