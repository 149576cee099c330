"""src.resume: a resumed run continues with its own config; what a resume may change; its class names."""
import pytest

from src.config import load_config, save_config
from src.errors import ClassIndexError, ConfigError
from src.resume import CARRIED_OUT, DELIBERATE, IGNORED, check_same_classes, resume_config

RUN_ARGS = ["--arch=cspdarknet_tiny", "--image_size=32,32", "--max_epoch=6", "--lr=0.05", "--num_classes=3",
            "--per_batch_size=8", "--data_dir=/data/train", "--lr_scheduler=cosine_step"]


@pytest.fixture
def run(tmp_path):
    """A run folder as train.py leaves it: config.yaml and a checkpoint (its contents do not matter here)."""
    folder = tmp_path / "run"
    (folder / "ckpt_0").mkdir(parents=True)
    (folder / "ckpt_0" / "0-2_4.ckpt").write_bytes(b"")
    save_config(load_config(RUN_ARGS, script="train"), folder / "config.yaml")
    return folder


def _load(*argv):
    return load_config(list(argv), script="train")


def test_resume_alone_continues_with_the_runs_config(run):
    cfg, notes = resume_config(_load(f"--resume={run}"))
    assert (cfg.model.arch, cfg.data.image_size, cfg.optim.max_epoch, cfg.optim.lr) == ("cspdarknet_tiny", "32,32", 6,
                                                                                         0.05)
    assert cfg.train.resume == str(run)
    assert str(run / "config.yaml") in notes[0]


@pytest.mark.parametrize("flag, key", [("--arch=cspdarknet53", "arch"), ("--image_size=64,64", "image_size"),
                                       ("--lr=0.1", "lr"), ("--per_batch_size=4", "per_batch_size"),
                                       ("--data_dir=/other", "data_dir"), ("--seed=3", "seed"),
                                       ("--color_jitter=0.1", "color_jitter"), ("--num_classes=4", "num_classes")])
def test_a_change_to_what_the_run_computes_is_refused(run, flag, key):
    with pytest.raises(ConfigError) as info:
        resume_config(_load(f"--resume={run}", flag))
    assert f"{key} " in str(info.value) and "would change what it computes" in str(info.value)


def test_every_refused_change_is_named_in_one_error(run):
    with pytest.raises(ConfigError) as info:
        resume_config(_load(f"--resume={run}", "--arch=cspdarknet53", "--image_size=64,64", "--log_interval=3"))
    message = str(info.value)
    assert "arch 'cspdarknet_tiny' -> 'cspdarknet53'" in message and "image_size '32,32' -> '64,64'" in message
    assert "log_interval" not in message


def test_max_epoch_is_a_deliberate_change_and_how_the_run_is_carried_out_may_change(run):
    cfg, notes = resume_config(_load(f"--resume={run}", "--max_epoch=9", "--log_interval=3", "--ckpt_path=/elsewhere"))
    assert cfg.optim.max_epoch == 9 and cfg.train.log_interval == 3
    assert cfg.train.ckpt_path != "/elsewhere"  # a resumed run writes into its own folder
    assert any("max_epoch changed from 6 to 9" in n for n in notes)
    assert "log_interval=3" in notes[0] and "ckpt_path" not in notes[0]


def test_a_same_value_on_the_command_line_is_no_change(run):
    cfg, notes = resume_config(_load(f"--resume={run}", "--arch=cspdarknet_tiny", "--max_epoch=6"))
    assert cfg.optim.max_epoch == 6 and len(notes) == 1


def test_a_bare_checkpoint_resumes_with_the_command_lines_config(tmp_path):
    ckpt = tmp_path / "0-1_4.ckpt"
    ckpt.write_bytes(b"")
    given = _load(f"--resume={ckpt}", "--arch=cspdarknet_tiny")
    cfg, notes = resume_config(given)
    assert cfg is given and notes == [] and any("no config.yaml" in w for w in cfg.warnings)


def test_the_key_classes_do_not_overlap_and_name_real_keys():
    from src.config import load_config as load

    keys = set(load([]).flat())
    assert CARRIED_OUT <= keys and DELIBERATE <= keys and IGNORED <= keys
    assert not (CARRIED_OUT & DELIBERATE or CARRIED_OUT & IGNORED or DELIBERATE & IGNORED)


def test_class_names_must_be_the_runs():
    check_same_classes(["cat", "dog"], {"cat": 0, "dog": 1}, "c.ckpt")
    check_same_classes(None, {"x": 0}, "c.ckpt")  # nothing recorded: nothing to compare
    with pytest.raises(ClassIndexError, match="missing from the data: 'dog'.*new in the data: 'wolf'.*relabel"):
        check_same_classes(["cat", "dog"], {"cat": 0, "wolf": 1}, "c.ckpt")
    with pytest.raises(ClassIndexError, match="another order"):
        check_same_classes(["cat", "dog"], {"dog": 0, "cat": 1}, "c.ckpt")
