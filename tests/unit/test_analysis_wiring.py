"""The glue between src.analysis / src.utils.tensorboard and the entry scripts, in process: global sample
indices of eval shards, evaluate's batch hook, eval.py's class names and output folders, predict.py's
Grad-CAM hook for both architectures' numerics at odd input sizes, the trainer's images/s and the
TensorBoard plotting tool. (End to end through the scripts: tests/e2e/test_analysis_e2e.py.)"""
import dataclasses
import os
from types import SimpleNamespace

import numpy as np
import pytest
import mindspore as ms
from PIL import Image

from src.archs import get_arch  # noqa: E402
from src.data import create_dataset  # noqa: E402
from src.image_classification import create_model  # noqa: E402

TIMM_TINY = dataclasses.replace(get_arch("cspdarknet_tiny"), name="cspdarknet_tiny_timm", activation="leaky_relu",
                                padding="symmetric", split="merged", concat_order="cross_first")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("wiring") / "val"
    rng = np.random.RandomState(0)
    for i in range(7):
        (root / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.rand(30, 30, 3) * 255).astype(np.uint8)).save(root / f"c{i % 3}" / f"{i}.jpg")
    return root


def _bundle(folder, rank=0, group_size=1, batch=2):
    return create_dataset(str(folder), "32,32", batch, mode="eval", rank=rank, group_size=group_size,
                          num_classes=3, num_parallel_workers=1)


def test_path_of_maps_global_sample_indices_of_any_shard(folder):
    whole = _bundle(folder)
    shards = [_bundle(folder, r, 2) for r in range(2)]
    assert [whole.path_of(i) for i in range(7)] == [whole.source.table[i] for i in range(7)]
    for rank, shard in enumerate(shards):
        for i in range(shard.num_images):  # the i-th image of rank r is global sample r + 2i
            assert shard.source.table[i] == whole.path_of(rank + 2 * i)
        # every rank can name every rank's files (rank 0 draws the mistakes of all)
        assert [shard.path_of(g) for g in range(7)] == [whole.path_of(g) for g in range(7)]


def test_evaluate_hands_on_batch_the_counted_rows(folder):
    from src.analysis.metrics import EvalAccumulator
    from src.evaluation import evaluate

    def net(images):  # class = 0 always: a known matrix
        logits = np.zeros((images.shape[0], 3), np.float32)
        logits[:, 0] = 1
        return ms.Tensor(logits)

    seen = []
    result = evaluate(net, _bundle(folder), on_batch=lambda lg, lb: seen.append((lg.shape, lb.tolist())))
    assert sum(s[0][0] for s in seen) == result.total == 7 and [s[0] for s in seen][-1] == (1, 3)
    acc = EvalAccumulator(3, worst_n=2)
    result = evaluate(net, _bundle(folder), limit=5, on_batch=acc.update)
    assert acc.total == result.total == 5 and acc.top1_correct == result.top1_correct
    assert acc.matrix[:, 1:].sum() == 0 and acc.matrix[:, 0].tolist() == [3, 2, 0]  # c0 (3 files), c1 (2), then c2


def test_eval_class_names_and_analysis_folders():
    import eval as eval_script
    from src.data.class_names import load_class_names

    bundle = SimpleNamespace(class_to_idx={"cat": 0, "dog": 2})
    assert eval_script._class_names(bundle, 4, None, "", {}) == ["cat", "class_1", "dog", "class_3"]
    imagenet = load_class_names(None, 1000)
    synsets = SimpleNamespace(class_to_idx={"n01440764": 0, "n01443537": 1})
    assert eval_script._class_names(synsets, 1000, {"n01440764": 0, "n01443537": 1}, "", {}) == imagenet
    listed = SimpleNamespace(class_to_idx={"0": 0, "1": 1, "2": 2})
    assert eval_script._class_names(listed, 3, None, "val.txt", {"class_names": ["a", "b"]}) == ["a", "b", "class_2"]
    assert eval_script._class_names(listed, 3, None, "val.txt", {}) == ["class_0", "class_1", "class_2"]
    assert eval_script._class_names(listed, 1000, None, "val.txt", {}) == imagenet
    # folders scored as the trained indices: the recorded names win over the folder names
    assert eval_script._class_names(bundle, 3, None, "", {"class_names": ["a", "b", "c"]}) == ["a", "b", "c"]

    assert eval_script._analysis_dirs(["/c/a.ckpt"], "/run") == {"/c/a.ckpt": "/run"}
    dirs = eval_script._analysis_dirs(["/c/a.ckpt", "/c/a.safetensors", "/c/b.ckpt"], "/run")
    assert dirs == {"/c/a.ckpt": "/run/a.ckpt", "/c/a.safetensors": "/run/a.safetensors", "/c/b.ckpt": "/run/b"}


@pytest.mark.parametrize("arch,hw", [("cspdarknet_tiny", (37, 50)), (TIMM_TINY, (64, 33))])
def test_predict_cam_hook_for_both_architectures(tmp_path, arch, hw):
    import predict
    from src.analysis.gradcam import GradCAM

    net = create_model(arch, num_classes=4, seed=1)
    net.set_train(False)
    rng = np.random.RandomState(0)
    images = rng.randn(3, 3, *hw).astype(np.float32)
    cfg = SimpleNamespace(predict=SimpleNamespace(cam_class=-1, cam_dir=str(tmp_path / "cams")),
                          eval=SimpleNamespace(result_file=""))
    names = [f"n{i}" for i in range(4)]
    saved = {}
    hook = predict._cam_writer(net, cfg, names, saved)
    hook(images[:2], ["/x/a.jpg", "/x/b.png"], 0)
    hook(images[2:], ["/y/a.jpg"], 2)  # the second batch continues the numbering
    assert sorted(saved) == [0, 1, 2]
    assert [os.path.basename(saved[i]["cam"]) for i in range(3)] == ["0000_a_cam.png", "0001_b_cam.png",
                                                                      "0002_a_cam.png"]
    expected = GradCAM(net)(images).classes
    assert [saved[i]["cam_class"] for i in range(3)] == expected.tolist()
    with Image.open(saved[0]["cam"]) as im:  # enlarged so the longer side reaches 160 px, side by side
        scale = int(np.ceil(160 / max(hw)))
        assert im.size == (2 * hw[1] * scale + 4, hw[0] * scale + 18)

    cfg.predict.cam_class = 3
    saved.clear()
    predict._cam_writer(net, cfg, names, saved)(images[:1], ["/x/a.jpg"], 0)
    assert saved[0]["cam_class"] == 3 and saved[0]["cam_class_name"] == "n3"


def test_cam_folder(tmp_path, monkeypatch):
    import predict

    monkeypatch.chdir(tmp_path)
    cfg = lambda d, r: SimpleNamespace(predict=SimpleNamespace(cam_dir=d), eval=SimpleNamespace(result_file=r))  # noqa
    assert predict.cam_folder(cfg("out/c", "p/x.json")) == str(tmp_path / "out" / "c")
    assert predict.cam_folder(cfg("", "p/x.json")) == str(tmp_path / "p")
    assert predict.cam_folder(cfg("", "")) == str(tmp_path / "cam")


def test_progress_step_end_returns_the_logged_window_rate():
    import logging

    from src.reporting import ProgressLogger

    progress = ProgressLogger(logging.getLogger("test"), steps_per_epoch=5, max_epoch=1, global_batch=8,
                              log_interval=2, stream=open(os.devnull, "w"))
    rates = [progress.step_end(1, i, 1.0, 0.1) for i in range(1, 6)]
    assert [r is None for r in rates] == [True, False, True, False, False]  # steps 2, 4 and the last
    assert all(r > 0 for r in rates if r is not None)


def test_plot_tensorboard_tool(tmp_path):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("matplotlib")
    from tools import plot_tensorboard
    from src.utils.tensorboard import create_tensorboard_logger, epoch_scalars, step_scalars

    tb = create_tensorboard_logger(str(tmp_path / "tb"), run_dir=str(tmp_path / "run1"))
    for step in range(1, 9):
        tb.add_scalars(step, step_scalars(loss=2.0 / step, lr=0.1, images_per_sec=100.0 if step % 4 == 0 else None))
        if step % 4 == 0:
            tb.add_scalars(step, epoch_scalars({"epoch": step // 4, "train_loss": 1.0, "val_top1": 50.0,
                                                "val_top5": 90.0}))
    tb.close()
    out = tmp_path / "s.png"
    assert plot_tensorboard.main(["--logdir", str(tmp_path / "tb" / "run1"), "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.width > 600
    assert plot_tensorboard.main(["--logdir", str(tmp_path / "empty"), "--out", str(out)]) == 2
