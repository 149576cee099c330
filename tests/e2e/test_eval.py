"""eval.py and src/evaluation.py: counts equal a manual top-1/top-5 from the network's logits (every image,
partial last batch), EMA weights, folder-of-checkpoints mode, demo data, and the user errors."""
import json
import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms
from PIL import Image

from src.checkpoint import load_weights, network_metadata, save_checkpoint_atomic
from src.data import create_dataset
from src.evaluation import EvalResult, evaluate, shard_sample_count, topk_correct
from src.image_classification import create_model

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SIZE = "32,32"
BATCH = 4
NUM_CLASSES = 10  # more outputs than the 3 class folders, so that top-5 is not trivially 100%


def _run(args, cwd, env=None, timeout=600):
    full_env = dict(os.environ, GLOG_v="3")
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, os.path.join(REPO, "eval.py")] + list(args), cwd=str(cwd), env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _randomized_net(seed, num_classes=NUM_CLASSES):
    net = create_model("cspdarknet_tiny", num_classes=num_classes, seed=seed)
    rng = np.random.RandomState(seed + 100)
    for name, p in net.parameters_dict().items():
        if name.endswith(("moving_mean", "beta")):
            p.set_data(ms.Tensor(rng.uniform(-0.3, 0.3, p.shape).astype(np.float32)))
        elif name.endswith("moving_variance"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
        elif name.endswith("gamma"):
            p.set_data(ms.Tensor(rng.uniform(0.4, 0.8, p.shape).astype(np.float32)))
        elif name.endswith("head.fc.weight"):
            p.set_data(ms.Tensor(rng.uniform(-0.5, 0.5, p.shape).astype(np.float32)))
    return net


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """3 classes, 7 JPEGs of different sizes: with batch 4 the last batch holds 3."""
    root = tmp_path_factory.mktemp("evaldata") / "val"
    rng = np.random.RandomState(0)
    for i in range(7):
        folder = root / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (rng.rand(36 + 3 * i, 44, 3) * 200 + (i % 3) * 20).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.jpg", quality=90)
    return root


def _manual_counts(net, data_dir):
    """Top-1/top-5 counted here from the network's logits, on eval's preprocessing."""
    net.set_train(False)
    bundle = create_dataset(str(data_dir), SIZE, BATCH, mode="eval", num_classes=NUM_CLASSES,
                            num_parallel_workers=1)
    logits, labels = [], []
    for images, lab in bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
        logits.append(net(ms.Tensor(images)).asnumpy())
        labels.append(lab)
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    order = np.argsort(logits, axis=1)[:, ::-1]
    top1 = int((order[:, 0] == labels).sum())
    top5 = int(sum(label in row[:5] for label, row in zip(labels, order)))
    return top1, top5, len(labels)


def _printed(out):
    m1 = re.search(r"top1_correct=(\d+), tot=(\d+), acc=([\d.]+)%\(TOP1\)", out)
    m5 = re.search(r"top5_correct=(\d+), tot=(\d+), acc=([\d.]+)%\(TOP5\)", out)
    assert m1 and m5 and re.search(r"Inference Performance: [\d.]+ img/sec", out), out
    return int(m1.group(1)), int(m5.group(1)), int(m1.group(2))


def _common(data):
    return [f"--data_dir={data}", f"--per_batch_size={BATCH}", f"--image_size={SIZE}", "--num_parallel_workers=1",
            "--log_path=out"]


# ------------------------------------------------------------------------------------------------
# Scoring logic
# ------------------------------------------------------------------------------------------------

def test_topk_correct_and_shard_counts():
    logits = np.array([[0.1, 0.9, 0.0, 0.3, 0.2, 0.5, 0.4],
                       [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], np.float32)
    assert topk_correct(logits, [1, 1]) == (1, 1)      # row 2: class 1 is the smallest -> not in top 5
    assert topk_correct(logits, [3, 6]) == (0, 2)
    assert topk_correct(np.zeros((1, 3), np.float32), [2]) == (0, 1)  # ties: lower index wins; k > classes
    assert [shard_sample_count(7, r, 2) for r in range(2)] == [4, 3]
    r = EvalResult(top1_correct=3, top5_correct=6, total=7, images_per_sec=12.345, seconds=1.0)
    assert r.zoo_lines() == ["top1_correct=3, tot=7, acc=42.86%(TOP1)", "top5_correct=6, tot=7, acc=85.71%(TOP5)",
                             "Inference Performance: 12.35 img/sec"]


def test_checkpoint_files(tmp_path):
    from src.checkpoint import CheckpointError, checkpoint_files as list_checkpoints
    run = tmp_path / "run"
    (run / "ckpt_0").mkdir(parents=True)
    for name in ("b-2_4.ckpt", "a-1_4.ckpt", "w.safetensors", "cspdarknet53-graph.meta", ".hidden.ckpt"):
        (run / "ckpt_0" / name).write_bytes(b"x")
    expected = [str(run / "ckpt_0" / n) for n in ("a-1_4.ckpt", "b-2_4.ckpt", "w.safetensors")]
    assert list_checkpoints(str(run / "ckpt_0")) == expected
    assert list_checkpoints(str(run)) == expected  # a run folder: its ckpt_0/
    assert list_checkpoints(expected[0]) == [expected[0]]
    with pytest.raises(CheckpointError, match="does not exist"):
        list_checkpoints(str(tmp_path / "nope.ckpt"))


def test_evaluate_scores_every_image_and_honours_limit(image_folder):
    net = _randomized_net(1)
    expected = _manual_counts(net, image_folder)
    bundle = create_dataset(str(image_folder), SIZE, BATCH, mode="eval", num_classes=NUM_CLASSES,
                            num_parallel_workers=1)
    result = evaluate(net, bundle, collect_logits=True)
    assert (result.top1_correct, result.top5_correct, result.total) == expected
    assert result.steps == 2 and result.extra["logits"].shape == (7, NUM_CLASSES)
    limited = evaluate(net, bundle.dataset, limit=5)   # e.g. a padded shard: only the first 5 count
    assert limited.total == 5


@pytest.mark.parametrize("device", ["CPU", "GPU", "Ascend"])
def test_eval_precision_by_device(device):
    """CPU float32; GPU float16 with float32 BatchNorm and float32 logits (amp O2); Ascend float16 throughout.
    (Run here on the CPU backend, which has the float16 kernels, in PyNative mode.)"""
    from src.evaluation import apply_eval_precision
    x = ms.Tensor(np.random.RandomState(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    ref_net = _randomized_net(1)
    ref_net.set_train(False)
    ref = ref_net(x).asnumpy()
    net, description = apply_eval_precision(_randomized_net(1), device)
    net.set_train(False)
    out = net(x).asnumpy()
    if device == "CPU":
        assert description == "float32" and out.dtype == np.float32
        np.testing.assert_array_equal(out, ref)
        return
    assert description.startswith("float16")
    assert out.dtype == (np.float16 if device == "Ascend" else np.float32)
    diff = np.abs(out.astype(np.float32) - ref).max()
    assert 0 < diff < 2e-2 * np.abs(ref).max()  # float16 arithmetic: close, not identical
    if device == "GPU":
        # amp O2 wraps each BatchNorm in a float32 cell (its parameters move under "<bn>._backbone.")
        bn = [n for n, _ in net.parameters_and_names() if n.endswith("moving_mean")]
        assert bn and all(".bn._backbone." in n for n in bn), bn[:3]


# ------------------------------------------------------------------------------------------------
# eval.py
# ------------------------------------------------------------------------------------------------

def test_eval_single_checkpoint_with_ema_weights(tmp_path, image_folder):
    plain, ema = _randomized_net(1), _randomized_net(2)
    entries = [{"name": n, "data": p} for n, p in plain.parameters_dict().items()]
    entries += [{"name": "ema." + n, "data": ms.Tensor(p.asnumpy())} for n, p in ema.parameters_dict().items()]
    ckpt = tmp_path / "run" / "ckpt_0" / "cspdarknet_tiny-2_4.ckpt"
    save_checkpoint_atomic(entries, ckpt, metadata=network_metadata(plain))
    code, out = _run(_common(image_folder) + [f"--pretrained={ckpt}", "--use_ema=1", "--result_file=res/r.json"],
                     tmp_path)
    assert code == 0, out
    expected = _manual_counts(ema, image_folder)
    assert expected != _manual_counts(plain, image_folder)  # the test can tell the two weight sets apart
    assert _printed(out) == expected
    assert expected[2] == 7  # every image, the partial last batch included

    runs = glob.glob(str(tmp_path / "out" / "*" / "eval_result.json"))
    assert len(runs) == 1
    for path in (runs[0], tmp_path / "res" / "r.json"):
        with open(path) as f:
            data = json.load(f)
        assert (data["top1_correct"], data["top5_correct"], data["images"]) == expected
        assert data["arch"] == "cspdarknet_tiny" and data["num_classes"] == NUM_CLASSES and data["use_ema"]
        assert data["checkpoint"] == str(ckpt) and data["data_dir"] == str(image_folder)
        assert data["top1"] == pytest.approx(expected[0] / 7, abs=1e-6) and data["images_per_sec"] > 0
    assert os.path.isfile(os.path.join(os.path.dirname(runs[0]), "config.yaml"))


def test_eval_folder_of_checkpoints_best_first(tmp_path, image_folder):
    folder = tmp_path / "ckpts"
    nets = {"a.ckpt": _randomized_net(3), "b.ckpt": _randomized_net(4), "c.safetensors": _randomized_net(5)}
    for name, net in nets.items():
        if name.endswith(".safetensors"):  # no metadata: num_classes from the head's shape
            folder.mkdir(exist_ok=True)
            ms.save_checkpoint(net, str(folder / name), format="safetensors")
        else:
            save_checkpoint_atomic(net, folder / name, metadata=network_metadata(net))
    (folder / "notes.txt").write_text("not a checkpoint")
    expected = {name: _manual_counts(net, image_folder) for name, net in nets.items()}
    code, out = _run(_common(image_folder) + [f"--pretrained={folder}", "--arch=cspdarknet_tiny"], tmp_path)
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


def test_eval_demo_data_when_no_data_dir(tmp_path):
    net = _randomized_net(6)
    ckpt = tmp_path / "demo.ckpt"
    save_checkpoint_atomic(net, ckpt, metadata=network_metadata(net))
    # 32 px instead of the demo profile's 64 keeps the test short (explicit keys win over the profile)
    code, out = _run([f"--pretrained={ckpt}", "--log_path=out", "--per_batch_size=100", "--image_size=32,32",
                      "--num_parallel_workers=2"],
                     tmp_path, env={"CSPDARKNET53_CACHE": str(tmp_path / "cache")})
    assert code == 0, out
    assert "evaluating the embedded Fashion-MNIST slice" in out and "num_classes=10" in out
    top1, top5, total = _printed(out)
    assert total == 500 and 0 <= top1 <= top5 <= total


def _main(args, capsys):
    import eval as eval_script
    previous = ms.get_context("mode")
    try:
        code = eval_script.main(args)
    finally:
        ms.set_context(mode=previous)  # eval.py switches to GRAPH mode once it gets that far
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("case", ["none", "missing", "empty_folder", "garbage"])
def test_eval_checkpoint_errors(tmp_path, monkeypatch, capsys, image_folder, case):
    monkeypatch.chdir(tmp_path)
    args = _common(image_folder)
    if case == "missing":
        args.append("--pretrained=runs/nothing_here.ckpt")
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
        message = "no checkpoint given: pass --pretrained=PATH"
    code, out = _main(args, capsys)
    assert code == 2, out
    assert message in out and "Traceback" not in out
    assert "top1_correct" not in out  # never scores random weights


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_eval_distributed_two_ranks_sum_counts(tmp_path, image_folder):
    """msrun with 2 CPU ranks: disjoint shards (4 + 3 images), counts summed by AllReduce, rank 0 writes."""
    import shutil
    msrun = shutil.which("msrun") or os.path.join(os.path.dirname(sys.executable), "msrun")
    if not os.path.exists(msrun):
        pytest.skip("msrun not installed")
    net = _randomized_net(1)
    ckpt = tmp_path / "m.ckpt"
    save_checkpoint_atomic(net, ckpt, metadata=network_metadata(net))
    expected = _manual_counts(net, image_folder)
    # msrun starts the workers with the `python` found on PATH: make it this interpreter
    env = dict(os.environ, GLOG_v="3", CSPDARKNET53_RUN_NAME="dist",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    cmd = [msrun, "--worker_num=2", "--local_worker_num=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "--log_dir=msrun_logs", "--join=True", "--cluster_time_out=200",
           os.path.join(REPO, "eval.py")] + _common(image_folder) + [f"--pretrained={ckpt}", "--per_batch_size=2"]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=400)
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs[-5000:]
    run = tmp_path / "out" / "dist"
    with open(run / "eval_result.json") as f:
        data = json.load(f)
    assert (data["top1_correct"], data["top5_correct"], data["images"]) == expected
    assert data["group_size"] == 2
    with open(run / "eval_rank1.log") as f:
        rank1 = f.read()
    assert "(4 on this rank" in rank1 or "(3 on this rank" in rank1
    assert _printed(rank1) == expected  # every rank knows the totals
