"""eval.py end to end: its counts equal a manual top-1/top-5 from the network's logits (every image, partial
last batch), EMA weights, folder-of-checkpoints mode, demo data. (Two msrun ranks, unequal shards, equal to one process:
tests/e2e/test_analysis_e2e.py; src/evaluation.py in process: tests/unit/test_evaluation.py; eval.py's user errors: tests/unit/test_entry_errors.py.)"""
import json
import glob
import os
import re

import pytest
import mindspore as ms


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _run(run_script, args, cwd, env=None, timeout=600):
    proc = run_script("eval.py", args, cwd=cwd, env=env, timeout=timeout)
    return proc.returncode, proc.output


def _printed(out):
    m1 = re.search(r"top1_correct=(\d+), tot=(\d+), acc=([\d.]+)%\(TOP1\)", out)
    m5 = re.search(r"top5_correct=(\d+), tot=(\d+), acc=([\d.]+)%\(TOP5\)", out)
    assert m1 and m5 and re.search(r"Inference Performance: [\d.]+ img/sec", out), out
    return int(m1.group(1)), int(m5.group(1)), int(m1.group(2))


def _common(eval_data):
    return [f"--data_dir={eval_data.root}", f"--per_batch_size={eval_data.BATCH}", f"--image_size={eval_data.SIZE}",
            "--num_parallel_workers=1", "--log_path=out"]


def test_eval_single_checkpoint_with_ema_weights(tmp_path, eval_data, run_script, save_trained):
    image_folder = eval_data.root
    plain, ema = eval_data.net(1), eval_data.net(2)
    entries = [{"name": n, "data": p} for n, p in plain.parameters_dict().items()]
    entries += [{"name": "ema." + n, "data": ms.Tensor(p.asnumpy())} for n, p in ema.parameters_dict().items()]
    ckpt = tmp_path / "run" / "ckpt_0" / "cspdarknet_tiny-2_4.ckpt"
    save_trained(plain, ckpt, entries=entries)
    code, out = _run(run_script, _common(eval_data) + [f"--ckpt_file={ckpt}", "--use_ema=1",
                                                       "--result_file=res/r.json"], tmp_path)
    assert code == 0, out
    expected = eval_data.counts(ema)
    assert expected != eval_data.counts(plain)  # the test can tell the two weight sets apart
    assert _printed(out) == expected
    assert expected[2] == 7  # every image, the partial last batch included

    runs = glob.glob(str(tmp_path / "out" / "eval_*" / "eval_result.json"))
    assert len(runs) == 1
    for path in (runs[0], tmp_path / "res" / "r.json"):
        with open(path) as f:
            data = json.load(f)
        assert (data["top1_correct"], data["top5_correct"], data["images"]) == expected
        assert data["arch"] == "cspdarknet_tiny" and data["num_classes"] == eval_data.NUM_CLASSES and data["use_ema"]
        assert data["checkpoint"] == str(ckpt) and data["data_dir"] == str(image_folder)
        assert data["top1"] == pytest.approx(expected[0] / 7, abs=1e-6) and data["images_per_sec"] > 0
    assert os.path.isfile(os.path.join(os.path.dirname(runs[0]), "config.yaml"))


def test_eval_folder_of_checkpoints_best_first(tmp_path, eval_data, run_script, save_trained):
    folder = tmp_path / "ckpts"
    nets = {"a.ckpt": eval_data.net(3), "b.ckpt": eval_data.net(4), "c.safetensors": eval_data.net(5)}
    for name, net in nets.items():
        if name.endswith(".safetensors"):  # no metadata: num_classes from the head's shape
            folder.mkdir(exist_ok=True)
            ms.save_checkpoint(net, str(folder / name), format="safetensors")
        else:
            save_trained(net, folder / name)
    (folder / "notes.txt").write_text("not a checkpoint")
    expected = {name: eval_data.counts(net) for name, net in nets.items()}
    code, out = _run(run_script, _common(eval_data) + [f"--pretrained={folder}", "--arch=cspdarknet_tiny"], tmp_path)
    assert code == 0, out
    assert len(re.findall(r"top1_correct=", out)) == 3
    assert "3 checkpoints in" in out and "best first" in out
    with open(glob.glob(str(tmp_path / "out" / "*" / "eval_result.json"))[0]) as f:
        data = json.load(f)
    results = data["results"]
    assert [os.path.basename(r["checkpoint"]) for r in results] == sorted(
        expected, key=lambda n: (-expected[n][0], -expected[n][1], n))
    for r in results:
        assert (r["top1_correct"], r["top5_correct"], r["images"]) == expected[os.path.basename(r["checkpoint"])]
    assert data["checkpoint"] == results[0]["checkpoint"] and data["top1"] == results[0]["top1"]


def test_eval_demo_data_when_no_data_dir(tmp_path, eval_data, run_script, save_trained):
    net = eval_data.net(6)
    ckpt = tmp_path / "demo.ckpt"
    save_trained(net, ckpt, class_names=[])  # no names: the demo's folders are not checked against them
    # 32 px instead of the demo profile's 64 keeps the test short (explicit keys win over the profile)
    code, out = _run(run_script, [f"--pretrained={ckpt}", "--log_path=out", "--per_batch_size=100",
                                  "--image_size=32,32", "--num_parallel_workers=2"],
                     tmp_path, env={"CSPDARKNET53_CACHE": str(tmp_path / "cache")})
    assert code == 0, out
    assert "evaluating the embedded Fashion-MNIST slice" in out and "num_classes=10" in out
    top1, top5, total = _printed(out)
    assert total == 500 and 0 <= top1 <= top5 <= total


