"""Class imbalance options end to end: train.py with class_weights=balanced and the class-balanced sampler on a
deliberately imbalanced folder (24 images of one class, 4 of the other). (A weights file: tests/unit.)"""
import collections
import os
import re


def test_class_weights_and_class_balanced_sampler(tmp_path, scripts, write_images):
    data = tmp_path / "data"
    write_images(str(data / "common"), 24, 60, seed=1)
    write_images(str(data / "rare"), 4, 190, seed=2)

    # balanced class weights and the class-balanced sampler, reading recorded
    code, out = scripts.train(data, tmp_path / "out", num_classes=2, max_epoch=2, per_batch_size=4,
                              class_weights="balanced", sampler="class_balanced", dump_shard_files=1)
    assert code == 0, out[-3000:]
    run = scripts.run_dir(tmp_path / "out")
    log = scripts.read_log(os.path.join(run, "log.txt"))
    assert "class balance of the training data: 2 classes, 4..24 images per class (ratio 6.0); rarest: rare: 4" in log
    m = re.search(r"class_weights=balanced: loss weights per class ([\d.]+), ([\d.]+) ", log)
    assert m and abs(float(m.group(2)) / float(m.group(1)) - 6.0) < 0.05, log[-3000:]   # inverse frequency
    with open(os.path.join(run, "shard_rank0.txt"), encoding="utf-8") as f:
        reads = [line.rstrip("\n").split("\t") for line in f]
    for epoch in ("1", "2"):
        files = [p for e, p in reads if e == epoch]
        per_class = collections.Counter(os.path.basename(os.path.dirname(p)) for p in files)
        assert len(files) == 28 and per_class == {"common": 14, "rare": 14}, per_class   # equal shares
        rare = collections.Counter(p for p in files if "/rare/" in p)
        assert sorted(rare.values()) == [3, 3, 4, 4]        # each rare image 3-4 times, evenly
    assert [p for e, p in reads if e == "1"] != [p for e, p in reads if e == "2"]   # reshuffled
