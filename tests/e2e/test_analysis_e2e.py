"""Results analysis end to end through the entry scripts, on one tiny training run (cspdarknet_tiny, 32 px,
4 classes of overlapping brightness, so the model makes mistakes):

* train.py --tensorboard_dir: the event file is readable (the project's reader and TensorBoard's
  EventAccumulator) and holds the values of metrics.csv and every step's scalars; a missing tensorboardX is
  a user error before any work;
* eval.py: per_class.csv, confusion_matrix.csv/.png, worst_mistakes.png and the new JSON fields agree with
  the zoo counts; --no_plots; no matplotlib (CSVs still written, the log says why);
* eval.py on 2 msrun CPU ranks: the same confusion matrix, per-class table and worst mistakes as 1 process;
* predict.py --cam: one overlay PNG per image beside the JSON, the predicted or a chosen class, an input
  size whose last-stage map is 2x3; a cam_class outside the model is a user error.
"""
import csv
import glob
import json
import os
import socket
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = 4
TRAIN_PER_CLASS, VAL_PER_CLASS, BATCH = 12, [11, 10, 10, 10], 8
EVAL_BATCH = 7  # 41 val images: 5 full batches and one of 6; on 2 ranks unequal shards of 21 and 20 images
EPOCHS = 2
STEPS_PER_EPOCH = CLASSES * TRAIN_PER_CLASS // BATCH


def _script(run_script, name, args, cwd, timeout=400, **env):
    proc = run_script(name, args, cwd=cwd, env=env, timeout=timeout)
    return proc.returncode, proc.output


def _blocker(folder, package):
    """A folder that, first on PYTHONPATH, makes ``import <package>`` fail as if it were not installed."""
    os.makedirs(os.path.join(folder, package), exist_ok=True)
    with open(os.path.join(folder, package, "__init__.py"), "w") as f:
        f.write(f'raise ImportError("No module named {package!r} (blocked by the test)")\n')
    return str(folder)


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run(tmp_path_factory, run_script, write_images):
    """Data, and one training run with TensorBoard on (2 epochs of 6 steps, validation each epoch)."""
    root = tmp_path_factory.mktemp("analysis_e2e")
    for s, (split, counts) in enumerate((("train", [TRAIN_PER_CLASS] * CLASSES), ("val", VAL_PER_CLASS))):
        for c, n in enumerate(counts):  # grey levels 40 apart, noise 35: neighbouring classes overlap
            write_images(root / "data" / split / f"class{c}", n, 60 + 40 * c, seed=(s, c), noise=35)
    args = ["--arch=cspdarknet_tiny", f"--max_epoch={EPOCHS}", "--log_interval=4", f"--num_classes={CLASSES}",
            f"--data_dir={root / 'data' / 'train'}", f"--val_data_dir={root / 'data' / 'val'}",
            "--image_size=32,32", f"--per_batch_size={BATCH}", "--warmup_epochs=0", "--lr=0.05",
            "--lr_scheduler=cosine_step", "--num_parallel_workers=1", f"--ckpt_path={root / 'out'}",
            f"--tensorboard_dir={root / 'tb'}"]
    code, out = _script(run_script, "train.py", args, root)
    assert code == 0, out[-4000:]
    (run_dir,) = glob.glob(str(root / "out" / "*"))
    return {"root": root, "run_dir": run_dir, "val": root / "data" / "val",
            "ckpt": os.path.join(run_dir, "ckpt_0", f"0-{EPOCHS}_{STEPS_PER_EPOCH}.ckpt")}


# ------------------------------------------------------------------------------------------------
# TensorBoard
# ------------------------------------------------------------------------------------------------

def test_tensorboard_event_file_holds_metrics_csv(run):
    pytest.importorskip("tensorboardX")
    from src.utils.tensorboard import EPOCH_TAGS, event_files, read_scalars

    tb_run = os.path.join(str(run["root"] / "tb"), os.path.basename(run["run_dir"]))  # one folder per run
    assert os.listdir(str(run["root"] / "tb")) == [os.path.basename(run["run_dir"])]
    files = event_files(tb_run)
    assert len(files) == 1 and os.path.getsize(files[0]) > 0
    scalars = read_scalars(tb_run)
    rows = _read_csv(os.path.join(run["run_dir"], "metrics.csv"))
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    for row in rows:
        step = int(row["epoch"]) * STEPS_PER_EPOCH
        for key, tag in EPOCH_TAGS.items():
            assert row[key] != "", key  # validation every epoch: every column is filled
            assert dict(scalars[tag])[step] == pytest.approx(float(row[key]), rel=1e-6), (tag, step)
    steps = list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    for tag in ("train/loss", "train/lr", "train/loss_scale"):
        assert [s for s, _ in scalars[tag]] == steps, tag
    assert all(v == 1024.0 for _, v in scalars["train/loss_scale"])  # the fixed loss scale
    # img/s on the progress-log steps (log_interval 4, and each epoch's last step)
    assert [s for s, _ in scalars["train/img_per_s"]] == [4, 6, 10, 12]
    assert all(v > 0 for _, v in scalars["train/img_per_s"])
    # the per-step lr is the schedule: its first value and the epoch rows' lr (the epoch's last step)
    lr = dict(scalars["train/lr"])
    for row in rows:
        assert lr[int(row["epoch"]) * STEPS_PER_EPOCH] == pytest.approx(float(row["lr"]), rel=1e-5, abs=1e-9)
    # loss per step, as the log printed it on the logged steps
    log = open(os.path.join(run["run_dir"], "log.txt")).read()
    assert "TensorBoard scalars: " + tb_run in log
    loss = dict(scalars["train/loss"])
    assert f"epoch[1], step[4/{STEPS_PER_EPOCH}], loss: {loss[4]:.4f}" in log

    tensorboard = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = tensorboard.EventAccumulator(tb_run)
    acc.Reload()
    assert set(EPOCH_TAGS.values()) | {"train/loss", "train/lr"} <= set(acc.Tags()["scalars"])
    top1 = {e.step: e.value for e in acc.Scalars("val/top1")}
    assert top1 == {int(r["epoch"]) * STEPS_PER_EPOCH: pytest.approx(float(r["val_top1"]), rel=1e-6) for r in rows}


def test_missing_tensorboardx_is_a_user_error_before_any_work(run, tmp_path, run_script):
    blocked = _blocker(tmp_path / "block", "tensorboardX")
    code, out = _script(
        run_script,
        "train.py",
        [
            f"--data_dir={run['val']}",
            "--arch=cspdarknet_tiny",
            "--num_classes=4",
            f"--tensorboard_dir={tmp_path / 'tb'}",
            f"--ckpt_path={tmp_path / 'out'}",
        ],
        tmp_path,
        PYTHONPATH=blocked + os.pathsep + REPO,
    )
    assert code == 2, out[-3000:]
    assert "error:" in out and "tensorboardX" in out and "pip install tensorboardX==2.6.5" in out
    assert "Traceback" not in out
    assert not (tmp_path / "out").exists() and not (tmp_path / "tb").exists()


# ------------------------------------------------------------------------------------------------
# eval.py
# ------------------------------------------------------------------------------------------------

def _eval_args(run, log_path, *extra):
    return [f"--pretrained={run['ckpt']}", f"--data_dir={run['val']}", f"--per_batch_size={EVAL_BATCH}",
            "--num_parallel_workers=1", f"--log_path={log_path}", "--worst_mistakes=6", *extra]


@pytest.fixture(scope="module")
def one_process(run, run_script):
    """eval.py in one process, with --calibrate (its record in eval1/, not beside the shared checkpoint): the
    reference of the two-rank run."""
    out = run["root"] / "eval1"
    code, text = _script(run_script, "eval.py", _eval_args(run, out, "--calibrate",
                                                           f"--calibration_file={out / 'one.calibration.json'}"),
                         run["root"], CSPDARKNET53_RUN_NAME="one")
    assert code == 0, text[-4000:]
    return out / "one", text


def test_eval_writes_the_analysis_beside_the_json(one_process):
    from src.analysis.metrics import read_confusion_matrix_csv, read_per_class_csv

    folder, text = one_process
    data = json.loads((folder / "eval_result.json").read_text())
    names = [f"class{c}" for c in range(CLASSES)]
    matrix, csv_names = read_confusion_matrix_csv(folder / "confusion_matrix.csv")
    assert csv_names == names and matrix.shape == (CLASSES, CLASSES)
    assert int(matrix.sum()) == data["images"] == sum(VAL_PER_CLASS)
    assert int(np.trace(matrix)) == data["top1_correct"]
    assert matrix.sum(axis=1).tolist() == VAL_PER_CLASS
    rows = read_per_class_csv(folder / "per_class.csv")
    with open(folder / "per_class.csv", encoding="utf-8") as f:
        assert f.readline().strip() == "class_index,class_name,images,top1_correct,precision,recall,f1,top5_recall"
    assert [r["class_name"] for r in rows] == names
    assert [r["top1_correct"] for r in rows] == np.diag(matrix).tolist()
    assert sum(r["images"] for r in rows) == data["images"]
    # with 4 classes every label is in the top 5; the JSON's macro values are the means of the table's
    assert all(r["top5_recall"] == 1.0 for r in rows) and data["top5_correct"] == data["images"]
    for key in ("precision", "recall", "f1"):
        assert data[f"macro_{key}"] == pytest.approx(np.nanmean([r[key] for r in rows]), abs=1e-6)
    assert data["top1"] < 1.0, "the test needs mistakes"
    pairs = data["top_confused_pairs"]
    assert 0 < len(pairs) <= 10 and pairs[0]["count"] == int((matrix - np.diag(np.diag(matrix))).max())
    for p in pairs:
        assert matrix[p["true"], p["predicted"]] == p["count"] and p["true_name"] == names[p["true"]]
    mistakes = data["worst_mistakes"]
    assert len(mistakes) == min(6, data["images"] - data["top1_correct"])
    confidences = [m["confidence"] for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)
    for m in mistakes:  # each names a file of its true class, predicted as another
        assert os.path.basename(os.path.dirname(m["image"])) == m["true_name"] != m["predicted_name"]
    assert data["analysis_dir"] == str(folder)
    for name in ("confusion_matrix.png", "worst_mistakes.png"):
        with Image.open(folder / name) as im:
            im.load()
            assert im.width > 200 and im.height > 100
        assert os.path.getsize(folder / name) < 200 * 1024
    assert "analysis: " in (folder / "eval_rank0.log").read_text()


def test_eval_no_plots_and_without_matplotlib(run, tmp_path, run_script):
    code, text = _script(run_script, "eval.py", _eval_args(run, tmp_path / "a", "--no_plots"), tmp_path,
                         CSPDARKNET53_RUN_NAME="np")
    assert code == 0, text[-4000:]
    files = sorted(os.listdir(tmp_path / "a" / "np"))
    assert "per_class.csv" in files and "confusion_matrix.csv" in files and "eval_result.json" in files
    assert not [f for f in files if f.endswith(".png")], files
    assert "no_plots is set" in text

    blocked = _blocker(tmp_path / "block", "matplotlib")
    code, text = _script(run_script, "eval.py", _eval_args(run, tmp_path / "b"), tmp_path, CSPDARKNET53_RUN_NAME="nm",
                         PYTHONPATH=blocked + os.pathsep + REPO)
    assert code == 0, text[-4000:]
    files = sorted(os.listdir(tmp_path / "b" / "nm"))
    assert "per_class.csv" in files and "confusion_matrix.csv" in files
    assert "confusion_matrix.png" not in files
    assert "worst_mistakes.png" in files  # drawn with PIL alone
    assert "matplotlib is not installed" in text and "no confusion_matrix.png is drawn" in text


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="msrun workers need Linux")
def test_eval_on_two_msrun_ranks_equals_one_process(run, one_process, tmp_path, run_script):
    """Also eval --calibrate on two ranks: the ECE/NLL sums and the temperature fit are reduced over the ranks,
    so rank 0 writes the calibration record one process writes."""
    folder1, _ = one_process
    bin_dir = tmp_path / ".bin"  # msrun starts the workers as `python <script>` from PATH
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    cmd = [sys.executable, "-m", "mindspore.parallel.cluster.run", "--worker_num=2", "--local_worker_num=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", f"--log_dir={tmp_path / 'msrun_log'}",
           "--join=True", "--cluster_time_out=200", os.path.join(REPO, "eval.py")] + \
        _eval_args(run, tmp_path / "out", "--calibrate", f"--calibration_file={tmp_path / 'two.calibration.json'}")
    proc = run_script.cmd(cmd, cwd=tmp_path, env=dict(CSPDARKNET53_RUN_NAME="two",
                                                      PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"), timeout=500)
    logs = "".join(open(p, errors="replace").read()[-3000:] for p in sorted((tmp_path / "msrun_log").glob("*.log")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs
    folder2 = tmp_path / "out" / "two"
    one = json.loads((folder1 / "eval_result.json").read_text())
    two = json.loads((folder2 / "eval_result.json").read_text())
    assert two["group_size"] == 2 and one["group_size"] == 1
    rank1 = (folder2 / "eval_rank1.log").read_text()
    assert "(20 on this rank" in rank1  # each rank scored its shard: 21 on rank 0, 20 here
    assert two["group_size"] == 2
    for name in ("confusion_matrix.csv", "per_class.csv"):
        assert (folder2 / name).read_text() == (folder1 / name).read_text(), name
    for key in ("top1_correct", "top5_correct", "images", "macro_precision", "macro_recall", "macro_f1",
                "top_confused_pairs"):
        assert two[key] == one[key], key
    # the worst mistakes of both ranks, gathered on rank 0, are those of one process (rank 1's files included)
    assert [m["image"] for m in two["worst_mistakes"]] == [m["image"] for m in one["worst_mistakes"]]
    assert [m["confidence"] for m in two["worst_mistakes"]] == \
        pytest.approx([m["confidence"] for m in one["worst_mistakes"]], abs=1e-5)
    from src.data.listing import list_image_folder
    rel_paths = list_image_folder(str(run["val"]), None)[1]
    order = [os.path.join(str(run["val"]), p) for p in rel_paths]  # rank r scored the files r, r + 2, ...
    assert {order.index(m["image"]) % 2 for m in two["worst_mistakes"]} == {0, 1}  # both ranks' mistakes
    assert (folder2 / "worst_mistakes.png").is_file() and (folder2 / "confusion_matrix.png").is_file()
    assert not (folder2 / "eval_rank1.log").read_text().count("analysis: ")  # only rank 0 writes them
    cal_two = json.loads((tmp_path / "two.calibration.json").read_text())
    cal_one = json.loads((folder1.parent / "one.calibration.json").read_text())
    assert cal_two["images"] == cal_one["images"] == sum(VAL_PER_CLASS)
    assert cal_two["temperature"] == pytest.approx(cal_one["temperature"], rel=1e-5)
    assert cal_one["temperature"] != pytest.approx(1.0, abs=1e-3)  # a real fit, not the identity
    for key in ("nll_before", "nll_after", "ece_before", "ece_after"):
        assert cal_two[key] == pytest.approx(cal_one[key], abs=1e-5), key
    assert two["nll"] == pytest.approx(one["nll"], abs=1e-5) and two["ece"] == pytest.approx(one["ece"], abs=1e-5)


# ------------------------------------------------------------------------------------------------
# predict.py --cam
# ------------------------------------------------------------------------------------------------

def test_predict_cam_overlays_beside_the_json(run, tmp_path, run_script):
    images = sorted(glob.glob(str(run["val"] / "class3" / "*.jpg")))[:2] + \
        sorted(glob.glob(str(run["val"] / "class0" / "*.jpg")))[:1]
    result = tmp_path / "pred" / "predictions.json"
    # 64x96: a 2x3 last-stage map (stride 32); the checkpoint was trained at 32 px
    code, text = _script(
        run_script,
        "predict.py",
        [
            f"--ckpt_file={run['ckpt']}",
            "--image_path=" + ",".join(images),
            "--cam",
            "--image_size=64,96",
            f"--result_file={result}",
            "--topk=2",
        ],
        tmp_path,
    )
    assert code == 0, text[-4000:]
    preds = json.loads(result.read_text())["predictions"]
    assert [p["image"] for p in preds] == images
    for i, p in enumerate(preds):
        stem = os.path.splitext(os.path.basename(p["image"]))[0]
        assert p["cam"] == str(tmp_path / "pred" / f"{i:04d}_{stem}_cam.png")
        assert p["cam_class"] == p["topk"][0]["class"]  # the predicted class by default
        with Image.open(p["cam"]) as im:
            # input and overlay side by side, 64x96 enlarged 2x (to >= 160 px), 4 px gap, caption strip
            assert im.size == (2 * 192 + 4, 128 + 18)
            pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
        left, right = pixels[:128, :192], pixels[:128, 196:]
        assert np.abs(left - right).mean() > 5  # the heatmap is there
    assert "Grad-CAM (" in text

    code, text = _script(run_script, "predict.py", [f"--ckpt_file={run['ckpt']}", f"--image_path={images[0]}", "--cam",
                                        "--cam_class=1", f"--cam_dir={tmp_path / 'cams'}"], tmp_path)
    assert code == 0, text[-4000:]
    assert [os.path.basename(p) for p in glob.glob(str(tmp_path / "cams" / "*.png"))] == \
        [f"0000_{os.path.splitext(os.path.basename(images[0]))[0]}_cam.png"]
    assert "Grad-CAM (class1)" in text


def test_predict_cam_class_outside_the_model_is_a_user_error(run, tmp_path, monkeypatch, capsys):
    import predict

    monkeypatch.chdir(tmp_path)
    image = sorted(glob.glob(str(run["val"] / "class0" / "*.jpg")))[0]
    code = predict.main([f"--ckpt_file={run['ckpt']}", f"--image_path={image}", "--cam", "--cam_class=4"])
    err = capsys.readouterr().err
    assert code == 2 and "cam_class=4" in err and "0..3" in err and "Traceback" not in err
    assert not (tmp_path / "cam").exists()
