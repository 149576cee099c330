"""tools/augmentation_parity.py (docs/convergence.md section 3) end to end on a tiny ImageFolder tree."""
import re

import pytest

LINE = re.compile(r"^(\S+)\s+ours ([+-][\d.]+)\s+torchvision ([+-][\d.]+)\s+difference ([+-][\d.]+)$", re.M)


def test_augmentation_statistics_of_both_pipelines(run_script, make_tiny_data, tmp_path):
    pytest.importorskip("torchvision", reason="reference tool needs torchvision (requirements-reference.txt)")
    data = make_tiny_data(3, 8, 40)
    proc = run_script("tools/augmentation_parity.py", [data, "--size", "32", "--files", "12", "--per_image", "4",
                                                       "--jitter", "0,0,0"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.output[-3000:]
    stats = {m.group(1): tuple(float(m.group(i)) for i in (2, 3, 4)) for m in LINE.finditer(proc.stdout)}
    assert sorted(stats) == sorted(["mean", "std", "per_sample_std", "fraction_above_0.5", "mean_abs_dx",
                                    "var_of_mean_image"]), proc.stdout
    ours, ref, diff = stats["mean"]
    assert diff == pytest.approx(ours - ref, abs=2e-4)
    # flat brightness classes: crops and flips keep every pixel's value, so the two pipelines' means (the
    # same files, the same ImageNet normalization) agree closely; a wrong mean/std or channel order would not
    assert abs(diff) < 0.02 and stats["std"][0] > 0.3, stats


def test_augmentation_tool_refuses_an_empty_folder(run_script, tmp_path):
    proc = run_script("tools/augmentation_parity.py", [tmp_path], cwd=tmp_path, timeout=60)
    assert proc.returncode != 0 and "no class folders with images" in proc.output
