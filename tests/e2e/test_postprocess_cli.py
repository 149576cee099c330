"""The Python side of the C++ inference flow run as scripts: create_imagenet2012_label.py writes the label
file, postprocess.py scores the app's result files with it. (Their functions: tests/unit/test_postprocess.py.)"""
import numpy as np


def test_label_script_then_postprocess_cli(tmp_path, run_script):
    img = tmp_path / "val"
    for cls, files in {"n0": ["p.JPEG", "q.JPEG"], "n1": ["r.JPEG"], "n2": ["s.jpg"]}.items():
        (img / cls).mkdir(parents=True)
        for f in files:
            (img / cls / f).write_bytes(b"x")
    lp = tmp_path / "imagenet_label.json"
    labels = run_script("create_imagenet2012_label.py", [f"--img_path={img}", f"--output={lp}"])
    assert labels.returncode == 0, labels.output
    res = tmp_path / "result_Files"
    res.mkdir()
    # 3 classes, float32: p correct, q wrong (top-2 of 3), r correct, s wrong
    for name, row in (("p", [3, 1, 2]), ("q", [1, 3, 2]), ("r", [1, 3, 2]), ("s", [1, 3, 2])):
        np.asarray([row], dtype="float32").tofile(res / f"{name}_0.bin")
    run = run_script("postprocess.py", [f"--result_path={res}", f"--label_path={lp}"])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Total data: 4, top1 accuracy: 0.5, top5 accuracy: 1.0"
