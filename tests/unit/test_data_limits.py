"""Bounded data inputs: images above ``max_image_pixels`` are named and skipped without being decoded (the cheap
check and the full check alike), and more workers than cores is a warning, not MindSpore's traceback."""
import logging
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from src.config import ConfigError
from src.data import DatasetError, create_dataset
from src.utils.host import available_cpus


def _declared_png(path, width, height):
    """A PNG of under 2 KB whose header declares ``width`` x ``height`` RGB pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


def _tree(root):
    for c in range(2):
        os.makedirs(os.path.join(root, f"c{c}"), exist_ok=True)
        for i in range(3):
            Image.fromarray(np.full((40, 48, 3), 60 * c + i, np.uint8)).save(os.path.join(root, f"c{c}", f"{i}.png"))
    return str(root)


@pytest.mark.parametrize("verify_files", [True, False])
def test_an_image_declaring_too_many_pixels_is_named_and_skipped(tmp_path, caplog, verify_files):
    root = _tree(tmp_path / "d")
    bomb = os.path.join(root, "c1", "bomb.png")
    _declared_png(bomb, 30000, 30000)                   # 2.7 GB as RGB if anything decoded it
    with caplog.at_level(logging.WARNING, logger="src.data"):
        b = create_dataset(root, 32, 2, mode="eval", num_parallel_workers=1, verify_files=verify_files,
                           verify_manifest="none")
    assert [p for p, _ in b.skipped] == [bomb] and b.num_images == 6
    assert "30000x30000 = 900,000,000 pixels, above max_image_pixels=100,000,000" in b.skipped[0][1]
    assert caplog.text.count(f"unusable image {bomb}:") == 1
    # the limit is the config key: 40 x 48 = 1920 pixels per image is above a limit of 1000
    with pytest.raises(DatasetError, match="no usable image left"):
        create_dataset(root, 32, 2, mode="eval", num_parallel_workers=1, verify_files=verify_files,
                       verify_manifest="none", max_image_pixels=1000)
    with pytest.raises(ConfigError, match="max_image_pixels: must be >= 1"):
        create_dataset(root, 32, 2, mode="eval", max_image_pixels=0)


def test_more_workers_than_cores_is_capped_with_a_warning(tmp_path, caplog):
    root = _tree(tmp_path / "d")
    many = available_cpus() + 1   # more than the cores, within the config's range (4 x the cores)
    with caplog.at_level(logging.WARNING, logger="src.data"):
        b = create_dataset(root, 32, 2, mode="train", num_parallel_workers=many)
        n = sum(x.shape[0] for x, _ in b.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))
    assert n == 6
    assert f"num_parallel_workers={many} is more than the {available_cpus()} core(s)" in caplog.text
