"""Tests of model_utils/config.py and default_config.yaml (no MindSpore needed)."""

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from model_utils import config as config_mod
from model_utils.config import (DEFAULT_CONFIG_PATH, Config, ConfigError, load_config,
                                parse_int_list, resolve_is_distributed, save_config)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _docs():
    with open(DEFAULT_CONFIG_PATH, "r", encoding="utf-8") as f:
        return list(yaml.safe_load_all(f))


def _write(tmp_path, text, name="user.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(p)


# --------------------------------------------------------------------------- the default file
def test_default_file_has_three_documents_and_help_for_every_key():
    docs = _docs()
    assert len(docs) == 3
    cfg, helps, choices = docs
    missing = [k for k in cfg if not str(helps.get(k, "")).strip()]
    assert not missing, "keys without help text: %s" % missing
    assert set(helps) <= set(cfg), "help for unknown keys: %s" % (set(helps) - set(cfg))
    assert set(choices) <= set(cfg)
    for k, allowed in choices.items():
        assert cfg[k] in allowed, k


def test_default_values_and_types():
    cfg = load_config([])
    assert cfg.arch == "cspdarknet53"
    assert cfg.device_target == "auto" and cfg.is_distributed == "auto"
    assert cfg.image_size == "224,224" and cfg.num_classes == 1000
    assert cfg.lr == 0.1 and cfg.lr_scheduler == "cosine_annealing"
    assert isinstance(cfg.eta_min, float) and isinstance(cfg.warmup_epochs, float)
    assert cfg.warmup_epochs == 5.0 and cfg.max_epoch == 150 and cfg.T_max == 150
    assert cfg.enable_modelarts is False and cfg.need_modelarts_dataset_unzip is True
    assert cfg.file_format == "MINDIR" and cfg.per_batch_size == 64 and cfg.seed == 1
    assert cfg.profiles["demo"]["num_classes"] == 10
    assert "demo" not in cfg.to_dict()
    assert cfg.explicit_keys() == []


def test_import_has_no_side_effects():
    code = "import model_utils.config, model_utils.device_adapter, model_utils.moxing_adapter"
    out = subprocess.run([sys.executable, "-c", code, "--max_epoch=abc"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""


# --------------------------------------------------------------------------- precedence
def test_precedence_cli_over_yaml_over_defaults(tmp_path):
    path = _write(tmp_path, """
        lr: 0.5
        max_epoch: 7
        data_dir: /data/imagenet
    """)
    cfg = load_config(["--config_path", path, "--max_epoch", "9"])
    assert cfg.lr == 0.5            # YAML over default
    assert cfg.max_epoch == 9       # CLI over YAML
    assert cfg.data_dir == "/data/imagenet"
    assert cfg.momentum == 0.9      # default
    assert cfg.is_explicit("lr") and cfg.is_explicit("max_epoch") and not cfg.is_explicit("momentum")
    # config_path argument; --config_path on the command line wins over it
    assert load_config([], config_path=path).lr == 0.5
    other = _write(tmp_path, "lr: 0.25\n", "other.yaml")
    assert load_config(["--config_path=" + other], config_path=path).lr == 0.25


def test_yaml_value_equal_to_default_is_not_explicit(tmp_path):
    path = _write(tmp_path, "max_epoch: 150\nwarmup_epochs: 5\n")
    cfg = load_config([], config_path=path)
    assert not cfg.is_explicit("max_epoch") and not cfg.is_explicit("warmup_epochs")
    # the default file itself is not a user YAML
    assert load_config(["--config_path", DEFAULT_CONFIG_PATH]).explicit_keys() == []


def test_cli_value_equal_to_default_is_explicit():
    assert load_config(["--max_epoch=150"]).is_explicit("max_epoch")


def test_empty_user_yaml_is_fine(tmp_path):
    assert load_config([], config_path=_write(tmp_path, "")).lr == 0.1


def test_user_yaml_may_keep_help_documents(tmp_path):
    path = _write(tmp_path, "lr: 0.3\n---\nlr: some help\n---\narch: [x]\n")
    assert load_config([], config_path=path).lr == 0.3


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
    with pytest.raises(ConfigError, match="profile"):
        load_config(["--demo=1"])


def test_cli_errors_do_not_exit():
    with pytest.raises(ConfigError, match="max_epoch"):
        load_config(["--max_epoch"])  # missing value: argparse error -> ConfigError


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as e:
        load_config(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--per_batch_size" in out and "--config_path" in out


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
    assert cfg.eta_min == pytest.approx(1e-5) and isinstance(cfg.eta_min, float)
    assert cfg.warmup_epochs == 0.5
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    # YAML 1.1 reads 1e-5 (no dot) as a string; it is still accepted for a float key.
    path = _write(tmp_path, "eta_min: 1e-5\nwarmup_epochs: 2\n")
    cfg = load_config([], config_path=path)
    assert cfg.eta_min == pytest.approx(1e-5) and cfg.warmup_epochs == 2.0
    assert isinstance(cfg.warmup_epochs, float)


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("True", True), ("YES", True), ("1", True), ("on", True),
    ("false", False), ("False", False), ("no", False), ("0", False), ("OFF", False),
])
def test_bool_parsing(text, expected):
    assert load_config(["--need_modelarts_dataset_unzip=" + text]).need_modelarts_dataset_unzip is expected


def test_bool_flag_alone_means_true(tmp_path):
    assert load_config(["--enable_modelarts"]).enable_modelarts is True
    path = _write(tmp_path, "need_modelarts_dataset_unzip: no\n")
    assert load_config([], config_path=path).need_modelarts_dataset_unzip is False


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
    assert load_config(["--is_distributed=1"]).is_distributed == 1
    assert load_config(["--is_distributed", "0"]).is_distributed == 0
    assert load_config(["--is_distributed=AUTO"]).is_distributed == "auto"
    assert load_config(["--device_target=gpu"]).device_target == "GPU"
    assert load_config(["--ema=true"]).ema == 1
    with pytest.raises(ConfigError, match="is_distributed"):
        load_config(["--is_distributed=2"])


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


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


# --------------------------------------------------------------------------- Config object
def test_config_namespace_and_runtime_attributes():
    cfg = load_config([])
    cfg.rank = 0
    cfg.outputs_dir = "outputs/x"
    assert cfg.rank == 0 and cfg.to_dict()["rank"] == 0
    assert "rank" in cfg and cfg["lr"] == 0.1 and cfg.get("nope", 3) == 3
    with pytest.raises(AttributeError, match="per_batch_size"):
        _ = cfg.per_bach_size


def test_profile_respects_explicit_keys(tmp_path):
    path = _write(tmp_path, "num_classes: 5\nper_batch_size: 64\n")
    cfg = load_config(["--config_path", path, "--max_epoch=2"])
    changed = cfg.apply_profile("demo")
    demo = cfg.profiles["demo"]
    assert cfg.max_epoch == 2 and "max_epoch" not in changed          # CLI wins
    assert cfg.num_classes == 5 and "num_classes" not in changed      # user YAML wins
    # same as the default in the user YAML: not explicit, so the profile applies
    assert cfg.per_batch_size == demo["per_batch_size"]
    assert cfg.image_size == demo["image_size"] and changed["image_size"] == demo["image_size"]
    assert cfg.lr_scheduler == demo["lr_scheduler"]
    assert cfg.applied_profile == changed and cfg.applied_profile_name == "demo"
    with pytest.raises(ConfigError, match="demo"):
        cfg.apply_profile("dmeo")


def test_user_yaml_can_redefine_profile_and_profiles_are_validated(tmp_path):
    path = _write(tmp_path, "demo:\n  max_epoch: 1\n")
    cfg = load_config([], config_path=path)
    assert cfg.profiles["demo"] == {"max_epoch": 1}
    with pytest.raises(ConfigError, match="max_epok"):
        load_config([], config_path=_write(tmp_path, "demo:\n  max_epok: 1\n", "p.yaml"))
    with pytest.raises(ConfigError, match="max_epoch"):
        load_config([], config_path=_write(tmp_path, "demo:\n  max_epoch: x\n", "q.yaml"))


def test_save_config_round_trip(tmp_path):
    cfg = load_config(["--lr=0.2", "--is_distributed=1", "--eta_min=1e-6"])
    cfg.apply_profile("demo")
    cfg.rank = 3
    cfg.logger = object()           # not a plain value: skipped
    cfg.milestones = (1, 2)
    out = tmp_path / "sub" / "config.yaml"
    save_config(cfg, out)
    assert out.exists() and not [p for p in os.listdir(out.parent) if p.endswith(".tmp")]
    data = yaml.safe_load(out.read_text())
    assert data["lr"] == 0.2 and "demo" not in data and "logger" not in data["runtime"]
    assert data["runtime"]["rank"] == 3 and data["runtime"]["milestones"] == [1, 2]
    back = load_config(["--config_path", str(out)])
    for k in cfg.config_keys():
        assert getattr(back, k) == getattr(cfg, k), k
        assert type(getattr(back, k)) is type(getattr(cfg, k)), k
    # a resolved runtime value (e.g. is_distributed=True set by a script) reloads too
    cfg.is_distributed = True
    cfg.device_target = "CPU"
    save_config(cfg, out)
    back = load_config(["--config_path", str(out)])
    assert back.is_distributed == 1 and back.device_target == "CPU"


# --------------------------------------------------------------------------- helpers
def test_parse_int_list():
    assert parse_int_list("224,224") == [224, 224]
    assert parse_int_list(" 30, 60 ,90 ") == [30, 60, 90]
    assert parse_int_list(64) == [64]
    assert parse_int_list([1, 2], length=2) == [1, 2]
    for bad in ("224x224", "", "1,,2", "a,b", 1.5):
        with pytest.raises(ConfigError, match="image_size"):
            parse_int_list(bad, key="image_size")
    with pytest.raises(ConfigError, match="image_size"):
        parse_int_list("224", key="image_size", length=2)


@pytest.mark.parametrize("value,env,expected", [
    (1, {}, True),
    (0, {"RANK_SIZE": "8"}, False),
    (True, {}, True),
    ("1", {}, True),
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


def test_config_is_plain_class():
    assert isinstance(load_config([]), Config)
    assert config_mod.RUNTIME_KEY == "runtime"


def test_config_pickles_and_copies():
    import copy
    import pickle
    cfg = load_config(["--lr=0.3"])
    cfg.apply_profile("demo")
    cfg.rank = 1
    for other in (pickle.loads(pickle.dumps(cfg)), copy.deepcopy(cfg)):
        assert other == cfg and other.rank == 1 and other.is_explicit("lr")
        assert other.applied_profile_name == "demo" and other.profiles == cfg.profiles
