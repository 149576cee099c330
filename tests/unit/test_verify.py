"""src/data/verify.py: the full decode check in forkserver workers, its manifest, its lock and its guards.

The decoder ``tests.verify_faults:check`` misbehaves on purpose (by file name: segv, abort, fpe, exit, hang,
noisy, raise, poison/victim); the workers are real processes that really die."""
import errno
import json
import logging
import os
import resource
import stat
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from src.data.verify import (CONVERT, OK, SKIP, Manifest, VerifyError, default_manifest_path, summarize,
                             verify_images)
from src.errors import DatasetError
from tests.fuzz_images import known_crashers

FAULTS = "tests.verify_faults:check"


def _jpeg(path, seed=0, size=(40, 32)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        path, quality=90)
    return path


def _png(path, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


def _copies(folder, names, src):
    out = []
    for name in names:
        with open(src, "rb") as f, open(os.path.join(folder, name), "wb") as g:
            g.write(f.read())
        out.append(os.path.join(folder, name))
    return out


def _by_name(results):
    return {os.path.basename(r.path): r for r in results}


# ------------------------------------------------------------------------------ classification
def test_kinds_of_files_with_the_mindspore_decoder(tmp_path):
    d = tmp_path / "d"
    good = _jpeg(str(d / "good.jpg"))
    _png(str(d / "good.png"))
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(str(d / "anim.gif"))
    (d / "text.jpg").write_text("not an image")
    (d / "empty.jpg").write_bytes(b"")
    raw = open(good, "rb").read()
    (d / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    os.symlink("loop_b.jpg", str(d / "loop_a.jpg"))
    os.symlink("loop_a.jpg", str(d / "loop_b.jpg"))
    os.symlink("nowhere.jpg", str(d / "dangling.jpg"))
    os.mkdir(str(d / "folder.jpg"))
    names = ["good.jpg", "good.png", "anim.gif", "text.jpg", "empty.jpg", "truncated.jpg", "loop_a.jpg",
             "dangling.jpg", "folder.jpg", "missing.jpg"]
    res = verify_images([str(d / n) for n in names], workers=1)
    assert [r.path for r in res] == [str(d / n) for n in names]
    got = _by_name(res)
    assert got["good.jpg"].status == OK and got["good.png"].status == OK
    assert got["anim.gif"].status == CONVERT
    for n in names[3:]:
        assert got[n].status == SKIP, n
    assert "not an image" in got["text.jpg"].reason
    assert got["empty.jpg"].reason == "empty file"
    assert "truncated" in got["truncated.jpg"].reason
    assert got["loop_a.jpg"].reason == "symbolic link loop"
    assert got["dangling.jpg"].reason == "broken symbolic link"
    assert got["folder.jpg"].reason == "not a regular file"
    assert got["missing.jpg"].reason == "missing file"
    # the CRC-32 of the bytes decoded, which the pipeline compares with what it reads later
    assert got["good.jpg"].crc == zlib.crc32(raw) and got["anim.gif"].crc is not None
    assert got["text.jpg"].crc is None


def test_a_file_that_crashes_mindspores_decoder_is_named_and_the_check_goes_on(tmp_path):
    name, data = known_crashers()[0]
    bad = tmp_path / name
    bad.write_bytes(data)
    goods = [_jpeg(str(tmp_path / f"g{i}.jpg"), seed=i) for i in range(4)]
    stats = {}
    res = verify_images(goods[:2] + [str(bad)] + goods[2:], workers=1, stats=stats)
    assert [r.status for r in res] == [OK, OK, SKIP, OK, OK]     # a fresh worker took over after the crash
    assert "the decoder crashed on this file (SIGSEGV)" in res[2].reason
    assert "Corrupt JPEG data" in res[2].reason                  # what libjpeg printed just before
    assert stats["crashed"] == 1


@pytest.mark.parametrize("kind, expect", [("segv", "SIGSEGV"), ("abort", "SIGABRT"), ("fpe", "SIGFPE"),
                                          ("exit", "exit status 3")])
def test_worker_deaths_blame_the_file(tmp_path, kind, expect):
    paths = [_png(str(tmp_path / f"a{i}.png"), i) for i in range(3)]
    paths.insert(1, _copies(str(tmp_path), [f"x_{kind}.png"], paths[0])[0])
    stats = {}
    res = verify_images(paths, workers=2, decoder=FAULTS, stats=stats)
    assert [r.status for r in res] == [OK, SKIP, OK, OK]
    assert res[1].reason.startswith(f"the decoder crashed on this file ({expect})")
    if kind == "segv":
        assert "about to crash" in res[1].reason
    assert stats["crashed"] == 1


def test_a_crash_caused_by_an_earlier_file_is_not_blamed_on_the_victim(tmp_path):
    src = _png(str(tmp_path / "a.png"))
    paths = _copies(str(tmp_path), ["b_poison.png", "c_victim.png", "d.png", "e_segv.png", "f.png"], src)
    stats = {}
    res = verify_images(paths, workers=1, decoder=FAULTS, stats=stats)
    assert [r.status for r in res] == [OK, OK, OK, SKIP, OK]   # the victim decodes fine in a fresh worker
    assert "decoder said: Corrupt JPEG data" in res[0].reason
    assert stats["collateral"] == 1 and stats["crashed"] == 1
    assert "crashed on this file (SIGSEGV)" in res[3].reason     # a real crasher is confirmed and blamed
    # after clean files only, a crash is blamed at once: one worker for the files, one to replace it
    stats = {}
    res = verify_images([paths[2], paths[3], paths[4]], workers=1, decoder=FAULTS, stats=stats)
    assert [r.status for r in res] == [OK, SKIP, OK] and stats["started"] == 2


def test_a_hang_is_killed_after_the_timeout(tmp_path):
    paths = [_png(str(tmp_path / f"a{i}.png"), i) for i in range(3)]
    paths += _copies(str(tmp_path), ["b_hang.png"], paths[0])
    stats = {}
    res = verify_images(paths, workers=2, decoder=FAULTS, timeout_s=2, stats=stats)
    assert [r.status for r in res] == [OK, OK, OK, SKIP]
    assert "did not finish this file within 2 s" in res[3].reason and stats["timed_out"] == 1


def test_decoder_messages_and_python_errors_are_kept_per_file(tmp_path):
    a = _png(str(tmp_path / "a_noisy.png"))
    b = _png(str(tmp_path / "b.png"), 1)
    c = _copies(str(tmp_path), ["c_raise.png"], b)[0]
    res = verify_images([a, b, c], workers=1, decoder=FAULTS)
    assert res[0].status == OK and "decoder said: Corrupt JPEG data: 3 extraneous" in res[0].reason
    assert res[1].status == OK and "said" not in res[1].reason
    assert res[2].status == SKIP and "MemoryError: boom" in res[2].reason


def test_a_worker_that_cannot_start_is_an_error(tmp_path):
    p = _png(str(tmp_path / "a.png"))
    with pytest.raises(VerifyError, match="does not start.*no_such_module_xyz"):
        verify_images([p], workers=1, decoder="no_such_module_xyz:check")


def test_non_utf8_file_name(tmp_path):
    raw = os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9.jpg")
    _jpeg(os.fsdecode(raw))
    path = os.path.join(str(tmp_path), os.listdir(str(tmp_path))[0])
    man = str(tmp_path / "m.jsonl")
    res = verify_images([path], workers=1, manifest=man)
    assert res[0].status == OK and res[0].path == path
    with open(man, encoding="utf-8") as f:  # valid UTF-8 text, the name escaped losslessly
        lines = f.read().splitlines()
    assert json.loads(lines[1])[0] == "caf\udce9.jpg"
    stats = {}
    assert verify_images([path], workers=1, manifest=man, stats=stats)[0].status == OK
    assert stats["cached"] == 1


# ------------------------------------------------------------------------------ image size
def _declared_png(path, width, height):
    """A small PNG whose header declares ``width`` x ``height`` (its pixel data is one short IDAT)."""
    import struct

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
                + chunk(b"IEND", b""))
    return str(path)


def test_images_above_max_pixels_are_skipped_undecoded(tmp_path):
    bomb = _declared_png(tmp_path / "bomb.png", 30000, 30000)   # 900 MP: 2.7 GB if it were decoded
    assert os.path.getsize(bomb) < 2000
    big = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(big)
    stats = {}
    res = verify_images([bomb, str(big)], workers=1, max_pixels=100_000, stats=stats)
    assert [r.status for r in res] == [SKIP, SKIP]
    assert res[0].reason.startswith("30000x30000 = 900,000,000 pixels, above max_image_pixels=100,000")
    assert res[1].reason.startswith("400x300 = 120,000 pixels, above max_image_pixels=100,000")
    assert res[0].crc is None                                       # never read for decoding
    assert verify_images([str(big)], workers=1)[0].status == OK     # the default limit lets it through


def test_a_changed_limit_checks_the_files_again(tmp_path):
    big = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(big)
    man = str(tmp_path / "m.jsonl")
    assert verify_images([str(big)], workers=1, manifest=man, max_pixels=100_000)[0].status == SKIP
    stats = {}
    assert verify_images([str(big)], workers=1, manifest=man, max_pixels=200_000, stats=stats)[0].status == OK
    assert stats["checked"] == 1


# ------------------------------------------------------------------------------ manifest
def test_manifest_second_run_checks_nothing_and_changes_are_rechecked(tmp_path):
    d = tmp_path / "data"
    paths = [_jpeg(str(d / "c" / f"{i}.jpg"), seed=i) for i in range(5)]
    (d / "c" / "bad.jpg").write_text("junk")
    paths.append(str(d / "c" / "bad.jpg"))
    man = str(d / ".m.jsonl")
    s1, s2, s3 = {}, {}, {}
    r1 = verify_images(paths, workers=2, manifest=man, root=str(d), stats=s1)
    assert s1["checked"] == 6 and s1["cached"] == 0
    with open(man, encoding="utf-8") as f:
        head = json.loads(f.readline())
        entries = [json.loads(line) for line in f]
    assert head["format"] == "cspdarknet53-verify-manifest" and head["decoder"].startswith("mindspore-")
    assert sorted(e[0] for e in entries) == sorted(f"c/{os.path.basename(p)}" for p in paths)  # relative to root
    assert {e[0]: e[5] for e in entries}["c/0.jpg"] == zlib.crc32(open(paths[0], "rb").read())
    r2 = verify_images(paths, workers=2, manifest=man, root=str(d), stats=s2)
    assert r2 == r1 and s2["checked"] == 0 and s2["cached"] == 6
    with open(paths[0], "ab") as f:   # rewritten (new size and mtime): only it is checked again
        f.write(b"\0")
    r3 = verify_images(paths, workers=2, manifest=man, root=str(d), stats=s3)
    assert s3["checked"] == 1 and s3["cached"] == 5 and r3[0].status == OK


def test_manifest_of_another_decoder_is_not_trusted(tmp_path):
    p = _png(str(tmp_path / "a.png"))
    man = str(tmp_path / "m.jsonl")
    verify_images([p], decoder="cheap", manifest=man)
    s = {}
    verify_images([p], decoder="pil", manifest=man, workers=1, stats=s)
    assert s["checked"] == 1
    m = Manifest(man, str(tmp_path), "pil").load()
    assert m.lookup(p, os.path.getsize(p), os.stat(p).st_mtime_ns)[2:4] == (OK, "png")


@pytest.mark.parametrize("content", [b"my notes\n", b"", b"\xff\xd8\xff\xe0 a jpeg"])
def test_a_file_that_is_not_a_manifest_is_refused_and_kept(tmp_path, content):
    p = _png(str(tmp_path / "a.png"))
    theirs = tmp_path / "notes.txt"
    theirs.write_bytes(content)
    with pytest.raises(DatasetError, match=f"verify_manifest {theirs} exists and is not a verification manifest"):
        verify_images([p], decoder=FAULTS, manifest=str(theirs))
    assert theirs.read_bytes() == content


def test_a_device_or_a_folder_as_manifest_is_refused_and_kept(tmp_path):
    p = _png(str(tmp_path / "a.png"))
    folder = tmp_path / "folder"
    folder.mkdir()
    for target in ("/dev/null", str(folder)):
        with pytest.raises(DatasetError, match=f"verify_manifest {target} is not a regular file"):
            verify_images([p], decoder=FAULTS, manifest=target)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.listdir(folder) == []


def test_a_full_disk_names_the_manifest_and_the_free_space_there(tmp_path, caplog):
    paths = [_png(str(tmp_path / f"a{i}.png"), i) for i in range(50)]
    man = str(tmp_path / "m.jsonl")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))   # writes past 1000 bytes fail with EFBIG
    try:
        with caplog.at_level(logging.WARNING, logger="src.data"):
            res = verify_images(paths, decoder="cheap", manifest=man)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert summarize(res) == {OK: 50, CONVERT: 0, SKIP: 0}      # the check itself is not affected
    assert f"cannot write the verification manifest {man}: {os.strerror(errno.EFBIG)}" in caplog.text
    assert "MiB free there" in caplog.text
    assert not os.path.exists(man) and not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_default_manifest_path(tmp_path):
    assert default_manifest_path(str(tmp_path)) == str(tmp_path / ".cspdarknet53_verified.jsonl")


# ------------------------------------------------------------------------------ ranks
def test_processes_sharing_a_manifest_check_each_file_once_and_agree(tmp_path):
    d = tmp_path / "data"
    paths = [_png(str(d / f"{i:02d}.png"), i) for i in range(24)]
    (d / "bad.png").write_text("x")
    paths.append(str(d / "bad.png"))
    man = str(d / ".m.jsonl")
    out, stats = [None] * 3, [dict() for _ in range(3)]

    def run(r):
        out[r] = verify_images(paths, manifest=man, root=str(d), group_size=3, stats=stats[r], decoder=FAULTS)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert out[0] == out[1] == out[2]
    assert summarize(out[0]) == {OK: 24, CONVERT: 0, SKIP: 1}
    assert sorted(s["checked"] for s in stats) == [0, 0, 25]    # one checked them all, the others waited
    assert sorted(s["cached"] for s in stats) == [0, 25, 25]
