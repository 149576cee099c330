"""The import rules of docs/DESIGN.md, read from the source (every import, inside functions too).

1. ``src/`` is the library: it never imports ``model_utils``, the entry scripts, ``tools``, ``research``,
   ``benchmarks`` or ``tests``.
2. No circles: the graph of imports between ``src`` modules is acyclic.
3. Layers: every ``src`` module belongs to a layer (``LAYERS``) and imports only modules of its own layer
   or a lower one: foundation (errors, config, the architecture registry, utils) < parts (model, data,
   checkpoints, loss, LR, analysis, reporting, train step) < jobs (training, evaluation, prediction, export).
"""
import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = ("model_utils", "tools", "research", "benchmarks", "tests", "train", "eval", "export", "predict",
           "postprocess", "benchmark", "mindspore_hub_conf", "create_imagenet2012_label")

#: module-name prefix -> layer; the longest matching prefix wins
LAYERS = {
    "src": 0, "src.errors": 0, "src.config": 0, "src.archs": 0, "src.utils": 0,
    "src.cspdarknet53": 1, "src.head": 1, "src.image_classification": 1, "src.loss": 1, "src.lr_generator": 1,
    "src.data": 1, "src.checkpoint": 1, "src.analysis": 1, "src.reporting": 1, "src.train_step": 1, "src.deploy": 1,
    "src.trainer": 2, "src.sink": 2, "src.resume": 2, "src.evaluation": 2, "src.export_utils": 2, "src.eval_job": 2,
    "src.predict_job": 2, "src.export_job": 2,
}
LAYER_NAMES = ("foundation", "parts", "jobs")


def module_name(path, root=ROOT):
    name = ".".join(path.relative_to(root).with_suffix("").parts)
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def imports_of(path, name):
    """Every module name ``path`` imports, absolute (relative imports resolved), at any depth of the code."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def src_graph(root=ROOT):
    """``{module: {src modules it imports}}`` and ``{module: {outside modules it imports}}``."""
    modules = {module_name(p, root): p for p in (root / "src").rglob("*.py")}
    graph, outside = {}, {}
    for name, path in modules.items():
        deps, bad = set(), set()
        for imported in imports_of(path, name):
            top = imported.split(".")[0]
            if top in OUTSIDE:
                bad.add(imported)
            elif top == "src":
                while imported and imported not in modules:  # src.data.DatasetError -> src.data
                    imported = imported.rpartition(".")[0]
                if imported and imported != name and not name.startswith(imported + "."):
                    deps.add(imported)
        graph[name], outside[name] = deps, bad
    return graph, outside


def find_cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def layer_of(name):
    prefixes = [p for p in LAYERS if name == p or name.startswith(p + ".")]
    return LAYERS[max(prefixes, key=len)] if prefixes else None


def test_src_imports_nothing_outside_the_library():
    _, outside = src_graph()
    offenders = {m: sorted(b) for m, b in outside.items() if b}
    assert not offenders, f"src/ modules importing entry-level code: {offenders}"


def test_no_import_circles_in_src():
    graph, _ = src_graph()
    assert find_cycles(graph) == []


def test_every_import_points_to_the_same_or_a_lower_layer():
    graph, _ = src_graph()
    unplaced = sorted(m for m in graph if layer_of(m) is None)
    assert not unplaced, f"add these modules to LAYERS (and docs/DESIGN.md): {unplaced}"
    upward = sorted(f"{a} ({LAYER_NAMES[layer_of(a)]}) -> {b} ({LAYER_NAMES[layer_of(b)]})"
                    for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a))
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_the_checks_see_what_they_guard(tmp_path):
    """The reader finds function-level and relative imports, circles of any length and upward imports."""
    pkg = tmp_path / "src"
    (pkg / "sub").mkdir(parents=True)
    for p in (pkg / "__init__.py", pkg / "sub" / "__init__.py"):
        p.write_text("")
    (pkg / "a.py").write_text("def f():\n    from src.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("import os\nfrom src.a import f\nimport model_utils.entry\n")
    graph, outside = src_graph(tmp_path)
    assert graph["src.a"] == {"src.sub", "src.sub.b"} and graph["src.sub.b"] == {"src.sub.c"}
    assert find_cycles(graph) == [["src.a", "src.sub.b", "src.sub.c"]]
    assert outside["src.sub.c"] == {"model_utils.entry"}
    assert layer_of("src.trainer") == 2 and layer_of("src.data.pipeline") == 1 and layer_of("src.utils.x") == 0
    assert os.path.isdir(ROOT / "src")
