"""Small file helpers shared by the entry scripts and src/ modules: atomic JSON writes, and the up-front
checks that an output location can be written (so a run fails before any device work, not at its end)."""
import hashlib
import json
import os
import tempfile

__all__ = ["write_text_atomic", "write_json_atomic", "check_output_dir", "check_output_file", "free_space",
           "file_sha256"]


def write_text_atomic(text, path, newline=None):
    """Writes the str ``text`` (UTF-8) to ``path`` via a temporary file in the same folder and a rename, so a
    reader never sees a half-written file; the temporary file is removed on any error. Creates the folder;
    returns the absolute path. ``newline``: as ``open``'s ("" for CSV text that has its own line ends). The
    file gets the permissions of any new file (umask), not ``mkstemp``'s 0600."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_json_atomic(data, path, indent=2, ensure_ascii=True):
    """Writes ``data`` as JSON to ``path`` via a temporary file in the same folder and a rename, so a
    reader never sees a half-written file. Creates the folder; returns the absolute path.

    With ``ensure_ascii=False`` non-ASCII text stays readable, and a file name that is not valid UTF-8 (a
    surrogate-escaped str from ``os.listdir``) is written as ``\\udcXX`` escapes instead of failing, which
    ``json.load`` turns back into the same str (``src.utils.paths.json_dumps``). The file gets the
    permissions of any new file (umask), not ``mkstemp``'s 0600."""
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
    from src.errors import ConfigError

    return ConfigError(f"{key}={value!r}: {reason}")


def _inside(path, folder):
    """Whether ``path`` is ``folder`` or lies under it (both absolute, symbolic links resolved)."""
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def _check_not_input(full, key, value, inputs):
    """Raises ``ConfigError`` when ``full`` is one of ``inputs`` (files or folders the run reads) or lies
    inside an input folder: an output must never replace what the run reads, nor mix with its data."""
    real = os.path.realpath(full)
    for given in inputs or ():
        if not given:
            continue
        source = os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(given))))
        if real == source or (os.path.exists(real) and os.path.exists(source) and os.path.samefile(real, source)):
            raise _error(key, value, f"is one of this run's inputs ({given}); choose another output path")
        if os.path.isdir(source) and _inside(real, source):
            raise _error(key, value, f"lies inside the input folder {given}; outputs never go into the data "
                                     "or checkpoints a run reads")


def check_output_dir(path, key, value=None, inputs=()):
    """Raises ``ConfigError`` naming ``key`` when the folder ``path`` cannot be created or written, or is
    one of ``inputs`` / lies inside an input folder (see ``check_output_file``).

    Nothing is left behind: the folder is not created (the first existing folder on the way is probed
    with a temporary file, removed at once). Root ignores permission bits, so the probe is a real write:
    it catches read-only file systems, a regular file on the way, and missing permissions alike.
    ``value``: what the message quotes as the key's value (default ``path``).
    """
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
    """The one guard for every file the project writes, called before any work; returns the absolute path.

    Raises ``ConfigError`` naming ``key`` when ``path``:
      * is a folder, or an existing file that is not a regular file (a device node, FIFO or socket);
      * is one of the run's ``inputs`` (data, checkpoints, configs, images: files or folders) or lies inside
        an input folder;
      * exists and ``ours`` (a predicate) says it is not a file this project wrote (e.g. a manifest path that
        names a user's text file). ``ours=None``: writing that file is the key's documented purpose, and the
        writer replaces it atomically (``write_text_atomic``), so a reader never sees half of it;
      * cannot be written (its folder cannot be created or written).
    """
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
