"""Fused activations as MindSpore custom CPU operators (``ops.Custom``, ``func_type="aot"``): Mish and
LeakyReLU, each a one-pass forward and a one-pass backward kernel that needs only the input.

``kernels/activations.cc`` computes ``mish(x) = x * tanh(softplus(x))`` and its derivative in one pass each
from ``e = exp(x)`` (see the source for the stable form), AVX2+FMA where the CPU has it, on
``threads`` std::threads. Compared with the three-primitive ``src.utils.custom_op.Mish``:

* one kernel instead of three (Softplus, Tanh, Mul) forward and four to five backward, and the backward
  pass keeps only ``x`` (the BN output, kept anyway) instead of ``softplus(x)`` and ``tanh(softplus(x))``;
* more exact: max 4 ulp from a float64 reference over [-100, 100] (MindSpore 2.10's CPU ``Tanh``
  saturates near |x| = 5, which puts the three-primitive form up to 5e-4 off at x = 5), and finite
  everywhere (MindSpore's own ``nn.Mish`` kernel returns NaN from x = 45 on).

The shared library is built with the system ``g++`` at first use into a cache folder
(``$CSPDARKNET_KERNEL_CACHE``, else ``~/.cache/cspdarknet53/kernels``), named by a hash of the source
and the compile command, written atomically (concurrent first uses are safe). MindSpore refuses an aot
library outside ``MS_CUSTOM_AOT_WHITE_LIST`` when that variable is set: then put the cache under it.

The cell is for training and evaluation on CPU only. Export (MINDIR/ONNX) keeps the exportable
three-primitive form: ``src.utils.perf.prepare_network(fused_act=True)`` swaps them in on the network
being run, never on the one being exported.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading

import mindspore as ms
from mindspore import nn, ops

__all__ = ["KernelBuildError", "kernel_source", "build_kernel", "kernel_library", "set_kernel_threads",
           "FusedMish", "FusedLeakyReLU", "fused_ops_available"]

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "activations.cc")
CACHE_ENV = "CSPDARKNET_KERNEL_CACHE"
# -ffp-contract=off: the vector and scalar paths round alike (only the explicit FMAs are fused).
CXXFLAGS = ("-std=c++17", "-O3", "-ffp-contract=off", "-fPIC", "-shared", "-pthread")

_lock = threading.Lock()
_state = {"path": None, "lib": None, "threads": None, "ops": None, "leaky_ops": None}


class KernelBuildError(RuntimeError):
    """The fused Mish kernel could not be compiled (no g++, or a compile error: the message has its output)."""


def kernel_source():
    return SOURCE


def _cache_dir():
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "cspdarknet53", "kernels")
    os.makedirs(root, exist_ok=True)
    return root


def build_kernel(cxx=None, cache_dir=None):
    """Compiles ``kernels/activations.cc`` (once per source/compiler/flags) and returns the ``.so`` path."""
    cxx = cxx or os.environ.get("CXX") or "g++"
    exe = shutil.which(cxx)
    if exe is None:
        raise KernelBuildError(f"the fused activation kernels need a C++ compiler: {cxx!r} not found (set CXX, or "
                               "turn fused_act / fused_mish off)")
    with open(SOURCE, "rb") as f:
        source = f.read()
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout.split("\n")[0]
    except (OSError, subprocess.SubprocessError) as err:
        raise KernelBuildError(f"{exe} --version failed: {err}") from None
    digest = hashlib.sha256(source + repr((version, CXXFLAGS)).encode()).hexdigest()[:16]
    cache_dir = cache_dir or _cache_dir()
    path = os.path.join(cache_dir, f"activations_{digest}.so")
    if os.path.isfile(path):
        return path
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache_dir)
    os.close(fd)
    try:
        proc = subprocess.run([exe, *CXXFLAGS, "-o", tmp, SOURCE], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise KernelBuildError(f"compiling {SOURCE} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def kernel_library():
    """The built library's path and its ``ctypes`` handle (the same one MindSpore's loader gets: dlopen of
    one file returns one handle per process, so :func:`set_kernel_threads` reaches the kernels MindSpore runs)."""
    with _lock:
        if _state["lib"] is None:
            path = build_kernel()
            lib = ctypes.CDLL(path)
            lib.mish_set_threads.argtypes = [ctypes.c_int]
            lib.mish_get_threads.restype = ctypes.c_int
            for name in ("mish_forward_f32", "mish_forward_f32_scalar"):
                getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            for name in ("mish_backward_f32", "mish_backward_f32_scalar"):
                getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            _state["path"], _state["lib"] = path, lib
            if _state["threads"] is not None:
                lib.mish_set_threads(int(_state["threads"]))
        return _state["path"], _state["lib"]


THREADS_ENV = "CSPDARKNET_FUSED_THREADS"


def set_kernel_threads(threads):
    """Threads of the fused kernels (MindSpore's kernel thread count, set by ``apply_cpu_performance_settings``;
    ``$CSPDARKNET_FUSED_THREADS`` overrides it)."""
    with _lock:
        _state["threads"] = max(1, int(os.environ.get(THREADS_ENV) or threads))
        if _state["lib"] is not None:
            _state["lib"].mish_set_threads(_state["threads"])


def fused_ops_available():
    """``(True, "")`` when the kernel builds and loads here, else ``(False, why)``."""
    try:
        kernel_library()
    except (KernelBuildError, OSError) as err:
        return False, str(err)
    return True, ""


def _custom_pair(key, name, bprop_of):
    """The ``(forward, backward)`` ``ops.Custom`` primitives of kernel ``name`` (``<name>_fwd``,
    ``<name>_bwd``), made once per process and shared by every cell; ``bprop_of(backward)`` is the forward's
    bprop."""
    if _state[key] is None:
        path, _ = _ops_path()

        def same(x, *_):
            return x

        backward = ops.Custom(f"{path}:{name}_bwd", out_shape=same, out_dtype=same, func_type="aot")
        forward = ops.Custom(f"{path}:{name}_fwd", out_shape=same, out_dtype=same, func_type="aot",
                             bprop=bprop_of(backward))
        _state[key] = (forward, backward)
    return _state[key]


def _mish_bprop(backward):
    def bprop(x, out, dout):
        return (backward(x, dout),)
    return bprop


def _leaky_bprop(backward):
    # The backward reads the OUTPUT (y > 0 exactly where x > 0, for 0 <= alpha <= 1), which the next conv
    # keeps for its weight gradient anyway; the input (the BN output) is then not kept for backward.
    def bprop(x, alpha, out, dout):
        return backward(out, alpha, dout), ops.zeros_like(alpha)
    return bprop


def _ops():
    """Mish's two ``ops.Custom`` primitives."""
    return _custom_pair("ops", "mish", _mish_bprop)


def _leaky_ops():
    """LeakyReLU's two ``ops.Custom`` primitives."""
    return _custom_pair("leaky_ops", "leaky", _leaky_bprop)


def _ops_path():
    path, lib = kernel_library()
    if _state["threads"] is None:
        from src.utils.host import available_cpus
        set_kernel_threads(available_cpus())
    return path, lib


class FusedLeakyReLU(nn.Cell):
    """LeakyReLU(x) = max(x, alpha x) (0 <= alpha <= 1) in one custom CPU kernel (float32; other dtypes are cast to
    float32 and back), one-kernel backward."""

    def __init__(self, alpha=0.01):
        super().__init__()
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"FusedLeakyReLU: alpha={alpha} outside [0, 1]")
        self.alpha_value = float(alpha)
        self.alpha = ms.Tensor([float(alpha)], ms.float32)
        self.leaky = _leaky_ops()[0]

    def construct(self, x):
        if x.dtype == ms.float32:
            return self.leaky(x, self.alpha)
        # the kernel is float32 only: AMP (O2/O3) hands it float16, which it would refuse with an error code
        return ops.cast(self.leaky(ops.cast(x, ms.float32), self.alpha), x.dtype)


class FusedMish(nn.Cell):
    """Mish(x) = x * tanh(softplus(x)) in one custom CPU kernel (float32; other dtypes are cast to float32 and
    back), with a one-kernel backward.

    Builds the kernel on first use (``KernelBuildError`` if it cannot)."""

    def __init__(self):
        super().__init__()
        self.mish = _ops()[0]

    def construct(self, x):
        if x.dtype == ms.float32:
            return self.mish(x)
        return ops.cast(self.mish(ops.cast(x, ms.float32)), x.dtype)  # float32 kernel (see FusedLeakyReLU)
