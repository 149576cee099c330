"""Every sample accounted for (src/data/pipeline.py ``DatasetBundle.account``, src/evaluation.py): a pass that
loses samples in the data engine names them, a pass with no sample is an error -- on real files and real
MindRecord rows whose bytes do not decode."""
import logging
import os

import numpy as np
import pytest
from PIL import Image

from src.data import DatasetError, create_dataset
from src.data.convert import convert_to_mindrecord


def _tree(root, per_class=(6, 6)):
    for c, n in enumerate(per_class):
        os.makedirs(os.path.join(root, f"c{c}"), exist_ok=True)
        for i in range(n):
            Image.fromarray(np.random.default_rng(10 * c + i).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                os.path.join(root, f"c{c}", f"{i}.jpg"), quality=90)
    return str(root)


def _garbage_jpegs(folder, n):
    """JPEG start and end markers around random bytes: pass the cheap check, fail in the decoder."""
    body = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    for k in range(n):
        with open(os.path.join(folder, f"bad{k}.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff" + body + b"\xff\xd9")


def _rewrite_in_place(path):
    """Other bytes, same size and mtime: what the check's manifest cannot see."""
    st = os.stat(path)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _one_pass(bundle, epoch=0):
    bundle.set_epoch(epoch)
    return sum(int(x.shape[0]) for x, _ in bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))


@pytest.fixture(autouse=True)
def _own_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # the engine's image dumps of dropped samples land here, not in the repo


def test_mindrecord_rows_the_engine_drops_are_counted_and_named(tmp_path, caplog):
    root = _tree(tmp_path / "d")
    _garbage_jpegs(os.path.join(root, "c1"), 3)
    prefix = str(tmp_path / "mr" / "x.mindrecord")
    convert_to_mindrecord(root, prefix, shards=2, verify=False, progress=False)   # the bad rows are stored
    bundle = create_dataset(prefix, 32, 4, mode="train", dataset_format="mindrecord", num_parallel_workers=1)
    assert (bundle.num_images, bundle.steps_per_epoch, bundle.samples_per_pass) == (15, 3, 12)
    with caplog.at_level(logging.WARNING, logger="src.data"):
        samples = _one_pass(bundle)
        assert samples == 12 and bundle.account(samples, "epoch 1") == 3
    warning = [r.message for r in caplog.records if r.message.startswith("epoch 1:")]
    assert len(warning) == 1 and "3 sample(s) were dropped" in warning[0]
    for k in range(3):
        assert f"record c1/bad{k}.jpg" in warning[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="src.data"):   # every epoch counts; named once per run
        assert bundle.account(_one_pass(bundle, 1), "epoch 2") == 3
    assert "named in an earlier warning" in caplog.text


def test_a_file_changed_after_its_check_is_not_decoded_but_named(tmp_path, caplog):
    root = _tree(tmp_path / "d")
    create_dataset(root, 32, 4, mode="eval", num_parallel_workers=1)    # checked: the manifest has it
    changed = os.path.join(root, "c0", "3.jpg")
    _rewrite_in_place(changed)
    with caplog.at_level(logging.WARNING, logger="src.data"):
        bundle = create_dataset(root, 32, 4, mode="eval", num_parallel_workers=1)
        assert bundle.skipped == []                                  # the manifest still says it is fine
        samples = _one_pass(bundle)
        assert samples == 11 and bundle.account(samples, "evaluation") == 1
    assert f"evaluation: 11 of 12 samples of {root}" in caplog.text
    assert f"{changed} (its bytes changed since it was checked (same size and mtime, another checksum)" \
        in caplog.text


def test_a_pass_without_samples_is_an_error(tmp_path):
    root = _tree(tmp_path / "d", (2, 2))
    create_dataset(root, 32, 2, mode="train", num_parallel_workers=1)
    for c in range(2):
        for i in range(2):
            _rewrite_in_place(os.path.join(root, f"c{c}", f"{i}.jpg"))
    bundle = create_dataset(root, 32, 2, mode="train", num_parallel_workers=1)
    samples = _one_pass(bundle)
    assert samples == 0
    with pytest.raises(DatasetError, match=r"epoch 1: no sample of .* came out of the data pipeline \(0 of 4\); "
                                           r"4 sample\(s\) were dropped"):
        bundle.account(samples, "epoch 1")


def test_an_evaluation_without_samples_is_an_error(tmp_path):
    from src.evaluation import evaluate
    from src.image_classification import create_model
    root = _tree(tmp_path / "d", (2, 2))
    create_dataset(root, 32, 2, mode="eval", num_parallel_workers=1)
    for c in range(2):
        for i in range(2):
            _rewrite_in_place(os.path.join(root, f"c{c}", f"{i}.jpg"))
    bundle = create_dataset(root, 32, 2, mode="eval", num_parallel_workers=1, num_classes=2)
    net = create_model("cspdarknet_tiny", num_classes=2)
    net.set_train(False)
    with pytest.raises(DatasetError, match="evaluation: no sample"):
        evaluate(net, bundle)
    with pytest.raises(DatasetError, match="evaluation: no sample"):   # a plain MindSpore dataset too
        evaluate(net, bundle.dataset)


def test_a_full_pass_is_silent(tmp_path, caplog):
    bundle = create_dataset(_tree(tmp_path / "d"), 32, 5, mode="train", num_parallel_workers=1)
    with caplog.at_level(logging.WARNING, logger="src.data"):
        assert bundle.account(_one_pass(bundle), "epoch 1") == 0
    assert bundle.samples_per_pass == 10
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
