"""CPU performance settings shared by train.py, eval.py and benchmark.py.

Two kinds of setting, applied in this order:

* process settings, :func:`apply_cpu_performance_settings` -- once per process, after
  ``setup_device`` and before the first graph is compiled: oneDNN's ISA cap, kernel threads,
  jit level, compile cache;
* network rewrites, :func:`prepare_network` -- on the freshly built network, before its first call
  (GRAPH mode caches the compiled graph, so a later change would be ignored): activation recompute
  (training), BatchNorm folding (inference) and, off by default because MindSpore's kernel is unsafe,
  the fused Mish kernel.

Typical use::

    settings = recommended_settings("train")            # or "infer"
    process, network = split_settings(settings)
    apply_cpu_performance_settings(threads=cfg_threads, **process)
    net = prepare_network(create_model(...), train=True, **network)

The recommended settings do not change the function the network computes: recompute gives
bit-identical losses, folded BN differs from the reference by float32 rounding only (max |diff|
1.5e-8 on logits of magnitude 0.2).
Export (ONNX/MINDIR) keeps unfolded BN: do not call ``prepare_network`` before export.
Measurements behind each default: ``docs/performance.md``.
"""
import os

from src.utils import host

__all__ = ["recommended_settings", "split_settings", "apply_recommended_settings",
           "apply_cpu_performance_settings", "prepare_network", "use_fused_activations", "use_fused_mish",
           "fold_batchnorm", "recompute_activations"]

JIT_LEVELS = ("O0", "O1", "O2")
PROCESS_SETTINGS = ("onednn_isa", "jit_level", "dispatch_threads", "compile_cache_dir")
NETWORK_SETTINGS = ("fused_act", "fused_mish", "fold_bn", "recompute_act")


def recommended_settings(mode="train"):
    """The settings measured to help on CPU, as one dict (see :func:`split_settings`).

    ``mode``: "train" or "infer" (evaluation, prediction, inference benchmarks). Training swaps Mish and
    LeakyReLU for the fused custom kernels (``fused_act``) and recomputes what activations remain unfused
    (peak 8.6 -> 6.6 GB at batch 32, 224 px, same speed within noise, bit-identical losses); inference
    swaps Mish only (``fused_act="mish"``) and folds BatchNorm into the convs.
    Jit level and dispatch threads are left at MindSpore's defaults: O1/O2 and other thread
    counts made no difference beyond noise here.
    """
    if mode not in ("train", "infer"):
        raise ValueError(f"mode={mode!r}: expected 'train' or 'infer'")
    # fused_act: the project's one-kernel Mish / LeakyReLU custom CPU operators (src.utils.fused_ops). In
    # training both pay (LeakyReLU network at bs 32 / 224 px: 1.65x img/s, peak 13.7 -> 5.5 GB, first step
    # 28 -> 5 s); in inference only Mish does: the fused LeakyReLU was 10 % slower at batch 1 and equal at 32
    # (docs/performance.md, sections 1-2). Without a C++ compiler they fall back (warning).
    settings = {"onednn_isa": "auto", "fused_act": True}
    if mode == "infer":
        settings["fused_act"] = "mish"
        settings["fold_bn"] = True
    else:
        settings["recompute_act"] = True
    return settings


def split_settings(settings):
    """``(process_kwargs, network_kwargs)`` for :func:`apply_cpu_performance_settings` / :func:`prepare_network`."""
    settings = dict(settings or {})
    unknown = set(settings) - set(PROCESS_SETTINGS) - set(NETWORK_SETTINGS)
    if unknown:
        raise ValueError(f"unknown performance settings {sorted(unknown)}; known: "
                         f"{sorted(PROCESS_SETTINGS + NETWORK_SETTINGS)}")
    return ({k: v for k, v in settings.items() if k in PROCESS_SETTINGS},
            {k: v for k, v in settings.items() if k in NETWORK_SETTINGS})


def _resolve_onednn_isa(onednn_isa):
    """``auto`` -> "AVX2" on AVX-512 CPUs, else None (leave oneDNN alone); a name passes through.

    Why: MindSpore 2.10's CPU Conv2D hands its bundled oneDNN (3.10.1) plain NCHW tensors. On a CPU
    with AVX-512, oneDNN picks its ``jit_uni_ncsp`` convolution for every 3x3 conv, and that wraps
    the *reference* (scalar) convolution (``ONEDNN_VERBOSE=1`` prints ``jit_uni_ncsp:conv+ref:any``):
    0.2-1.4 GFLOP/s on the Zen 4 test machine. Capped at AVX2, oneDNN uses im2col + its JIT sgemm
    (``x64:gemm:jit``), 27-45 GFLOP/s per thread: 20-150x faster on those layers. On CPUs without
    AVX-512 the cap changes nothing, so ``auto`` leaves them alone.
    """
    if onednn_isa in (None, "", "none", "off", False):
        return None
    if onednn_isa == "auto":
        return "AVX2" if "avx512f" in host.cpu_flags() else None
    return str(onednn_isa).upper()


def apply_cpu_performance_settings(threads=None, onednn_isa="auto", jit_level=None, dispatch_threads=None,
                                   compile_cache_dir=None):
    """Applies the process-wide CPU settings; returns a dict of what was set (for logs and benchmark rows).

    Args:
        threads: CPU kernel threads (``mindspore.device_context.cpu.op_tuning.threads_num``, settable once
            per process). None -> one per usable core; 0 -> leave MindSpore's default (25 threads,
            whatever the core count).
        onednn_isa: "auto" caps oneDNN at AVX2 on AVX-512 CPUs (see ``_resolve_onednn_isa``; the setting
            that matters most); a oneDNN ISA name (``AVX2``, ``AVX512_CORE`` ...) forces one; None leaves
            oneDNN's own choice. An ``ONEDNN_MAX_CPU_ISA`` already in the environment always wins.
        jit_level: "O0" | "O1" | "O2" for ``set_context(jit_config=...)``; None leaves the default.
        dispatch_threads: runtime (actor) threads (``mindspore.runtime.dispatch_threads_num``); None leaves
            the default (5).
        compile_cache_dir: enables MindSpore's front-end compile cache there; a second run skips most of
            the graph compile (15 s -> 3 s for the bs-2 training graph). The cache is keyed on the Python
            source, NOT on runtime rewrites: a run with other ``prepare_network`` options, architecture
            or batch shape must use its own directory, or it may load a stale graph.
    """
    import mindspore as ms

    applied = {}
    isa = _resolve_onednn_isa(onednn_isa)
    if isa and "ONEDNN_MAX_CPU_ISA" not in os.environ and "DNNL_MAX_CPU_ISA" not in os.environ:
        # oneDNN reads this when it first dispatches a kernel, so setting it after `import mindspore`
        # works as long as no graph has run yet (checked with ONEDNN_VERBOSE=1).
        os.environ["ONEDNN_MAX_CPU_ISA"] = isa
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        applied["onednn_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    if threads is None:
        threads = host.available_cpus()
    if threads:
        ms.device_context.cpu.op_tuning.threads_num(int(threads))
        applied["threads"] = int(threads)
        from src.utils.fused_ops import set_kernel_threads
        set_kernel_threads(int(threads))  # the fused Mish kernel (if used) runs on as many threads
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


def _replace_children(net, predicate, make):
    """Replaces every sub-cell ``c`` with ``predicate(c)`` by ``make(c)``; returns how many."""
    count = 0
    for _, cell in list(net.cells_and_names()):
        for key, child in list(cell.name_cells().items()):
            if child is not None and predicate(child):
                cell.insert_child_to_cell(key, make(child))
                count += 1
    return count


FUSED_MISH_KINDS = ("aot", "nn")
FUSED_ACT_KINDS = ("all", "mish")


def _setting_kind(name, value, kinds):
    """A rewrite setting -> None (off: false, 0, "", "off", "none"), ``kinds[0]`` (true, 1, "on") or one of
    ``kinds``; anything else is a ValueError naming the setting."""
    if value in (None, False, 0, "", "false", "off", "none", "0"):
        return None
    if value in (True, 1, "true", "on", "1"):
        return kinds[0]
    if value in kinds:
        return value
    raise ValueError(f"{name}={value!r}: expected false, true (= {kinds[0]}), " + " or ".join(kinds))


def _fused_mish_kind(value):
    """``fused_mish`` setting -> None (off), "aot" (the project's custom kernel) or "nn" (MindSpore's)."""
    return _setting_kind("fused_mish", value, FUSED_MISH_KINDS)


def _fused_act_kind(value):
    """``fused_act`` setting -> None (off), "all" (Mish and LeakyReLU) or "mish" (Mish only)."""
    return _setting_kind("fused_act", value, FUSED_ACT_KINDS)


def use_fused_mish(net, kind="aot"):
    """Swaps the three-primitive Mish (``src.utils.custom_op.Mish``) for a one-kernel Mish; returns the count.

    ``kind="aot"``: the project's custom CPU operator (``src.utils.fused_mish.FusedMish``: one kernel
    forward, one backward, keeps only the input for backward, max 4 ulp from float64, finite everywhere;
    compiled with g++ at first use). ``kind="nn"``: MindSpore's ``nn.Mish`` kernel, NOT recommended: on CPU
    it returns NaN for inputs of 45 and above (float32 overflow inside the kernel;
    ``nn.Mish()(Tensor([45.]))`` -> nan), which turned a training loss into NaN on the second step of the
    32 px smoke run; kept for measurements (``benchmark.py --set fused_mish=nn``).
    """
    from mindspore import nn

    from src.utils.custom_op import Mish

    kind = _fused_mish_kind(kind)
    if kind is None:
        return 0
    if kind == "aot":
        from src.utils.fused_ops import FusedMish
        return _replace_children(net, lambda c: isinstance(c, Mish), lambda c: FusedMish())
    return _replace_children(net, lambda c: isinstance(c, Mish), lambda c: nn.Mish())


def use_fused_activations(net, kind="all"):
    """Swaps the activations for the project's one-kernel custom CPU operators (``src.utils.fused_ops``):
    the three-primitive Mish for ``FusedMish`` and, with ``kind="all"``, ``nn.LeakyReLU`` (MindSpore:
    ``Maximum(a * x, x)``) for ``FusedLeakyReLU`` with the same slope; ``kind="mish"``: Mish only. Same
    function (LeakyReLU bit-identical; Mish within 4 ulp of float64, where the three-primitive form is up to
    5e-4 off near |x| = 5 because MindSpore's CPU Tanh saturates), one kernel forward and one backward, and
    only the input kept for backward. Training and evaluation on CPU; export keeps the built network.
    Returns the number of cells swapped.
    """
    from mindspore import nn

    from src.utils.custom_op import Mish
    from src.utils.fused_ops import FusedLeakyReLU, FusedMish, fused_ops_available

    kind = _fused_act_kind(kind)
    if kind is None:
        return 0
    ok, why = fused_ops_available()
    if not ok:
        import logging
        logging.getLogger(__name__).warning("fused activation kernels unavailable, keeping MindSpore's "
                                            "activations: %s", why.splitlines()[0] if why else "?")
        return 0
    count = _replace_children(net, lambda c: isinstance(c, Mish), lambda c: FusedMish())
    if kind == "all":
        count += _replace_children(net, lambda c: isinstance(c, nn.LeakyReLU),
                                   lambda c: FusedLeakyReLU(float(c.alpha)))
    return count


def fold_batchnorm(net):
    """Folds each inference BatchNorm into the conv before it (conv weights scaled, bias added).

    For every cell with a ``conv`` (``nn.Conv2d``) and a ``bn`` (``nn.BatchNorm2d``) attribute, as the
    project's ``ConvNormAct`` has: ``w' = w * g / sqrt(v + eps)``, ``b' = beta - m * g / sqrt(v + eps)``
    (computed in float64), and ``bn`` becomes ``nn.Identity``. Inference only: the result no longer
    normalises with batch statistics, and its parameters are no longer checkpoint-compatible. Returns the
    number of folded pairs.
    """
    import numpy as np
    from mindspore import Parameter, Tensor, nn

    count = 0
    for _, cell in list(net.cells_and_names()):
        conv, bn = getattr(cell, "conv", None), getattr(cell, "bn", None)
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
            continue
        w = conv.weight.asnumpy().astype(np.float64)
        var = bn.moving_variance.asnumpy().astype(np.float64)
        scale = bn.gamma.asnumpy().astype(np.float64) / np.sqrt(var + bn.eps)
        shift = bn.beta.asnumpy().astype(np.float64) - bn.moving_mean.asnumpy().astype(np.float64) * scale
        if conv.has_bias:
            shift = shift + conv.bias.asnumpy().astype(np.float64) * scale
        conv.weight.set_data(Tensor((w * scale.reshape(-1, 1, 1, 1)).astype(np.float32)))
        conv.bias = Parameter(Tensor(shift.astype(np.float32)), name=conv.weight.name.rsplit(".", 1)[0] + ".bias")
        conv.has_bias = True
        cell.bn = nn.Identity()
        count += 1
    return count


def recompute_activations(net):
    """Marks every activation cell (Mish, LeakyReLU) for recomputation in the backward pass.

    The backward pass then recomputes Mish from its saved input instead of keeping Softplus/Tanh/Mish
    outputs alive from the forward pass: the training memory pool's peak drops by about a quarter
    (1683 -> 1292 MB at batch 8, 224 px) for one extra Mish forward per layer. Losses are bit-identical.
    Returns the number of cells marked.
    """
    from mindspore import nn

    from src.utils.custom_op import Mish

    count = 0
    for _, cell in net.cells_and_names():
        if isinstance(cell, (Mish, nn.Mish, nn.LeakyReLU)):
            cell.recompute()
            count += 1
    return count


def prepare_network(net, train, fused_act=False, fused_mish=False, fold_bn=False, recompute_act=False):
    """Applies the optional network rewrites in place, before the network's first call; returns ``net``.

    ``fused_act``: :func:`use_fused_activations` (true / "all": the custom Mish and LeakyReLU kernels;
    "mish": Mish only; activations that are fused are not recomputed: their backward needs only the input, kept anyway).

    ``fused_mish``: :func:`use_fused_mish` (unsafe, see there). ``fold_bn``: :func:`fold_batchnorm` (only
    when not ``train``; with ``train`` it is ignored, since training needs the batch statistics).
    ``recompute_act``: :func:`recompute_activations` (only when ``train``).
    """
    if _fused_act_kind(fused_act):
        use_fused_activations(net, fused_act)
    if _fused_mish_kind(fused_mish):
        use_fused_mish(net, fused_mish)
    if fold_bn and not train:
        fold_batchnorm(net)
    if recompute_act and train:
        recompute_activations(net)
    return net


def apply_recommended_settings(device_target, mode, network=True):
    """Applies the recommended settings of ``mode`` ("train" or "infer") on CPU: above all the oneDNN ISA
    cap that keeps MindSpore's convolutions off oneDNN's reference kernels on AVX-512 CPUs (20-150x).

    Call after ``setup_device`` and before the first graph runs. Returns ``(applied, network_kwargs)``: the
    process settings applied (for logs) and the network rewrites to pass to :func:`prepare_network`
    (activation recompute for training, BatchNorm folding for inference); ``network=False`` returns no
    rewrites (export keeps the network as built). Other devices: nothing is applied.
    """
    if device_target != "CPU":
        return {}, {}
    process, rewrites = split_settings(recommended_settings(mode))
    applied = apply_cpu_performance_settings(**process)
    return applied, (rewrites if network else {})
