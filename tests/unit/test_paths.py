"""Tests for src/utils/paths.py with a real Latin-1-named file."""
import io
import json
import logging
import os

import numpy as np
import pytest

from src.utils.paths import (display_name, entry_is_file, harden_log_handlers, is_utf8_name, json_dumps,
                             read_lines, require_utf8)

LATIN = b"caf\xe9 cr\xe8me.jpg"


@pytest.fixture
def latin_file(tmp_path):
    folder = os.path.join(os.fsencode(str(tmp_path)), b"cls")
    os.makedirs(folder)
    with open(os.path.join(folder, LATIN), "wb") as f:
        f.write(b"\xff\xd8\xff")
    name = os.listdir(os.path.join(str(tmp_path), "cls"))[0]   # str listing: surrogate escapes
    return os.path.join(str(tmp_path), "cls", name)


def test_listing_gives_surrogates_that_still_open_the_file(latin_file):
    assert not is_utf8_name(latin_file) and "\udce9" in latin_file
    assert np.fromfile(latin_file, np.uint8).tolist() == [0xFF, 0xD8, 0xFF]
    assert is_utf8_name("plain-ü.jpg") and is_utf8_name(b"plain") and not is_utf8_name(LATIN)


def test_display_name_is_valid_printable_text(latin_file):
    d = display_name(latin_file)
    assert d.endswith("caf\\xe9 cr\\xe8me.jpg")
    d.encode("utf-8")
    assert display_name("ünïcode.jpg") == "ünïcode.jpg"
    assert display_name(LATIN) == "caf\\xe9 cr\\xe8me.jpg"


def test_json_dumps_is_readable_utf8_and_lossless(latin_file, tmp_path):
    obj = {"file": latin_file, "class": "ünï", "n": 1}
    text = json_dumps(obj)
    text.encode("utf-8")
    assert "ünï" in text and "\\udce9" in text
    assert json.loads(text) == obj
    with pytest.raises(UnicodeEncodeError):   # what a plain ensure_ascii=False dump to a UTF-8 file does
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    from src.utils.fileio import write_json_atomic
    out = write_json_atomic(obj, str(tmp_path / "o.json"), ensure_ascii=False)
    with open(out, encoding="utf-8") as f:
        back = json.load(f)
    assert back == obj and os.path.exists(back["file"])


def test_require_utf8_names_the_file(latin_file):
    with pytest.raises(ValueError, match=r"caf\\\\xe9 cr\\\\xe8me.jpg.*not valid UTF-8"):
        require_utf8(latin_file, "MindRecord file")
    assert require_utf8("/ok/ü") == "/ok/ü"


def test_log_file_keeps_records_with_such_names(latin_file, tmp_path):
    log_path = tmp_path / "log.txt"
    lg = logging.getLogger("test_paths.run")
    lg.propagate = False
    h = logging.FileHandler(str(log_path), encoding="utf-8")
    lg.addHandler(h)
    try:
        harden_log_handlers(lg)
        lg.warning("skipped %s", latin_file)
        h.flush()
        assert "skipped " + display_name(latin_file) in log_path.read_text("utf-8")
    finally:
        lg.removeHandler(h)
        h.close()


def test_run_log_keeps_module_warnings_with_such_names(latin_file, tmp_path):
    """RunLog's handlers sit on the ``src`` logger: a data module's warning naming a Latin-1 file reaches
    log.txt, and stdout, readable."""
    from src.utils.runtime import RunLog
    run = RunLog("t")
    try:
        path = run.attach_file(str(tmp_path / "log.txt"))
        logging.getLogger("src.data.pipeline").warning("unusable image %s: test", latin_file)
        run.file_handler.flush()
        with open(path, encoding="utf-8") as f:
            assert f.read().count("unusable image " + display_name(latin_file)) == 1
    finally:
        for h in list(run.root.handlers):
            run.root.removeHandler(h)
            h.close()


def test_print_fails_under_a_strict_utf8_locale_but_display_name_does_not(latin_file):
    """What breaks for a user in an en_US.UTF-8 terminal: a stdout that encodes UTF-8 with errors=strict."""
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    print(display_name(latin_file), file=stdout)
    stdout.flush()
    assert "caf\\xe9" in raw.getvalue().decode("utf-8")
    with pytest.raises(UnicodeEncodeError):
        print(latin_file, file=stdout)


def test_lists_with_such_names_roundtrip_and_latin1_lists_are_read(latin_file, tmp_path):
    lst = str(tmp_path / "list.txt")
    with open(lst, "w", encoding="utf-8", errors="surrogateescape") as f:  # the name's raw bytes
        f.write(f"{latin_file} 0\nplain.jpg 1\n")
    lines, bad = read_lines(lst)
    assert lines == [f"{latin_file} 0", "plain.jpg 1"] and bad == 1
    assert os.path.exists(lines[0].rsplit(None, 1)[0])      # the same file opens
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("ok.jpg 0\n".encode() + "café.jpg 1\n".encode("latin-1"))
    lines, bad = read_lines(str(latin1))
    assert bad == 2 and display_name(lines[1]) == "caf\\xe9.jpg 1"
    utf8 = tmp_path / "utf8.txt"
    utf8.write_bytes("\ufeffcafé.jpg 1\n".encode())
    assert read_lines(str(utf8)) == (["café.jpg 1"], None)


def test_entry_is_file_survives_a_symlink_loop(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(b"x")
    os.symlink("b.jpg", str(tmp_path / "a.jpg"))
    os.symlink("a.jpg", str(tmp_path / "b.jpg"))
    os.symlink("nowhere.jpg", str(tmp_path / "dangling.jpg"))
    (tmp_path / "sub.jpg").mkdir()
    got = {e.name: entry_is_file(e) for e in os.scandir(str(tmp_path))}
    assert got == {"ok.jpg": True, "a.jpg": True, "b.jpg": True, "dangling.jpg": False, "sub.jpg": False}
    with pytest.raises(OSError):
        [e.is_file() for e in os.scandir(str(tmp_path))]
