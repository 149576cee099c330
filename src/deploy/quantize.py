"""INT8 post-training quantization of an exported ONNX model (docs/deployment.md section 2).

Calibration images are taken in turn from each class of a training folder and fed through the project's eval
pipeline as the model record says. ``quantize_onnx``: onnxruntime's ``quant_pre_process`` then QDQ
``quantize_static`` (int8 symmetric weights per channel, uint8 activations: the pair onnxruntime runs fastest on
x86); ``quantize_openvino``: NNCF on the same ONNX file (optional packages). onnx and onnxruntime are test
requirements, not runtime ones: without them an ``ExportError`` names what to install.
"""
import os
import shutil
import tempfile
from itertools import zip_longest

import numpy as np

from src.errors import DatasetError, ExportError

__all__ = ["CALIBRATION_METHODS", "ONNX_HINT", "OPENVINO_HINT", "CHECK_IMAGES", "require_onnx_tools", "select_images",
           "image_batches", "calibration_batches", "preprocessed_graph", "quantize_onnx", "quantize_openvino",
           "onnx_node_names", "run_onnx_batches", "int8_path", "quantize_exported"]

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
ONNX_HINT = "pip install onnxruntime==1.32.0 onnx==1.23.2"
OPENVINO_HINT = "pip install openvino==2026.4.1 nncf==3.4.0"


def require_onnx_tools():
    """``(onnx, onnxruntime, onnxruntime.quantization)``, or an ``ExportError`` saying what to install."""
    try:
        import onnx
        import onnxruntime
        from onnxruntime import quantization
    except ImportError as err:
        raise ExportError(f"INT8 quantization needs onnx and onnxruntime ({err}): {ONNX_HINT}") from None
    return onnx, onnxruntime, quantization


def select_images(data_dir, counts, seed=0):
    """``([(rel_paths, labels), ...], class_to_idx)``: disjoint image sets of the ImageFolder ``data_dir``, one per
    entry of ``counts``, taken in turn from each class (seeded shuffle within a class), each sorted by path; a
    set for which too few images are left holds what is left."""
    from src.data.listing import list_image_folder

    if not counts or int(counts[0]) < 1:
        raise DatasetError(f"calib_images must be >= 1, got {counts[0] if counts else None}")
    class_to_idx, rel_paths, labels = list_image_folder(os.fspath(data_dir), None)[:3]
    if not rel_paths:
        raise DatasetError(f"no image files in the class folders of {data_dir} (calibration data)")
    rng = np.random.default_rng(int(seed))
    by_class = {}
    for path, label in zip(rel_paths, labels):
        by_class.setdefault(label, []).append(path)
    queues = [[(p, int(c)) for p in rng.permutation(by_class[c])[::-1]] for c in sorted(by_class)]
    order = [item for turn in zip_longest(*queues) for item in turn if item is not None]
    sets, start = [], 0
    for count in counts:
        chosen = sorted(order[start:start + int(count)])
        start += int(count)
        sets.append(([p for p, _ in chosen], [lb for _, lb in chosen]))
    return sets, class_to_idx


def image_batches(files, record, batch_size=1, where="images"):
    """``(batches, files used)``: eval-preprocessed NCHW float32 batches of ``files`` as ``record`` says, the last
    padded by repeating images (an exported model has a fixed batch)."""
    from src.data.pipeline import create_dataset
    from src.deploy.record import record_preprocess
    from src.utils import signals

    image_size, eval_resize, crop_pct = record_preprocess(record)
    bundle = create_dataset("", image_size, int(batch_size), mode="eval", files=list(files), eval_resize=eval_resize,
                            crop_pct=crop_pct, shuffle=False, drop_remainder=False, where=where)
    parts = [np.asarray(b[0]) for b in signals.guarded(bundle.dataset.create_tuple_iterator(num_epochs=1,
                                                                                              output_numpy=True))]
    if not parts:
        raise DatasetError(f"{where}: none of the images could be read (see the warnings above)")
    images = np.concatenate(parts)
    used = [f for f in files if f not in dict(bundle.skipped)]
    if len(images) != len(used):
        raise DatasetError(f"{where}: {len(used)} readable images but the data pipeline gave {len(images)}")
    pad = (-len(images)) % int(batch_size)
    if pad:
        images = np.concatenate([images, images[:pad]])
    return [np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32)
            for i in range(0, len(images), int(batch_size))], used


def calibration_batches(data_dir, record, num_images=300, batch_size=1, seed=0):
    """The calibration batches of ``num_images`` images of ``data_dir`` (``select_images``, ``image_batches``)."""
    (rel_paths, _), = select_images(data_dir, [num_images], seed)[0]
    files = [os.path.join(os.fspath(data_dir), p) for p in rel_paths]
    return image_batches(files, record, batch_size, where=f"{len(files)} calibration images of {data_dir}")[0]


def _reader(batches, input_name, quantization):
    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

        def rewind(self):
            self._it = iter(batches)

    return Reader()


def _input_name(path, onnxruntime):
    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ExportError(f"{path}: expected a model with one input, found {len(inputs)}")
    return inputs[0].name, inputs[0].shape


#: per-channel QDQ needs DequantizeLinear's ``axis`` (opset 13); MindSpore 2.10 exports opset 11
MIN_OPSET = 13


def _at_least_opset13(path, out, onnx):
    """``path`` itself when its default-domain opset is >= 13, else a converted copy written to ``out``."""
    model = onnx.load(os.fspath(path))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset >= MIN_OPSET:
        return os.fspath(path)
    from onnx import version_converter

    onnx.save(version_converter.convert_version(model, MIN_OPSET), out)
    return out


def preprocessed_graph(path, out):
    """Writes the graph the quantizer works on to ``out``: opset >= 13, shapes inferred, BatchNorm folded into
    the convolutions (onnxruntime's ``quant_pre_process``). Node names for ``exclude_nodes`` are this graph's."""
    onnx, _, _ = require_onnx_tools()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder = os.path.dirname(os.path.abspath(out))
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        source = _at_least_opset13(path, os.path.join(tmp, "opset13.onnx"), onnx)
        quant_pre_process(source, os.fspath(out), skip_symbolic_shape=True)
    return os.fspath(out)


def onnx_node_names(path, op_types=None):
    """``[(name, op_type)]`` of the graph's nodes (of ``op_types`` only, when given), in graph order."""
    onnx, _, _ = require_onnx_tools()
    model = onnx.load(os.fspath(path), load_external_data=False)
    return [(n.name, n.op_type) for n in model.graph.node if op_types is None or n.op_type in op_types]


def quantize_onnx(fp32_path, out_path, batches, *, calibrate_method="minmax", per_channel=True,
                  exclude_nodes=(), op_types=None, percentile=99.999, preprocessed_path=None):
    """Writes the INT8 (QDQ) model of ``fp32_path`` to ``out_path``, its record copied with a ``quantization``
    entry; returns that entry. ``exclude_nodes``: node names of the pre-processed graph kept in float32
    (``preprocessed_path`` keeps that graph); ``op_types``: the node types to quantize (default: all)."""
    from src.deploy.record import RECORD_KEY, onnx_metadata, read_model_record, write_model_record

    _, onnxruntime, quantization = require_onnx_tools()
    method = str(calibrate_method).lower()
    if method not in CALIBRATION_METHODS:
        raise ExportError(f"calibrate_method={calibrate_method!r}: expected one of {CALIBRATION_METHODS}")
    if not batches:
        raise ExportError("no calibration images: INT8 quantization needs a few hundred training images")
    fp32_path, out_path = os.fspath(fp32_path), os.fspath(out_path)
    name, shape = _input_name(fp32_path, onnxruntime)
    if isinstance(shape[0], int) and shape[0] != batches[0].shape[0]:
        raise ExportError(f"{fp32_path} takes batches of {shape[0]}, the calibration batches hold "
                          f"{batches[0].shape[0]} images")
    record, _ = read_model_record(fp32_path)
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".quantize.", dir=folder)
    try:
        pre = preprocessed_graph(fp32_path, os.path.join(tmp, "preprocessed.onnx"))
        if preprocessed_path:
            shutil.copyfile(pre, preprocessed_path)
        methods = {"minmax": quantization.CalibrationMethod.MinMax,
                   "percentile": quantization.CalibrationMethod.Percentile,
                   "entropy": quantization.CalibrationMethod.Entropy}
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if method == "percentile":
            extra["CalibPercentile"] = float(percentile)
        known = {n for n, _ in onnx_node_names(pre)}
        unknown = [n for n in exclude_nodes if n not in known]
        if unknown:
            raise ExportError(f"exclude_nodes: {', '.join(unknown[:5])} are not nodes of the pre-processed graph "
                              f"of {fp32_path} (see onnx_node_names)")
        result = os.path.join(tmp, "int8.onnx")
        quantization.quantize_static(
            pre, result, _reader(batches, name, quantization), quant_format=quantization.QuantFormat.QDQ,
            op_types_to_quantize=list(op_types) if op_types else None, per_channel=bool(per_channel),
            reduce_range=False, activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8, nodes_to_exclude=list(exclude_nodes) or None,
            calibrate_method=methods[method], extra_options=extra)
        info = {"scheme": "int8 QDQ (onnxruntime quantize_static)", "weights": "int8 symmetric" +
                (" per channel" if per_channel else " per tensor"), "activations": "uint8 asymmetric per tensor",
                "calibration": method + (f" {percentile}" if method == "percentile" else ""),
                "calibration_images": int(sum(len(b) for b in batches)),
                "excluded_nodes": list(exclude_nodes), "op_types": list(op_types) if op_types else "all",
                "onnxruntime": onnxruntime.__version__, "source_model": os.path.abspath(fp32_path)}
        os.replace(result, out_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if record is not None:
        record = dict(record)
        record["quantization"] = info
        record["file_format"] = "ONNX"
        write_model_record(out_path, record)
    elif RECORD_KEY in onnx_metadata(out_path):  # never a stale record
        raise ExportError(f"{out_path}: unexpected model record")
    return info


def run_onnx_batches(path, batches, threads=0):
    """Logits of an ONNX model over a list of NCHW batches, concatenated (onnxruntime, CPU)."""
    from src.deploy.exported import onnx_runner
    run = onnx_runner(path, threads)
    return np.concatenate([run(b) for b in batches])


#: images of the calibration folder held out of the calibration to check the INT8 model against the FP32 one
CHECK_IMAGES = 100


def int8_path(fp32_path):
    """``<model>.int8.onnx`` beside ``<model>.onnx``: where the INT8 model of an FP32 ONNX file goes."""
    stem = os.fspath(fp32_path)
    return (stem[:-len(".onnx")] if stem.lower().endswith(".onnx") else stem) + ".int8.onnx"


def quantize_exported(fp32_path, out_path, data_dir, record, num_images=300, seed=0, check_images=CHECK_IMAGES,
                      log=print, **options):
    """Writes the INT8 model of ``fp32_path``, calibrated on ``num_images`` images of ``data_dir`` and compared with
    the FP32 one on up to ``check_images`` others; returns ``quantize_onnx``'s entry with that ``check``."""
    data_dir = os.fspath(data_dir)
    (calib, check), class_to_idx = select_images(data_dir, [num_images, check_images], seed)
    batch = int(record["input"]["shape"][0])
    files = [os.path.join(data_dir, p) for p in calib[0]]
    batches, used = image_batches(files, record, batch, where=f"{len(files)} calibration images of {data_dir}")
    n = len(used)
    log(f"INT8 calibration: {n} images of {data_dir} (taken in turn from its {len(class_to_idx)} classes, seed {seed}), "
        f"eval preprocessing of the model record")
    info = quantize_onnx(fp32_path, out_path, batches, **options)
    info["check"] = None
    if not check[0]:
        log(f"INT8 vs FP32: no image of {data_dir} is left over after the {n} calibration images, so none checks the "
            "INT8 model (lower calib_images to keep some)")
        return info
    files = [os.path.join(data_dir, p) for p in check[0]]
    batches, used = image_batches(files, record, batch, where=f"{len(files)} check images of {data_dir}")
    k = len(used)
    label_of = dict(zip(files, check[1]))
    a = run_onnx_batches(fp32_path, batches)[:k].astype(np.float32)
    q = run_onnx_batches(out_path, batches)[:k].astype(np.float32)
    agree = float(np.mean(a.argmax(1) == q.argmax(1)))
    result = {"images": int(k), "top1_agreement": agree, "max_abs_logit_diff": float(np.abs(a - q).max()),
              "top1_fp32": None, "top1_int8": None}
    names = record.get("class_names") or []
    folder_of = {i: name for name, i in class_to_idx.items()}
    if names and all(name in names for name in class_to_idx):
        labels = np.asarray([names.index(folder_of[label_of[f]]) for f in used])
        result.update(top1_fp32=float(np.mean(a.argmax(1) == labels)), top1_int8=float(np.mean(q.argmax(1) == labels)))
    info["check"] = result
    from src.deploy.record import read_model_record, write_model_record

    stored, _ = read_model_record(out_path)
    if stored is not None:  # the record says how the INT8 model compared with the FP32 one
        stored["quantization"] = dict(stored["quantization"], check=result)
        write_model_record(out_path, stored)
    line = (f"INT8 vs FP32 on {k} images of {data_dir} that the calibration did not use: top-1 agreement "
            f"{100 * agree:.1f}%, max |logit difference| {result['max_abs_logit_diff']:.3g}")
    if result["top1_fp32"] is not None:
        line += f"; top-1 FP32 {100 * result['top1_fp32']:.1f}%, INT8 {100 * result['top1_int8']:.1f}% (folder labels)"
    log(line)
    return info


def quantize_openvino(fp32_path, out_xml, batches, *, ignored_nodes=(), preset="performance", subset_size=None):
    """Writes an INT8 OpenVINO IR (``out_xml`` + ``.bin``) of the ONNX ``fp32_path`` by NNCF on ``batches``, its
    record in the sidecar ``<out_xml>.json``; returns a dict describing it."""
    from src.deploy.record import read_model_record, write_model_record

    try:
        import nncf
        import openvino as ov
    except ImportError as err:
        raise ExportError(f"an OpenVINO INT8 model needs openvino and nncf ({err}): {OPENVINO_HINT}") from None
    model = ov.Core().read_model(os.fspath(fp32_path))
    dataset = nncf.Dataset(list(batches))
    kwargs = {"preset": nncf.QuantizationPreset.PERFORMANCE if preset == "performance"
              else nncf.QuantizationPreset.MIXED,
              "subset_size": int(subset_size or sum(len(b) for b in batches))}
    if ignored_nodes:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=list(ignored_nodes))
    quantized = nncf.quantize(model, dataset, **kwargs)
    out_xml = os.fspath(out_xml)
    os.makedirs(os.path.dirname(os.path.abspath(out_xml)), exist_ok=True)
    ov.save_model(quantized, out_xml, compress_to_fp16=False)
    info = {"scheme": "int8 (OpenVINO NNCF post-training quantization)", "preset": preset,
            "calibration_images": int(sum(len(b) for b in batches)), "ignored_nodes": list(ignored_nodes),
            "openvino": ov.__version__, "nncf": nncf.__version__, "source_model": os.path.abspath(fp32_path)}
    record, _ = read_model_record(fp32_path)
    if record is not None:
        record = dict(record)
        record["quantization"] = info
        record["file_format"] = "OpenVINO IR"
        write_model_record(out_xml, record)
    return info
