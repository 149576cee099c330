"""File names that are not valid UTF-8 (PEP 383 surrogate escapes, as ``os.listdir`` returns them) made safe for
messages, logs and JSON: such a str opens the right file but fails wherever it is encoded strictly (``print``, a
``logging.FileHandler``, ``json.dump(ensure_ascii=False)``, MindSpore's C++ side)."""
import json
import logging
import os
import re
import unicodedata

_SURROGATE = re.compile("[\ud800-\udfff]")


def is_utf8_name(p):
    """True when the name is valid UTF-8 (no surrogate-escaped bytes)."""
    return _SURROGATE.search(os.fsdecode(p)) is None


def display_name(name, escape_controls=False):
    """``name`` (path, bytes, anything ``str`` takes) as valid UTF-8: undecodable bytes as ``\\xNN``; with
    ``escape_controls`` control characters escaped too (one line per name in CSVs and plots). Idempotent."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if isinstance(name, (bytes, bytearray)):
        text = bytes(name).decode("utf-8", "backslashreplace")
    else:
        text = str(name)
        if _SURROGATE.search(text):
            try:
                text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:  # lone surrogates outside the escape range
                text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if escape_controls and any(unicodedata.category(c) == "Cc" for c in text):
        text = "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) == "Cc" else c
                       for c in text)
    return text


def require_utf8(p, what="this path"):
    """``p`` as str, or a ``ValueError`` naming the file when its name is not valid UTF-8."""
    s = os.fsdecode(os.fspath(p))
    if not is_utf8_name(s):
        raise ValueError(f"{what} {display_name(s)!r} has a name that is not valid UTF-8, which "
                         f"MindSpore cannot open; rename it (e.g. convmv -f latin1 -t utf8)")
    return s


def read_lines(path):
    """``(lines, first_bad_lineno)``: the lines as UTF-8 with ``surrogateescape`` (a BOM dropped) and the first
    line number (1-based) that is not valid UTF-8, or None."""
    with open(path, "rb") as f:
        lines = f.read().removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape").splitlines()
    bad = next((i for i, ln in enumerate(lines, 1) if _SURROGATE.search(ln)), None)
    return lines, bad


def entry_is_file(entry):
    """``entry.is_file()`` that does not raise: a symbolic link loop or an entry that cannot be stat'ed counts
    as a file (so the file check names it); a dangling link or a folder does not."""
    try:
        return entry.is_file()
    except OSError:
        return True


def json_dumps(obj, **kwargs):
    """``json.dumps(obj, ensure_ascii=False)`` that is valid UTF-8 and lossless: surrogate-escaped names become
    ``\\udcXX`` escapes, which ``json.loads`` turns back into the same str."""
    kwargs.setdefault("ensure_ascii", False)
    return _SURROGATE.sub(lambda m: "\\u%04x" % ord(m.group()), json.dumps(obj, **kwargs))


class SafeFormatter(logging.Formatter):
    """Formats with ``inner`` (or ``fmt``), then makes the text valid UTF-8 (``display_name``)."""

    def __init__(self, inner=None, fmt=None):
        super().__init__(fmt)
        self.inner = inner or logging.Formatter(fmt)

    def format(self, record):
        return display_name(self.inner.format(record))


def harden_log_handlers(logger):
    """Each handler of ``logger`` writes names that are not UTF-8 as ``\\xNN`` instead of losing the record."""
    for h in logger.handlers:
        fmt = h.formatter or logging.Formatter()
        if not isinstance(fmt, SafeFormatter):
            h.setFormatter(SafeFormatter(fmt))
    return logger
