"""benchmark.py's command line and benchmarks/data.py (what --data_dir runs), as subprocesses. (The model
benchmark itself, against timm: tests/reference/test_benchmark.py.)"""
import pytest


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
