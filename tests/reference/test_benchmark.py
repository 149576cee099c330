"""benchmark.py in its CI form (--quick: the full-size network at 32 px, batch 2, 2 steps) against
timm's twin (PyTorch). Checks structure, never speed. (The command line and benchmarks/data.py:
tests/e2e/test_benchmark_cli.py.)"""
import csv

import pytest

POSITIVE = ("params_m", "first_step_s", "ms_per_step", "images_per_s", "peak_rss_mb", "rss_after_build_mb")


def _run(run_script, tmp_path, *extra, timeout=300):
    csv_path, md_path = tmp_path / "bench.csv", tmp_path / "bench.md"
    proc = run_script("benchmark.py", ["--quick", "--csv", csv_path, "--md", md_path, *extra], cwd=tmp_path,
                      timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, md_path.read_text(), proc.stdout


def _check_rows(rows, framework):
    from benchmarks.runner import CSV_COLUMNS

    mine = [r for r in rows if r["framework"] == framework]
    assert sorted((r["mode"], r["batch_size"], r["img_size"]) for r in mine) == [
        ("infer", "2", "32"), ("train", "2", "32")]
    for row in mine:
        assert set(CSV_COLUMNS) <= set(row), set(CSV_COLUMNS) - set(row)
        assert row["status"] == "ok", row["error"]
        for key in POSITIVE:
            assert float(row[key]) > 0, (key, row[key])
        assert float(row["compile_s"]) >= 0
        assert float(row["params_m"]) == pytest.approx(27.642, abs=0.001)  # same network on both sides
        assert row["steps"] == "2"


def test_quick_compare_timm(tmp_path, run_script):
    """One --quick run with the timm comparison: both frameworks' rows, the markdown report and its ratio
    table, and no compiler output left in the working directory."""
    rows, md, out = _run(run_script, tmp_path, "--compare", "timm")
    assert len(rows) == 4
    _check_rows(rows, "mindspore")
    _check_rows(rows, "torch")
    assert "| model name |" in md and "graph compile" in md and "img/s" in md
    assert "Machine:" in md and "cores" in md and "MindSpore" in md
    assert "speed ours/timm" in md and "memory ours/timm" in md
    # the ratio table has one line per (mode, batch) pair
    ratio_lines = [line for line in md.splitlines() if line.startswith("| infer |") or line.startswith("| train |")]
    assert len(ratio_lines) == 2
    assert not any(tmp_path.glob("rank_*")), "benchmark left compiler output in the working directory"


