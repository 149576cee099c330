"""tools/timm_reference_train.py (the reference side of README's training-parity table): a one-epoch job of
timm's full cspdarknet53 on a tiny ImageFolder tree at 32 px; the summary's fields, and the learning rate the
optimizer used at each step against ``src.lr_generator.get_lr``."""
import json

import numpy as np


TOOL = "tools/timm_reference_train.py"


def test_one_epoch_summary_and_lr_array(tmp_path, make_tiny_data, run_script):
    from src.lr_generator import get_lr

    data = make_tiny_data(3, {"train": 6, "val": 3}, 40)  # 18 train images, batch 4: 4 full steps
    summary_path = tmp_path / "s.json"
    recipe = dict(lr=0.05, lr_scheduler="cosine_step", warmup_epochs=0.5, eta_min=0.001)
    args = ["--data_dir", data / "train", "--val_data_dir", data / "val", "--image_size", "32",
            "--per_batch_size", "4", "--max_epoch", "1", "--seed", "3", "--threads", "1", "--summary", summary_path]
    for key, value in recipe.items():
        args += [f"--{key}", str(value)]
    proc = run_script(TOOL, args, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.output[-3000:]

    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    with open(summary_path) as f:
        saved = json.load(f)
    used_lr = saved.pop("lr_per_step")
    assert saved == printed
    assert printed["arch"] == "cspdarknet53" and printed["timm_model"] == "cspdarknet53"
    assert printed["timm_kwargs"] == {"act_layer": "mish"}
    assert printed["image_size"] == "32,32" and printed["eval_resize"] == "squash" and printed["crop_pct"] == 0.875
    assert (printed["num_classes"], printed["train_images"], printed["val_images"]) == (3, 18, 9)
    assert (printed["max_epoch"], printed["steps_per_epoch"], printed["seed"]) == (1, 4, 3)
    for key in ("val_top1", "val_top5", "train_loss"):
        assert len(printed[key]) == 1, key
    assert 0 <= printed["val_top1"][0] <= printed["val_top5"][0] <= 100
    assert printed["final_top1"] == printed["best_top1"] == printed["val_top1"][0]
    assert np.isfinite(printed["train_loss"][0]) and printed["train_loss"][0] > 0

    expected = get_lr(steps_per_epoch=4, max_epoch=1, **recipe)
    assert expected[0] < expected[1] > expected[3]  # warmup and decay both lie in the compared steps
    np.testing.assert_array_equal(np.asarray(used_lr, np.float32), expected)


def test_user_errors_are_one_line_and_touch_nothing(tmp_path, make_tiny_data, run_script):
    data = make_tiny_data(3, {"train": 6, "val": 3}, 40)
    foreign = tmp_path / "notes.json"
    foreign.write_text("my notes\n")
    cases = [["--val_data_dir", tmp_path / "missing"],                      # no such folder
             ["--val_data_dir", data / "val", "--summary", foreign,         # a file the tool did not write
              "--image_size", "32", "--per_batch_size", "4", "--max_epoch", "1"],
             ["--val_data_dir", data / "val", "--arch", "cspdarknet_tiny"]]  # no timm twin
    for extra in cases:
        proc = run_script(TOOL, ["--data_dir", data / "train", *extra], cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, (extra, proc.output[-2000:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (extra, lines)
    assert foreign.read_text() == "my notes\n"
