"""src.utils.fileio.check_output_file / check_output_dir: the one guard in front of every file the project writes."""
import os

import pytest

from src.errors import ConfigError
from src.utils.fileio import check_output_dir, check_output_file


def test_a_new_file_in_a_writable_folder_is_fine(tmp_path):
    assert check_output_file(str(tmp_path / "x" / "r.json"), "result_file") == str(tmp_path / "x" / "r.json")
    assert not (tmp_path / "x").exists()  # nothing created by the check


def test_an_input_file_is_never_an_output(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights")
    with pytest.raises(ConfigError, match=r"result_file=.*one of this run's inputs"):
        check_output_file(str(ckpt), "result_file", inputs=[str(ckpt)])
    link = tmp_path / "link.json"
    link.symlink_to(ckpt)
    with pytest.raises(ConfigError, match="one of this run's inputs"):
        check_output_file(str(link), "result_file", inputs=[str(ckpt)])
    assert ckpt.read_bytes() == b"weights"


def test_nothing_goes_inside_an_input_folder(tmp_path):
    data = tmp_path / "data"
    (data / "cat").mkdir(parents=True)
    with pytest.raises(ConfigError, match="inside the input folder"):
        check_output_file(str(data / "cat" / "pred.json"), "result_file", inputs=[str(data)])
    with pytest.raises(ConfigError, match="ckpt_path=.*inside the input folder"):
        check_output_dir(str(data / "runs"), "ckpt_path", inputs=["", str(data)])
    check_output_dir(str(tmp_path / "runs"), "ckpt_path", inputs=[str(data)])  # beside it is fine


def test_non_regular_files_are_left_alone(tmp_path):
    with pytest.raises(ConfigError, match="not a regular file"):
        check_output_file("/dev/null", "verify_manifest")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        check_output_file(str(fifo), "result_file")
    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="not a regular file"):
        check_output_file(str(broken), "result_file")
    with pytest.raises(ConfigError, match="is a folder"):
        check_output_file(str(tmp_path), "result_file")


def test_a_file_the_project_did_not_write_is_kept(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    ours = lambda p: open(p).read().startswith("{")  # noqa: E731
    with pytest.raises(ConfigError, match="not written by this project"):
        check_output_file(str(notes), "verify_manifest", ours=ours)
    assert notes.read_text() == "my notes\n"
    mine = tmp_path / "m.json"
    mine.write_text("{}")
    assert check_output_file(str(mine), "verify_manifest", ours=ours) == str(mine)
    # without a predicate, replacing the file is the key's documented purpose
    assert check_output_file(str(notes), "result_file") == str(notes)


def test_an_unwritable_place_is_named(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"file_name=.*a_file is a file, not a folder"):
        check_output_file(str(a_file / "net.mindir"), "file_name")
