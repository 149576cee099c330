"""Model export (MINDIR, ONNX, AIR) and the check that an exported file gives the network's logits.

``export_network`` wraps ``mindspore.export`` with two fixes for side effects measured on
MindSpore 2.10 (reference: mindspore_runtime.md section 4):

* ONNX export ``chmod``s the folder it writes into to 0700 when the file is new (with a bare file
  name, the user's current directory). Every format is therefore exported into a fresh temporary
  folder beside the destination and the file is moved into place; the destination folder's mode is
  restored if anything changed it anyway.
* MindSpore leaves every file it writes read-only (0400). The moved file gets the ordinary mode
  for new files (0666 minus the umask), so users and other tools can replace it.

``run_mindir`` (``mindspore.load`` + ``nn.GraphCell``) and ``run_onnx`` (onnxruntime, optional)
run an exported file; ``compare_logits`` applies the acceptance rule.

The ONNX reference: MindSpore 2.10's CPU ``Tanh`` kernel is an approximation (max abs error 1.0e-4 for
inputs in [4, 9], 1.5e-5 in [2, 4]; measured against float64), while ONNX Runtime's is accurate. Through
the 72 Mish layers of ``cspdarknet53`` with trained-like activations that moves MindSpore's logits by
~2e-4 of the largest logit, so an exact ONNX file would fail a 1e-4 check against the Cell. For a Mish
network the ONNX file is therefore compared with the same network whose Mish computes tanh from
``Exp`` (``use_accurate_mish``; max abs error 2.4e-6), and the difference to the Cell is reported too.

MindSpore 2.10 cannot export the same Cell object to ONNX twice in one process (the second call fails
in ``get_func_graph_proto``, "anf.cc:453 input"); build a fresh Cell for a second ONNX export.
"""
import os
import shutil
import stat
import tempfile

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
    """Exports ``net`` traced with ``inputs`` (a NumPy array or MindSpore Tensor) and returns the file path.

    The parent folder is created; an existing file of the same name is replaced. The file is written into a
    temporary folder beside the destination and moved into place only at the end, after
    ``before_publish(path of the file in the temporary folder)`` (e.g. its verification) returned: an error
    or a stop signal before that leaves no file, nor the temporary folder.
    """
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
            src = os.path.join(tmp_dir, entry)
            target = os.path.join(parent, entry)
            if os.path.isdir(src):
                if os.path.isdir(target):
                    shutil.rmtree(target)
                os.replace(src, target)
            else:
                os.chmod(src, mode)
                os.replace(src, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if stat.S_IMODE(os.stat(parent).st_mode) != parent_mode:
            os.chmod(parent, parent_mode)
    return dest


def _accurate_mish_class():
    from mindspore import nn, ops

    class AccurateMish(nn.Cell):
        """Mish with tanh(s) computed as (1 - e^(-2s)) / (1 + e^(-2s)) from MindSpore's Exp (s = softplus(x) >= 0,
        so e^(-2s) is in (0, 1]): float32-accurate where MindSpore's Tanh kernel is off by up to 1e-4."""

        def __init__(self):
            super().__init__()
            self.softplus = ops.Softplus()
            self.exp = ops.Exp()

        def construct(self, x):
            e = self.exp(-2.0 * self.softplus(x))
            return x * (1.0 - e) / (1.0 + e)

    return AccurateMish


def AccurateMish():  # noqa: N802 (a factory: mindspore is imported lazily)
    return _accurate_mish_class()()


def use_accurate_mish(net):
    """Replaces every ``src.utils.custom_op.Mish`` in ``net`` by ``AccurateMish``, in place, before the network's
    first call (a compiled graph would not see the change). Returns the number replaced (0 for LeakyReLU nets)."""
    from src.utils.custom_op import Mish

    count = 0
    for _, cell in list(net.cells_and_names()):
        for key, child in list(cell.name_cells().items()):
            if isinstance(child, Mish):
                cell.insert_child_to_cell(key, AccurateMish())
                count += 1
    return count


def run_mindir(path, inputs):
    """Runs an exported MINDIR: ``nn.GraphCell(mindspore.load(path))`` on ``inputs``; returns NumPy."""
    import mindspore as ms
    from mindspore import nn

    graph = ms.load(os.fspath(path))
    cell = nn.GraphCell(graph)
    out = cell(ms.Tensor(np.ascontiguousarray(inputs)))
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.asnumpy()


def onnxruntime_available():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def run_onnx(path, inputs):
    """Runs an exported ONNX file with onnxruntime on the CPU; returns the first output."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(inputs)})[0]


class ParityCheck:
    """The result of comparing an exported file's logits with the network's."""

    def __init__(self, max_abs_diff, tolerance, rule, same_argmax, dtype_ok, ref_dtype, out_dtype):
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        self.rule = rule
        self.same_argmax = same_argmax
        self.dtype_ok = dtype_ok
        self.ref_dtype = ref_dtype
        self.out_dtype = out_dtype

    @property
    def ok(self):
        return self.dtype_ok and self.max_abs_diff <= self.tolerance

    def __repr__(self):
        return (f"ParityCheck(max_abs_diff={self.max_abs_diff:.3e}, tolerance={self.tolerance:.3e} ({self.rule}), "
                f"same_argmax={self.same_argmax}, dtypes={self.ref_dtype}/{self.out_dtype})")


def compare_logits(reference, output):
    """Acceptance rule for an exported model's logits against the network's.

    float32 logits: max abs difference at most 1e-4 of the largest |logit|. float16 logits (the fp16
    head): at most one float16 step (ulp) at the largest |logit|. The output dtype must match.
    """
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
