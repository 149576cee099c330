"""The export job behind export.py: a checkpoint to MINDIR / ONNX / AIR, checked against the network.

``export_job(cfg, run_log)``: everything that needs no device or weights is checked first (format and device,
the checkpoint, the output path: never one of the inputs, the input shape: within bounds and within the
memory the check run needs); then the network of the checkpoint (``src.checkpoint.resolve_model``, weights
that are not finite refused) is exported into a temporary folder, run on a random input and compared with
its own logits (``verify``: MINDIR through ``mindspore.load`` + ``nn.GraphCell``, ONNX through onnxruntime
against the network with an accurate-tanh Mish, since MindSpore's CPU Tanh is approximate); only then is
the file moved into place (``src.export_utils.export_network``), so a failed or stopped export leaves none.
Returns 0 when verified, 1 when the file does not reproduce the network (it is written all the same).
"""
import os
import time

import numpy as np

from src.checkpoint import CheckpointError
from src.errors import ConfigError

__all__ = ["BYTES_PER_PIXEL", "input_shape", "verify", "export_job"]

#: host memory the check run needs per input pixel on CPU, beyond what the process already holds (cspdarknet53,
#: MindSpore 2.10: the peak RSS of export.py grew by ~340-390 bytes per pixel from 224 px to 448 px and batch 8)
BYTES_PER_PIXEL = 512


def _checkpoint(cfg):
    path = cfg.weights.ckpt_file
    if not path:
        raise ConfigError("no checkpoint given: pass --ckpt_file=PATH (a .ckpt, .safetensors or timm .pth file); "
                          "exporting untrained weights is refused")
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path {path!r} is a folder; export needs one checkpoint file")
    return path


def _available_memory():
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def input_shape(cfg, spec, device_target):
    """``[batch, 3, height, width]``: height / width as given, else the checkpoint's training size, else the
    architecture's. An input above the config's bound (``src.config.check_input_size``: the given sizes are
    checked when the config loads, a size taken from the checkpoint here), or on CPU one whose check run needs
    more memory than is available, is a ``ConfigError`` naming the keys and the reason."""
    from src.config import check_input_size

    h, w = (int(v) for v in spec.preprocess["image_size"].split(","))
    batch, h, w = cfg.export.export_batch_size, cfg.export.height or h, cfg.export.width or w
    check_input_size(batch, h, w)
    need, free = BYTES_PER_PIXEL * batch * h * w, _available_memory()
    if device_target == "CPU" and free is not None and need > free:
        raise ConfigError(f"export_batch_size={batch}, height={h}, width={w}: tracing and checking the network on "
                          f"an input of this shape needs about {need / 2 ** 30:.1f} GiB of memory, "
                          f"{free / 2 ** 30:.1f} GiB are available; export a smaller batch or input size")
    return [batch, 3, h, w]


def _accurate_reference(build, x):
    """Logits of a fresh copy of the network whose Mish uses an accurate tanh; None for a network without Mish."""
    import mindspore as ms

    from src.export_utils import use_accurate_mish

    ref_net = build()
    if not use_accurate_mish(ref_net):
        return None
    return ref_net(ms.Tensor(x)).asnumpy()


def verify(fmt, path, net_logits, x, build_reference):
    """Runs the exported file and compares; returns (ok, message lines).

    MINDIR runs MindSpore's own kernels, so it is compared with the Cell. ONNX is compared with the Cell
    computed with an accurate tanh when the network has Mish (``build_reference()``; MindSpore's CPU Tanh
    kernel is approximate, see ``src.export_utils``), and its difference to the Cell itself is reported too.
    """
    from src.export_utils import compare_logits, onnxruntime_available, run_mindir, run_onnx

    if fmt == "MINDIR":
        out = run_mindir(path, x)
        reference, how, against = net_logits, "mindspore.load + nn.GraphCell", "the network"
    elif fmt == "ONNX":
        if not onnxruntime_available():
            return True, ["verify: onnxruntime is not installed, ONNX file not checked "
                          "(pip install onnxruntime to check it)"]
        out = run_onnx(path, x)
        reference, how, against = net_logits, "onnxruntime", "the network"
        accurate = build_reference()
        if accurate is not None:
            reference, against = accurate, "the network with an accurate-tanh Mish"
    else:
        return True, ["verify: AIR files cannot be loaded back here; not checked"]
    check = compare_logits(reference, out)
    lines = [f"verify ({how}): max abs diff {check.max_abs_diff:.3e} against {against}, tolerance "
             f"{check.tolerance:.3e} ({check.rule}); largest |logit| {float(np.abs(reference).max()):.4g}; "
             f"output {check.out_dtype} {list(np.shape(out))}; same argmax: {check.same_argmax}"]
    if reference is not net_logits:
        cell = compare_logits(net_logits, out)
        lines.append(f"verify: max abs diff {cell.max_abs_diff:.3e} against the network as MindSpore computes it "
                     f"(MindSpore's CPU Tanh kernel is approximate; informational)")
    if not check.dtype_ok:
        lines.append(f"verify: FAILED, the file outputs {check.out_dtype} but the network {check.ref_dtype}")
    elif not check.ok:
        lines.append("verify: FAILED, the exported model does not reproduce the network's logits")
    else:
        lines.append("verify: OK")
    return check.ok, lines


def export_job(cfg, run_log):
    import mindspore as ms

    from src.archs import get_arch
    from src.checkpoint import build_inference_model, resolve_model
    from src.export_utils import export_network, export_path
    from src.utils import signals
    from src.utils.fileio import check_output_file
    from src.utils.runtime import resolve_device_target, start_context

    fmt = cfg.export.file_format.upper()
    target = resolve_device_target(cfg.device.device_target)
    if fmt == "AIR" and target != "Ascend":
        raise ConfigError(f"file_format=AIR needs an Ascend device (MindSpore writes AIR only with the Ascend "
                          f"backend) and this run's device is {target}; export MINDIR or ONNX instead")
    ckpt = _checkpoint(cfg)
    out = check_output_file(export_path(cfg.export.file_name, fmt), "file_name", inputs=(ckpt, cfg.config_path))
    spec = resolve_model(cfg, ckpt, log=run_log.log)
    shape = input_shape(cfg, spec, target)
    start_context(cfg.device, "infer", network=False)  # process settings only: the graph is exported as built

    def build():
        return build_inference_model(spec, use_ema=cfg.weights.use_ema, fp16_head=cfg.model.fp16_head)[0]

    net, report = build_inference_model(spec, use_ema=cfg.weights.use_ema, fp16_head=cfg.model.fp16_head)
    print(f"loaded {ckpt} ({report.layout} layout{', EMA weights' if report.used_ema else ''}) into "
          f"{spec.arch} with {spec.num_classes} classes")
    x = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
    net_logits = net(ms.Tensor(x)).asnumpy()
    signals.install()  # the network's first call (graph compilation) installs MindSpore's SIGINT handler
    has_mish = get_arch(spec.arch).activation == "mish"
    checked = {}

    def check(staged):  # the file is checked before it is moved into place
        checked["seconds"] = time.perf_counter() - start
        checked["size_mb"] = os.path.getsize(staged) / 2 ** 20
        print(f"checking the {fmt} file ({checked['size_mb']:.1f} MiB) against the network", flush=True)
        checked["ok"], checked["lines"] = verify(fmt, staged, net_logits, x, lambda: _accurate_reference(
            build, x) if has_mish else None)
        signals.install()  # again after the file's own run

    start = time.perf_counter()
    path = export_network(net, x, out, fmt, before_publish=check)
    print(f"exported {path} ({fmt}, input {shape} float32 NCHW, output {list(net_logits.shape)} "
          f"{net_logits.dtype}, {checked['size_mb']:.1f} MiB, {checked['seconds']:.1f} s)")
    for line in checked["lines"]:
        print(line)
    return 0 if checked["ok"] else 1
