"""Validation in-process: config values and cross-key rules at load time, the up-front output
checks, what a failing or killed checkpoint save leaves, metrics.csv after redone epochs, and the entry
points' mapping of storage errors to one ``error:`` line. The same cases as command lines are in
``tests/e2e/test_bad_input_and_storage_faults.py``; ``docs/errors.md`` lists them all."""
import errno
import os

import pytest

from src.config import ConfigError, load_config



# --------------------------------------------------------------------------- config values
@pytest.mark.parametrize("argv, message", [
    (["--ckpt_interval", "0"], "--ckpt_interval: must be >= 1, got '0'"),
    (["--ckpt_interval=0"], "--ckpt_interval: must be >= 1, got '0'"),
    (["--val_interval", "0"], "--val_interval: must be >= 1, got '0'"),
    (["--lr", "-1"], "--lr: must be >= 0, got '-1'"),
    (["--lr=nan"], "--lr: expected a finite number, got 'nan'"),
    (["--max_epoch", "0"], "--max_epoch: must be >= 1, got '0'"),
    (["--max_epoch=1.5"], "--max_epoch: expected an integer, got '1.5'"),
    (["--warmup_epochs", "-3"], "--warmup_epochs: must be >= 0, got '-3'"),
    (["--lr_epochs", "a,b"], "--lr_epochs: must be comma-separated numbers such as 30,60,90, got 'a,b'"),
    (["--lr_epochs=0,-5"], "--lr_epochs: must be comma-separated epochs > 0"),
    (["--num_classes", "0"], "--num_classes: must be >= 1, got '0'"),
    (["--seed", "-1"], "--seed: must be in [0, 4294967295], got '-1'"),
    (["--seed=4294967296"], "--seed: must be in [0, 4294967295]"),
    (["--num_classes=1", "--label_smooth=1", "--label_smooth_factor=0.1"], "label_smooth needs num_classes >= 2"),
    (["--per_batch_size=0"], "--per_batch_size: must be >= 1"),
    (["--ckpt_save_max=0"], "--ckpt_save_max: must be >= 1"),
    (["--log_interval=0"], "--log_interval: must be >= 1"),
    (["--momentum=1"], "--momentum: must be in [0, 1)"),
    (["--label_smooth_factor=1"], "--label_smooth_factor: must be in [0, 1)"),
    (["--image_size=0,0"], "--image_size: must be 'auto' or positive 'height,width'"),
    (["--device_target=TPU"], "--device_target: invalid choice 'TPU'"),
    (["--is_distributed=2"], "--is_distributed: invalid choice '2'"),
    (["--export_batch_size=0"], "--export_batch_size: must be >= 1"),
    (["--topk=0"], "--topk: must be >= 1"),
    (["--max_epoch"], "command line: argument --max_epoch: expected one argument"),
    (["--lr", "abc"], "--lr: expected a number, got 'abc'"),
    (["--lr=inf"], "--lr: expected a finite number, got 'inf'"),
    (["--num_parallel_workers=-1"], "--num_parallel_workers: must be >= 0"),
    (["--weight_decay=-1"], "--weight_decay: must be >= 0"),
    (["--loss_scale=0"], "--loss_scale: must be >= 1"),
    (["--ema_decay=2"], "--ema_decay: must be in [0, 1]"),
    (["--re_prob=1.5"], "--re_prob: must be in [0, 1]"),
    (["--crop_pct=2"], "--crop_pct: must be 0 (the architecture's) or in (0, 1]"),
    (["--crop_scale_min=0"], "--crop_scale_min: must be in (0, 1]"),
    (["--mixup_prob=-0.1"], "--mixup_prob: must be in [0, 1]"),
    (["--T_max=-1"], "--T_max: must be >= 0"),
    (["--eta_min=-1"], "--eta_min: must be >= 0"),
    (["--lr_gamma=-1"], "--lr_gamma: must be >= 0"),
    (["--width=-1"], "--width: must be >= 0"),
    (["--image_size=abc"], "--image_size: must be 'auto' or 'height,width'"),
    (["--image_size=32,32,32"], "--image_size: must be 'auto' or positive 'height,width'"),
    (["--label_smooth=maybe"], "--label_smooth: expected a boolean (true/false), got 'maybe'"),
    (["--ema=2"], "--ema: expected a boolean (true/false), got '2'"),
    (["--arch=resnet50"], "--arch: invalid choice 'resnet50' (choose from cspdarknet53, cspdarknet53_timm, "
                          "cspdarknet_tiny)"),
    (["--arch=cspdarknet_tiy"], "(did you mean 'cspdarknet_tiny'?)"),
    (["--lr_scheduler=cosine"], "--lr_scheduler: invalid choice 'cosine'"),
    (["--amp_level=O1"], "--amp_level: invalid choice 'O1'"),
    (["--file_format=PNG"], "--file_format: invalid choice 'PNG'"),
    (["--epochs=5"], "command line: unknown option --epochs (did you mean --max_epoch?)"),
    (["--max-epoch=5"], "command line: unknown option --max-epoch (did you mean --max_epoch?)"),
    (["oops"], "command line: unexpected argument(s): oops"),
    (["--image_size=8192,8192"], "--image_size: must be at most 4096 per side (a training step at 4096 x 4096 holds"),
    (["--num_classes=10000000"], "--num_classes: must be <= 100000 ("),
    (["--max_epoch=1000000000"], "--max_epoch: must be <= 10000 (the LR schedule holds one value per step"),
    (["--num_parallel_workers=100000"], "--num_parallel_workers: must be <= "),
    (["--export_batch_size=1000000000"], "--export_batch_size: must be <= 1024 ("),
    (["--width=100000"], "--width: must be <= 4096 ("),
    (["--width=4096", "--height=4096", "--export_batch_size=64"], "float32 is 12.0 GiB; the exported input may be"),
])
def test_bad_values_are_refused_at_load_naming_the_key(argv, message):
    with pytest.raises(ConfigError) as err:
        load_config(argv)
    assert message in str(err.value)


@pytest.mark.parametrize("content, message", [
    (None, "config_path: file not found: "),
    ("folder", "config_path: not a file: "),
    ("lr: [1\n", "cannot parse YAML file "),
    ("learning_rate: 0.1\n", "unknown key 'learning_rate' in "),
    ("lr: 0.1\nlr: 0.2\n", "duplicate key 'lr'"),
    ("- lr\n- 0.1\n", "must be a mapping of key: value, got list"),
    ("data_dir: /tmp/caf\xe9\n".encode("latin-1"), "cannot read config file "),
    ("max_epoch: ten\n", "max_epoch in "),
], ids=["missing", "folder", "syntax", "unknown-key", "duplicate-key", "list", "not-utf8", "wrong-type"])
def test_bad_config_file_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "user.yaml"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(["--config_path", str(path)])
    assert message in str(err.value) and str(path) in str(err.value)


def test_one_class_without_label_smoothing_is_fine():
    assert load_config(["--num_classes=1", "--label_smooth=0"]).model.num_classes == 1
    assert load_config(["--num_classes=1", "--label_smooth_factor=0"]).model.num_classes == 1


@pytest.mark.parametrize("argv, warning", [
    (["--max_epoch=1", "--warmup_epochs=5"], "warmup_epochs=5 is longer than max_epoch=1"),
    (["--max_epoch=2", "--ckpt_interval=5"],
     "ckpt_interval=5 is longer than max_epoch=2: only the last epoch gets one"),
    (["--max_epoch=2", "--val_interval=3"], "val_interval=3 is longer than max_epoch=2"),
])
def test_odd_but_legitimate_values_load_with_a_warning(argv, warning):
    cfg = load_config(argv)
    assert any(warning in w for w in cfg.warnings), cfg.warnings


# --------------------------------------------------------------------------- output checks
@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


def test_output_dir_under_a_regular_file(tmp_path, a_file):
    from src.utils.fileio import check_output_dir

    with pytest.raises(ConfigError) as err:
        check_output_dir(str(a_file / "runs"), "ckpt_path")
    assert str(err.value) == f"ckpt_path={str(a_file / 'runs')!r}: cannot create a folder there: {a_file} is a file, " \
                             "not a folder"


@pytest.mark.parametrize("path, reason", [("/sys/cspdarknet53_out/runs", "Permission denied"),
                                          ("/proc/cspdarknet53_out", "No such file or directory")])
def test_output_dir_on_a_location_not_even_root_can_write(path, reason):
    from src.utils.fileio import check_output_dir

    if not os.path.isdir("/" + path.split("/")[1]):
        pytest.skip("no such pseudo file system here")
    with pytest.raises(ConfigError) as err:
        check_output_dir(path, "log_path")
    assert str(err.value).startswith(f"log_path={path!r}: cannot write in /") and reason in str(err.value)


def test_output_checks_create_nothing(tmp_path, a_file):
    from src.utils.fileio import check_output_dir, check_output_file

    assert check_output_dir(str(tmp_path / "new" / "deeper"), "ckpt_path") == str(tmp_path / "new" / "deeper")
    assert check_output_file(str(tmp_path / "x" / "r.json"), "result_file") == str(tmp_path / "x" / "r.json")
    with pytest.raises(ConfigError, match=r"result_file='.*': is a folder; expected a file name"):
        check_output_file(str(tmp_path), "result_file")
    with pytest.raises(ConfigError, match=r"file_name='.*a_file/net.mindir': cannot create a folder there"):
        check_output_file(str(a_file / "net.mindir"), "file_name")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]  # no folder made, no probe left


# --------------------------------------------------------------------------- checkpoint saves
# --------------------------------------------------------------------------- metrics.csv
def test_metrics_rows_of_redone_epochs_are_dropped(tmp_path):
    from src.reporting import MetricsWriter

    path = str(tmp_path / "metrics.csv")
    first = MetricsWriter(path)
    for epoch in (1, 2, 3):
        first.write(epoch=epoch, train_loss="1.0")
    for start in (2, 1):  # resumed after epoch 1 (epochs 2, 3 redone), then again from the start
        resumed = MetricsWriter(path, keep_epochs_before=start)
        for epoch in range(start, 4):
            resumed.write(epoch=epoch, train_loss=f"0.{start}")
    rows = MetricsWriter(path, keep_epochs_before=4).read()
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [r["train_loss"] for r in rows] == ["0.1", "0.1", "0.1"]
    assert not [n for n in os.listdir(tmp_path) if n != "metrics.csv"]


# --------------------------------------------------------------------------- entry points
@pytest.fixture
def restore_src_logger():
    """run_entry's RunLog takes over the ``src`` logger (handlers, no propagation): give it back after."""
    import logging

    logger = logging.getLogger("src")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    for handler in saved[0]:
        logger.addHandler(handler)
    logger.propagate, logger.level = saved[1], saved[2]


@pytest.mark.parametrize("err, message", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/out/metrics.csv"),
     "error: cannot write /data/out/metrics.csv: No space left on device ("),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/log.txt"), "error: /mnt/ro/log.txt: Read-only file system"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/y"), "error: /x/y: Permission denied"),
])
def test_storage_errors_in_a_job_are_one_error_line(capsys, restore_src_logger, err, message):
    from model_utils.entry import run_entry

    def job(cfg, run_log):
        raise err

    assert run_entry(job, []) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_a_config_error_raised_in_a_job_is_a_user_error(capsys, restore_src_logger):
    """A ConfigError found while the job runs (a key whose value only the job can check) is the user's
    mistake: exit 2 and its message as the one error line, never a traceback."""
    from model_utils.entry import run_entry

    def job(cfg, run_log):
        raise ConfigError("image_size='7,7': smaller than the network's 32 px")

    assert run_entry(job, []) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: image_size='7,7': smaller than the network's 32 px"], lines


def test_a_very_long_error_is_one_bounded_line(capsys, restore_src_logger):
    from model_utils.entry import run_entry
    from src.utils.runtime import MAX_ERROR_LINE

    def job(cfg, run_log):
        raise ConfigError("start " + "x" * 10_000_000 + " end")

    assert run_entry(job, []) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert len(line) <= MAX_ERROR_LINE and line.startswith("error: start xxx") and line.endswith("xxx end")
    assert "[9998" in line and "characters cut]" in line


def test_a_bad_launcher_variable_is_one_error_line_before_the_job(capsys, monkeypatch, restore_src_logger):
    from model_utils.entry import run_entry

    monkeypatch.setenv("DEVICE_ID", "gpu0")
    ran = []
    assert run_entry(lambda cfg, log: ran.append(1), []) == 2
    assert capsys.readouterr().err == "error: environment variable DEVICE_ID='gpu0' is not an integer\n"
    assert ran == []


def test_entry_scripts_load_their_own_keys(capsys, restore_src_logger):
    from model_utils.entry import run_entry

    seen = []
    assert run_entry(lambda cfg, log: seen.append(cfg) or 0, ["--pretrained=m.ckpt"], log_name="predict") == 0
    assert seen[0].script == "predict" and seen[0].weights.ckpt_file == "m.ckpt"
    assert run_entry(lambda cfg, log: 0, ["--max_epoch=3"], log_name="eval") == 2
    assert capsys.readouterr().err == ("error: command line: --max_epoch is not an option of eval.py; it is used by "
                                       "train.py\n")


def test_other_os_errors_are_not_hidden(restore_src_logger):
    from model_utils.entry import run_entry

    def job(cfg, run_log):
        raise ConnectionResetError(errno.ECONNRESET, "reset")  # a bug or a fault, not the user's input

    with pytest.raises(ConnectionResetError):
        run_entry(job, [])


def test_postprocess_and_label_tool_in_process(tmp_path, capsys):
    import create_imagenet2012_label
    import postprocess

    assert postprocess.main([]) == 2
    assert capsys.readouterr().err.startswith("error: the following arguments are required: --result_path")
    assert create_imagenet2012_label.main(["--img_path", str(tmp_path), "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: --output {tmp_path} is a folder; expected a file name such as " \
                                      f"{tmp_path}/imagenet_label.json\n"
