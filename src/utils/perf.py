"""CPU performance settings shared by train, eval, predict and benchmark.py (measurements: docs/performance.md).
Process settings (``apply_cpu_performance_settings``) go once, after ``setup_device`` and before the first graph
compiles; network rewrites (``prepare_network``: fused activations, activation recompute for training, BatchNorm
folding for inference) on a fresh network before its first call. Both keep the function computed (recompute:
bit-identical losses; folded BN: float32 rounding); export asks for no rewrites.
"""
import logging
import os

from src.utils import host

JIT_LEVELS = ("O0", "O1", "O2")
PROCESS_SETTINGS = ("onednn_isa", "jit_level", "compile_cache_dir")
NETWORK_SETTINGS = ("fused_act", "fold_bn", "recompute_act")


def recommended_settings(mode="train"):
    """The settings measured to help on CPU for ``mode`` "train" or "infer" (the fused LeakyReLU did not pay for
    inference); without a C++ compiler the fused kernels fall back to MindSpore's activations (a warning)."""
    if mode not in ("train", "infer"):
        raise ValueError(f"mode={mode!r}: expected 'train' or 'infer'")
    if mode == "infer":
        return {"onednn_isa": "auto", "fused_act": "mish", "fold_bn": True}
    return {"onednn_isa": "auto", "fused_act": True, "recompute_act": True}


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
    """``auto`` -> "AVX2" on AVX-512 CPUs, else None (oneDNN left alone); a name passes through upper-cased.
    Why: with AVX-512, MindSpore 2.10's plain-NCHW Conv2D gets oneDNN's reference kernel for 3x3 convs
    (``ONEDNN_VERBOSE=1``: ``jit_uni_ncsp:conv+ref``); capped at AVX2 it uses im2col + JIT sgemm, far faster."""
    if onednn_isa in (None, "", "none", "off", False):
        return None
    if onednn_isa == "auto":
        return "AVX2" if "avx512f" in host.cpu_flags() else None
    return str(onednn_isa).upper()


def cap_onednn_isa(onednn_isa="auto"):
    """Sets ``ONEDNN_MAX_CPU_ISA`` for ``onednn_isa`` (see _resolve_onednn_isa) unless the environment already
    names an ISA (it wins); returns what it set, else None. oneDNN reads it once: before the first kernel. No
    MindSpore import (tests/conftest.py applies it to the pytest process)."""
    isa = _resolve_onednn_isa(onednn_isa)
    if isa and "ONEDNN_MAX_CPU_ISA" not in os.environ and "DNNL_MAX_CPU_ISA" not in os.environ:
        os.environ["ONEDNN_MAX_CPU_ISA"] = isa
        return isa
    return None


def apply_cpu_performance_settings(threads=None, onednn_isa="auto", jit_level=None, compile_cache_dir=None):
    """Applies the process-wide CPU settings; returns what was set. ``threads``: kernel threads (also the fused
    kernels'; None: one per usable core, 0: MindSpore's default); an ``ONEDNN_MAX_CPU_ISA`` in the environment
    wins over ``onednn_isa``; ``compile_cache_dir`` is keyed on the Python source, not on network rewrites, so
    each architecture / setting / input shape needs its own folder."""
    import mindspore as ms

    applied = {}
    cap_onednn_isa(onednn_isa)
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        applied["onednn_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    if threads is None:
        threads = host.available_cpus()
    if threads:
        ms.device_context.cpu.op_tuning.threads_num(int(threads))
        applied["threads"] = int(threads)
        from src.utils.fused_ops import set_kernel_threads
        set_kernel_threads(int(threads))
    if jit_level is not None:
        if jit_level not in JIT_LEVELS:
            raise ValueError(f"jit_level={jit_level!r}: expected one of {JIT_LEVELS}")
        ms.set_context(jit_config={"jit_level": jit_level})
        applied["jit_level"] = jit_level
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


def _fused_act_kind(value):
    """``fused_act`` (false, true = all, "all", "mish") -> None, "all" or "mish"; else ValueError."""
    kinds = {None: None, False: None, True: "all", "all": "all", "mish": "mish"}
    if value not in kinds:
        raise ValueError(f"fused_act={value!r}: expected false, true (= all), all or mish")
    return kinds[value]


def fold_batchnorm(net):
    """Folds each inference BatchNorm into the conv before it (cells with ``conv`` and ``bn``, as ``ConvNormAct``)
    in float64; ``bn`` becomes ``nn.Identity`` (no longer checkpoint-compatible). Returns the number folded."""
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
    """Marks every activation cell for recomputation in the backward pass (a lower memory peak for one extra
    activation forward); returns the number marked."""
    from mindspore import nn

    from src.utils.custom_op import Mish

    count = 0
    for _, cell in net.cells_and_names():
        if isinstance(cell, (Mish, nn.Mish, nn.LeakyReLU)):
            cell.recompute()
            count += 1
    return count


def prepare_network(net, train, fused_act=False, fold_bn=False, recompute_act=False):
    """The network rewrites, in place before the first call: ``fused_act`` "mish" or "all" (a warning where the
    kernels cannot be built), ``fold_bn`` for inference, ``recompute_act`` for training (of unfused cells)."""
    from mindspore import nn

    from src.utils.custom_op import Mish
    from src.utils.fused_ops import FusedLeakyReLU, FusedMish, fused_ops_available

    kind = _fused_act_kind(fused_act)
    ok, why = fused_ops_available() if kind else (False, "")
    if kind and not ok:
        logging.getLogger(__name__).warning("fused activation kernels unavailable, keeping MindSpore's "
                                            "activations: %s", why.splitlines()[0] if why else "?")
    elif kind:
        _replace_children(net, lambda c: isinstance(c, Mish), lambda c: FusedMish())
        if kind == "all":
            _replace_children(net, lambda c: isinstance(c, nn.LeakyReLU), lambda c: FusedLeakyReLU(float(c.alpha)))
    if fold_bn and not train:
        fold_batchnorm(net)
    if recompute_act and train:
        recompute_activations(net)
    return net


def apply_recommended_settings(device_target, mode, network=True):
    """On CPU, applies ``recommended_settings(mode)``'s process settings; returns ``(applied, network_kwargs)``
    for the log and ``prepare_network`` (none with ``network=False``: export). Elsewhere nothing."""
    if device_target != "CPU":
        return {}, {}
    process, rewrites = split_settings(recommended_settings(mode))
    applied = apply_cpu_performance_settings(**process)
    return applied, (rewrites if network else {})
