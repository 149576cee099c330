"""src/evaluation.py in process: top-k counting, shard sizes, checkpoint listing, the evaluation loop against
a manual top-1/top-5 from the network's logits, eval precision per device."""
import numpy as np
import pytest
import mindspore as ms

from src.data import create_dataset
from src.evaluation import EvalResult, evaluate, topk_correct


def test_topk_correct_and_shard_counts():
    logits = np.array([[0.1, 0.9, 0.0, 0.3, 0.2, 0.5, 0.4],
                       [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], np.float32)
    assert topk_correct(logits, [1, 1]) == (1, 1)      # row 2: class 1 is the smallest -> not in top 5
    assert topk_correct(logits, [3, 6]) == (0, 2)
    assert topk_correct(np.zeros((1, 3), np.float32), [2]) == (0, 1)  # ties: lower index wins; k > classes
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


def test_evaluate_scores_every_image_and_honours_limit(eval_data):
    image_folder = eval_data.root
    net = eval_data.net(1)
    expected = eval_data.counts(net)
    bundle = create_dataset(str(image_folder), eval_data.SIZE, eval_data.BATCH, mode="eval",
                            num_classes=eval_data.NUM_CLASSES, num_parallel_workers=1)
    shapes = []
    result = evaluate(net, bundle, on_batch=lambda logits, labels: shapes.append(logits.shape))
    assert (result.top1_correct, result.top5_correct, result.total) == expected
    assert result.steps == 2 and sum(s[0] for s in shapes) == 7 and {s[1] for s in shapes} == {eval_data.NUM_CLASSES}
    limited = evaluate(net, bundle.dataset, limit=5)   # e.g. a padded shard: only the first 5 count
    assert limited.total == 5


@pytest.mark.parametrize("device", ["CPU", "GPU", "Ascend"])
def test_eval_precision_by_device(eval_data, device):
    """CPU float32; GPU float16 with float32 BatchNorm and float32 logits (amp O2); Ascend float16 throughout.
    (Run here on the CPU backend, which has the float16 kernels, in PyNative mode.)"""
    from src.evaluation import apply_eval_precision
    x = ms.Tensor(np.random.RandomState(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    ref_net = eval_data.net(1)
    ref_net.set_train(False)
    ref = ref_net(x).asnumpy()
    net, description = apply_eval_precision(eval_data.net(1), device)
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
