"""Checkpoint files: MindSpore ``.ckpt``, ``.safetensors`` (read with NumPy alone), PyTorch ``.pth``/``.pt``/``.bin``
(needs torch); atomic saves. ``read_state_dict(path)`` -> ``(arrays by name, string metadata)``; nothing here
knows networks or key layouts."""
import contextlib
import json
import logging
import math
import os
import struct

import numpy as np

from src.errors import CheckpointError, CheckpointSaveError
from src.utils.fileio import free_space, new_file_mode


_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
                       "BF16": np.uint16}  # read as bits, widened to float32


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_safetensors(path):
    """A safetensors file with NumPy alone (u64 header length, JSON header, data); a header that does not
    describe the data is a ``CheckpointError`` naming the tensor."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file ({len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise CheckpointError(f"{path}: corrupt safetensors header (claims {header_len} bytes, file has "
                              f"{len(data) - 8} after the length field)")
    try:
        header = json.loads(data[8:8 + header_len])
    except (ValueError, RecursionError) as err:  # RecursionError: nesting deeper than the parser goes
        raise CheckpointError(f"{path}: corrupt safetensors header ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (a JSON {type(header).__name__}, not an object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{path}: corrupt safetensors header (__metadata__ must map names to strings)")
    base, size = 8 + header_len, len(data) - 8 - header_len
    arrays = {}
    for name, info in header.items():
        try:
            dtype_name, shape, (begin, end) = info["dtype"], list(info["shape"]), info["data_offsets"]
            if not (isinstance(dtype_name, str) and all(_count(v) for v in shape + [begin, end])
                    and begin <= end <= size):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt safetensors header entry for tensor {name!r} (expected dtype, "
                                  f"shape and data_offsets within the {size}-byte data section)") from None
        if dtype_name not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype_name!r}")
        dtype = np.dtype(_SAFETENSORS_DTYPES[dtype_name]).newbyteorder("<")
        expected = math.prod(shape)
        if end - begin != expected * dtype.itemsize:
            raise CheckpointError(f"{path}: tensor {name!r} holds {end - begin} bytes, its shape {shape} and dtype "
                                  f"{dtype_name} need {expected * dtype.itemsize} (truncated or corrupt)")
        arr = np.frombuffer(data[base + begin:base + end], dtype=dtype)
        if dtype_name == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        arrays[name] = arr.reshape(shape).copy()
    return arrays, meta


def _read_torch(path, use_ema):
    try:
        import torch  # optional: only for .pth files
    except ImportError:
        raise CheckpointError(f"{path}: reading a PyTorch .pth file needs torch, which is not installed; "
                              "install torch or convert the file to .safetensors") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({err})") from None
    if isinstance(obj, dict):
        for key in (("state_dict_ema", "model_ema") if use_ema else ()) + ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.cpu().numpy()
            for k, v in obj.items() if hasattr(v, "detach")}, {}


def _read_mindspore(path):
    import mindspore as ms
    try:
        params = ms.load_checkpoint(path)
    except Exception as err:  # MindSpore raises ValueError/RuntimeError for corrupt files
        raise CheckpointError(f"{path}: cannot be read as a MindSpore checkpoint ({err})") from None
    meta = {name: value for name, value in params.items() if isinstance(value, (str, bytes))}
    return {name: value.asnumpy() for name, value in params.items() if name not in meta}, meta


def read_state_dict(path, use_ema=False):
    """Reads a checkpoint file into ``(arrays, metadata)``: name -> ndarray, name -> str."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path {path!r} is a directory, expected a file")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"checkpoint file {path!r} is not readable (permissions)")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint file {path!r} is empty")
    ext = os.path.splitext(path)[1].lower()
    readers = {".safetensors": _read_safetensors, ".ckpt": _read_mindspore,
               **dict.fromkeys((".pth", ".pt", ".bin"), lambda p: _read_torch(p, use_ema))}
    if ext in readers:
        return readers[ext](path)
    raise CheckpointError(f"checkpoint file {path!r}: unknown extension {ext!r}; expected .ckpt, .safetensors, "
                          ".pth, .pt or .bin")


#: in the temporary files a killed save leaves: ours (``.<name>.<pid>.partial.ckpt``) and MindSpore's ``.tmp``
PARTIAL_MARK = ".partial."


@contextlib.contextmanager
def _mindspore_log_silenced():
    """Holds back MindSpore's CRITICAL line (naming the temporary file) when its writer fails."""
    try:
        from mindspore import log as ms_log
        logger = ms_log._get_logger()  # pylint: disable=protected-access
    except Exception:  # pragma: no cover - another MindSpore version: its line stays
        yield
        return
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def is_partial_file(name):
    """True for the temporary file of an unfinished atomic save (never a checkpoint)."""
    base = os.path.basename(name)
    return base.startswith(".") and PARTIAL_MARK in base and base.endswith((".ckpt", ".tmp"))


def remove_partial_files(folder):
    """Deletes the temporary files that killed saves left in ``folder``; returns their paths."""
    removed = []
    with contextlib.suppress(OSError):
        for name in filter(is_partial_file, os.listdir(folder)):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
    return removed


def save_checkpoint_atomic(params, path, metadata=None):
    """Saves a Cell or ``{"name", "data"}`` entries (and ``metadata``) to a temporary name, then ``os.replace``
    (MindSpore deletes the old file first); a failure leaves ``path`` as it was (``CheckpointSaveError``)."""
    import mindspore as ms

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.partial.ckpt")
    try:
        os.makedirs(folder, exist_ok=True)
        with _mindspore_log_silenced():
            ms.save_checkpoint(params, tmp, append_dict=dict(metadata or {}))
        os.chmod(tmp, new_file_mode())  # MindSpore leaves it read-only (0400); the user's umask decides
        os.replace(tmp, path)
    except (OSError, RuntimeError, ValueError) as err:  # MindSpore wraps write errors in RuntimeError
        for leftover in (tmp, tmp[:-len(".ckpt")] + ".tmp"):
            with contextlib.suppress(OSError):
                os.remove(leftover)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointSaveError(f"cannot write checkpoint {path} ({free_space(folder)}): {first}") from None
    return path
