"""Model export (MINDIR, ONNX, AIR) and the check that an exported file gives the network's logits.

MindSpore 2.10 side effects worked around by ``export_network`` (README): ONNX export chmods the
folder it writes into to 0700, and every written file is read-only (0400); so the file is exported into a
temporary folder, moved into place with the ordinary mode, and the folder's mode restored. MindSpore's CPU
``Tanh`` is approximate (up to 1e-4 absolute), so an ONNX file is compared with the network whose Mish computes
tanh from ``Exp`` (``use_accurate_mish``). A Cell cannot be exported to ONNX twice in one process.
"""
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass

import numpy as np

from src.errors import ExportError

__all__ = ["FORMAT_EXTENSIONS", "ExportError", "export_path", "export_network", "run_mindir", "run_onnx",
           "onnxruntime_available", "compare_logits", "ParityCheck", "AccurateMish", "use_accurate_mish"]

FORMAT_EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}


def export_path(file_name, file_format):
    """``file_name`` plus the format's extension (kept when already there), as an absolute path."""
    fmt = file_format.upper()
    if fmt not in FORMAT_EXTENSIONS:
        raise ExportError(f"file_format={file_format!r}: expected one of {', '.join(FORMAT_EXTENSIONS)}")
    if not file_name:
        raise ExportError("file_name is empty: pass --file_name=PATH (the extension is added)")
    ext = FORMAT_EXTENSIONS[fmt]
    path = os.fspath(file_name)
    if not path.lower().endswith(ext):
        path += ext
    return os.path.abspath(os.path.expanduser(path))


def _new_file_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def export_network(net, inputs, file_name, file_format="MINDIR", before_publish=None):
    """Exports ``net`` traced with ``inputs`` to ``file_name`` (replaced) and returns its path; ``before_publish(staged
    path)`` runs before the move into place, so an error or a stop before that leaves no file."""
    import mindspore as ms

    fmt = file_format.upper()
    dest = export_path(file_name, fmt)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    parent_mode = stat.S_IMODE(os.stat(parent).st_mode)
    if not isinstance(inputs, ms.Tensor):
        inputs = ms.Tensor(np.ascontiguousarray(inputs))
    base = os.path.basename(dest)
    tmp_dir = tempfile.mkdtemp(prefix=f".{base}.", suffix=".export", dir=parent)
    try:
        stem = os.path.join(tmp_dir, base[:-len(FORMAT_EXTENSIONS[fmt])])
        try:
            ms.export(net, inputs, file_name=stem, file_format=fmt)
        except OSError as err:  # disk full, a file size limit: the temporary folder goes in `finally`
            from src.utils.fileio import free_space
            raise ExportError(f"cannot write {dest} ({free_space(parent)}): {err.strerror or err}") from None
        produced = os.path.join(tmp_dir, base)
        if not os.path.isfile(produced):
            raise ExportError(f"MindSpore did not write {base} (found: {sorted(os.listdir(tmp_dir))})")
        if before_publish is not None:
            before_publish(produced)
        mode = _new_file_mode()
        # MindSpore may write companion files (external weights of very large models) beside the graph.
        for entry in sorted(os.listdir(tmp_dir)):
            src, target = os.path.join(tmp_dir, entry), os.path.join(parent, entry)
            if not os.path.isdir(src):
                os.chmod(src, mode)
            elif os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(src, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if stat.S_IMODE(os.stat(parent).st_mode) != parent_mode:
            os.chmod(parent, parent_mode)
    return dest


def AccurateMish():  # noqa: N802 (a cell factory: mindspore is imported lazily)
    """Mish with tanh(s) = (1 - e^(-2s)) / (1 + e^(-2s)) from MindSpore's Exp (s = softplus(x) >= 0): float32-accurate."""
    from mindspore import nn, ops

    class _AccurateMish(nn.Cell):
        def construct(self, x):
            e = ops.exp(-2.0 * ops.softplus(x))
            return x * (1.0 - e) / (1.0 + e)

    return _AccurateMish()


def use_accurate_mish(net):
    """Replaces every ``src.utils.custom_op.Mish`` of ``net`` by ``AccurateMish`` before its first call; returns
    the number replaced (0 for LeakyReLU nets)."""
    from src.utils.custom_op import Mish

    count = 0
    for _, cell in list(net.cells_and_names()):
        for key, child in list(cell.name_cells().items()):
            if isinstance(child, Mish):
                cell.insert_child_to_cell(key, AccurateMish())
                count += 1
    return count


def run_mindir(path, inputs):
    """Runs an exported MINDIR on ``inputs``; returns NumPy."""
    from src.deploy.exported import mindir_runner
    return mindir_runner(path)(inputs)


def onnxruntime_available():
    import importlib.util
    return importlib.util.find_spec("onnxruntime") is not None


def run_onnx(path, inputs):
    """Runs an exported ONNX file with onnxruntime on the CPU; returns the first output."""
    from src.deploy.exported import onnx_runner
    return onnx_runner(path)(inputs)


@dataclass
class ParityCheck:
    """The result of comparing an exported file's logits with the network's."""
    max_abs_diff: float
    tolerance: float
    rule: str
    same_argmax: bool
    dtype_ok: bool
    ref_dtype: str
    out_dtype: str

    @property
    def ok(self):
        return self.dtype_ok and self.max_abs_diff <= self.tolerance


def compare_logits(reference, output):
    """Acceptance rule: float32 logits within 1e-4 of the largest |logit|, float16 ones (fp16 head) within one
    float16 step at the largest |logit|; the dtype must match."""
    ref = np.asarray(reference)
    out = np.asarray(output)
    peak = float(np.abs(ref.astype(np.float64)).max()) if ref.size else 0.0
    if ref.dtype == np.float16:
        tol = float(np.spacing(np.float16(peak)))
        rule = "one float16 step at the largest logit"
    else:
        tol = 1e-4 * peak
        rule = "1e-4 of the largest logit"
    if ref.shape != out.shape:
        return ParityCheck(float("inf"), tol, rule, False, False, str(ref.dtype), f"{out.dtype} {out.shape}")
    diff = float(np.abs(ref.astype(np.float64) - out.astype(np.float64)).max()) if ref.size else 0.0
    same = bool((ref.argmax(-1) == out.argmax(-1)).all()) if ref.size else True
    return ParityCheck(diff, tol, rule, same, ref.dtype == out.dtype, str(ref.dtype), str(out.dtype))
