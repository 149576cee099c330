"""The model record (docs/deployment.md section 1): one JSON object (``RECORD_FORMAT``, version 1) with what an
exported model needs so that any runtime can use it untold: arch, classes and their names, input shape, eval
preprocessing (``preprocess.resize``: the eval pipeline's ``Resize`` argument, computed here by the Python rule),
output dtype, source checkpoint, calibration temperature, quantization. ONNX: appended to the serialized
``ModelProto`` as a ``metadata_props`` entry ``model_record`` (no onnx package needed); other formats: the
sidecar ``<model file>.json``.
"""
import json
import os

from src.errors import ModelRecordError
from src.utils.fileio import file_sha256

__all__ = ["RECORD_FORMAT", "RECORD_VERSION", "RECORD_KEY", "build_model_record", "validate_record",
           "write_model_record", "read_model_record", "sidecar_path", "is_sidecar_record", "onnx_metadata",
           "set_onnx_metadata", "with_calibration", "record_preprocess", "file_sha256", "describe_record"]

RECORD_FORMAT = "cspdarknet53-model-record"
RECORD_VERSION = 1
RECORD_KEY = "model_record"
SIDECAR_SUFFIX = ".json"

_MODEL_METADATA_FIELD = 14   # ModelProto.metadata_props (repeated StringStringEntryProto)
_MODEL_GRAPH_FIELD = 7       # ModelProto.graph


def _class_names(info, num_classes):
    """The checkpoint's class names; for a 1000-class model without them the ImageNet-1k table; else None."""
    names, source = info.get("class_names"), info.get("class_names_source")
    if names is not None and len(names) == num_classes:
        return [str(n) for n in names], source
    if num_classes == 1000:
        from src.data.class_names import load_imagenet_class_names
        return load_imagenet_class_names(), "the ImageNet-1k table (data/imagenet/imagenet1k_classes.tsv)"
    return None, None


def build_model_record(ckpt_path, arch, num_classes, input_shape, *, info, output_dtype="float32", used_ema=False,
                       calibration=None, file_format=None, sha256=None):
    """The record of a model of ``arch`` / ``num_classes`` exported from ``ckpt_path`` with input ``[N, 3, H, W]``.
    ``info``: ``src.checkpoint.checkpoint_model_info`` of it (its ``preprocess`` gives the resize mode and crop);
    ``calibration``: a calibration record to embed; ``sha256``: the checkpoint's, when already computed."""
    from src.archs import resolve_preprocess
    from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_resize_size

    shape = [int(v) for v in input_shape]
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"input_shape must be [N, 3, H, W], got {input_shape!r}")
    pre = resolve_preprocess(arch, recorded=info.get("preprocess"))
    size = (shape[2], shape[3])
    resize = eval_resize_size(size, pre["eval_resize"], pre["crop_pct"])
    names, names_source = _class_names(info, int(num_classes))
    record = {
        "format": RECORD_FORMAT, "version": RECORD_VERSION,
        "arch": arch, "num_classes": int(num_classes),
        "class_names": names, "class_names_source": names_source,
        "input": {"shape": shape, "dtype": "float32", "layout": "NCHW", "channels": "RGB"},
        "preprocess": {"image_size": list(size), "eval_resize": pre["eval_resize"], "crop_pct": pre["crop_pct"],
                       "resize": [int(resize)] if isinstance(resize, int) else [int(v) for v in resize],
                       "interpolation": "bilinear",
                       "mean": [round(float(v), 6) for v in IMAGENET_MEAN],
                       "std": [round(float(v), 6) for v in IMAGENET_STD]},
        "output": {"dtype": str(output_dtype), "kind": "logits"},
        "source_checkpoint": {"path": os.path.abspath(os.fspath(ckpt_path)), "sha256": sha256 or file_sha256(ckpt_path),
                              "layout": info.get("layout"), "ema": bool(used_ema)},
        "calibration": None,
        "quantization": None,
        "file_format": file_format,
    }
    if calibration is not None:
        record = with_calibration(record, calibration)
    validate_record(record, "the new record")
    return record


def with_calibration(record, calibration):
    """A copy of ``record`` with the calibration record embedded."""
    from src.analysis.calibration import validate_calibration

    validate_calibration(calibration, "the calibration record")
    out = dict(record)
    out["calibration"] = dict(calibration)
    return out


def _fail(where, message):
    raise ModelRecordError(f"{where}: model record {message}")


def validate_record(record, where):
    """Raises ``ModelRecordError`` (naming ``where``) unless ``record`` is a usable version-1 record."""
    if not isinstance(record, dict):
        _fail(where, f"is not a JSON object (got {type(record).__name__})")
    if record.get("format") != RECORD_FORMAT:
        _fail(where, f"has format {record.get('format')!r}, expected {RECORD_FORMAT!r}")
    if record.get("version") != RECORD_VERSION:
        _fail(where, f"has version {record.get('version')!r}; this code reads version {RECORD_VERSION}")
    k = record.get("num_classes")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        _fail(where, f"num_classes={k!r} is not a positive integer")
    names = record.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != k
                              or not all(isinstance(n, str) for n in names)):
        _fail(where, f"class_names must be null or a list of {k} strings")
    pre = record.get("preprocess")
    if not isinstance(pre, dict):
        _fail(where, "has no preprocess object")
    size, resize = pre.get("image_size"), pre.get("resize")
    if not (isinstance(size, list) and len(size) == 2 and all(_pos_int(v) for v in size)):
        _fail(where, f"preprocess.image_size={size!r} is not [height, width]")
    if not (isinstance(resize, list) and len(resize) in (1, 2) and all(_pos_int(v) for v in resize)):
        _fail(where, f"preprocess.resize={resize!r} is not [shorter side] or [height, width]")
    if len(resize) == 1 and resize[0] < min(size) or len(resize) == 2 and (resize[0] < size[0] or resize[1] < size[1]):
        _fail(where, f"preprocess.resize={resize} is smaller than the crop {size}")
    for key in ("mean", "std"):
        v = pre.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)):
            _fail(where, f"preprocess.{key}={v!r} is not 3 numbers")
    if any(x <= 0 for x in pre["std"]):
        _fail(where, f"preprocess.std={pre['std']} has a value <= 0")
    shape = (record.get("input") or {}).get("shape")
    if not (isinstance(shape, list) and len(shape) == 4 and shape[1] == 3 and list(shape[2:]) == list(size)):
        _fail(where, f"input.shape={shape!r} does not match preprocess.image_size={size}")
    cal = record.get("calibration")
    if cal is not None:
        from src.analysis.calibration import validate_calibration
        try:
            validate_calibration(cal, where)
        except ModelRecordError as err:
            raise ModelRecordError(f"{err} (embedded calibration)") from None
    return record


def _pos_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def record_preprocess(record):
    """``(image_size "H,W", eval_resize, crop_pct)`` of a record, as the eval pipeline takes them."""
    pre = record["preprocess"]
    return "%d,%d" % tuple(pre["image_size"]), pre["eval_resize"], float(pre["crop_pct"])


def describe_record(record):
    """One line for logs: arch, classes, input and preprocessing, temperature."""
    pre = record["preprocess"]
    names = record.get("class_names")
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "") if names else "no class names"
    cal = record.get("calibration")
    return (f"{record['arch']}, {record['num_classes']} classes ({shown}), input {record['input']['shape']}, "
            f"{pre['eval_resize']} resize to {pre['resize']} then crop {pre['image_size']}"
            + (f", temperature {cal['temperature']:.4g}" if cal else ""))


def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _encode_varint(n):
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _length_delimited(num, data):
    """A serialized length-delimited field (wire type 2) ``num`` holding ``data``."""
    return _encode_varint(num << 3 | 2) + _encode_varint(len(data)) + data


def _fields(buf):
    """``(field number, wire type, start, payload start, end)`` of each top-level field of a message."""
    pos, n = 0, len(buf)
    while pos < n:
        start = pos
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        payload = pos
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, payload = _varint(buf, pos)
            pos = payload + length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire} at byte {start}")
        if num == 0 or pos > n:
            raise ValueError(f"malformed field at byte {start}")
        yield num, wire, start, payload, pos


def _entry(buf):
    """``(key, value)`` of a serialized StringStringEntryProto."""
    text = {num: bytes(buf[payload:end]).decode("utf-8") for num, wire, _, payload, end in _fields(buf)
            if wire == 2 and num in (1, 2)}
    return text.get(1, ""), text.get(2, "")


def _read_onnx(path):
    try:
        with open(path, "rb") as f:
            return memoryview(f.read())
    except OSError as err:
        raise ModelRecordError(f"cannot read {path}: {err.strerror or err}") from None


def _parse_model(buf, path):
    """The top-level fields of an ONNX ModelProto; a file that is not one raises ``ModelRecordError``."""
    try:
        fields = list(_fields(buf))
    except ValueError as err:
        raise ModelRecordError(f"{path} is not an ONNX model ({err})") from None
    if not any(num == _MODEL_GRAPH_FIELD and wire == 2 for num, wire, *_ in fields):
        raise ModelRecordError(f"{path} is not an ONNX model (no graph)")
    return fields


def onnx_metadata(path):
    """``{key: value}`` of an ONNX file's ``metadata_props``."""
    buf = _read_onnx(path)
    out = {}
    for num, wire, _, payload, end in _parse_model(buf, path):
        if num == _MODEL_METADATA_FIELD and wire == 2:
            try:
                key, value = _entry(buf[payload:end])
            except (ValueError, UnicodeDecodeError) as err:
                raise ModelRecordError(f"{path}: malformed metadata entry ({err})") from None
            out[key] = value
    return out


def set_onnx_metadata(path, entries):
    """Sets ``metadata_props`` entries (``{key: str value}``) of the ONNX file ``path`` in place, atomically
    (temporary file + rename, mode kept); entries with the same keys are replaced, others kept."""
    path = os.fspath(path)
    buf = _read_onnx(path)
    fields = _parse_model(buf, path)
    keep = []
    for num, wire, start, payload, end in fields:
        if num == _MODEL_METADATA_FIELD and wire == 2:
            try:
                key, _ = _entry(buf[payload:end])
            except (ValueError, UnicodeDecodeError):
                key = None
            if key in entries:
                continue
        keep.append((start, end))
    tail = b"".join(_length_delimited(_MODEL_METADATA_FIELD, _length_delimited(1, str(key).encode("utf-8"))
                                      + _length_delimited(2, str(value).encode("utf-8")))
                    for key, value in entries.items())
    from src.utils.fileio import atomic_path
    with atomic_path(path, mode=os.stat(path).st_mode & 0o7777) as tmp, open(tmp, "wb") as f:
        for start, end in keep:
            f.write(buf[start:end])
        f.write(tail)
    return path


def sidecar_path(model_path):
    """``<model file>.json``: where a MINDIR/AIR model's record lives."""
    return os.fspath(model_path) + SIDECAR_SUFFIX


def is_sidecar_record(path):
    from src.analysis.calibration import json_format
    return json_format(path) == RECORD_FORMAT


def _is_onnx(path):
    return os.fspath(path).lower().endswith(".onnx")


def write_model_record(model_path, record):
    """Writes ``record`` into the ONNX file's metadata, or as the sidecar JSON of any other model file; returns
    where it went."""
    validate_record(record, os.fspath(model_path))
    if _is_onnx(model_path):
        from src.utils.paths import json_dumps
        set_onnx_metadata(model_path, {RECORD_KEY: json_dumps(record, indent=None)})
        return os.fspath(model_path)
    from src.utils.fileio import write_json_atomic
    return write_json_atomic(record, sidecar_path(model_path), ensure_ascii=False)


def _loads(text, where):
    try:
        return json.loads(text)
    except ValueError as err:
        raise ModelRecordError(f"{where}: model record is not valid JSON ({err})") from None


def read_model_record(model_path, required=False):
    """``(record, where)`` of ``model_path``: an ONNX file's embedded one, else the sidecar; ``(None, None)`` when
    there is none unless ``required`` (then ``ModelRecordError``, as for a malformed record)."""
    model_path = os.fspath(model_path)
    if not os.path.isfile(model_path):
        raise ModelRecordError(f"model file not found: {model_path}")
    if _is_onnx(model_path):
        text = onnx_metadata(model_path).get(RECORD_KEY)
        if text is not None:
            where = f"{model_path} (ONNX metadata '{RECORD_KEY}')"
            return validate_record(_loads(text, where), where), where
    side = sidecar_path(model_path)
    if os.path.isfile(side):
        try:
            with open(side, encoding="utf-8") as f:
                text = f.read()
        except (OSError, ValueError) as err:
            raise ModelRecordError(f"cannot read {side}: {getattr(err, 'strerror', None) or err}") from None
        return validate_record(_loads(text, side), side), side
    if required:
        raise ModelRecordError(f"{model_path} has no model record (no ONNX metadata '{RECORD_KEY}', no {side}); "
                               "export it again with this project's export.py")
    return None, None
