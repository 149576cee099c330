"""What importing the library does to a fresh Python process (only a new process can tell): importing the
config and the entry wrapper prints nothing and reads no command line; loading a bad config imports no
MindSpore and writes nothing; the TensorBoard writer and reader import no PyTorch."""
import json
import os


def test_import_has_no_side_effects(run_script):
    proc = run_script(None, ["-c", "import src.config, model_utils.moxing_adapter, model_utils.entry",
                             "--max_epoch=abc"], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


def test_config_load_writes_nothing_and_imports_no_mindspore(tmp_path, run_script):
    """Validation happens before anything exists: loading a bad config touches no file, imports no MindSpore."""
    code = ("import json, sys\n"
            "from src.config import ConfigError, load_config\n"
            "try:\n    load_config(['--lr', '-1', '--ckpt_path', %r])\nexcept ConfigError as err:\n    print(err)\n"
            "print(json.dumps('mindspore' in sys.modules))\n" % str(tmp_path / "out"))
    proc = run_script(None, ["-c", code], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.output
    error, mindspore_loaded = proc.stdout.strip().splitlines()
    assert "lr" in error and json.loads(mindspore_loaded) is False
    assert os.listdir(tmp_path) == []


def test_tensorboard_imports_no_pytorch(tmp_path, run_script):
    code = ("import sys; from src.utils.tensorboard import TensorBoardLogger, read_scalars\n"
            f"tb = TensorBoardLogger({str(tmp_path)!r}, 'r'); tb.add_scalars(1, {{'a': 1.0}}); tb.close()\n"
            f"print(__import__('json').dumps(['torch' in sys.modules, read_scalars({str(tmp_path)!r})]))")
    proc = run_script(None, ["-c", code], timeout=120)
    assert proc.returncode == 0, proc.stderr
    torch_loaded, scalars = json.loads(proc.stdout.strip().splitlines()[-1])
    assert torch_loaded is False and scalars == {"a": [[1, 1.0]]}
