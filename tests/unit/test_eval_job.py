"""The evaluation job (src/eval_job.py) in process: scoring refuses zero images and outputs that are not finite;
through eval.py's main, the refusals before any device work (outputs that are inputs, checkpoints of one
folder that disagree); the one result record. (The job end to end, with the errors found
while scoring and stop signals: tests/e2e/test_inference_refusals_and_stops.py.)"""
import numpy as np
import pytest
import mindspore as ms


def _eval(args, capsys):
    import eval as eval_script

    previous = ms.get_context("mode")
    try:
        code = eval_script.main([str(a) for a in args])
    finally:
        ms.set_context(mode=previous)  # the job switches to GRAPH mode
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _common(eval_data, tmp_path):
    return [f"--data_dir={eval_data.root}", f"--per_batch_size={eval_data.BATCH}", f"--image_size={eval_data.SIZE}",
            "--num_parallel_workers=1", f"--log_path={tmp_path / 'logs'}", "--no_plots=1"]


def _with(net, suffix, value):
    """``net`` with every value of the first parameter whose name ends with ``suffix`` set to ``value``."""
    param = next(p for n, p in net.parameters_dict().items() if n.endswith(suffix))
    param.set_data(ms.Tensor(np.full(param.shape, value, np.float32)))
    return net


def _score(eval_data, net, image_size, drop_all=False):
    import logging
    from types import SimpleNamespace

    from src.archs import resolve_preprocess
    from src.checkpoint import ModelSpec
    from src.data import create_dataset
    from src.eval_job import score_checkpoint

    pre = resolve_preprocess("cspdarknet_tiny", image_size)
    spec = ModelSpec("m.ckpt", "cspdarknet_tiny", eval_data.NUM_CLASSES, pre, None, None, "own")
    bundle = create_dataset(str(eval_data.root), image_size, eval_data.BATCH, mode="eval",
                            num_classes=eval_data.NUM_CLASSES, num_parallel_workers=1, eval_resize=pre["eval_resize"],
                            crop_pct=pre["crop_pct"])
    if drop_all:  # a pipeline that drops every sample (as the engine does for images it cannot transform)
        bundle.dataset = bundle.dataset.filter(lambda images, labels: False)
    net.set_train(False)
    return score_checkpoint(net, bundle, spec, SimpleNamespace(rank=0, group_size=1), logging.getLogger("t"), 4)


def test_scoring_counts_every_image_and_feeds_the_analysis(eval_data):
    net = eval_data.net(1)
    result, acc = _score(eval_data, net, eval_data.SIZE)
    assert (result.top1_correct, result.top5_correct, result.total) == eval_data.counts(net)
    assert acc.total == result.total and acc.top1_correct == result.top1_correct


def test_outputs_that_are_not_finite_are_an_error(eval_data):
    """Finite weights whose logits overflow (a head weight of 3e38): no score is made of them. (Weights that are
    not finite never get this far: tests/unit/test_checkpoint_metadata.py, tests/e2e/test_inference_refusals_and_stops.py.)"""
    from src.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="outputs are NaN or infinite for 7 of 7 images"):
        _score(eval_data, _with(eval_data.net(1), "head.fc.weight", 3e38), eval_data.SIZE)


def test_zero_images_scored_is_an_error(eval_data):
    """A pipeline that gives no sample (before: ``tot=0, acc=0.00%`` and exit 0 for an image size the decoder
    could not produce)."""
    from src.errors import DatasetError

    with pytest.raises(DatasetError, match="no sample"):
        _score(eval_data, eval_data.net(1), eval_data.SIZE, drop_all=True)


@pytest.mark.parametrize("where", ["checkpoint", "in_data_dir", "data_list"])
def test_result_file_is_never_an_input(tmp_path, eval_data, capsys, save_trained, where):
    ckpt = save_trained(eval_data.net(1), tmp_path / "m.ckpt")
    args = _common(eval_data, tmp_path) + [f"--ckpt_file={ckpt}"]
    if where == "checkpoint":
        target = tmp_path / "m.ckpt"
    elif where == "in_data_dir":
        target = eval_data.root / "class0" / "r.json"
    else:
        target = tmp_path / "val.txt"
        target.write_text("".join(f"{p.relative_to(eval_data.root)} 0\n" for p in eval_data.root.rglob("*.jpg")))
        args.append(f"--data_list={target}")
    before = target.read_bytes() if target.exists() else None
    code, out = _eval(args + [f"--result_file={target}"], capsys)
    assert code == 2 and "result_file=" in out and "top1_correct" not in out, out
    assert (target.read_bytes() if target.exists() else None) == before
    assert not (tmp_path / "logs").exists()  # refused before any run folder


def test_log_path_inside_the_data_is_refused(tmp_path, eval_data, capsys, save_trained):
    ckpt = save_trained(eval_data.net(1), tmp_path / "m.ckpt")
    args = [a for a in _common(eval_data, tmp_path) if not a.startswith("--log_path")]
    code, out = _eval(args + [f"--ckpt_file={ckpt}", f"--log_path={eval_data.root / 'runs'}"], capsys)
    assert code == 2 and "log_path=" in out and "inside the input folder" in out, out
    assert not (eval_data.root / "runs").exists()


def test_checkpoints_of_one_folder_with_other_preprocessing_are_scored_separately(tmp_path, eval_data, capsys,
                                                                                 save_trained):
    folder = tmp_path / "ckpts"
    save_trained(eval_data.net(1), folder / "a.ckpt", image_size="32,32")
    save_trained(eval_data.net(2), folder / "b.ckpt", image_size="48,48")
    args = [a for a in _common(eval_data, tmp_path) if not a.startswith("--image_size")]
    code, out = _eval(args + [f"--pretrained={folder}"], capsys)
    assert code == 2 and "other preprocessing" in out and "score them separately" in out, out
    assert not (tmp_path / "logs").exists()


def test_the_result_record_counts_and_listed_images(tmp_path):
    """result_record: the one builder of eval_result.json's record; images_listed only when some were not scored."""
    from types import SimpleNamespace

    from src.checkpoint import ModelSpec
    from src.eval_job import result_record
    from src.evaluation import EvalResult

    spec = ModelSpec(str(tmp_path / "m.ckpt"), "cspdarknet_tiny", 3, {}, None, None, "own")
    report = SimpleNamespace(used_ema=False, layout="own")
    result = EvalResult(top1_correct=2, top5_correct=4, total=4, images_per_sec=10.0, seconds=0.4)
    rec = result_record(spec, result, report, "float32", "CPU", {"data_dir": "/d", "images_listed": 4})
    assert (rec["images"], rec["top1"], rec["top5"]) == (4, 0.5, 1.0) and "images_listed" not in rec
    rec = result_record(spec, result, report, "float32", "CPU", {"data_dir": "/d", "images_listed": 5})
    assert rec["images_listed"] == 5 and rec["checkpoint"] == str(tmp_path / "m.ckpt")
