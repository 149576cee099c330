"""The entry scripts' user errors, run in process through their main(): exit status 2, one message naming
the file or key, no traceback, no work done (model_utils/entry.py turns the errors into that line)."""
import importlib
import os

import pytest
import mindspore as ms

from src.checkpoint import save_checkpoint_atomic
from src.image_classification import create_model


def _main(script, args, capsys):
    """``<script>.main(args)`` in this process -> (exit status, stdout, stderr)."""
    module = importlib.import_module(script)
    previous = ms.get_context("mode")
    try:
        code = module.main(args)
    finally:
        ms.set_context(mode=previous)  # eval.py switches to GRAPH mode once it gets that far
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------------ export.py
def test_export_air_off_ascend_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main("export", ["--ckpt_file=does_not_matter.ckpt", "--file_format=AIR", "--device_target=CPU"],
                           capsys)
    out = out + err
    assert code == 2, out
    assert "AIR needs an Ascend device" in out and "MINDIR or ONNX" in out
    assert "Traceback" not in out
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args,message", [
    ([], "no checkpoint given: pass --ckpt_file"),
    (["--ckpt_file=missing/model.ckpt"], "missing/model.ckpt"),
])
def test_export_checkpoint_errors(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main("export", args, capsys)
    out = out + err
    assert code == 2, out
    assert message in out and "Traceback" not in out


# ------------------------------------------------------------------------------------------------ eval.py
@pytest.mark.parametrize("case", ["none", "missing", "missing_ckpt_file", "empty_folder", "garbage"])
def test_eval_checkpoint_errors(tmp_path, monkeypatch, capsys, eval_data, case):
    monkeypatch.chdir(tmp_path)
    args = [f"--data_dir={eval_data.root}", f"--per_batch_size={eval_data.BATCH}", f"--image_size={eval_data.SIZE}",
            "--num_parallel_workers=1", "--log_path=out"]
    if case in ("missing", "missing_ckpt_file"):  # --pretrained: the zoo's name of eval's --ckpt_file
        args.append(f"--{'pretrained' if case == 'missing' else 'ckpt_file'}=runs/nothing_here.ckpt")
        message = "runs/nothing_here.ckpt"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args.append("--pretrained=empty")
        message = "checkpoint folder 'empty' holds no .ckpt or .safetensors files"
    elif case == "garbage":
        (tmp_path / "bad.ckpt").write_bytes(os.urandom(500))
        args.append("--pretrained=bad.ckpt")
        message = "bad.ckpt"
    else:
        message = "no checkpoint given: pass --ckpt_file=PATH (or --pretrained=PATH)"
    code, out, err = _main("eval", args, capsys)
    out = out + err
    assert code == 2, out
    assert message in out and "Traceback" not in out
    assert "top1_correct" not in out  # never scores random weights


# ------------------------------------------------------------------------------------------------ predict.py
@pytest.mark.parametrize("args,message", [
    (["--image_path=x.jpg"], "no checkpoint given"),
    (["--ckpt_file=nope.ckpt", "--image_path=x.jpg"], "nope.ckpt"),
    (["--ckpt_file=CKPT", "--image_path=missing.jpg"], "missing.jpg"),
    (["--ckpt_file=CKPT"], "no image given"),
])
def test_predict_user_errors(tmp_path, monkeypatch, capsys, args, message):
    ckpt = tmp_path / "m.ckpt"
    save_checkpoint_atomic(create_model("cspdarknet_tiny", num_classes=3), ckpt)
    monkeypatch.chdir(tmp_path)
    code, _, err = _main("predict", [a.replace("CKPT", str(ckpt)) for a in args], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ every script
@pytest.mark.parametrize("script", ["eval", "export", "predict"])
def test_another_scripts_key_is_refused_naming_its_users(tmp_path, monkeypatch, capsys, script):
    monkeypatch.chdir(tmp_path)
    code, _, err = _main(script, ["--ckpt_file=m.ckpt", "--lr=0.1"], capsys)
    assert code == 2 and err == f"error: command line: --lr is not an option of {script}.py; it is used by train.py\n"
    assert os.listdir(tmp_path) == []
