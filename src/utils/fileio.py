"""Small file helpers shared by the entry scripts and src/ modules."""
import os
import tempfile


def write_json_atomic(data, path, indent=2, ensure_ascii=True):
    """Writes ``data`` as JSON to ``path`` via a temporary file in the same folder and a rename, so a
    reader never sees a half-written file. Creates the folder; returns the absolute path.

    With ``ensure_ascii=False`` non-ASCII text stays readable, and a file name that is not valid UTF-8 (a
    surrogate-escaped str from ``os.listdir``) is written as ``\\udcXX`` escapes instead of failing, which
    ``json.load`` turns back into the same str (``src.utils.paths.json_dumps``). The file gets the
    permissions of any new file (umask), not ``mkstemp``'s 0600."""
    from src.utils.paths import json_dumps

    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    text = json_dumps(data, indent=indent, ensure_ascii=ensure_ascii)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
