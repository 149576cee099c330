"""ModelArts end to end through train.py and eval.py (one wrapper for both), with a stand-in ``moxing`` package.

Local folders act as OBS (``obs://bucket/...`` is mapped to a folder); the stand-in copies with
shutil and records every ``moxing.file.copy_parallel`` call in a JSON file. The dataset is a real
zip file that must be downloaded, unzipped once, and trained on; the outputs must be uploaded to
train_url at the end.
"""
import json
import os
import uuid
import zipfile

import numpy as np
import pytest
from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

FAKE_MOXING = '''"""Stand-in for ModelArts' moxing: obs://bucket/<path> is $FAKE_OBS_ROOT/<path>; calls are recorded."""
import json
import os
import shutil


def _local(url):
    if url.startswith("obs://bucket/"):
        return os.path.join(os.environ["FAKE_OBS_ROOT"], url[len("obs://bucket/"):])
    return url


class _File:
    @staticmethod
    def copy_parallel(src_url, dst_url):
        log = os.environ["FAKE_MOXING_LOG"]
        calls = []
        if os.path.exists(log):
            with open(log) as f:
                calls = json.load(f)
        calls.append([src_url, dst_url, os.environ.get("RANK_ID", "")])
        with open(log, "w") as f:
            json.dump(calls, f)
        src, dst = _local(src_url), _local(dst_url)
        os.makedirs(dst, exist_ok=True)
        if os.path.isdir(src):  # an OBS prefix without objects copies nothing
            shutil.copytree(src, dst, dirs_exist_ok=True)


file = _File()
'''


@pytest.fixture
def modelarts(tmp_path, make_tiny_data):
    """OBS with a zipped dataset and a checkpoint folder, an empty local cache, the stand-in moxing; ``env``:
    what the scripts' environment adds (for tests/conftest.py run_script)."""
    obs = tmp_path / "obs"
    (obs / "data").mkdir(parents=True)
    (obs / "pretrained").mkdir()
    (obs / "pretrained" / "README.txt").write_text("checkpoint folder on OBS\n")
    splits = {"train": 4, "val": 2}
    images = make_tiny_data(classes=2, per_class=splits, size=36, seed=2)
    with zipfile.ZipFile(obs / "data" / "ImageNet.zip", "w") as zf:
        for split, n in splits.items():
            for c in range(2):
                for path in sorted((images / split / f"class{c}").iterdir()):
                    zf.write(path, f"ImageNet/{split}/class{c}/{path.name}")
    fake = tmp_path / "fake_site"
    (fake / "moxing").mkdir(parents=True)
    (fake / "moxing" / "__init__.py").write_text(FAKE_MOXING)
    cache = tmp_path / "cache"
    env = dict(PYTHONPATH=os.pathsep.join([str(fake), REPO]), FAKE_OBS_ROOT=str(obs),
               FAKE_MOXING_LOG=str(tmp_path / "moxing_calls.json"), JOB_ID="job" + uuid.uuid4().hex[:8],
               TMPDIR=str(tmp_path), DEVICE_ID="0", RANK_ID="0", RANK_SIZE="1")
    flags = ["--enable_modelarts=True", "--data_url=obs://bucket/data", "--train_url=obs://bucket/out",
             "--checkpoint_url=obs://bucket/pretrained", f"--data_path={cache / 'data'}",
             f"--output_path={cache / 'train'}", f"--load_path={cache / 'ckpt'}"]
    return dict(obs=obs, cache=cache, env=env, flags=flags, calls=tmp_path / "moxing_calls.json", tmp=tmp_path)


def _calls(ma):
    with open(ma["calls"]) as f:
        return [tuple(c[:2]) for c in json.load(f)]


def _assert_downloads_then_upload(ma):
    """Downloads first (data, checkpoint folder, previous outputs), the upload last."""
    cache = ma["cache"]
    assert _calls(ma) == [("obs://bucket/data", str(cache / "data")),
                          ("obs://bucket/pretrained", str(cache / "ckpt")),
                          ("obs://bucket/out", str(cache / "train")),
                          (str(cache / "train"), "obs://bucket/out")]


def test_train_on_modelarts_downloads_unzips_trains_uploads(modelarts, run_script):
    ma = modelarts
    proc = run_script("train.py", [*ma["flags"], "--data_dir=train", "--val_data_dir=val", "--arch=cspdarknet_tiny",
                                   "--num_classes=2", "--image_size=32,32", "--per_batch_size=4", "--max_epoch=1",
                                   "--warmup_epochs=0", "--num_parallel_workers=1"],
                      cwd=ma["tmp"], env=ma["env"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cache = ma["cache"]
    _assert_downloads_then_upload(ma)
    assert (cache / "ckpt" / "README.txt").is_file()
    # the zip was extracted once, and the relative data_dir/val_data_dir point into it
    assert proc.stdout.count("unzip: extracting") == 1, proc.stdout
    assert (cache / "data" / "ImageNet" / "train" / "class1" / "img003.jpg").is_file()
    # outputs under output_path/<ckpt_path>/<run>, uploaded to train_url
    (run,) = list((ma["obs"] / "out" / "outputs").iterdir())
    log = (run / "log.txt").read_text()
    assert "train: 8 images, 2 classes" in log and "validation: 4 images" in log, log
    assert str(cache / "data" / "ImageNet" / "train") in (run / "config.yaml").read_text()
    assert list((run / "ckpt_0").glob("0-1_2.ckpt")) and (run / "metrics.csv").is_file()


def test_second_job_on_the_same_server_does_not_unzip_again(modelarts, run_script):
    """The extracted folder is reused (the lock of a finished unzip or the folder itself)."""
    ma = modelarts
    extracted = ma["cache"] / "data" / "ImageNet"
    (extracted / "train" / "class0").mkdir(parents=True)
    Image.fromarray(np.full((36, 36, 3), 10, np.uint8)).save(extracted / "train" / "class0" / "a.jpg")
    (extracted / "train" / "class1").mkdir()
    Image.fromarray(np.full((36, 36, 3), 200, np.uint8)).save(extracted / "train" / "class1" / "b.jpg")
    proc = run_script("train.py", [*ma["flags"], "--data_dir=train", "--arch=cspdarknet_tiny", "--num_classes=2",
                                   "--image_size=32,32", "--per_batch_size=2", "--max_epoch=1", "--warmup_epochs=0",
                                   "--num_parallel_workers=1"],
                      cwd=ma["tmp"], env=ma["env"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "unzip: extracting" not in proc.stdout and "already exists" in proc.stdout, proc.stdout
    (run,) = list((ma["obs"] / "out" / "outputs").iterdir())
    assert "train: 2 images, 2 classes" in (run / "log.txt").read_text()


def test_missing_moxing_is_one_clear_error(modelarts, run_script):
    ma = modelarts
    env = dict(ma["env"], PYTHONPATH=REPO)
    proc = run_script("train.py", ma["flags"], cwd=ma["tmp"], env=env, timeout=120)
    assert proc.returncode == 2
    assert "'moxing' package cannot be imported" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_eval_on_modelarts_downloads_unzips_scores_uploads(modelarts, tmp_path, run_script, save_trained):
    """eval.py runs inside the same ModelArts wrapper: the checkpoint comes from checkpoint_url, the data
    from the unzipped dataset, the results go to train_url."""
    from src.image_classification import create_model

    ma = modelarts
    save_trained(create_model("cspdarknet_tiny", num_classes=2), ma["obs"] / "pretrained" / "tiny.ckpt")
    proc = run_script("eval.py", [*ma["flags"], "--data_dir=val", "--ckpt_file=tiny.ckpt", "--image_size=32,32",
                                  "--per_batch_size=2", "--num_parallel_workers=1", "--result_file=result.json"],
                      cwd=ma["tmp"], env=ma["env"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cache = ma["cache"]
    _assert_downloads_then_upload(ma)
    assert proc.stdout.count("unzip: extracting") == 1, proc.stdout
    # the relative checkpoint was read from load_path, the relative data_dir inside the dataset
    with open(ma["obs"] / "out" / "result.json") as f:
        result = json.load(f)
    assert result["checkpoint"] == str(cache / "ckpt" / "tiny.ckpt")
    assert result["data_dir"] == str(cache / "data" / "ImageNet" / "val") and result["images"] == 4
    (run,) = list((ma["obs"] / "out" / "outputs").iterdir())
    assert (run / "eval_result.json").is_file() and (run / "eval_rank0.log").is_file()
