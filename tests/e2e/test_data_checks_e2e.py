"""The data checks as a user meets them (train.py / eval.py / tools as subprocesses, real files):

* ``--verify_manifest`` naming a user's file or a device: one ``error:`` line, exit 2, before any work, the
  file or device untouched;
* a file rewritten after its check with the bytes of a known decoder crasher (same size and mtime, so the
  manifest still calls it fine): training is not killed, the file is named;
* MindRecord rows whose bytes do not decode: each epoch says how many samples it trained on and names them;
* a run or an evaluation left without any sample: exit 2, not ``loss: nan`` / ``acc=0.00%`` with exit 0;
* "verified N files" once per split.
"""
import glob
import os
import stat

from tests.fuzz_images import known_crashers, make_base_files

BATCH = 4


def _error_lines(out):
    return [line for line in out.splitlines() if line.startswith("error: ")]


def _rewrite_in_place(path, data):
    st = os.stat(path)
    assert len(data) == st.st_size
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_verify_manifest_never_replaces_a_users_file_or_a_device(tmp_path, scripts, write_images):
    data = tmp_path / "data"
    for k, name in enumerate(("a", "b")):
        write_images(str(data / name), 4, 60 + 100 * k, seed=k)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for target, message in ((notes, f"error: verify_manifest {notes} exists and is not a verification manifest"),
                            ("/dev/null", "error: verify_manifest /dev/null is not a regular file")):
        code, out = scripts.train(data, tmp_path / "out", num_classes=2, per_batch_size=BATCH,
                                  verify_manifest=target)
        assert code == 2 and "Traceback" not in out, out[-3000:]
        assert [line[:len(message)] for line in _error_lines(out)] == [message]
        assert "verified" not in out and not glob.glob(str(tmp_path / "out" / "*"))   # nothing was done
    assert notes.read_text() == "my notes\n" and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_changed_files_and_runs_without_samples(tmp_path, scripts, write_images):
    data, val = tmp_path / "data", tmp_path / "val"
    for k, name in enumerate(("a", "b")):
        write_images(str(data / name), 6, 60 + 100 * k, seed=k)
        write_images(str(val / name), 2, 60 + 100 * k, seed=10 + k)
    crasher_name, crasher = known_crashers()[1]     # the camera JPEG with 16 bytes overwritten: same size
    (_, _, camera), = [f for f in make_base_files(((96, 72),), ("camera",)) if f[0] == "jpeg-baseline420-camera-96x72"]
    assert len(camera) == len(crasher)
    victim = data / "a" / "camera.jpg"
    victim.write_bytes(camera)

    # ---- run 1: every file checked (the manifest beside the data), "verified" once per split
    code, out = scripts.train(data, tmp_path / "out1", num_classes=2, per_batch_size=BATCH, val_data_dir=val)
    assert code == 0, out[-3000:]
    log = scripts.read_log(os.path.join(scripts.run_dir(tmp_path / "out1"), "log.txt"))
    assert [line.split("INFO:", 1)[1].split(" in ")[0] for line in log.splitlines() if ":verified " in line] == \
        ["verified 13 files", "verified 4 files"]
    ckpt = sorted(glob.glob(os.path.join(scripts.run_dir(tmp_path / "out1"), "ckpt_0", "*.ckpt")))[-1]

    # ---- the victim now holds a decoder crasher's bytes, size and mtime unchanged: named, not decoded
    _rewrite_in_place(victim, crasher)
    code, out = scripts.train(data, tmp_path / "out2", num_classes=2, per_batch_size=BATCH)
    assert code == 0, out[-3000:]                    # without the checksum the decoder kills it (SIGSEGV)
    assert f"{victim} (its bytes changed since it was checked" in out
    assert "epoch 1: 12 of 12 samples" in out        # 13 files, one dropped: still 3 full batches

    # ---- every file rewritten in place: no sample reaches the network -> exit 2, for train and eval
    for path in glob.glob(str(data / "*" / "*.jpg")) + glob.glob(str(val / "*" / "*.jpg")):
        raw = bytearray(open(path, "rb").read())
        raw[len(raw) // 2] ^= 0xFF
        _rewrite_in_place(path, bytes(raw))
    code, out = scripts.train(data, tmp_path / "out3", num_classes=2, per_batch_size=BATCH)
    assert code == 2 and "Traceback" not in out, out[-3000:]
    assert _error_lines(out)[0].startswith(f"error: epoch 1: no sample of {data} came out of the data pipeline")
    assert "loss: nan" not in out
    code, out = scripts.run("eval.py", pretrained=ckpt, data_dir=val, per_batch_size=BATCH, num_parallel_workers=1,
                            log_path=tmp_path / "eval")
    assert code == 2 and "Traceback" not in out, out[-3000:]
    assert _error_lines(out)[0].startswith("error: evaluation: no sample") and "tot=0" not in out


def test_mindrecord_rows_that_do_not_decode_are_counted_each_epoch(tmp_path, scripts, write_images):
    data = tmp_path / "data"
    for k, name in enumerate(("a", "b")):
        write_images(str(data / name), 7, 60 + 100 * k, seed=k)
    body = bytes(range(256)) * 12
    for i in range(3):
        (data / "b" / f"zz_bad{i}.jpg").write_bytes(b"\xff\xd8\xff" + body + b"\xff\xd9")
    prefix = str(tmp_path / "mr" / "train.mindrecord")
    code, out = scripts.run("tools/convert_to_mindrecord.py", "--data_dir", data, "--output", prefix, "--shards", 2,
                            "--no_verify", "--quiet")
    assert code == 0 and "17 images" in out, out[-3000:]
    code, out = scripts.train(prefix, tmp_path / "out", num_classes=2, per_batch_size=BATCH,
                              dataset_format="mindrecord", max_epoch=2)
    assert code == 0, out[-3000:]
    log = scripts.read_log(os.path.join(scripts.run_dir(tmp_path / "out"), "log.txt"))
    first = next(line for line in log.splitlines() if "epoch 1: " in line and "samples of" in line)
    assert f"epoch 1: 12 of 16 samples of {prefix}; 3 sample(s) were dropped" in first   # 14 good rows: 3 batches
    assert all(f"record b/zz_bad{i}.jpg" in first for i in range(3))
    assert "epoch 2: 12 of 16 samples" in log
