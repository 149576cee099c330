"""Shared pytest setup for the three tiers: tests/unit/ (in process, fast), tests/reference/ (torch/timm
parity, the full-size network, the fused-kernel build) and tests/e2e/ (entry scripts, launchers, msrun and
the C++ app as subprocesses).

This file imports no MindSpore (a test module that needs it imports it; the fixtures below import it when
called), so that a MindSpore-free test pays nothing for it.

Process setup: the repository root on sys.path, GLOG_v=3 (quiet MindSpore C++ logs; set before the first
mindspore import, and inherited by every subprocess); the project's oneDNN cap for MindSpore inside pytest (not
inherited: pytest_configure); once a test module has imported MindSpore, MindSpore on CPU in PYNATIVE mode
before its first test runs.

Markers: every test is marked by its tier folder (``unit``, ``reference``, ``e2e``, registered in pytest.ini);
a test module anywhere else is a usage error.

Fixtures (``pytest --fixtures tests`` lists them with these docstrings):
    write_images     THE image maker: JPEG/PNG files of one class (noise around a grey level)
    make_tiny_data   tiny ImageFolder trees of brightness-coded classes (write_images), written once per session
    run_script       THE subprocess runner: entry scripts, tools, bash launchers and ``python -c`` children
    job_processes    live processes of a launcher job, found by CSPDARKNET53_RUN_NAME in their env
    graph_mode       GRAPH mode for one test, the previous (PYNATIVE) mode restored after it
    eval_data        the 7-image eval folder, the reference top-1/top-5 counter, randomised tiny nets
    randomize        non-trivial BN statistics / affine / head weights, so a mis-mapped tensor shows
    save_trained     a checkpoint as train.py writes it (src.checkpoint.checkpoint_metadata, the one writer)
    calibrate        "trained-like" weights with BN statistics measured on a calibration batch
    timm_model       timm's cspdarknet53 (PyTorch) with random BN, the timm-parity reference
"""
import ast
import functools
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
TIERS = ("unit", "reference", "e2e")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: set beside the oneDNN cap pytest_configure gives this process (and the xdist workers that inherit it)
ONEDNN_CAP_MARK = "CSPDARKNET53_TESTS_SET_ONEDNN_CAP"

# Job-control variables of an enclosing launcher (msrun, scripts/*.sh) or of a test's own launch; a test's
# subprocess never inherits them (a test that wants one passes it in ``env``).
LAUNCHER_VARS = ("MS_ROLE", "MS_WORKER_NUM", "MS_NODE_ID", "CSPDARKNET53_RUN_NAME", "RANK_SIZE", "RANK_ID",
                 "NODE_NUM", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "SERVER_ID", "DRY_RUN")


#: session fixtures that train or build something (tens of seconds, or into a shared cache folder): the test
#: modules that take one run in one pytest-xdist worker, so that it is made once (see worker_group)
SHARED_SESSION_FIXTURES = ("reference_run", "flowers_run", "timm_model", "app_build")


@functools.lru_cache(maxsize=None)
def _shared_fixtures_named(module):
    """The SHARED_SESSION_FIXTURES that test or fixture functions of ``module`` (a path relative to the root) take
    as parameters (the scheduler asks once per test: read each module once)."""
    try:
        with open(os.path.join(ROOT, module), encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return ()
    params = {a.arg for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
              for a in node.args.args + node.args.kwonlyargs}
    return tuple(name for name in SHARED_SESSION_FIXTURES if name in params)


@functools.lru_cache(maxsize=None)
def _fixture_unions():
    """{fixture: group name}: fixtures taken in one test module share a group (union-find over tests/*/)."""
    parent = {name: name for name in SHARED_SESSION_FIXTURES}

    def find(name):
        while parent[name] != name:
            name = parent[name]
        return name
    for path in sorted(TESTS.glob("*/test_*.py")):
        names = _shared_fixtures_named(os.path.relpath(path, ROOT))
        for other in names[1:]:
            parent[find(other)] = find(names[0])
    return {name: find(name) for name in SHARED_SESSION_FIXTURES}


def worker_group(module):
    """The pytest-xdist work unit of a test module (a path relative to the root): the group of the
    SHARED_SESSION_FIXTURES its functions take (fixtures taken in one module share a group), else the module
    itself, whose tests then share one worker and its module-scoped fixtures. Read from the sources (ast)
    because the scheduler runs in the controller, which collects nothing."""
    names = _shared_fixtures_named(module)
    return _fixture_unions()[names[0]] if names else module


def pytest_configure(config):
    """MindSpore run inside pytest gets the oneDNN cap train/eval/predict apply (src.utils.perf: AVX2 on AVX-512
    CPUs, where a plain-NCHW 3x3 Conv2D otherwise gets oneDNN's reference kernel, many times slower). oneDNN
    reads it once, so before any test module imports MindSpore; children do not inherit it (script_env): they
    apply their own settings, as for a user."""
    from src.utils.perf import cap_onednn_isa  # no MindSpore import

    cap = cap_onednn_isa("auto")
    if cap:
        os.environ[ONEDNN_CAP_MARK] = cap


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest.ini runs the suite in one worker per CPU (pytest-xdist); the work units are worker_group's."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return worker_group(nodeid.split("::", 1)[0])
    return ModuleGroups(config, log)


def pytest_collection_modifyitems(config, items):
    """Marks each test by its tier folder (tests/unit/, tests/reference/, tests/e2e/)."""
    for item in items:
        try:
            kind = Path(item.path).resolve().relative_to(TESTS.resolve()).parts[0]
        except ValueError:
            continue  # not under tests/ (e.g. a file passed by hand from elsewhere)
        if kind not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: test modules go in one of the tier folders tests/{{"
                                    f"{','.join(TIERS)}}}/")
        item.add_marker(kind)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test's captured output and log as valid UTF-8 (undecodable file names escaped): pytest-xdist sends
    them from the worker as UTF-8, and a lone surrogate (a Latin-1 name decoded by os.fsdecode) would end the
    whole run with an internal error."""
    outcome = yield
    report = outcome.get_result()
    report.sections = [(title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
                       for title, text in report.sections]


_MINDSPORE_SET = []


def _mindspore_on_cpu():
    """CPU and PYNATIVE once MindSpore is imported (by a test module or a fixture), before it runs a kernel."""
    ms = sys.modules.get("mindspore")
    if ms is None or _MINDSPORE_SET:
        return
    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    _MINDSPORE_SET.append(True)


def pytest_collection_finish(session):
    _mindspore_on_cpu()


def pytest_runtest_setup(item):
    _mindspore_on_cpu()


# ------------------------------------------------------------------------------------------------ images
def write_images(folder, n, value, seed=0, size=(40, 40), ext="jpg", noise=25.0, first=0):
    """``n`` images of one class in ``folder`` (created): pixels drawn from N(value, noise) per channel,
    clipped to 0..255 (brightness tells classes apart), ``size`` = (width, height), named
    ``img<first + i:03d>.<ext>`` (JPEG quality 90). Returns the paths."""
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        pixels = np.clip(rng.normal(value, noise, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        path = os.path.join(str(folder), f"img{first + i:03d}.{ext}")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture(scope="session", name="write_images")
def write_images_fixture():
    """``write_images(folder, n, value, seed=0, size=(40, 40), ext="jpg", noise=25.0, first=0) -> [paths]``:
    the one image maker of the tests (see tests/conftest.py write_images)."""
    return write_images


def tiny_value(c):
    """The grey level of class ``c`` in make_tiny_data's trees."""
    return 30 + 90 * c


@pytest.fixture(scope="session")
def make_tiny_data(tmp_path_factory):
    """``make_tiny_data(classes, per_class, size, seed=0, ext="jpg") -> Path``: an ImageFolder tree whose
    class c has pixels around 30 + 90c (write_images: told apart by brightness, learnable in a few steps).

    ``per_class`` is an int (``root/class<c>/img<i>.<ext>``) or a dict ``{split: n}``
    (``root/<split>/class<c>/...``). Each parameter set is written once per session; treat it as read-only.
    """
    cache = {}

    def make(classes, per_class, size, seed=0, ext="jpg"):
        key = (classes, tuple(per_class.items()) if isinstance(per_class, dict) else per_class, size, seed, ext)
        if key not in cache:
            root = tmp_path_factory.mktemp("tiny_data")
            splits = per_class.items() if isinstance(per_class, dict) else [(None, per_class)]
            for s, (split, n) in enumerate(splits):
                for c in range(classes):
                    folder = root / split / f"class{c}" if split else root / f"class{c}"
                    write_images(folder, n, tiny_value(c), seed=(seed, s, c), size=(size, size), ext=ext, noise=17)
            cache[key] = root
        return cache[key]
    return make


# ------------------------------------------------------------------------------------------------ processes
class ScriptRun(subprocess.CompletedProcess):
    @property
    def output(self):
        """stdout and stderr, for assertion messages and searches that do not care which."""
        return (self.stdout or "") + (self.stderr or "")


def script_env(env=None):
    """os.environ with GLOG_v=3, the repository first on PYTHONPATH and no launcher job variables; ``env``
    wins, a value of None removes the variable (e.g. ``{"GLOG_v": None}`` to run as a user does)."""
    full = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    if full.pop(ONEDNN_CAP_MARK, None):  # the cap is the test process's own (pytest_configure)
        full.pop("ONEDNN_MAX_CPU_ISA", None)
    full["GLOG_v"] = "3"
    full["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = str(value)
    return full


def _decode(data):
    return None if data is None else data.decode("utf-8", "backslashreplace")


class ScriptRunner:
    """Runs the repository's scripts and any other command in a child process with ``script_env(env)``."""

    env = staticmethod(script_env)
    python = sys.executable

    def command(self, script, args=()):
        """``[python, <repo>/<script>, *args]`` for a .py script, ``["bash", <repo>/<script>, *args]`` for a .sh
        one, ``[python, *args]`` for ``script=None`` (e.g. ``("-c", code)``)."""
        args = [str(a) for a in args]
        if script is None:
            return [self.python, *args]
        path = script if os.path.isabs(str(script)) else os.path.join(ROOT, str(script))
        return ["bash", path, *args] if str(script).endswith(".sh") else [self.python, path, *args]

    def __call__(self, script, args=(), cwd=None, env=None, timeout=600, input=None, **keys):
        """``script`` with ``args`` then ``--key=value`` for each of ``keys``; see the fixture."""
        argv = self.command(script, list(args) + [f"--{k}={v}" for k, v in keys.items()])
        return self.cmd(argv, cwd=cwd, env=env, timeout=timeout, input=input)

    def cmd(self, argv, cwd=None, env=None, timeout=600, input=None, **kwargs):
        """Any command line ``argv`` (a list), captured as text (undecodable bytes backslash-escaped)."""
        proc = subprocess.run([str(a) for a in argv], cwd=None if cwd is None else str(cwd), env=script_env(env),
                              capture_output=True, timeout=timeout,
                              input=None if input is None else input.encode(), **kwargs)
        return ScriptRun(proc.args, proc.returncode, _decode(proc.stdout), _decode(proc.stderr))

    def popen(self, script, args=(), cwd=None, env=None, **kwargs):
        """``script`` (as ``command``) started in the background: ``subprocess.Popen(..., **kwargs)``; the
        caller waits (and kills it in a ``finally``)."""
        return self.popen_cmd(self.command(script, args), cwd=cwd, env=env, **kwargs)

    def popen_cmd(self, argv, cwd=None, env=None, **kwargs):
        return subprocess.Popen([str(a) for a in argv], cwd=None if cwd is None else str(cwd), env=script_env(env),
                                **kwargs)

    def signal_when(self, script, args, cwd, marker, sig, env=None, timeout=300):
        """Runs ``script``, sends ``sig`` once an output line contains ``marker`` (asserted to appear), waits;
        ``(exit status, output)``. The child is killed if it outlives ``timeout`` or the test fails."""
        proc = self.popen(script, args, cwd=cwd, env={"PYTHONUNBUFFERED": "1", **(env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        try:
            for line in proc.stdout:
                seen.append(line)
                if marker in line:
                    proc.send_signal(sig)
                    break
            seen.append(proc.communicate(timeout=timeout)[0])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out = "".join(seen)
        assert marker in out, out[-3000:]
        return proc.returncode, out


@pytest.fixture(scope="session")
def run_script():
    """The one subprocess runner of the tests. ``run_script(script, args=(), cwd=None, env=None, timeout=600,
    input=None, **keys) -> ScriptRun`` runs ``<this Python> <repo>/<script> args --key=value...`` (``bash``
    for a ``.sh`` script; ``script=None`` runs ``<this Python> args``, e.g. ``("-c", code)``) in ``cwd`` with
    ``script_env(env)`` (GLOG_v=3, the repository first on PYTHONPATH, no launcher job variables; None
    removes a variable), captures text output (``.returncode``, ``.stdout``, ``.stderr``, ``.output`` = both)
    and kills the child after ``timeout`` seconds. ``run_script.cmd(argv, ...)`` runs any command line the
    same way; ``run_script.popen(script, args, ...)`` / ``.popen_cmd(argv, ...)`` start it in the background;
    ``run_script.signal_when(script, args, cwd, marker, sig)`` stops it with a signal once ``marker`` is printed;
    ``run_script.env(env)`` is that environment."""
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


# ------------------------------------------------------------------------------------------------ MindSpore
@pytest.fixture
def graph_mode():
    """GRAPH mode (as train.py and eval.py run) for one test; the previous mode is restored after it."""
    import mindspore as ms
    _mindspore_on_cpu()
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=previous)


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
        import mindspore as ms

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
    (``.net(seed)``), see EvalData. Images: class i % 3, sizes 44 x (36 + 3i), broad noise (hard to tell apart)."""
    root = tmp_path_factory.mktemp("evaldata") / "val"
    for i in range(7):
        write_images(root / f"class{i % 3}", 1, 100 + 20 * (i % 3), seed=i, size=(44, 36 + 3 * i), noise=58,
                     first=i)
    return EvalData(root)


def _randomize(net, seed, shift=0.2, variance=(0.5, 1.5), gamma=(0.4, 0.8), head=None):
    import mindspore as ms
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


def _save_trained(net, path, class_names=None, image_size="auto", eval_resize="auto", crop_pct=0.0, entries=None):
    from src.archs import resolve_preprocess
    from src.checkpoint import checkpoint_metadata, save_checkpoint_atomic

    names = [f"class{i}" for i in range(net.num_classes)] if class_names is None else class_names
    pre = resolve_preprocess(net.arch, image_size, eval_resize, crop_pct)
    return Path(save_checkpoint_atomic(net if entries is None else entries, path,
                                       metadata=checkpoint_metadata(net, pre, {n: i for i, n in enumerate(names)})))


@pytest.fixture(scope="session")
def save_trained():
    """``save_trained(net, path, class_names=None, image_size="auto", eval_resize="auto", crop_pct=0.0,
    entries=None) -> Path``: a checkpoint as train.py writes it, with the one metadata writer
    (``src.checkpoint.checkpoint_metadata``): arch, num_classes, the preprocessing (``src.archs.
    resolve_preprocess`` of the values given) and the class names (default ``class<i>`` for every output, the
    folder names of ``make_tiny_data`` and ``eval_data``). ``entries``: the ``{"name", "data"}`` list to save
    instead of the network's parameters (e.g. with EMA weights)."""
    return _save_trained


def _calibrate(net, seed, batch):
    import mindspore as ms
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
    statistics (RandomState(7)): the reference of the timm-parity tests (tests/reference/). Read-only."""
    import timm
    import torch
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
