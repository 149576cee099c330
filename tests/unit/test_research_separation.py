"""The product does not lean on research/: no product code (entry scripts, src/, model_utils/, tools/,
benchmarks/) and no product test imports it, and test modules reach the repository's code by plain imports
(no ``sys.path`` edits: tests/conftest.py puts the repository root first once)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [p for p in ROOT.glob("*.py")] + [p for d in ("src", "model_utils", "tools", "benchmarks", "tests")
                                            for p in (ROOT / d).rglob("*.py")]


def imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            yield node.module or ""


def sys_path_edits(tree):
    """Line numbers of ``sys.path.<method>(...)`` calls and of assignments to ``sys.path``."""
    is_sys_path = lambda n: (isinstance(n, ast.Attribute) and n.attr == "path"  # noqa: E731
                             and isinstance(n.value, ast.Name) and n.value.id == "sys")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_sys_path(node.func.value):
            yield node.lineno
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(is_sys_path(t) for t in targets):
                yield node.lineno


def test_no_product_module_imports_research():
    assert len(PRODUCT) > 100  # the walk found the tree
    found = [f"{p.relative_to(ROOT)}: {m}" for p in PRODUCT
             for m in imported_modules(ast.parse(p.read_text(encoding="utf-8")))
             if m.split(".")[0] == "research"]
    assert found == []


def test_test_modules_do_not_edit_sys_path():
    modules = list((ROOT / "tests").rglob("test_*.py"))
    assert modules
    found = [f"{p.relative_to(ROOT)}:{line}" for p in modules
             for line in sys_path_edits(ast.parse(p.read_text(encoding="utf-8")))]
    assert found == []


def test_the_checks_see_what_they_look_for():
    tree = ast.parse("import sys\nsys.path.insert(0, 'x')\nsys.path += ['y']\n"
                     "def f():\n    from research.isa_conv import t\n    import research\n")
    assert sorted(sys_path_edits(tree)) == [2, 3]
    assert [m for m in imported_modules(tree) if m.startswith("research")] == ["research.isa_conv", "research"]
