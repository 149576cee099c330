"""How the data checks are wired into src/data/pipeline.py, listing.py, the config and the JSON writer."""
import json
import logging
import os
import stat

import numpy as np
import pytest
from PIL import Image

from src.config import ConfigError, load_config
from src.data import DatasetError, create_dataset
from src.data.listing import list_image_folder, read_data_list
from src.data.pipeline import create_dataset_from_config
from tests.fuzz_images import known_crashers


def _tree(root, per_class=(3, 2)):
    for c, n in enumerate(per_class):
        os.makedirs(os.path.join(root, f"c{c}"), exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((36, 36, 3), 40 + 100 * c + i, np.uint8)).save(
                os.path.join(root, f"c{c}", f"{i}.jpg"), quality=95)
    return str(root)


def _rows(bundle):
    return sum(int(x.shape[0]) for x, _ in bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))


def test_a_decoder_crasher_that_passes_the_cheap_check_is_named_and_skipped_in_process(tmp_path, caplog):
    """The issue's first case: header and end marker intact, the decoder crashes the process. Built here, in this
    process: the full check decodes it in a worker, so only the worker dies."""
    from src.data.checks import check_image_file
    root = _tree(tmp_path / "d")
    name, data = known_crashers()[0]
    bad = os.path.join(root, "c1", name)
    with open(bad, "wb") as f:
        f.write(data)
    assert check_image_file(bad)[0] == "ok"          # what the old up-front check said
    with caplog.at_level(logging.INFO, logger="src.data"):
        b = create_dataset(root, 32, 2, mode="eval", num_parallel_workers=1)
    assert [p for p, _ in b.skipped] == [bad] and "decoder" in b.skipped[0][1]
    assert caplog.text.count(f"unusable image {bad}:") == 1 and _rows(b) == 5
    assert b.class_counts.tolist() == [3, 2]
    assert os.path.isfile(os.path.join(root, ".cspdarknet53_verified.jsonl"))   # beside the data, hidden
    assert b.class_to_idx == {"c0": 0, "c1": 1}                                  # the manifest is not a class


def test_verify_manifest_options(tmp_path):
    root = _tree(tmp_path / "d")
    create_dataset(root, 32, 2, mode="eval", verify_manifest="none")
    assert not os.path.exists(os.path.join(root, ".cspdarknet53_verified.jsonl"))
    man = str(tmp_path / "elsewhere" / "m.jsonl")
    create_dataset(root, 32, 2, mode="eval", verify_manifest=man)
    with open(man, encoding="utf-8") as f:
        assert len(f.read().splitlines()) == 1 + 5
    b = create_dataset(root, 32, 2, mode="eval", verify_files=False)   # the cheap check only
    assert b.skipped == [] and b.num_images == 5


def test_sampler_option(tmp_path):
    root = _tree(tmp_path / "d", (6, 2))
    b = create_dataset(root, 32, 2, mode="train", sampler="class_balanced", seed=1, color_jitter=0)
    labels = np.concatenate([y for _, y in b.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)])
    assert np.bincount(labels).tolist() == [4, 4]
    with pytest.raises(ConfigError, match="sampler: invalid choice 'weighted'"):
        create_dataset(root, 32, 2, sampler="weighted")


def test_symlink_loops_do_not_break_the_listing(tmp_path):
    root = _tree(tmp_path / "d")
    os.symlink("x.jpg", os.path.join(root, "c0", "y.jpg"))
    os.symlink("y.jpg", os.path.join(root, "c0", "x.jpg"))
    os.symlink("loopdir", os.path.join(root, "loopdir"))       # a class-level loop is ignored
    idx, rel, _ = list_image_folder(root, None)
    assert idx == {"c0": 0, "c1": 1} and "c0/x.jpg" in rel
    b = create_dataset(root, 32, 1, mode="eval")
    assert sorted(os.path.basename(p) for p, r in b.skipped) == ["x.jpg", "y.jpg"]
    assert {r for _, r in b.skipped} == {"symbolic link loop"}


def test_read_data_list_non_utf8(tmp_path, caplog):
    latin = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9.jpg"))
    Image.new("RGB", (8, 8)).save(latin)
    lst = tmp_path / "l.txt"
    lst.write_bytes(b"caf\xe9.jpg 3\n")
    with caplog.at_level(logging.WARNING, logger="src.data"):
        rel, labels = read_data_list(str(lst), str(tmp_path))
    assert rel == [os.path.basename(latin)] and labels == [3] and "l.txt:1 is not valid UTF-8" in caplog.text
    lst.write_bytes(b"ok.jpg 0\nt\xe9.jpg 1\n")
    with pytest.raises(DatasetError, match=r"l\.txt:2: this line is not valid UTF-8 .*t\\xe9\.jpg"):
        read_data_list(str(lst), str(tmp_path))
    lst.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")                  # an image given as the list
    with pytest.raises(DatasetError, match=r"l\.txt:1: expected 'relative_path label'"):
        read_data_list(str(lst), str(tmp_path))


def test_config_keys_and_rules(tmp_path):
    cfg = load_config([])
    assert (cfg.data.dataset_format, cfg.data.verify_files, cfg.data.verify_manifest, cfg.data.sampler,
            cfg.optim.class_weights, cfg.eval.class_map) == ("folder", True, "", "epoch_shard", "none", "")
    with pytest.raises(ConfigError, match="dataset_format"):
        load_config(["--dataset_format=lmdb"])
    with pytest.raises(ConfigError, match="class_weights: must be none, balanced or an existing weights file"):
        load_config(["--class_weights=inverse"])
    with pytest.raises(ConfigError, match="data_list does not apply to dataset_format=mindrecord"):
        load_config(["--dataset_format=mindrecord", "--data_list=x.txt"])
    with pytest.raises(ConfigError, match="sampler=class_balanced needs dataset_format=folder"):
        load_config(["--dataset_format=mindrecord", "--sampler=class_balanced"])
    w = tmp_path / "w.txt"
    w.write_text("1\n2\n")
    assert load_config([f"--class_weights={w}"]).optim.class_weights == str(w)


def test_dataset_format_mindrecord_from_config(tmp_path):
    from src.data.convert import convert_to_mindrecord
    root = _tree(tmp_path / "d", (3, 3))
    prefix = str(tmp_path / "m.mindrecord")
    convert_to_mindrecord(root, prefix, verify=False, progress=False)
    data = load_config(["--dataset_format=mindrecord", f"--data_dir={prefix}", "--per_batch_size=2"]).data
    pre = dict(image_size="32,32", eval_resize="squash", crop_pct=0.875)
    b = create_dataset_from_config(data, "train", seed=1, num_classes=2, **pre)
    assert b.format == "mindrecord" and b.source is None
    assert b.steps_per_epoch == 3 and b.class_counts.tolist() == [3, 3]
    with pytest.raises(DatasetError, match="folder reader"):
        b.record_reads()
    e = create_dataset_from_config(data, "eval", seed=1, num_classes=2, **pre)
    assert e.num_images == 6 and _rows(e) == 6


def test_write_json_atomic_non_utf8_and_permissions(tmp_path):
    from src.utils.fileio import write_json_atomic
    name = os.fsdecode(b"caf\xe9")
    path = write_json_atomic({name: 1, "ü": 2}, str(tmp_path / "x.json"), ensure_ascii=False)
    raw = open(path, "rb").read()
    raw.decode("utf-8")
    assert "ü".encode() in raw and b"\\udce9" in raw and json.loads(raw) == {name: 1, "ü": 2}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask


def test_write_text_atomic_keeps_the_old_file_and_no_temporary_on_error(tmp_path):
    from src.utils.fileio import write_text_atomic
    path = tmp_path / "sub" / "t.csv"
    assert write_text_atomic("a,b\r\n", path, newline="") == str(path)
    assert path.read_bytes() == b"a,b\r\n"  # newline="": the text's own line ends, untranslated
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic("\udce9 is not encodable", path)
    assert path.read_bytes() == b"a,b\r\n" and os.listdir(path.parent) == ["t.csv"]


def test_trainer_class_weights_from_a_file_and_balanced(tmp_path):
    """What train.py's build_training hands create_loss for class_weights (counts over all rank shards)."""
    from types import SimpleNamespace
    from src.trainer import _class_weights
    log = logging.getLogger("src.test")
    data = SimpleNamespace(class_counts=np.array([24, 4]), class_to_idx={"common": 0, "rare": 1})
    assert _class_weights("none", data, 2, log) is None
    w = _class_weights("balanced", data, 2, log)
    np.testing.assert_allclose(w, [2 / 7, 12 / 7], rtol=1e-6)
    f = tmp_path / "w.txt"
    f.write_text("# common, rare\n1\n2.5\n")
    np.testing.assert_allclose(_class_weights(str(f), data, 2, log), [1, 2.5])
    named = tmp_path / "w.json"
    named.write_text(json.dumps({"rare": 3}))
    np.testing.assert_allclose(_class_weights(str(named), data, 2, log), [1, 3])
