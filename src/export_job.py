"""The export job behind export.py: everything that needs no device is checked first; the network is exported
into a temporary folder, run and compared with its own logits (``verify``), and only then moved into place with
its model record (ONNX metadata, or the sidecar ``<file>.json``); ``quantize=int8`` then writes
``<file_name>.int8.onnx``. Returns 0 when verified, 1 when the file does not reproduce the network.
"""
import os
import time

import numpy as np

from src.checkpoint import CheckpointError
from src.errors import ConfigError

__all__ = ["BYTES_PER_PIXEL", "input_shape", "verify", "export_job"]

#: host memory the CPU check run needs per input pixel, with headroom (peak RSS grows ~340-390 bytes per pixel)
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
    """``[batch, 3, height, width]`` (given, else the checkpoint's training size); beyond the config's bounds, or
    on CPU beyond the available memory, a ``ConfigError`` naming the keys."""
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
    """``(ok, message lines)`` of running the exported file against the network: MINDIR against the Cell, ONNX
    against the Cell with an accurate-tanh Mish (``build_reference()``; the plain Cell's difference is shown)."""
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


def _calibration(cfg, ckpt, sha256):
    """The checkpoint's calibration record (``calibration_for``) and a line saying which temperature goes in."""
    from src.analysis.calibration import calibration_for

    record, path = calibration_for(ckpt, cfg.weights.calibration_file, sha256)
    if record is not None:
        return record, (f"calibration: temperature {record['temperature']:.4g} from {path} (fitted on "
                        f"{record['images']} images; NLL {record['nll_before']:.4f} -> {record['nll_after']:.4f})")
    why = "calibration_file=none" if path is None else f"no calibration record at {path}"
    return None, f"calibration: none ({why}; eval.py --calibrate fits one), probabilities at temperature 1"


def _int8_checks(cfg, out, inputs):
    """quantize=int8, before any work: the tools, ``calib_data_dir`` and the INT8 output path checked; returns that
    path (None without int8)."""
    if cfg.export.quantize != "int8":
        return None
    from src.deploy.quantize import int8_path, require_onnx_tools, select_images
    from src.errors import DatasetError
    from src.utils.fileio import check_output_file

    require_onnx_tools()
    data = cfg.export.calib_data_dir
    if not os.path.isdir(data):
        raise DatasetError(f"calib_data_dir={data}: no such folder (an ImageFolder of training images, "
                           "root/<class>/<image>)")
    select_images(data, [cfg.export.calib_images], cfg.export.calib_seed)  # no class folders or images: an error now
    return check_output_file(int8_path(out), "file_name", inputs=inputs)


def export_job(cfg, run_log):
    import mindspore as ms

    from src.archs import get_arch
    from src.checkpoint import build_inference_model, resolve_model
    from src.deploy.record import build_model_record, describe_record, is_sidecar_record, sidecar_path, \
        write_model_record
    from src.export_utils import export_network, export_path
    from src.utils import signals
    from src.utils.fileio import check_output_file, file_sha256
    from src.utils.runtime import resolve_device_target, start_context

    fmt = cfg.export.file_format.upper()
    target = resolve_device_target(cfg.device.device_target)
    if fmt == "AIR" and target != "Ascend":
        raise ConfigError(f"file_format=AIR needs an Ascend device (MindSpore writes AIR only with the Ascend "
                          f"backend) and this run's device is {target}; export MINDIR or ONNX instead")
    ckpt = _checkpoint(cfg)
    inputs = tuple(p for p in (ckpt, cfg.config_path, cfg.export.calib_data_dir) if p)
    out = check_output_file(export_path(cfg.export.file_name, fmt), "file_name", inputs=inputs)
    sidecar = None if fmt == "ONNX" else check_output_file(sidecar_path(out), "file_name", inputs=inputs,
                                                           ours=is_sidecar_record)
    int8_out = _int8_checks(cfg, out, inputs)
    spec = resolve_model(cfg, ckpt, log=run_log.log)
    sha256 = file_sha256(ckpt)
    calibration, calibration_line = _calibration(cfg, ckpt, sha256)
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
    info = {"class_names": spec.class_names, "class_names_source": spec.class_names_source, "layout": spec.layout,
            "preprocess": spec.preprocess}
    record = build_model_record(ckpt, spec.arch, spec.num_classes, shape, info=info, output_dtype=str(net_logits.dtype),
                                used_ema=report.used_ema, calibration=calibration, file_format=fmt, sha256=sha256)
    checked = {}

    def check(staged):  # the file is checked before it is moved into place, and an ONNX file gets its record
        checked["seconds"] = time.perf_counter() - start
        checked["size_mb"] = os.path.getsize(staged) / 2 ** 20
        print(f"checking the {fmt} file ({checked['size_mb']:.1f} MiB) against the network", flush=True)
        checked["ok"], checked["lines"] = verify(fmt, staged, net_logits, x, lambda: _accurate_reference(
            build, x) if has_mish else None)
        signals.install()  # again after the file's own run; a stop signal swallowed on its way ends the job here
        if fmt == "ONNX":
            write_model_record(staged, record)

    start = time.perf_counter()
    path = export_network(net, x, out, fmt, before_publish=check)
    print(f"exported {path} ({fmt}, input {shape} float32 NCHW, output {list(net_logits.shape)} "
          f"{net_logits.dtype}, {checked['size_mb']:.1f} MiB, {checked['seconds']:.1f} s)")
    for line in checked["lines"]:
        print(line)
    where = path + " (ONNX metadata 'model_record')" if sidecar is None else write_model_record(path, record)
    print(f"model record in {where}: {describe_record(record)}")
    print(calibration_line)
    if int8_out is None:
        return 0 if checked["ok"] else 1
    if not checked["ok"]:
        print("INT8: not quantized, since the FP32 file did not pass its check")
        return 1
    from src.deploy.quantize import quantize_exported

    quantized = quantize_exported(path, int8_out, cfg.export.calib_data_dir, record, cfg.export.calib_images,
                                  cfg.export.calib_seed, log=lambda line: print(line, flush=True))
    print(f"exported {int8_out} (INT8, {os.path.getsize(int8_out) / 2 ** 20:.1f} MiB: {quantized['scheme']}, weights "
          f"{quantized['weights']}, activations {quantized['activations']}); its model record says how it was made")
    return 0
