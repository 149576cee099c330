"""e2e fixtures: ``scripts`` runs train.py / eval.py / predict.py / tools/*.py as a user runs them (a fresh
process each, through tests/conftest.py's run_script), with a short ``cspdarknet_tiny`` training at 32 px as
the default; ``eval_in_process`` runs eval.py's ``main`` in this process for quick label checks."""
import glob
import os

import pytest

#: train.py options of a short run (one epoch unless the test says otherwise)
TINY = dict(arch="cspdarknet_tiny", max_epoch=1, log_interval=5, image_size="32,32", per_batch_size=8,
            warmup_epochs=0, lr=0.05, num_parallel_workers=1, lr_scheduler="cosine_step", eta_min=0.0,
            label_smooth=0)


class Scripts:
    """``run(script, *args, **keys) -> (exit status, stdout + stderr)`` in ``cwd`` with the data-cache folder
    ``cache`` and a strict UTF-8 stdout (as in an en_US.UTF-8 terminal); ``train(data_dir, out, **over)``."""

    def __init__(self, cwd, cache, runner):
        self.cwd = str(cwd)
        self.env = {"CSPDARKNET53_CACHE": str(cache), "PYTHONIOENCODING": "utf-8"}
        self.runner = runner  # tests/conftest.py run_script

    def run(self, script, *args, timeout=300, **keys):
        proc = self.runner(script, args, cwd=self.cwd, env=self.env, timeout=timeout, **keys)
        return proc.returncode, proc.output

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
def scripts(tmp_path, run_script):
    return Scripts(tmp_path, tmp_path / "cache", run_script)


@pytest.fixture(scope="session")
def make_scripts(run_script):
    """``make_scripts(cwd, cache) -> Scripts`` for module-scoped fixtures."""
    return lambda cwd, cache: Scripts(cwd, cache, run_script)


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
