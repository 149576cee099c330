"""CPU performance settings shared by train.py, eval.py and benchmark.py.

Call :func:`apply_cpu_performance_settings` once per process, after ``setup_device`` and before the
first graph is compiled (MindSpore lets ``threads_num`` be set only once per process). It never
changes the network's numerics. Findings behind the defaults are in ``docs/performance.md``.
"""
import os

__all__ = ["default_threads", "recommended_settings", "apply_cpu_performance_settings", "prepare_network"]

JIT_LEVELS = ("O0", "O1", "O2")


def default_threads():
    """Cores this process may run on (the affinity mask, not the host's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_flags():
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty set off Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def recommended_settings():
    """The settings measured to help on CPU (see docs/performance.md), as keyword arguments."""
    return {"onednn_isa": "auto"}


def _resolve_onednn_isa(onednn_isa):
    """``auto`` -> "AVX2" on AVX-512 CPUs, else None (leave oneDNN alone); a name passes through.

    Why: MindSpore 2.10's CPU Conv2D hands oneDNN 3.10 plain NCHW tensors. On a CPU with AVX-512,
    oneDNN picks its ``jit_uni_ncsp`` convolution for every 3x3 conv, whose nested kernel is the
    *reference* (scalar) convolution: about 1.4 GFLOP/s on the 2-core Zen 4 test machine. Capped at
    AVX2, oneDNN uses im2col + its JIT sgemm instead (``x64:gemm:jit``), 20-50x faster for these
    layers. 1x1 convs, BN and matmul lose nothing measurable from the cap.
    """
    if onednn_isa in (None, "", "none", "off"):
        return None
    if onednn_isa == "auto":
        return "AVX2" if "avx512f" in cpu_flags() else None
    return str(onednn_isa).upper()


def apply_cpu_performance_settings(threads=None, jit_level=None, dispatch_threads=None, compile_cache_dir=None,
                                   onednn_isa="auto"):
    """Applies the CPU settings; returns a dict of what was set (for logs and benchmark rows).

    Args:
        threads: CPU kernel threads (``mindspore.device_context.cpu.op_tuning.threads_num``).
            None -> one per available core. MindSpore's own default is 25 whatever the core count.
            0 leaves MindSpore's default.
        jit_level: "O0" | "O1" | "O2" for ``set_context(jit_config=...)``; None leaves the default.
        dispatch_threads: runtime (actor) threads (``mindspore.runtime.dispatch_threads_num``);
            None leaves the default (5).
        onednn_isa: "auto" caps oneDNN at AVX2 on AVX-512 CPUs (see ``_resolve_onednn_isa``: this is
            the setting that matters most); a oneDNN ISA name (``AVX2``, ``AVX512_CORE`` ...) forces one;
            None leaves oneDNN's own choice.
        compile_cache_dir: when given, enables MindSpore's compile cache there (a second run of the
            same graph skips front-end compilation). Must be set before the first compile.
    """
    import mindspore as ms

    applied = {}
    isa = _resolve_onednn_isa(onednn_isa)
    if isa and "ONEDNN_MAX_CPU_ISA" not in os.environ and "DNNL_MAX_CPU_ISA" not in os.environ:
        # oneDNN reads this when it first dispatches a kernel, so it works after `import mindspore`
        # as long as no graph has been compiled yet. An explicit user setting wins.
        os.environ["ONEDNN_MAX_CPU_ISA"] = isa
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        applied["onednn_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    if threads is None:
        threads = default_threads()
    if threads:
        ms.device_context.cpu.op_tuning.threads_num(int(threads))
        applied["threads"] = int(threads)
    if jit_level is not None:
        if jit_level not in JIT_LEVELS:
            raise ValueError(f"jit_level={jit_level!r}: expected one of {JIT_LEVELS}")
        ms.set_context(jit_config={"jit_level": jit_level})
        applied["jit_level"] = jit_level
    if dispatch_threads:
        ms.runtime.dispatch_threads_num(int(dispatch_threads))
        applied["dispatch_threads"] = int(dispatch_threads)
    if compile_cache_dir:
        os.makedirs(compile_cache_dir, exist_ok=True)
        os.environ["MS_COMPILER_CACHE_ENABLE"] = "1"
        os.environ["MS_COMPILER_CACHE_PATH"] = os.path.abspath(compile_cache_dir)
        applied["compile_cache_dir"] = os.path.abspath(compile_cache_dir)
    return applied


def prepare_network(net, train, **options):
    """Graph-level rewrites that keep the numerics (placeholder: returns ``net``)."""
    if options:
        raise ValueError(f"unknown network options {sorted(options)}")
    return net
