"""Three processes that ask for the demo data at once (src/data/demo.py) all get the same complete tree and
leave nothing else behind (the in-process checks: tests/unit/test_demo_data.py)."""
import os
import subprocess

CODE = ("import sys, os; from src.data.demo import ensure_demo_dataset;"
        "p = ensure_demo_dataset(sys.argv[1]);"
        "n = sum(len(os.listdir(os.path.join(p.train, c))) for c in os.listdir(p.train));"
        "m = sum(len(os.listdir(os.path.join(p.val, c))) for c in os.listdir(p.val)); print(p.train, n, m)")


def test_concurrent_processes_see_a_complete_tree(tmp_path, run_script):
    procs = [run_script.popen(None, ["-c", CODE, tmp_path], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({o[0] for o in outs}) == 1 and all(o[1:] == ["1000", "500"] for o in outs)
    assert [n for n in os.listdir(tmp_path) if not n.startswith("fashion_mnist_")] == []
