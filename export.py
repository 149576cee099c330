"""Export a trained CSPDarkNet53 to MINDIR (default), ONNX or AIR, then check the file against the network.

    python export.py --ckpt_file=CKPT [--file_format=MINDIR|ONNX|AIR] [--file_name=cspdarknet53]
                     [--export_batch_size=1] [--height=224] [--width=224] [--fp16_head=1]

The input is ``[export_batch_size, 3, height, width]`` float32 (the model zoo had width before height);
``height`` / ``width`` 0 take the checkpoint's training size, else the architecture's.
Any checkpoint format ``src.checkpoint`` reads is accepted; its recorded ``arch`` / ``num_classes``
are used unless given on the command line. ``fp16_head=1`` makes the graph emit float16 logits, as
the model zoo's export did for its Ascend 310 flow. AIR needs an Ascend device.

After writing, the file is run on a random input and compared with the network's own logits:
MINDIR through ``mindspore.load`` + ``nn.GraphCell`` (against the Cell), ONNX through onnxruntime when
installed (against the Cell with an accurate-tanh Mish, since MindSpore's CPU Tanh is approximate; the
difference to the Cell itself is printed too). Tolerance: 1e-4 of the largest logit (float32 logits) or
one float16 step at the largest logit (fp16 head).
Exit status: 0 written and verified, 1 verification failed, 2 bad arguments or checkpoint.
"""
import os
import sys
import time

import numpy as np

from src.errors import ConfigError
from model_utils.entry import run_entry
from src.checkpoint import CheckpointError
from src.export_utils import ExportError, export_path


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


def _check_request(cfg):
    """Validates everything that needs no device or weights, so a bad request fails before any work."""
    from src.utils.fileio import check_output_file
    from src.utils.runtime import resolve_device_target

    fmt = cfg.export.file_format.upper()
    target = resolve_device_target(cfg.device.device_target)
    if fmt == "AIR" and target != "Ascend":
        raise ConfigError(f"file_format=AIR needs an Ascend device (MindSpore writes AIR only with the Ascend "
                          f"backend) and this run's device is {target}; export MINDIR or ONNX instead")
    ckpt = _checkpoint(cfg)
    out = check_output_file(export_path(cfg.export.file_name, fmt), "file_name")
    return fmt, target, ckpt, out


def _input_shape(cfg, arch, info):
    """``[batch, 3, height, width]``: height/width as given, else the checkpoint's training size, else the
    architecture's input size."""
    from src.archs import resolve_preprocess

    h, w = (int(v) for v in resolve_preprocess(arch, recorded=info["preprocess"])["image_size"].split(","))
    return [cfg.export.export_batch_size, 3, cfg.export.height or h, cfg.export.width or w]


def _accurate_reference(build, x):
    """Logits of a fresh copy of the network whose Mish uses an accurate tanh; None for a network without Mish."""
    import mindspore as ms

    from src.export_utils import use_accurate_mish

    ref_net = build()
    if not use_accurate_mish(ref_net):
        return None
    return ref_net(ms.Tensor(x)).asnumpy()


def _verify(fmt, path, net_logits, x, build_reference):
    """Runs the exported file and compares; returns (ok, message lines).

    MINDIR runs MindSpore's own kernels, so it is compared with the Cell. ONNX is compared with the Cell
    computed with an accurate tanh when the network has Mish (MindSpore's CPU Tanh kernel is approximate;
    see ``src.export_utils``), and its difference to the Cell itself is reported as well.
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
    from src.checkpoint import build_inference_model, checkpoint_model_info, resolve_model_info
    from src.export_utils import export_network
    from src.utils.runtime import start_context

    fmt, target, ckpt, out = _check_request(cfg)
    info = checkpoint_model_info(ckpt)
    arch, num_classes = resolve_model_info(info, cfg.model.arch, cfg.model.num_classes, cfg.is_explicit("arch"),
                                           cfg.is_explicit("num_classes"))
    shape = _input_shape(cfg, arch, info)
    start_context(cfg.device, "infer", network=False)  # process settings only: the graph is exported as built

    def build():
        return build_inference_model(ckpt, arch, num_classes, num_classes_explicit=True, arch_explicit=True,
                                     use_ema=cfg.weights.use_ema, fp16_head=cfg.model.fp16_head, info=info)

    net, report, _ = build()
    print(f"loaded {ckpt} ({report.layout} layout{', EMA weights' if report.used_ema else ''}) into "
          f"{arch} with {num_classes} classes")
    x = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
    net_logits = net(ms.Tensor(x)).asnumpy()
    start = time.perf_counter()
    path = export_network(net, x, out, fmt)
    size_mb = os.path.getsize(path) / 2 ** 20
    print(f"exported {path} ({fmt}, input {shape} float32 NCHW, output {list(net_logits.shape)} "
          f"{net_logits.dtype}, {size_mb:.1f} MiB, {time.perf_counter() - start:.1f} s)")
    has_mish = get_arch(arch).activation == "mish"
    ok, lines = _verify(fmt, path, net_logits, x,
                        lambda: _accurate_reference(lambda: build()[0], x) if has_mish else None)
    for line in lines:
        print(line)
    return 0 if ok else 1


def main(argv=None):
    return run_entry(export_job, argv, log_name="export", uses_data=False, extra_errors=(ExportError,), quiet=True)


if __name__ == "__main__":
    sys.exit(main())
