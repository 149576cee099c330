"""File names that are not UTF-8 (Latin-1 bytes), data_list files that are not UTF-8, a symbolic link loop
and a file that crashes MindSpore's decoder, end to end through train.py, eval.py and predict.py, with a
strict UTF-8 stdout (``PYTHONIOENCODING=utf-8``, as an en_US.UTF-8 terminal): nothing crashes, every such
name reaches the logs and the JSON files readable and exact, and what cannot work is a clear error naming
the file or the line."""
import json
import os


from tests.fuzz_images import known_crashers

LATIN_CLASS = b"caf\xe9"          # a class folder named in Latin-1
LATIN_FILE = b"cr\xe8me br\xfbl\xe9e.jpg"


def _data(root, write_images):
    """Classes tea/ and caf\\xe9/ of real JPEGs, a Latin-1 file name, a symlink loop, a decoder crasher."""
    rootb = os.fsencode(str(root))
    write_images(str(root / "tea"), 8, 60, seed=1)
    latin_dir = os.fsdecode(os.path.join(rootb, LATIN_CLASS))
    write_images(latin_dir, 8, 190, seed=2)
    latin_file = os.fsdecode(os.path.join(rootb, b"tea", LATIN_FILE))
    os.rename(str(root / "tea" / "img000.jpg"), latin_file)
    os.symlink("loop_b.jpg", str(root / "tea" / "loop_a.jpg"))
    os.symlink("loop_a.jpg", str(root / "tea" / "loop_b.jpg"))
    name, data = known_crashers()[0]
    crasher = os.path.join(latin_dir, "zz_" + name)
    with open(crasher, "wb") as f:
        f.write(data)
    return latin_dir, latin_file, crasher


def _shown(path):
    from src.utils.paths import display_name
    return display_name(path)


def test_non_utf8_names_symlink_loop_and_crasher_through_train_eval_predict(tmp_path, scripts, write_images):
    data = tmp_path / "data"
    latin_dir, latin_file, crasher = _data(data, write_images)
    latin_class = os.fsdecode(LATIN_CLASS)

    code, out = scripts.train(data, tmp_path / "out", num_classes=2, per_batch_size=4)
    assert code == 0, out[-3000:]
    run = scripts.run_dir(tmp_path / "out")
    log = scripts.read_log(os.path.join(run, "log.txt"))           # valid UTF-8
    for bad, why in ((str(data / "tea" / "loop_a.jpg"), "symbolic link loop"),
                     (str(data / "tea" / "loop_b.jpg"), "symbolic link loop"),
                     (crasher, "the decoder crashed on this file")):
        assert log.count(f"unusable image {_shown(bad)}: {why}") == 1, (bad, log[-3000:])
    assert os.path.isfile(os.path.join(run, "ckpt_0", "0-1_4.ckpt"))  # 16 images, batch 4: the Latin-1 file is used
    with open(os.path.join(run, "class_index.json"), encoding="utf-8") as f:
        assert json.load(f) == {latin_class: 0, "tea": 1}          # exact, through JSON escapes
    ckpt = os.path.join(run, "ckpt_0", "0-1_4.ckpt")
    from src.checkpoint import checkpoint_model_info
    assert checkpoint_model_info(ckpt)["class_names"] == [latin_class, "tea"]

    # eval on the same folder: the class check matches the Latin-1 class; the result JSON is UTF-8
    code, out = scripts.run("eval.py", pretrained=ckpt, data_dir=data, per_batch_size=4, num_parallel_workers=1,
                            log_path=tmp_path / "eval", result_file=tmp_path / "eval.json")
    assert code == 0, out[-3000:]
    assert "tot=16," in out and "class check: identical" in out
    with open(tmp_path / "eval.json", encoding="utf-8") as f:
        assert json.load(f)["images"] == 16

    # predict on a folder holding one file whose name is not UTF-8 (the case)
    photos = tmp_path / "photos"
    photos.mkdir()
    one = os.fsdecode(os.path.join(os.fsencode(str(photos)), LATIN_FILE))
    with open(latin_file, "rb") as f, open(one, "wb") as g:
        g.write(f.read())
    code, out = scripts.run("predict.py", ckpt_file=ckpt, image_path=photos, result_file=tmp_path / "pred.json")
    assert code == 0, out[-3000:]
    assert _shown(one) in out and "UnicodeEncodeError" not in out
    assert "  1. " in out
    with open(tmp_path / "pred.json", "rb") as f:
        raw = f.read()
    pred = json.loads(raw.decode("utf-8"))["predictions"]
    assert len(pred) == 1 and pred[0]["image"] == one and "topk" in pred[0]    # the exact name back
    assert bytes.fromhex(pred[0]["image_bytes"]) == os.fsencode(one)            # and the raw bytes for others


def test_data_lists_that_are_not_utf8(tmp_path, scripts, write_images, eval_in_process, save_trained):
    """A Latin-1 list naming files whose names are Latin-1 bytes works; a Latin-1 list naming files whose names
    are UTF-8 (the list was saved in another encoding) is an error naming the line."""
    from src.image_classification import create_model
    root = tmp_path / "root"
    paths = write_images(str(root / "imgs"), 4, 120)
    latin = os.fsdecode(os.path.join(os.fsencode(str(root / "imgs")), b"th\xe9.jpg"))
    os.rename(paths[0], latin)
    ckpt = save_trained(create_model("cspdarknet_tiny", num_classes=2), tmp_path / "m.ckpt")
    lst = tmp_path / "latin1.txt"
    lst.write_bytes(b"imgs/th\xe9.jpg 0\n" + b"".join(f"imgs/img{i:03d}.jpg 1\n".encode() for i in (1, 2, 3)))
    code, out = scripts.run("eval.py", pretrained=ckpt, data_dir=root, data_list=lst, image_size="32,32",
                            per_batch_size=4, num_parallel_workers=1, log_path=tmp_path / "e1")
    assert code == 0, out[-3000:]
    assert "tot=4," in out and "latin1.txt:1 is not valid UTF-8" in out

    utf8_named = write_images(str(root / "caf\u00e9"), 1, 90)[0]         # a UTF-8 name on disk ...
    assert os.path.exists(utf8_named)
    bad = tmp_path / "saved_as_latin1.txt"
    bad.write_bytes(b"imgs/img001.jpg 1\n" + "café/img000.jpg 0\n".encode("latin-1"))   # ... listed in Latin-1
    code, out = eval_in_process([f"--pretrained={ckpt}", f"--data_dir={root}", f"--data_list={bad}",
                                  "--image_size=32,32", "--log_path=e2"])
    assert code == 2, out[-3000:]
    assert f"{bad}:2: this line is not valid UTF-8" in out and "save" in out and "Traceback" not in out
