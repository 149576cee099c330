"""Fixtures for the end-to-end tests of the data checks: the entry scripts run as a user runs them (a fresh
``python train.py ...`` process each), on real image files written by the tests, at 32 px with
``cspdarknet_tiny``."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: train.py options of a short run (one epoch unless the test says otherwise)
TINY = dict(arch="cspdarknet_tiny", max_epoch=1, log_interval=5, image_size="32,32", per_batch_size=8,
            warmup_epochs=0, lr=0.05, num_parallel_workers=1, lr_scheduler="cosine_step", eta_min=0.0,
            label_smooth=0)


class Scripts:
    """Runs train.py / eval.py / predict.py / tools/*.py in a child process; returns (exit status, output)."""

    def __init__(self, cwd, cache):
        self.cwd = str(cwd)
        self.env = dict(os.environ, GLOG_v="3", PYTHONPATH=REPO, CSPDARKNET53_CACHE=str(cache),
                        PYTHONIOENCODING="utf-8")  # a strict UTF-8 stdout, as in an en_US.UTF-8 terminal
        self.env.pop("CSPDARKNET53_RUN_NAME", None)

    def run(self, script, *args, timeout=300, **keys):
        argv = [sys.executable, os.path.join(REPO, script)] + [str(a) for a in args]
        argv += [f"--{k}={v}" for k, v in keys.items()]
        proc = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, timeout=timeout)
        out = (proc.stdout + proc.stderr).decode("utf-8", "backslashreplace")
        return proc.returncode, out

    def train(self, data_dir, out, timeout=400, **over):
        keys = dict(TINY, data_dir=data_dir, ckpt_path=out)
        keys.update(over)
        return self.run("train.py", timeout=timeout, **keys)


    @staticmethod
    def run_dir(out):
        """The single run folder under a ckpt_path / log_path."""
        runs = sorted(glob.glob(os.path.join(str(out), "*")))
        assert len(runs) == 1, runs
        return runs[0]

    @staticmethod
    def read_log(path):
        with open(path, "rb") as f:
            return f.read().decode("utf-8")  # the log must be valid UTF-8


@pytest.fixture
def scripts(tmp_path):
    return Scripts(tmp_path, tmp_path / "cache")


@pytest.fixture
def eval_in_process(capsys):
    """``eval_in_process(args) -> (exit status, stdout + stderr)``: eval.py's ``main`` in this process (faster
    than a child for a label check), the MindSpore mode restored after it."""
    def run(args):
        import mindspore as ms

        import eval as eval_script
        previous = ms.get_context("mode")
        try:
            code = eval_script.main([str(a) for a in args])
        finally:
            ms.set_context(mode=previous)
        captured = capsys.readouterr()
        return code, captured.out + captured.err
    return run


def write_class_images(folder, n, value, seed=0, size=(40, 40), ext="jpg"):
    """``n`` images of one class: noise around a grey level ``value`` (brightness tells the classes apart)."""
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        pixels = np.clip(rng.normal(value, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"img{i:03d}.{ext}")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture
def make_images():
    return write_class_images


@pytest.fixture(scope="session")
def e2e():
    """The helpers above for module-scoped fixtures: ``e2e.Scripts(cwd, cache)``, ``e2e.write_class_images``."""
    from types import SimpleNamespace
    return SimpleNamespace(Scripts=Scripts, write_class_images=write_class_images)
