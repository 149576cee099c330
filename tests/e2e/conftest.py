"""e2e fixtures: ``scripts`` runs train.py / eval.py / predict.py / tools/*.py as a user runs them (a fresh
process each, through tests/conftest.py's run_script), with a short ``cspdarknet_tiny`` training at 32 px as
the default; ``eval_in_process`` runs eval.py's ``main`` in this process for quick label checks."""
import glob
import os
import shutil

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


#: train.py options of the reference runs: 3 classes x 12 images at 32 px, 4 per batch (9 steps per epoch),
#: 3 epochs, EMA and validation on; every checkpoint keeps its full training state (resumable)
REFERENCE_RUN = dict(arch="cspdarknet_tiny", max_epoch=3, log_interval=1, num_classes=3, image_size="32,32",
                     per_batch_size=4, warmup_epochs=0, lr=0.05, num_parallel_workers=1, lr_scheduler="cosine_step",
                     eta_min=0.0, ema=1, ema_decay=0.9)
#: dataset_sink_mode per mode; sink_size 4 becomes 3, the largest divisor of the 9 steps
MODES = {"loop": dict(dataset_sink_mode=0), "sink": dict(dataset_sink_mode=1, sink_size=4)}


class ReferenceRuns:
    """``runs(mode) -> (run folder, train.py output)``: one uninterrupted 3-epoch run per mode ("loop",
    "sink"), trained on first use and kept for the session; ``runs.args(out, mode="loop", **over)``: the
    train.py arguments of such a run writing to ``out`` (``over`` wins); ``runs.data``: its data folder."""

    def __init__(self, tmp_path_factory, data, run_script):
        self.factory, self.data, self.run_script, self.runs = tmp_path_factory, data, run_script, {}

    def args(self, out, mode="loop", **over):
        args = dict(REFERENCE_RUN, data_dir=self.data / "train", val_data_dir=self.data / "val", ckpt_path=out,
                    **MODES[mode])
        args.update(over)
        return [f"--{k}={v}" for k, v in args.items()]

    def __call__(self, mode):
        if mode not in self.runs:
            root = self.factory.mktemp(f"reference_{mode}")
            proc = self.run_script("train.py", self.args(root / "out", mode, ckpt_older_weights_only=0), cwd=root,
                                   timeout=600)
            assert proc.returncode == 0, proc.output[-3000:]
            self.runs[mode] = (Scripts.run_dir(root / "out"), proc.output)
        return self.runs[mode]


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, make_tiny_data, run_script):
    """The session's uninterrupted reference runs (ReferenceRuns): the state that resumed and sink runs must
    reproduce, and a finished run to inspect. Data: 3 classes, train/ 3 x 12 and val/ 3 x 4 JPEGs of 40 px."""
    return ReferenceRuns(tmp_path_factory, make_tiny_data(3, {"train": 12, "val": 4}, 40, ext="JPEG"), run_script)


#: class c of make_tiny_data's 3-class trees (grey level 30 + 90c) under a user's name (sorted: daisy, rose, tulip)
FLOWER_NAMES = ("tulip", "rose", "daisy")


@pytest.fixture(scope="session")
def flowers_run(make_tiny_data, run_script, tmp_path_factory):
    """One learnable run shared by the deployment tests (test_deploy_e2e, test_quantize_int8): ``(data root,
    run folder)``. Data: train/ 3 x 24 and val/ 3 x 12 JPEGs of 40 px in class folders named FLOWER_NAMES, and
    held/ (val with one image of each class filed under the next class: label noise, so that a temperature
    fit has a finite answer). Run: cspdarknet_tiny, 4 epochs at 32 px, a checkpoint per epoch. Read-only:
    copy a checkpoint before writing beside it."""
    tiny = make_tiny_data(classes=3, per_class={"train": 24, "val": 12}, size=40, ext="JPEG")
    root = tmp_path_factory.mktemp("flowers")
    for split in ("train", "val"):
        for c, name in enumerate(FLOWER_NAMES):
            shutil.copytree(tiny / split / f"class{c}", root / split / name)
    shutil.copytree(root / "val", root / "held")
    for c, name in enumerate(FLOWER_NAMES):
        (root / "held" / name / "img000.JPEG").rename(root / "held" / FLOWER_NAMES[(c + 1) % 3] / f"moved_{name}.JPEG")
    out = tmp_path_factory.mktemp("flowers_run")
    args = dict(arch="cspdarknet_tiny", max_epoch=4, log_interval=10, data_dir=root / "train", num_classes=3,
                image_size="32,32", per_batch_size=8, warmup_epochs=0, lr=0.05, num_parallel_workers=1,
                ckpt_path=out / "runs", lr_scheduler="cosine_step", eta_min=0.0, crop_scale_min=0.5)
    result = run_script("train.py", [f"--{k}={v}" for k, v in args.items()], cwd=out)
    assert result.returncode == 0, result.output[-3000:]
    return root, Scripts.run_dir(out / "runs")
