"""Fused Mish and LeakyReLU as MindSpore custom CPU operators (``ops.Custom``, ``func_type="aot"``): one kernel
each way, keeping only the input (Mish) or output (LeakyReLU) for backward. ``kernels/activations.cc`` (AVX2+FMA
where available) is more exact than the three-primitive Mish (4 ulp from float64; MindSpore's CPU ``Tanh``
saturates near |x| = 5) and finite everywhere. Built with ``g++`` at first use into ``$CSPDARKNET_KERNEL_CACHE``
(default ``~/.cache/cspdarknet53/kernels``; it must lie under ``MS_CUSTOM_AOT_WHITE_LIST`` if set), named by a hash
of source and compile command. CPU training and evaluation only: export keeps the exportable form.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import threading

import mindspore as ms
from mindspore import nn, ops

from src.utils.fileio import atomic_path
from src.utils.host import available_cpus

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "activations.cc")
CACHE_ENV = "CSPDARKNET_KERNEL_CACHE"
# -ffp-contract=off: the vector and scalar paths round alike (only the explicit FMAs are fused).
CXXFLAGS = ("-std=c++17", "-O3", "-ffp-contract=off", "-fPIC", "-shared", "-pthread")

_lock = threading.Lock()
_state = {"path": None, "lib": None, "threads": None, "ops": None, "leaky_ops": None}


class KernelBuildError(RuntimeError):
    """The fused Mish kernel could not be compiled (no g++, or a compile error: the message has its output)."""


def build_kernel(cxx=None, cache_dir=None):
    """Compiles ``kernels/activations.cc`` (once per source/compiler/flags) and returns the ``.so`` path."""
    cxx = cxx or os.environ.get("CXX") or "g++"
    exe = shutil.which(cxx)
    if exe is None:
        raise KernelBuildError(f"the fused activation kernels need a C++ compiler: {cxx!r} not found (set CXX, or "
                               "turn fused_act off)")
    with open(SOURCE, "rb") as f:
        source = f.read()
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout.split("\n")[0]
    except (OSError, subprocess.SubprocessError) as err:
        raise KernelBuildError(f"{exe} --version failed: {err}") from None
    digest = hashlib.sha256(source + repr((version, CXXFLAGS)).encode()).hexdigest()[:16]
    cache_dir = cache_dir or os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache",
                                                                        "cspdarknet53", "kernels")
    path = os.path.join(cache_dir, f"activations_{digest}.so")
    if os.path.isfile(path):
        return path
    with atomic_path(path, ".so", mode=0o755) as tmp:
        proc = subprocess.run([exe, *CXXFLAGS, "-o", tmp, SOURCE], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise KernelBuildError(f"compiling {SOURCE} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return path


def kernel_library():
    """The built library's path and ``ctypes`` handle (one dlopen handle per process: the thread count set here
    reaches the kernels MindSpore runs)."""
    with _lock:
        if _state["lib"] is None:
            path = build_kernel()
            lib = ctypes.CDLL(path)
            lib.mish_set_threads.argtypes = [ctypes.c_int]
            _state["path"], _state["lib"] = path, lib
            if _state["threads"] is not None:
                lib.mish_set_threads(int(_state["threads"]))
        return _state["path"], _state["lib"]


def set_kernel_threads(threads):
    with _lock:
        _state["threads"] = max(1, int(threads))
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
    """The ``ops.Custom`` primitives ``<name>_fwd`` / ``<name>_bwd``, made once per process."""
    if _state[key] is None:
        path, _ = kernel_library()
        if _state["threads"] is None:
            set_kernel_threads(available_cpus())

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
    # the backward reads the output (y > 0 exactly where x > 0), which the next conv keeps anyway
    def bprop(x, alpha, out, dout):
        return backward(out, alpha, dout), ops.zeros_like(alpha)
    return bprop


class FusedLeakyReLU(nn.Cell):
    """LeakyReLU(x) = max(x, alpha x), 0 <= alpha <= 1, in one float32 kernel (other dtypes cast and back)."""

    def __init__(self, alpha=0.01):
        super().__init__()
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"FusedLeakyReLU: alpha={alpha} outside [0, 1]")
        self.alpha_value = float(alpha)
        self.alpha = ms.Tensor([float(alpha)], ms.float32)
        self.leaky = _custom_pair("leaky_ops", "leaky", _leaky_bprop)[0]

    def construct(self, x):
        if x.dtype == ms.float32:
            return self.leaky(x, self.alpha)
        return ops.cast(self.leaky(ops.cast(x, ms.float32), self.alpha), x.dtype)  # float32 kernel; AMP gives fp16


class FusedMish(nn.Cell):
    """Mish(x) = x * tanh(softplus(x)) in one float32 kernel (other dtypes cast and back)."""

    def __init__(self):
        super().__init__()
        self.mish = _custom_pair("ops", "mish", _mish_bprop)[0]

    def construct(self, x):
        if x.dtype == ms.float32:
            return self.mish(x)
        return ops.cast(self.mish(ops.cast(x, ms.float32)), x.dtype)
