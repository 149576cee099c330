"""data_list files that are not UTF-8, end to end through eval.py: a Latin-1 list naming files whose names are
Latin-1 bytes works, one saved in the wrong encoding is a clear error naming the line. (Class folders and file
names that are not UTF-8 through train.py, eval.py and predict.py: tests/e2e/test_fuzz_e2e.py.)"""
import os


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
