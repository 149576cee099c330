"""Small file helpers shared by the entry scripts and src/ modules."""
import json
import os
import tempfile


def write_json_atomic(data, path, indent=2, ensure_ascii=True):
    """Writes ``data`` as JSON to ``path`` via a temporary file in the same folder and a rename, so a
    reader never sees a half-written file. Creates the folder; returns the absolute path."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent, ensure_ascii=ensure_ascii)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
