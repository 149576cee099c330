"""benchmark.py in its CI form (--quick: the full-size network at 32 px, batch 2, 2 steps), alone and against
timm's twin (PyTorch); benchmarks/data.py. Checks structure, never speed."""
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


def test_quick_ours(tmp_path, run_script):
    rows, md, out = _run(run_script, tmp_path)
    assert len(rows) == 2
    _check_rows(rows, "mindspore")
    assert "| model name |" in md and "graph compile" in md and "img/s" in md
    assert "Machine:" in md and "cores" in md and "MindSpore" in md
    assert not any(tmp_path.glob("rank_*")), "benchmark left compiler output in the working directory"


def test_quick_compare_timm(tmp_path, run_script):
    rows, md, out = _run(run_script, tmp_path, "--compare", "timm")
    assert len(rows) == 4
    _check_rows(rows, "mindspore")
    _check_rows(rows, "torch")
    assert "speed ours/timm" in md and "memory ours/timm" in md
    # the ratio table has one line per (mode, batch) pair
    ratio_lines = [line for line in md.splitlines() if line.startswith("| infer |") or line.startswith("| train |")]
    assert len(ratio_lines) == 2


@pytest.mark.parametrize("args, message", [(["--steps", "0"], "--steps"), (["--arch", "resnet50"], "cspdarknet53"),
                                           (["--set", "no_such_knob=1"], "unknown performance settings")])
def test_bad_arguments_exit_2(tmp_path, run_script, args, message):
    proc = run_script("benchmark.py", args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr


def test_data_pipeline_benchmark(tmp_path, run_script):
    """benchmarks/data.py (what --data_dir runs), given a relative folder: one row per (pipeline, reader,
    workers), positive rates."""
    data = tmp_path / "jpegs"
    proc = run_script("benchmarks/data.py", ["--data_dir", "jpegs", "--make_synthetic", "12", "--workers", "1",
                                             "--image_size", "32", "--batch", "2", "--batches", "2", "--repeats", "1",
                                             "--readers", "folder", "mindrecord", "--model_rate", "10"],
                      cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.output[-3000:]
    assert sum(1 for _ in data.rglob("*.JPEG")) == 12
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] in (["train"], ["eval"])]
    assert sorted((r[0], r[1], r[2]) for r in rows) == [("eval", "folder", "1"), ("eval", "mindrecord", "1"),
                                                          ("train", "folder", "1"), ("train", "mindrecord", "1")]
    for row in rows:
        images_per_s, ms_per_batch, per_cpu_s, x_model = (float(v) for v in row[3:])
        assert images_per_s > 0 and ms_per_batch > 0 and per_cpu_s > 0
        assert x_model == pytest.approx(images_per_s / 10, rel=0.01, abs=0.1)
