"""Shared pytest setup for tests/unit/ (in process) and tests/e2e/ (entry scripts, launchers, the C++ app).

Process setup: the repository root on sys.path, GLOG_v=3 (quiet MindSpore C++ logs; set before the first
mindspore import, and inherited by every subprocess), MindSpore on CPU in PYNATIVE mode.

Markers: every test under tests/unit/ is marked ``unit``, every test under tests/e2e/ ``e2e`` (registered
in pytest.ini); a test module anywhere else is a usage error.

Fixtures (``pytest --fixtures tests`` lists them with these docstrings):
    graph_mode       GRAPH mode for one test, the previous (PYNATIVE) mode restored after it
    make_tiny_data   tiny ImageFolder trees of brightness-coded classes, written once per session
    eval_data        the 7-image eval folder, the reference top-1/top-5 counter, randomised tiny nets
    randomize        non-trivial BN statistics / affine / head weights, so a mis-mapped tensor shows
    calibrate        "trained-like" weights with BN statistics measured on a calibration batch
    timm_model       timm's cspdarknet53 (PyTorch) with random BN, the timm-parity reference
    run_script       runs an entry script (train.py, eval.py, ...) in a subprocess with the test env
    job_processes    live processes of a launcher job, found by CSPDARKNET53_RUN_NAME in their env
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "3")  # before the first mindspore import

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = Path(ROOT) / "tests"
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import mindspore as ms  # noqa: E402

ms.set_device("CPU")
ms.set_context(mode=ms.PYNATIVE_MODE)

# Job-control variables of an enclosing launcher (msrun, scripts/*.sh); a test's subprocess must not inherit them.
LAUNCHER_VARS = ("MS_ROLE", "CSPDARKNET53_RUN_NAME")


def pytest_collection_modifyitems(config, items):
    """Marks each test ``unit`` or ``e2e`` by its folder (tests/unit/, tests/e2e/)."""
    for item in items:
        try:
            kind = Path(item.path).resolve().relative_to(TESTS.resolve()).parts[0]
        except ValueError:
            continue  # not under tests/ (e.g. a file passed by hand from elsewhere)
        if kind not in ("unit", "e2e"):
            raise pytest.UsageError(f"{item.nodeid}: test modules go in tests/unit/ (in process) or tests/e2e/")
        item.add_marker(kind)


# ------------------------------------------------------------------------------------------------ mode
@pytest.fixture
def graph_mode():
    """GRAPH mode (as train.py and eval.py run) for one test; the previous mode is restored after it."""
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=previous)


# ------------------------------------------------------------------------------------------------ data
def _write_tiny_data(root, classes, per_class, size, seed, ext):
    from PIL import Image
    rng = np.random.RandomState(seed)
    splits = per_class.items() if isinstance(per_class, dict) else [(None, per_class)]
    for split, n in splits:
        for c in range(classes):
            folder = root / split / f"class{c}" if split else root / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (rng.rand(size, size, 3) * 60 + c * 90).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"img{i}.{ext}", quality=90)


@pytest.fixture(scope="session")
def make_tiny_data(tmp_path_factory):
    """``make_tiny_data(classes, per_class, size, seed=0, ext="jpg") -> Path``: an ImageFolder tree whose
    class c has pixels uniform in [90c, 90c + 60) (told apart by brightness: learnable in a few steps).

    ``per_class`` is an int (``root/class<c>/img<i>.<ext>``) or a dict ``{split: n}``
    (``root/<split>/class<c>/...``). Each parameter set is written once per session; treat it as read-only.
    """
    cache = {}

    def make(classes, per_class, size, seed=0, ext="jpg"):
        key = (classes, tuple(per_class.items()) if isinstance(per_class, dict) else per_class, size, seed, ext)
        if key not in cache:
            root = tmp_path_factory.mktemp("tiny_data")
            _write_tiny_data(root, classes, per_class, size, seed, ext)
            cache[key] = root
        return cache[key]
    return make


class EvalData:
    """3 class folders, 7 JPEGs of different sizes (with batch 4 the last batch holds 3), scored against
    NUM_CLASSES=10 outputs (more than the 3 classes, so that top-5 is not trivially 100%)."""
    SIZE = "32,32"
    BATCH = 4
    NUM_CLASSES = 10

    def __init__(self, root):
        self.root = root

    def net(self, seed, num_classes=NUM_CLASSES):
        """A cspdarknet_tiny classifier (init seed ``seed``) with randomised BN and head (see ``randomize``)."""
        from src.image_classification import create_model
        return _randomize(create_model("cspdarknet_tiny", num_classes=num_classes, seed=seed), seed + 100,
                          shift=0.3, head=0.5)

    def counts(self, net):
        """(top1_correct, top5_correct, images) counted here from the network's logits on eval's
        preprocessing: the reference that src/evaluation.py and eval.py are checked against."""
        from src.data import create_dataset
        net.set_train(False)
        bundle = create_dataset(str(self.root), self.SIZE, self.BATCH, mode="eval", num_classes=self.NUM_CLASSES,
                                num_parallel_workers=1)
        logits, labels = [], []
        for images, lab in bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
            logits.append(net(ms.Tensor(images)).asnumpy())
            labels.append(lab)
        logits, labels = np.concatenate(logits), np.concatenate(labels)
        order = np.argsort(logits, axis=1)[:, ::-1]
        top1 = int((order[:, 0] == labels).sum())
        top5 = int(sum(label in row[:5] for label, row in zip(labels, order)))
        return top1, top5, len(labels)


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory):
    """The eval tests' image folder (``.root``), reference counter (``.counts(net)``) and randomised networks
    (``.net(seed)``), see EvalData."""
    from PIL import Image
    root = tmp_path_factory.mktemp("evaldata") / "val"
    rng = np.random.RandomState(0)
    for i in range(7):
        folder = root / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (rng.rand(36 + 3 * i, 44, 3) * 200 + (i % 3) * 20).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.jpg", quality=90)
    return EvalData(root)


# ------------------------------------------------------------------------------------------------ weights
def _randomize(net, seed, shift=0.2, variance=(0.5, 1.5), gamma=(0.4, 0.8), head=None):
    ranges = {"moving_mean": (-shift, shift) if shift is not None else None,
              "beta": (-shift, shift) if shift is not None else None,
              "moving_variance": variance, "gamma": gamma,
              "head.fc.weight": (-head, head) if head is not None else None}
    rng = np.random.RandomState(seed)
    for name, p in net.parameters_dict().items():
        bounds = next((r for suffix, r in ranges.items() if name.endswith(suffix)), None)
        if bounds is not None:
            p.set_data(ms.Tensor(rng.uniform(bounds[0], bounds[1], p.shape).astype(np.float32)))
    return net


@pytest.fixture(scope="session")
def randomize():
    """``randomize(net, seed, shift=0.2, variance=(0.5, 1.5), gamma=(0.4, 0.8), head=None) -> net``:
    non-trivial BN statistics and affine parameters (and head weights) so that the logits carry signal and
    a mis-mapped or wrongly computed tensor changes them. In parameter order, one ``RandomState(seed)``
    draws moving_mean and beta from U(-shift, shift), moving_variance from U(*variance), gamma from
    U(*gamma) and head.fc.weight from U(-head, head); a range of None leaves those parameters alone."""
    return _randomize


def _calibrate(net, seed, batch):
    from mindspore import nn
    rng = np.random.default_rng(seed)
    for name, param in net.parameters_and_names():
        shape = tuple(param.shape)
        if name.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("beta", "bias")):
            value = rng.normal(0.0, 0.2, shape)
        elif name.endswith("moving_mean"):
            value = np.zeros(shape)
        elif name.endswith("moving_variance"):
            value = np.ones(shape)
        else:  # conv / fc weights: He normal
            value = rng.normal(0.0, np.sqrt(2.0 / int(np.prod(shape[1:]))), shape)
        param.set_data(ms.Tensor(value.astype(np.float32), param.dtype))
    net.set_train(False)

    def measure(cell, inputs):
        x = inputs[0].asnumpy().astype(np.float64)
        cell.moving_mean.set_data(ms.Tensor(x.mean(axis=(0, 2, 3)).astype(np.float32)))
        cell.moving_variance.set_data(ms.Tensor(x.var(axis=(0, 2, 3)).astype(np.float32)))
    handles = [c.register_forward_pre_hook(measure) for _, c in net.cells_and_names() if isinstance(c, nn.BatchNorm2d)]
    assert handles, "no BatchNorm2d in the network?"
    try:
        net(ms.Tensor(np.asarray(batch, np.float32)))  # PYNATIVE (the default here): the hooks run
    finally:
        for handle in handles:
            handle.remove()
    return net


@pytest.fixture(scope="session")
def calibrate():
    """``calibrate(net, seed, batch) -> net`` (eval mode): "trained-like" weights, i.e. He-normal convs, random
    BN affine parameters, and each BN's moving mean/variance measured on its own input for the calibration
    ``batch`` (NCHW) in one forward pass, so activations stay normalised, the logits depend on the image and
    the Mish inputs reach the range where MindSpore's CPU Tanh is approximate. (The zoo initialisation alone
    gives the tiny net logits that differ by ~1e-8 between images.) Needs PYNATIVE mode."""
    return _calibrate


@pytest.fixture(scope="session")
def timm_model():
    """timm's cspdarknet53 (PyTorch, eval mode; torch.manual_seed(0) init) with random BN affine parameters and
    statistics (RandomState(7)): the reference of the timm-parity tests. Read-only; skipped without torch/timm."""
    torch = pytest.importorskip("torch", reason="reference test needs torch (requirements-reference.txt)")
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("cspdarknet53", pretrained=False)
    rng = np.random.RandomState(7)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                # timm zero-inits each block's last gamma; moderate gammas keep every weight visible
                module.weight.copy_(torch.from_numpy(rng.uniform(0.4, 0.8, c).astype(np.float32)))
                module.bias.copy_(torch.from_numpy(rng.uniform(-0.2, 0.2, c).astype(np.float32)))
                module.running_mean.copy_(torch.from_numpy(rng.uniform(-0.2, 0.2, c).astype(np.float32)))
                module.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32)))
    return model.eval()


# ------------------------------------------------------------------------------------------------ processes
class ScriptRun(subprocess.CompletedProcess):
    @property
    def output(self):
        """stdout and stderr, for assertion messages and searches that do not care which."""
        return (self.stdout or "") + (self.stderr or "")


def script_env(env=None):
    """os.environ with GLOG_v=3, the repository first on PYTHONPATH, no launcher job variables; ``env`` wins."""
    full = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    full["GLOG_v"] = "3"
    full["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    full.update({k: str(v) for k, v in (env or {}).items()})
    return full


class ScriptRunner:
    """Runs the repository's entry scripts with this interpreter and ``script_env(env)``."""

    env = staticmethod(script_env)

    def command(self, script, args=()):
        return [sys.executable, os.path.join(ROOT, script), *[str(a) for a in args]]

    def __call__(self, script, args=(), cwd=None, env=None, timeout=600):
        proc = subprocess.run(self.command(script, args), cwd=None if cwd is None else str(cwd), env=script_env(env),
                              capture_output=True, text=True, timeout=timeout)
        return ScriptRun(proc.args, proc.returncode, proc.stdout, proc.stderr)

    def popen(self, script, args=(), cwd=None, env=None, **kwargs):
        """The script started in the background (``subprocess.Popen(..., **kwargs)``); the caller waits."""
        return subprocess.Popen(self.command(script, args), cwd=None if cwd is None else str(cwd),
                                env=script_env(env), **kwargs)


@pytest.fixture(scope="session")
def run_script():
    """``run_script(script, args=(), cwd=None, env=None, timeout=600) -> ScriptRun``: runs
    ``<this Python> <repo>/<script> args`` in ``cwd`` with ``script_env(env)`` (GLOG_v=3, the repository
    first on PYTHONPATH, no launcher job variables), captures text output (``.stdout``, ``.stderr``,
    ``.output`` = both) and kills the script after ``timeout`` seconds. ``run_script.popen(...)`` starts it
    in the background instead; ``run_script.env(env)`` is that environment."""
    return ScriptRunner()


def _live_job_processes(run_name):
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except (OSError, ValueError, IndexError):
            continue
        if env.get(b"CSPDARKNET53_RUN_NAME") == run_name.encode() and state != "Z":
            found[int(entry)] = (comm, env.get(b"MS_ROLE", b"").decode(), env.get(b"MS_NODE_ID", b"").decode())
    return found


def _job_processes(run_name, settle=0.0):
    """{pid: (comm, MS_ROLE, MS_NODE_ID)} of the live (not zombie) processes whose environment has
    CSPDARKNET53_RUN_NAME=run_name. With ``settle`` > 0, first waits up to that many seconds for them to be
    gone (a SIGKILLed process needs a moment to exit) and returns the ones still alive."""
    end = time.monotonic() + settle
    found = _live_job_processes(run_name)
    while found and time.monotonic() < end:
        time.sleep(0.1)
        found = _live_job_processes(run_name)
    return found


@pytest.fixture(scope="session")
def job_processes():
    """``job_processes(run_name, settle=0.0) -> {pid: (comm, MS_ROLE, MS_NODE_ID)}``: the live processes of a
    launcher job (Linux /proc), e.g. to kill a chosen rank or to check that none is left behind."""
    if not os.path.isdir("/proc"):
        pytest.skip("needs Linux /proc")
    return _job_processes
