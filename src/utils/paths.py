"""File names that are not valid UTF-8 (PEP 383 surrogate escapes), for display, JSON and logs.

On Linux a file name is bytes. ``os.listdir``/``os.scandir`` with str paths decode it with the file system
encoding (UTF-8) and ``surrogateescape``, so a Latin-1 name ``caf\\xe9.jpg`` becomes the str ``'caf\\udce9.jpg'``.
That str opens the right file (``open``, ``os.stat``, ``np.fromfile``, PIL) but fails wherever it is encoded
strictly:

* ``print`` to a stdout whose errors handler is ``strict`` (any UTF-8 locale but C/POSIX/C.UTF-8):
  ``UnicodeEncodeError``;
* a ``logging.FileHandler`` (encoding UTF-8, errors strict): the record is *lost* from log.txt and
  "--- Logging error ---" goes to stderr;
* ``json.dump(..., ensure_ascii=False)`` into a UTF-8 file: ``UnicodeEncodeError`` (with ``ensure_ascii=True``
  it writes ``"\\udce9"``, which Python reads back losslessly but other tools show as U+FFFD);
* writing it into a UTF-8 text file (predict.py writes its image list that way: ``UnicodeEncodeError``
  before anything is predicted), and reading a text file that is not UTF-8 (``read_data_list`` read it
  strictly: ``UnicodeDecodeError`` traceback);
* MindSpore's C++ side given such a str (measured on 2.10): ``MindDataset`` / ``FileWriter`` paths fail with
  pybind11's ``TypeError: incompatible function arguments``, a MindRecord string field with ``RuntimeError:
  Unable to cast``. (The folder pipeline reads the bytes in Python, so image files are not affected;
  ``ImageFolderDataset`` also lists such files fine from C++.)

Helpers:

* ``display_name(p)``: printable, valid UTF-8, the undecodable bytes shown as ``\\xe9`` (for messages and
  logs); ``is_utf8_name(p)``;
* ``json_dumps(obj)`` (and ``src.utils.fileio.write_json_atomic``, which uses the same escaping): JSON that
  is readable (non-ASCII names stay as they are) *and* lossless: only the escaped bytes become ``\\udcXX`` escapes, which ``json.loads`` turns back into
  the same str, hence the same bytes; ``path_fields(p)`` gives ``{"file": display}`` plus ``"file_bytes"``
  (hex of the raw name) when the name is not UTF-8, for JSON read by other tools;
* ``require_utf8(p, what)``: a clear error naming the file where a library needs a UTF-8 path;
* ``read_lines(path)``: a text file's lines, names in it that are not UTF-8 kept as surrogate escapes (so they
  open the same files), with the first line that is not UTF-8 for a warning; ``write_lines`` the inverse;
* ``entry_is_file(entry)``: ``DirEntry.is_file`` that does not raise on a symbolic link loop;
* ``harden_log_handlers(logger)`` / ``SafeFormatter``: log handlers that write such names (backslash-escaped)
  instead of dropping the record (``src.utils.runtime.RunLog`` uses it; tools call ``harden_log_handlers``).
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Dict, Iterable, Union

PathLike = Union[str, bytes, "os.PathLike[str]"]
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_utf8_name(p: PathLike) -> bool:
    """True when the name is valid UTF-8 (no surrogate-escaped bytes)."""
    p = os.fspath(p)
    if isinstance(p, bytes):
        try:
            p.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False
    return _SURROGATE.search(p) is None


def display_name(p: PathLike) -> str:
    """The name as valid, printable text: bytes that are not UTF-8 appear as ``\\xNN``."""
    p = os.fspath(p)
    raw = p if isinstance(p, bytes) else os.fsencode(p) if _SURROGATE.search(p) else None
    if raw is None:
        return p
    return raw.decode("utf-8", "backslashreplace")


def require_utf8(p: PathLike, what: str = "this path") -> str:
    """``p`` as str, or a ``ValueError`` naming the file when its name is not valid UTF-8."""
    s = os.fsdecode(os.fspath(p))
    if not is_utf8_name(s):
        raise ValueError(f"{what} {display_name(s)!r} has a name that is not valid UTF-8, which "
                         f"MindSpore cannot open; rename it (e.g. convmv -f latin1 -t utf8)")
    return s


def read_lines(path: str):
    """``(lines, first_bad_lineno)``: the file's lines without line ends, decoded as UTF-8 with
    ``surrogateescape`` (bytes that are not UTF-8 stay as they are, as in a file name from ``os.listdir``);
    ``first_bad_lineno`` is the 1-based number of the first line that is not valid UTF-8, or None."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.decode("utf-8", "surrogateescape").splitlines()
    bad = next((i for i, ln in enumerate(lines, 1) if _SURROGATE.search(ln)), None)
    return lines, bad


def write_lines(path: str, lines: Iterable[str]) -> None:
    """Lines written so that ``read_lines`` gives them back exactly (names that are not UTF-8 as raw bytes)."""
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        for ln in lines:
            f.write(ln + "\n")


def entry_is_file(entry: "os.DirEntry") -> bool:
    """``entry.is_file()`` for a listing that must not end in a traceback: a symbolic link loop (``ELOOP``:
    ``DirEntry.is_file`` raises it; measured, the folder listing died on it) or an entry that
    cannot be stat'ed counts as a file, so that it is listed and then named by the file check ("symbolic
    link loop", "cannot read"); a dangling link or a folder does not."""
    try:
        return entry.is_file()
    except OSError:
        return True


def _escape_surrogates(text: str) -> str:
    return _SURROGATE.sub(lambda m: "\\u%04x" % ord(m.group()), text)


def json_dumps(obj: Any, **kwargs) -> str:
    """``json.dumps(obj, ensure_ascii=False)`` that is valid UTF-8 and lossless for surrogate-escaped names."""
    kwargs.setdefault("ensure_ascii", False)
    return _escape_surrogates(json.dumps(obj, **kwargs))


def path_fields(p: PathLike, key: str = "file") -> Dict[str, str]:
    """``{key: display_name(p)}``, plus ``{key + "_bytes": hex of the raw name}`` when it is not UTF-8."""
    s = os.fsdecode(os.fspath(p))
    out = {key: display_name(s)}
    if not is_utf8_name(s):
        out[key + "_bytes"] = os.fsencode(s).hex()
    return out


def path_from_fields(rec: Dict[str, str], key: str = "file") -> str:
    """The inverse of ``path_fields``: the exact path (surrogate-escaped str)."""
    if key + "_bytes" in rec:
        return os.fsdecode(bytes.fromhex(rec[key + "_bytes"]))
    return rec[key]


class SafeFormatter(logging.Formatter):
    """Formats with ``inner`` (or ``fmt``), then makes the text valid UTF-8 (``display_name``)."""

    def __init__(self, inner: logging.Formatter = None, fmt: str = None):
        super().__init__(fmt)
        self.inner = inner or logging.Formatter(fmt)

    def format(self, record):
        return display_name(self.inner.format(record))


def harden_log_handlers(logger: logging.Logger) -> logging.Logger:
    """Make each handler of ``logger`` write names that are not UTF-8 as ``\\xNN`` instead of losing the
    record ("--- Logging error ---"). Idempotent."""
    for h in logger.handlers:
        fmt = h.formatter or logging.Formatter()
        if not isinstance(fmt, SafeFormatter):
            h.setFormatter(SafeFormatter(fmt))
    return logger
