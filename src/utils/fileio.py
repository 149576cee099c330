"""Atomic writes, and the one guard every output path passes before any work (a run never clobbers an input or
a file that is not the project's)."""
import contextlib
import hashlib
import os
import tempfile

from src.errors import ConfigError


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp", mode=None):
    """Yields a temporary name in ``path``'s folder (created), renamed to ``path`` with ``mode`` (default: the
    umask's, not ``mkstemp``'s 0600) when the block ends, removed on any error."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(text, path, newline=None):
    """Writes ``text`` (UTF-8) to ``path`` atomically; returns the absolute path. ``newline``: as ``open``'s."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)
    return os.path.abspath(os.fspath(path))


def new_file_mode():
    """The permissions the user's umask gives a new file (0o666 minus the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_json_atomic(data, path, indent=2, ensure_ascii=True):
    """``data`` as JSON (``src.utils.paths.json_dumps``: lossless for names that are not UTF-8), atomically."""
    from src.utils.paths import json_dumps

    return write_text_atomic(json_dumps(data, indent=indent, ensure_ascii=ensure_ascii) + "\n", path)


def free_space(folder):
    """``"N MiB free there"`` for the file system holding ``folder`` (or its nearest existing parent)."""
    try:
        st = os.statvfs(_nearest_existing(os.path.abspath(folder)))
        return f"{st.f_bavail * st.f_frsize / 2 ** 20:.0f} MiB free there"
    except OSError:
        return "free space unknown"


def _nearest_existing(path):
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _error(key, value, reason):
    return ConfigError(f"{key}={value!r}: {reason}")


def _check_not_input(full, key, value, inputs):
    """An output must never be one of the run's ``inputs`` (files or folders) nor lie inside an input folder."""
    real = os.path.realpath(full)
    for given in inputs or ():
        if not given:
            continue
        source = os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(given))))
        if real == source or (os.path.exists(real) and os.path.exists(source) and os.path.samefile(real, source)):
            raise _error(key, value, f"is one of this run's inputs ({given}); choose another output path")
        if os.path.isdir(source) and os.path.commonpath([real, source]) == source:
            raise _error(key, value, f"lies inside the input folder {given}; outputs never go into the data "
                                     "or checkpoints a run reads")


def check_output_dir(path, key, value=None, inputs=()):
    """``ConfigError`` naming ``key`` (quoting ``value``, default ``path``) when the folder ``path`` is or lies
    inside one of ``inputs``, or cannot be created or written (probed with a temporary file in its first
    existing folder: root ignores permission bits). Returns the absolute path."""
    value = path if value is None else value
    full = os.path.abspath(os.path.expanduser(os.fspath(path) or "."))
    _check_not_input(full, key, value, inputs)
    base = _nearest_existing(full)
    if not os.path.isdir(base):
        what = "is a file" if os.path.exists(base) else "is a broken link"
        raise _error(key, value, f"cannot create a folder there: {base} {what}, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write_probe.", dir=base)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise _error(key, value, f"cannot write in {base}: {err.strerror or err}") from None
    return full


def check_output_file(path, key, inputs=(), ours=None):
    """The guard for every file the project writes, before any work; returns the absolute path. ``ConfigError``
    naming ``key`` when ``path`` is a folder or not a regular file, is or lies inside one of ``inputs``, exists
    and ``ours(path)`` does not recognise it (``ours=None``: replacing it is the key's purpose), or cannot be
    written."""
    full = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.isdir(full):
        raise _error(key, path, "is a folder; expected a file name")
    if os.path.lexists(full) and not os.path.isfile(full):
        raise _error(key, path, "exists and is not a regular file (a device, FIFO, socket or broken link); "
                                "it is left alone")
    _check_not_input(full, key, path, inputs)
    if ours is not None and os.path.exists(full) and not ours(full):
        raise _error(key, path, "exists and was not written by this project; it is left alone (remove it or "
                                "choose another path)")
    check_output_dir(os.path.dirname(full), key, value=path)
    return full


def file_sha256(path, chunk=1 << 20):
    """The SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
