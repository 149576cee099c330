"""Tests of src/config.py, default_config.yaml and the profiles (no MindSpore needed)."""

import dataclasses
import os
import re
import textwrap

import pytest
import yaml

from src import config as config_mod
from src.config import (DEFAULT_CONFIG_PATH, PROFILES_DIR, SECTIONS, Config, ConfigError, load_config,
                        resolve_is_distributed, save_config)
from src.archs import arch_names

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _write(tmp_path, text, name="user.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(p)


# --------------------------------------------------------------------------- one source of truth
def test_every_key_is_declared_once_with_help_and_has_one_value():
    declared = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    assert len(declared) == len(set(declared)), "a key declared in two sections"
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            assert f.metadata["help"].strip(), f"{f.name} has no help text"
            assert f.default is dataclasses.MISSING, f"{f.name}: the value belongs in default_config.yaml"
    with open(DEFAULT_CONFIG_PATH, encoding="utf-8") as fh:
        docs = list(yaml.safe_load_all(fh))
    assert len(docs) == 1, "default_config.yaml holds values only: one mapping"
    assert set(docs[0]) == set(declared)
    assert all(not isinstance(v, (dict, list)) for v in docs[0].values())


def test_arch_choices_come_from_the_registry():
    assert load_config([]).model.arch == "cspdarknet53"
    field = {f.name: f for f in dataclasses.fields(SECTIONS["model"])}["arch"]
    assert field.metadata["choices"] == arch_names()
    for name in arch_names():
        assert load_config([f"--arch={name}"]).model.arch == name


def test_label_smooth_style_choices_are_the_losss():
    """The config stays free of MindSpore, so it lists the styles itself; they must be the loss's own."""
    from src.loss import SMOOTH_STYLES
    field = {f.name: f for f in dataclasses.fields(SECTIONS["optim"])}["label_smooth_style"]
    assert field.metadata["choices"] == SMOOTH_STYLES


def test_default_values_and_types():
    cfg = load_config([])
    assert cfg.model.arch == "cspdarknet53" and cfg.model.num_classes == 1000
    assert cfg.device.device_target == "auto" and cfg.device.is_distributed == "auto"
    assert cfg.data.image_size == "auto" and cfg.data.eval_resize == "auto" and cfg.data.crop_pct == 0.0
    assert cfg.optim.lr == 0.1 and cfg.optim.lr_scheduler == "cosine_annealing"
    assert isinstance(cfg.optim.eta_min, float) and isinstance(cfg.optim.warmup_epochs, float)
    assert cfg.optim.warmup_epochs == 5.0 and cfg.optim.max_epoch == 150 and cfg.optim.T_max == 0
    assert cfg.modelarts.enable_modelarts is False and cfg.modelarts.need_modelarts_dataset_unzip is True
    assert cfg.export.file_format == "MINDIR" and cfg.data.per_batch_size == 64 and cfg.device.seed == 1
    assert cfg.optim.label_smooth is True and cfg.optim.ema is False and cfg.train.is_save_on_master is True
    assert cfg.optim.label_smooth_style == "pytorch" and cfg.model.init == "timm"  # trains; the zoo's are "zoo"
    assert cfg.explicit == frozenset() and cfg.warnings == () and cfg.profile == ""


def test_config_is_immutable_and_runtime_state_lives_elsewhere():
    cfg = load_config([])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 0.3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rank = 0
    changed = cfg.replace(lr=0.3)
    assert changed.optim.lr == 0.3 and cfg.optim.lr == 0.1 and not changed.is_explicit("lr")
    assert cfg.replace(_mark_explicit=True, data_dir="/d").is_explicit("data_dir")
    with pytest.raises(ConfigError, match="did you mean 'per_batch_size'"):
        cfg.replace(per_bach_size=3)
    with pytest.raises(ConfigError, match="lr"):
        cfg.replace(lr=-1)  # replaced values are validated as well


# --------------------------------------------------------------------------- precedence
def test_precedence_cli_over_yaml_over_defaults(tmp_path):
    path = _write(tmp_path, """
        lr: 0.5
        max_epoch: 7
        data_dir: /data/imagenet
    """)
    cfg = load_config(["--config_path", path, "--max_epoch", "9"])
    assert cfg.optim.lr == 0.5            # YAML over default
    assert cfg.optim.max_epoch == 9       # CLI over YAML
    assert cfg.data.data_dir == "/data/imagenet"
    assert cfg.optim.momentum == 0.9      # default
    assert cfg.is_explicit("lr") and cfg.is_explicit("max_epoch") and not cfg.is_explicit("momentum")
    assert cfg.config_path == path
    # config_path argument; --config_path on the command line wins over it
    assert load_config([], config_path=path).optim.lr == 0.5
    other = _write(tmp_path, "lr: 0.25\n", "other.yaml")
    assert load_config(["--config_path=" + other], config_path=path).optim.lr == 0.25


def test_key_value_and_key_equals_value_both_work():
    a = load_config(["--image_size", "32,32", "--per_batch_size", "8", "--data_dir", "/a b/c"])
    b = load_config(["--image_size=32,32", "--per_batch_size=8", "--data_dir=/a b/c"])
    assert a == b and a.data.data_dir == "/a b/c" and a.data.per_batch_size == 8


def test_yaml_value_equal_to_default_is_not_explicit(tmp_path):
    path = _write(tmp_path, "max_epoch: 150\nwarmup_epochs: 5\n")
    cfg = load_config([], config_path=path)
    assert not cfg.is_explicit("max_epoch") and not cfg.is_explicit("warmup_epochs")
    # the default file itself is not a user YAML
    assert load_config(["--config_path", DEFAULT_CONFIG_PATH]).explicit == frozenset()


def test_cli_value_equal_to_default_is_explicit():
    assert load_config(["--max_epoch=150"]).is_explicit("max_epoch")


def test_empty_user_yaml_is_fine(tmp_path):
    assert load_config([], config_path=_write(tmp_path, "")).optim.lr == 0.1


def test_zoo_style_yaml_with_help_documents_loads(tmp_path):
    # the model zoo's default_config.yaml: int flags, "224,224", eta_min 0 as an int, a help document
    path = _write(tmp_path, """
        device_target: "CPU"
        image_size: "224,224"
        is_distributed: 1
        eta_min: 0
        warmup_epochs: 5
        is_dynamic_loss_scale: 0
        label_smooth: 1
        is_save_on_master: 1
        lr: 0.3
        ---
        lr: "learning rate"
        ckpt_file: "Checkpoint file path."
    """)
    cfg = load_config([], config_path=path)
    assert cfg.optim.lr == 0.3 and cfg.device.is_distributed == "1" and cfg.data.image_size == "224,224"
    assert cfg.optim.eta_min == 0.0 and cfg.optim.is_dynamic_loss_scale is False and cfg.optim.label_smooth is True


# --------------------------------------------------------------------------- errors
def test_unknown_key_in_yaml_suggests(tmp_path):
    path = _write(tmp_path, "per_bach_size: 32\n")
    with pytest.raises(ConfigError) as e:
        load_config([], config_path=path)
    msg = str(e.value)
    assert "per_bach_size" in msg and path in msg and "per_batch_size" in msg


def test_unknown_key_on_cli_suggests():
    with pytest.raises(ConfigError) as e:
        load_config(["--per_bach_size=32"])
    assert "--per_bach_size" in str(e.value) and "did you mean --per_batch_size" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(["--epochs", "3"])
    assert "--max_epoch" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(["--per-batch-size", "3"])
    assert "--per_batch_size" in str(e.value)


def test_no_abbreviations_and_no_stray_arguments():
    with pytest.raises(ConfigError, match="--max_ep"):
        load_config(["--max_ep=3"])
    with pytest.raises(ConfigError, match="foo"):
        load_config(["foo"])


def test_cli_errors_do_not_exit():
    with pytest.raises(ConfigError, match="max_epoch"):
        load_config(["--max_epoch"])  # missing value: argparse error -> ConfigError


def test_help_exits_zero_and_shows_help_texts(capsys):
    with pytest.raises(SystemExit) as e:
        load_config(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--per_batch_size" in out and "--config_path" in out and "Batch size per device" in out


@pytest.mark.parametrize("argv,key", [
    (["--max_epoch=abc"], "--max_epoch"),
    (["--max_epoch=1.5"], "--max_epoch"),
    (["--lr=fast"], "--lr"),
    (["--lr=nan"], "--lr"),
    (["--enable_modelarts=maybe"], "--enable_modelarts"),
])
def test_wrong_type_on_cli(argv, key):
    with pytest.raises(ConfigError) as e:
        load_config(argv)
    assert key in str(e.value)


def test_wrong_type_in_yaml(tmp_path):
    path = _write(tmp_path, "max_epoch: [1, 2]\n")
    with pytest.raises(ConfigError) as e:
        load_config([], config_path=path)
    assert "max_epoch" in str(e.value) and path in str(e.value)
    path = _write(tmp_path, "lr: true\n", "b.yaml")
    with pytest.raises(ConfigError, match="lr"):
        load_config([], config_path=path)
    path = _write(tmp_path, "data_dir: {a: 1}\n", "c.yaml")
    with pytest.raises(ConfigError, match="data_dir"):
        load_config([], config_path=path)


def test_float_keys_accept_ints_and_exponents(tmp_path):
    cfg = load_config(["--eta_min=1e-5", "--warmup_epochs=0.5", "--lr=1"])
    assert cfg.optim.eta_min == pytest.approx(1e-5) and isinstance(cfg.optim.eta_min, float)
    assert cfg.optim.warmup_epochs == 0.5
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    # YAML 1.1 reads 1e-5 (no dot) as a string; it is still accepted for a float key.
    path = _write(tmp_path, "eta_min: 1e-5\nwarmup_epochs: 2\n")
    cfg = load_config([], config_path=path)
    assert cfg.optim.eta_min == pytest.approx(1e-5) and cfg.optim.warmup_epochs == 2.0
    assert isinstance(cfg.optim.warmup_epochs, float)


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("True", True), ("YES", True), ("1", True), ("on", True),
    ("false", False), ("False", False), ("no", False), ("0", False), ("OFF", False),
])
def test_bool_parsing(text, expected):
    assert load_config(["--need_modelarts_dataset_unzip=" + text]).modelarts.need_modelarts_dataset_unzip is expected


def test_bool_flag_alone_means_true(tmp_path):
    assert load_config(["--enable_modelarts"]).modelarts.enable_modelarts is True
    assert load_config(["--ema", "--lr=0.2"]).optim.ema is True
    path = _write(tmp_path, "need_modelarts_dataset_unzip: no\n")
    assert load_config([], config_path=path).modelarts.need_modelarts_dataset_unzip is False


def test_bad_choice_lists_choices_without_silly_suggestion():
    with pytest.raises(ConfigError) as e:
        load_config(["--device_target=TPU"])
    msg = str(e.value)
    assert "TPU" in msg and "Ascend" in msg and "GPU" in msg and "CPU" in msg
    assert "did you mean" not in msg


def test_bad_choice_suggests_near_match(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(["--arch=cspdarknet"])
    assert "did you mean 'cspdarknet53'" in str(e.value)
    path = _write(tmp_path, "lr_scheduler: cosine\n")
    with pytest.raises(ConfigError) as e:
        load_config([], config_path=path)
    assert "lr_scheduler" in str(e.value) and path in str(e.value)


def test_choices_with_mixed_types_and_case():
    assert load_config(["--is_distributed=1"]).device.is_distributed == "1"
    assert load_config(["--is_distributed", "0"]).device.is_distributed == "0"
    assert load_config(["--is_distributed=AUTO"]).device.is_distributed == "auto"
    assert load_config(["--device_target=gpu"]).device.device_target == "GPU"
    with pytest.raises(ConfigError, match="is_distributed"):
        load_config(["--is_distributed=2"])


@pytest.mark.parametrize("argv,key", [
    (["--lr=-1"], "--lr"), (["--lr", "-1"], "--lr"), (["--max_epoch=0"], "--max_epoch"),
    (["--warmup_epochs=-3"], "--warmup_epochs"), (["--lr_epochs=a,b"], "--lr_epochs"),
    (["--num_classes=0"], "--num_classes"), (["--seed=-1"], "--seed"), (["--ckpt_interval=0"], "--ckpt_interval"),
    (["--val_interval=0"], "--val_interval"), (["--per_batch_size=0"], "--per_batch_size"),
    (["--momentum=1"], "--momentum"), (["--re_prob=1.5"], "--re_prob"), (["--image_size=0,32"], "--image_size"),
    (["--image_size=big"], "--image_size"), (["--crop_pct=1.2"], "--crop_pct"), (["--log_interval=0"], "--log_interval"),
    (["--label_smooth_factor=1"], "--label_smooth_factor"), (["--crop_scale_min=0"], "--crop_scale_min"),
])
def test_out_of_range_values_are_errors_naming_the_key(argv, key):
    with pytest.raises(ConfigError) as e:
        load_config(argv)
    assert key in str(e.value) and "must be" in str(e.value)


def test_cross_key_rules():
    with pytest.raises(ConfigError, match="label_smooth needs num_classes >= 2"):
        load_config(["--num_classes=1"])
    assert load_config(["--num_classes=1", "--label_smooth=0"]).model.num_classes == 1


def test_odd_but_legitimate_values_are_warnings():
    cfg = load_config(["--max_epoch=2", "--ckpt_interval=5", "--lr_scheduler=multistep", "--lr_epochs=1,30"])
    text = " | ".join(cfg.warnings)
    assert "warmup_epochs=5 is longer than max_epoch=2" in text
    assert "ckpt_interval=5 is longer than max_epoch=2" in text
    assert "lr_epochs milestones 30 are at or after max_epoch=2" in text
    assert load_config([]).warnings == ()


def test_missing_config_file(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as e:
        load_config(["--config_path", missing])
    assert missing in str(e.value)


def test_unparsable_yaml(tmp_path):
    path = _write(tmp_path, "lr: [0.1\nmax_epoch: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config([], config_path=path)
    assert path in str(e.value)


def test_duplicate_and_non_mapping_yaml(tmp_path):
    with pytest.raises(ConfigError, match="duplicate"):
        load_config([], config_path=_write(tmp_path, "lr: 0.1\nlr: 0.2\n", "d.yaml"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config([], config_path=_write(tmp_path, "- 1\n- 2\n", "l.yaml"))


# --------------------------------------------------------------------------- profiles
def test_profile_respects_explicit_keys(tmp_path):
    path = _write(tmp_path, "num_classes: 10\nper_batch_size: 64\n")
    cfg = load_config(["--config_path", path, "--max_epoch=2"])
    demo = yaml.safe_load(open(os.path.join(PROFILES_DIR, "demo.yaml"), encoding="utf-8"))
    out, changed = cfg.with_profile("demo")
    assert out.optim.max_epoch == 2 and "max_epoch" not in changed          # CLI wins
    assert out.model.num_classes == 10 and "num_classes" not in changed     # user YAML wins
    # same as the default in the user YAML: not explicit, so the profile applies
    assert out.data.per_batch_size == demo["per_batch_size"]
    assert out.data.image_size == demo["image_size"] and changed["image_size"] == demo["image_size"]
    assert out.optim.lr_scheduler == demo["lr_scheduler"] and out.profile == "demo"
    with pytest.raises(ConfigError, match="did you mean 'demo'"):
        cfg.with_profile("dmeo")


def test_profiles_are_validated(tmp_path, monkeypatch):
    monkeypatch.setattr(config_mod, "PROFILES_DIR", str(tmp_path))
    _write(tmp_path, "max_epok: 1\n", "bad.yaml")
    with pytest.raises(ConfigError, match="max_epok"):
        load_config([]).with_profile("bad")
    _write(tmp_path, "max_epoch: x\n", "worse.yaml")
    with pytest.raises(ConfigError, match="max_epoch"):
        load_config([]).with_profile("worse")


def test_save_config_round_trip(tmp_path):
    cfg = load_config(["--lr=0.2", "--is_distributed=1", "--eta_min=1e-6", "--image_size=32,32"])
    cfg, _ = cfg.with_profile("demo")
    out = tmp_path / "sub" / "config.yaml"
    save_config(cfg, out)
    assert out.exists() and not [p for p in os.listdir(out.parent) if p.endswith(".tmp")]
    data = yaml.safe_load(out.read_text())
    assert data["lr"] == 0.2 and set(data) == set(cfg.flat())
    back = load_config(["--config_path", str(out)])
    assert back.flat() == cfg.flat()
    for k, v in cfg.flat().items():
        assert type(back.flat()[k]) is type(v), k


def test_old_saved_config_with_runtime_section_loads(tmp_path):
    # configs saved by earlier versions carried a "runtime:" mapping; it is ignored
    path = _write(tmp_path, "lr: 0.3\nruntime:\n  rank: 0\n")
    assert load_config([], config_path=path).optim.lr == 0.3


# --------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("value,env,expected", [
    (1, {}, True),
    (0, {"RANK_SIZE": "8"}, False),
    (True, {}, True),
    ("1", {}, True),
    ("0", {"MS_ROLE": "MS_WORKER"}, False),
    ("auto", {}, False),
    ("auto", {"RANK_SIZE": "1"}, False),
    ("auto", {"RANK_SIZE": "8"}, True),
    ("auto", {"RANK_SIZE": ""}, False),
    ("auto", {"MS_ROLE": "MS_WORKER"}, True),
    ("auto", {"MS_WORKER_NUM": "4"}, True),
    ("auto", {"MS_WORKER_NUM": "1"}, False),
])
def test_resolve_is_distributed(value, env, expected):
    assert resolve_is_distributed(value, env) is expected


def test_resolve_is_distributed_errors():
    with pytest.raises(ConfigError, match="is_distributed"):
        resolve_is_distributed(2, {})
    with pytest.raises(ConfigError, match="RANK_SIZE"):
        resolve_is_distributed("auto", {"RANK_SIZE": "eight"})


def test_config_pickles_and_copies():
    import copy
    import pickle
    cfg, _ = load_config(["--lr=0.3"]).with_profile("demo")
    assert isinstance(cfg, Config)
    for other in (pickle.loads(pickle.dumps(cfg)), copy.deepcopy(cfg)):
        assert other == cfg and other.is_explicit("lr") and other.profile == "demo"


# --------------------------------------------------------------------------- per-script keys, aliases, help
def _help(script, capsys):
    from unittest import mock

    with pytest.raises(SystemExit) as e, mock.patch.dict(os.environ, {"COLUMNS": "1000"}):  # one line per option
        load_config(["--help"], script=script)
    assert e.value.code == 0
    return capsys.readouterr().out


def test_each_script_takes_its_own_keys_and_names_the_users_of_others():
    from src.config import ALIASES, SCRIPTS, script_keys, used_by

    for script in SCRIPTS:
        for name in config_mod._KEYS:
            if script in used_by(name) or name in ALIASES.get(script, {}):
                assert name in script_keys(script) + list(ALIASES.get(script, {}))
                continue
            with pytest.raises(ConfigError) as e:
                load_config([f"--{name}=1"], script=script)
            assert str(e.value).startswith(f"command line: --{name} is not an option of {script}.py; it is used by ")
            assert all(f"{user}.py" in str(e.value) for user in used_by(name))
    assert "max_epoch" not in script_keys("eval") and "ckpt_file" not in script_keys("train")
    assert set(script_keys(None)) == set(config_mod._KEYS)
    with pytest.raises(ConfigError, match=r"unknown option --per_bach_size \(did you mean --per_batch_size\?\)"):
        load_config(["--per_bach_size=2"], script="eval")


def test_help_lists_only_the_scripts_keys_grouped_with_defaults_modelarts_last(capsys):
    from src.config import SCRIPTS, script_keys

    for script in SCRIPTS:
        out = _help(script, capsys)
        shown = set(re.findall(r"^  (?:-h, )?--(\w+)", out, re.M))
        assert shown == set(script_keys(script)) | {"config_path", "help"}, script
        sections = [line[:-1] for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
        assert sections[-1] == "modelarts" and "options" in sections[0], sections
        assert out.startswith(f"usage: {script}.py")
    out = _help("train", capsys)
    assert "(default: 64)" in out and "{auto,O0,O2,O3}" in out and "(default: cosine_annealing)" in out
    assert "  --pretrained STR" in out and "  --ckpt_file" not in out
    assert "--ckpt_file STR, --pretrained STR" in _help("eval", capsys)


@pytest.mark.parametrize("script", ["eval", "export", "predict"])
def test_pretrained_is_ckpt_files_alias_for_the_scripts_that_load_one(script):
    cfg = load_config(["--pretrained", "a.ckpt"], script=script)
    assert cfg.weights.ckpt_file == "a.ckpt" and cfg.is_explicit("ckpt_file") and cfg.weights.pretrained == ""
    assert load_config(["--ckpt_file=b.ckpt"], script=script).weights.ckpt_file == "b.ckpt"
    with pytest.raises(ConfigError, match="--ckpt_file and --pretrained are one option"):
        load_config(["--pretrained=a.ckpt", "--ckpt_file=a.ckpt"], script=script)
    assert load_config(["--pretrained=w.ckpt"], script="train").weights.pretrained == "w.ckpt"  # warm start


def test_a_training_config_loads_for_eval_its_other_keys_ignored(tmp_path):
    trained = load_config(["--pretrained=warm.ckpt", "--lr=0.3", "--max_epoch=2", "--warmup_epochs=9",
                           "--image_size=32,32", "--arch=cspdarknet_tiny"], script="train")
    save_config(trained, tmp_path / "config.yaml")
    cfg = load_config([f"--config_path={tmp_path / 'config.yaml'}", "--ckpt_file=best.ckpt"], script="eval")
    assert cfg.data.image_size == "32,32" and cfg.model.arch == "cspdarknet_tiny"  # eval's keys are used
    assert cfg.weights.ckpt_file == "best.ckpt" and cfg.weights.pretrained == ""   # train's warm start is not
    assert cfg.optim.lr == 0.1 and not cfg.is_explicit("lr") and cfg.warnings == ()  # ignored: the defaults
    assert cfg.script == "eval"
    demo, changed = cfg.with_profile("demo")
    assert "lr" not in changed and demo.optim.lr == 0.1 and changed["per_batch_size"] == 32


def test_benchmark_takes_image_size_with_img_size_as_alias_and_names_other_scripts_keys(capsys):
    import benchmark

    parser = benchmark.build_parser()
    assert parser.parse_args(["--img_size", "64"]).image_size == 64
    assert parser.parse_args(["--image_size=96"]).image_size == 96
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--lr=0.1"])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("error: command line: --lr is not an option of benchmark.py; it is used by "
                                       "train.py\n")
    with pytest.raises(SystemExit):
        parser.parse_args(["--stesp=2"])
    assert "did you mean --steps?" in capsys.readouterr().err


# --------------------------------------------------------------------------- resume
def _run_folder(tmp_path, *argv):
    cfg = load_config(list(argv), script="train")
    run = tmp_path / "run"
    save_config(cfg, run / "config.yaml")
    (run / "ckpt_0").mkdir()
    (run / "ckpt_0" / "0-1_2.ckpt").write_bytes(b"")
    return run, cfg


def test_resume_loads_the_runs_config_and_records_what_the_command_line_changes(tmp_path):
    run, trained = _run_folder(tmp_path, "--arch=cspdarknet_tiny", "--image_size=32,32", "--max_epoch=6",
                               "--lr_scheduler=cosine_step", "--data_dir=/data/x")
    for target in (run, run / "ckpt_0", run / "ckpt_0" / "0-1_2.ckpt"):
        cfg = load_config([f"--resume={target}"], script="train")
        assert {k: v for k, v in cfg.flat().items() if k != "resume"} == \
               {k: v for k, v in trained.flat().items() if k != "resume"}
        assert cfg.resumed_from == str(run / "config.yaml") and cfg.changed_on_resume == {}
        assert cfg.is_explicit("arch") and not cfg.is_explicit("lr")  # as if the saved YAML were --config_path
    cfg = load_config([f"--resume={run}", "--max_epoch=8", "--lr=0.1", "--image_size=64,64"], script="train")
    assert cfg.changed_on_resume == {"max_epoch": (6, 8), "image_size": ("32,32", "64,64")}  # lr: 0.1 as saved
    assert cfg.model.arch == "cspdarknet_tiny" and cfg.optim.lr_scheduler == "cosine_step"
    other = tmp_path / "over.yaml"
    other.write_text("ckpt_interval: 3\nlr: 0.2\n")
    cfg = load_config([f"--resume={run}", f"--config_path={other}"], script="train")
    assert cfg.changed_on_resume == {"ckpt_interval": (1, 3), "lr": (0.1, 0.2)}
    assert cfg.with_profile("demo") == (cfg, {})  # the run's profile was applied when it started


def test_resume_without_a_run_config_keeps_todays_behaviour_with_a_warning(tmp_path):
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes(b"")
    cfg = load_config([f"--resume={loose}", "--max_epoch=3"], script="train")
    assert cfg.resumed_from == "" and cfg.changed_on_resume == {} and cfg.optim.max_epoch == 3
    assert cfg.flat()["lr"] == load_config([]).optim.lr
    assert any(w.startswith(f"resume={loose}: no config.yaml") for w in cfg.warnings)
    empty_run = tmp_path / "run2" / "ckpt_0"
    empty_run.mkdir(parents=True)
    assert load_config([f"--resume={empty_run}"], script="train").warnings  # a run folder without config.yaml
    assert load_config([f"--resume={tmp_path / 'nothing'}"], script="train").warnings == ()  # the trainer refuses


def test_a_resumed_runs_config_is_checked_like_any_yaml(tmp_path):
    run, _ = _run_folder(tmp_path)
    (run / "config.yaml").write_text("max_epoch: 0\n")
    with pytest.raises(ConfigError, match=r"max_epoch in .*run/config.yaml: must be >= 1"):
        load_config([f"--resume={run}"], script="train")


# --------------------------------------------------------------------------- bounds, with the reason
@pytest.mark.parametrize("argv, message", [
    (["--image_size=4097,224"], "--image_size: must be at most 4096 per side (a training step at 4096 x 4096"),
    (["--image_size=100000"], "--image_size: must be at most 4096 per side"),
    (["--num_classes=100001"], "--num_classes: must be <= 100000 (a larger classifier alone holds over 10^8"),
    (["--max_epoch=10001"], "--max_epoch: must be <= 10000 (the LR schedule holds one value per step"),
    (["--width=4097"], "--width: must be <= 4096 (a training step"),
    (["--height=99999999999"], "--height: must be <= 4096"),
    (["--export_batch_size=1025"], "--export_batch_size: must be <= 1024 (a deployment batch"),
    (["--export_batch_size=1024", "--width=4096", "--height=4096"],
     "export_batch_size=1024 x 3 x height=4096 x width=4096 float32 is 192.0 GiB; the exported input may be at most"),
])
def test_sizes_that_cannot_be_allocated_are_refused_with_the_reason(argv, message):
    with pytest.raises(ConfigError) as e:
        load_config(argv)
    assert message in str(e.value)


def test_the_largest_allowed_sizes_load():
    cfg = load_config(["--image_size=4096,4096", "--num_classes=100000", "--max_epoch=10000", "--width=4096",
                       "--height=4096", "--export_batch_size=16"])
    assert cfg.data.image_size == "4096,4096" and cfg.export.width == 4096


def test_workers_above_four_times_the_cores_are_refused(monkeypatch):
    monkeypatch.setattr(config_mod, "available_cpus", lambda: 3)
    assert load_config(["--num_parallel_workers=12"]).data.num_parallel_workers == 12  # capped later, warned
    with pytest.raises(ConfigError) as e:
        load_config(["--num_parallel_workers=13"])
    assert str(e.value).startswith("--num_parallel_workers: must be <= 12 (4 x the 3 core(s) this process may use")


# --------------------------------------------------------------------------- hostile YAML, long values
def _alias_bomb(levels):
    keys = ["lr", "eta_min", "lr_gamma", "momentum", "weight_decay", "loss_scale", "ema_decay", "re_prob",
            "mixup_prob"]
    lines = ['%s: &a0 ["xxxxxxxxxxxxxxxxxxxxxxxxxxx"]' % keys[0]]
    lines += ["%s: &a%d [%s]" % (keys[i], i, ",".join(["*a%d" % (i - 1)] * 9)) for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_yaml_aliases_are_refused_before_anything_expands(tmp_path):
    import resource

    path = _write(tmp_path, _alias_bomb(8))
    assert os.path.getsize(path) < 600
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError) as e:
        load_config([], config_path=path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing grew
    assert str(e.value) == (f"cannot parse YAML file {path}: aliases (*name) are not accepted in config files "
                            "(line 2, column 15)")
    with pytest.raises(ConfigError, match="aliases"):
        load_config([], config_path=_write(tmp_path, "lr: &x 0.2\neta_min: *x\n", "small.yaml"))
    assert load_config([], config_path=_write(tmp_path, "lr: &x 0.2\n", "anchor.yaml")).optim.lr == 0.2


@pytest.mark.parametrize("text, message", [
    ("lr: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 8 levels (line 1, column "),
    ("max_epoch: " + "1" * 5000 + "\n", "Exceeds the limit (4300 digits)"),
    ("data_dir: '" + "a" * (1 << 20) + "'\n", "is larger than 1 MiB; a config file holds one value per key"),
])
def test_hostile_yaml_is_one_short_error(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config([], config_path=path)
    assert message in str(e.value) and path in str(e.value) and len(str(e.value)) < 600
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("argv", [["--data_dir", "x" * 100_000, "--lr", "y" * 100_000], ["--lr=" + "9" * 100_000],
                                  ["--device_target=" + "z" * 100_000], ["--" + "w" * 100_000 + "=1"]])
def test_error_lines_quote_long_values_cut(argv):
    with pytest.raises(ConfigError) as e:
        load_config(argv)
    assert len(str(e.value)) < 400 and "characters)" in str(e.value)


def test_long_yaml_values_are_cut_in_the_error(tmp_path):
    path = _write(tmp_path, "data_dir: ['" + "a" * 500_000 + "']\n")
    with pytest.raises(ConfigError) as e:
        load_config([], config_path=path)
    assert str(e.value).startswith(f"data_dir in {path}: expected a string, got ['aaa") and len(str(e.value)) < 400


# --------------------------------------------------------------------------- launcher variables
@pytest.mark.parametrize("env, message", [
    ({"RANK_SIZE": "eight"}, "environment variable RANK_SIZE='eight' is not an integer"),
    ({"DEVICE_ID": "-1"}, "environment variable DEVICE_ID=-1 is out of range: must be in [0, 4095]"),
    ({"DEVICE_ID": "4096"}, "environment variable DEVICE_ID=4096 is out of range"),
    ({"RANK_SIZE": "0"}, "environment variable RANK_SIZE=0 is out of range: must be in [1, 65536]"),
    ({"RANK_ID": "8", "RANK_SIZE": "8"}, "environment variable RANK_ID=8 is out of range: must be below RANK_SIZE=8"),
    ({"RANK_ID": "1.5"}, "environment variable RANK_ID='1.5' is not an integer"),
    ({"MS_WORKER_NUM": "x" * 10_000}, "environment variable MS_WORKER_NUM='xxx"),
])
def test_bad_launcher_variables_are_one_error_at_load(env, message):
    with pytest.raises(ConfigError) as e:
        load_config([], environ=env)
    assert str(e.value).startswith(message) and len(str(e.value)) < 300
    with pytest.raises(ConfigError):  # also where they are read: device set-up and ModelArts
        config_mod.launch_env(env)


def test_good_launcher_variables():
    env = {"DEVICE_ID": "7", "RANK_ID": " 3 ", "RANK_SIZE": "8", "MS_WORKER_NUM": ""}
    assert config_mod.launch_env(env) == {"DEVICE_ID": 7, "RANK_ID": 3, "RANK_SIZE": 8}
    assert load_config([], environ=env).device.is_distributed == "auto"


# --------------------------------------------------------------------------- one resolver per "auto"
def test_amp_and_sink_resolvers_take_exactly_the_configs_choices():
    from src.config import resolve_amp_level, resolve_sink_mode

    choices = {name: {f.name: f for f in dataclasses.fields(SECTIONS[s])}[name].metadata["choices"]
               for s, name in (("device", "amp_level"), ("train", "dataset_sink_mode"), ("device", "device_target"))}
    assert [resolve_amp_level(v, "CPU") for v in choices["amp_level"]] == ["O0", "O0", "O2", "O3"]
    assert [resolve_amp_level("auto", t) for t in ("Ascend", "GPU")] == ["O2", "O2"]
    for bad in ("O1", "", None, "fp16"):
        with pytest.raises(ConfigError, match="amp_level"):
            resolve_amp_level(bad, "GPU")
    assert [resolve_sink_mode(v, "GPU") for v in choices["dataset_sink_mode"]] == [True, False, True]
    assert resolve_sink_mode("auto", "CPU") is False and resolve_sink_mode(True, "CPU") is True
    with pytest.raises(ConfigError, match="dataset_sink_mode"):
        resolve_sink_mode("sometimes", "CPU")
    from src.utils.runtime import DEVICE_PREFERENCE  # resolve_device_target's accepted values (needs MindSpore)
    assert set(choices["device_target"]) == {"auto", *DEVICE_PREFERENCE}


def test_auto_values_are_resolved_only_in_the_config():
    """amp_level and dataset_sink_mode "auto" are parsed by src.config's resolvers alone: the modules that use
    them (they import MindSpore: read, not imported) call those and define none of their own."""
    for module in ("src/train_step.py", "src/sink.py", "src/trainer.py"):
        text = open(os.path.join(REPO, module), encoding="utf-8").read()
        assert "def resolve_amp" not in text and "def resolve_sink" not in text, module
        assert '== "auto"' not in text and "== 'auto'" not in text, module
    trainer = open(os.path.join(REPO, "src/trainer.py"), encoding="utf-8").read()
    assert "resolve_amp_level(" in trainer and "resolve_sink_mode(" in trainer
