"""Configuration loading and validation.

The repository's ``default_config.yaml`` holds three YAML documents: the config, the help text of
every key and the allowed values (choices) of keys with a closed set of values. ``load_config``
merges, from lowest to highest precedence, that file, an optional user YAML (``--config_path``) and
the command line, and validates the result strictly:

* the type of every key is the type of its value in the repository's default file (an int is
  accepted where a float is expected, a YAML ``null`` where a string is expected becomes ``""``);
* unknown keys, values of the wrong type and values outside the choices raise ``ConfigError``
  naming the key and the source, with a "did you mean" suggestion where one is close.

Importing this module has no side effects: nothing is parsed or printed until ``load_config`` runs.
"""

import argparse
import difflib
import math
import os
import sys
import tempfile

import yaml

__all__ = [
    "ConfigError",
    "Config",
    "DEFAULT_CONFIG_PATH",
    "RUNTIME_KEY",
    "load_config",
    "save_config",
    "parse_int_list",
    "resolve_is_distributed",
]

DEFAULT_CONFIG_PATH = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "default_config.yaml"))

# Top-level key that save_config writes the runtime attributes under; load_config ignores it.
RUNTIME_KEY = "runtime"

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _parse_bool(value):
    """True/False for a bool, 0/1, or a true/false/yes/no/on/off/1/0 string (any case); else None."""
    if isinstance(value, bool):
        return value
    if _is_int(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        s = value.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    return None


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message names the key, file or value."""


# --------------------------------------------------------------------------- YAML reading
class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys in a mapping (PyYAML silently keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % (key,), key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml_documents(path):
    """Return the list of YAML documents in ``path`` (``None`` documents become ``{}``)."""
    if not os.path.exists(path):
        raise ConfigError("config file not found: %s" % path)
    if not os.path.isfile(path):
        raise ConfigError("config path is not a file: %s" % path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            docs = list(yaml.load_all(f, Loader=_StrictLoader))
    except yaml.YAMLError as e:
        raise ConfigError("cannot parse YAML file %s: %s" % (path, e)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("cannot read config file %s: %s" % (path, e)) from None
    docs = [{} if d is None else d for d in docs]
    if len(docs) > 3:
        raise ConfigError("config file %s has %d YAML documents; expected at most 3 "
                          "(config, help, choices)" % (path, len(docs)))
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise ConfigError("YAML document %d of %s must be a mapping of key: value, got %s"
                              % (i + 1, path, type(d).__name__))
        for k in d:
            if not isinstance(k, str):
                raise ConfigError("key %r in %s is not a string" % (k, path))
    while len(docs) < 3:
        docs.append({})
    return docs


# --------------------------------------------------------------------------- schema
def _suggest(word, candidates, cutoff, n=3):
    word_l = str(word).lower()
    by_lower = {}
    for c in candidates:
        by_lower.setdefault(str(c).lower(), str(c))
    hits = difflib.get_close_matches(word_l, list(by_lower), n=n, cutoff=cutoff)
    if not hits:
        return []
    # Keep only the matches about as close as the best one.
    best = difflib.SequenceMatcher(None, word_l, hits[0]).ratio()
    return [by_lower[h] for h in hits
            if difflib.SequenceMatcher(None, word_l, h).ratio() >= best - 0.1]


# Names other tools use for some keys (timm, mindcv, ...): suggested before any spelling match.
_ALIASES = {
    "epochs": "max_epoch", "num_epochs": "max_epoch", "batch_size": "per_batch_size",
    "workers": "num_parallel_workers", "num_workers": "num_parallel_workers", "model": "arch",
    "device": "device_target", "img_size": "image_size", "input_size": "image_size",
    "wd": "weight_decay", "smoothing": "label_smooth_factor", "data": "data_dir",
    "checkpoint": "pretrained", "sched": "lr_scheduler", "warmup": "warmup_epochs",
    "model_ema": "ema", "model_ema_decay": "ema_decay", "reprob": "re_prob", "mixup": "mixup_alpha",
    "cutmix": "cutmix_alpha", "aa": "auto_augment", "min_lr": "eta_min",
}


def _suggest_key(name, keys):
    """Suggestions for an unknown key ``name`` among ``keys``."""
    normalized = str(name).replace("-", "_")
    if normalized in keys:
        return [normalized]
    alias = _ALIASES.get(normalized.lower())
    if alias in keys:
        return [alias]
    return _suggest(normalized, sorted(keys), 0.6)


def _did_you_mean(hits, fmt="%s"):
    if not hits:
        return ""
    return " (did you mean %s?)" % " or ".join(fmt % h for h in hits)


def _type_name(tp):
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number",
            str: "a string", list: "a list"}.get(tp, tp.__name__)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class _Schema:
    """Keys, types, help and choices taken from the repository's default config file."""

    def __init__(self, path):
        self.path = path
        config, helps, choices = _read_yaml_documents(path)
        self.defaults = {}  # scalar (and list) keys -> default value
        self.types = {}
        self.profiles = {}  # mapping keys -> dict
        for k, v in config.items():
            if isinstance(v, dict):
                self.profiles[k] = v
            else:
                self.defaults[k] = v
                self.types[k] = type(v)
        if RUNTIME_KEY in config:
            raise ConfigError("%s: %r is reserved for saved runtime attributes" % (path, RUNTIME_KEY))
        self.helps = {k: str(v) for k, v in helps.items()}
        self.choices = {}
        for k, v in choices.items():
            if k not in self.defaults:
                raise ConfigError("%s: choices given for unknown key %r" % (path, k))
            if not isinstance(v, list) or not v:
                raise ConfigError("%s: choices of %r must be a non-empty list" % (path, k))
            self.choices[k] = list(v)
        for k, v in self.defaults.items():
            if k in self.choices and v not in self.choices[k]:
                raise ConfigError("%s: default %r of %r is not one of its choices %s"
                                  % (path, v, k, self.choices[k]))
        # Profiles are validated against the schema (unknown keys, types, choices).
        self.profiles = {name: self.validate_profile(name, prof, path)
                         for name, prof in self.profiles.items()}

    def all_keys(self):
        return list(self.defaults) + list(self.profiles)

    def validate_profile(self, name, mapping, source):
        if not isinstance(mapping, dict):
            raise ConfigError("profile %r in %s must be a mapping, got %r" % (name, source, mapping))
        out = {}
        for k, v in mapping.items():
            if k not in self.defaults:
                raise ConfigError("unknown key %r in profile %r of %s%s"
                                  % (k, name, source,
                                     _did_you_mean(_suggest_key(k, self.defaults), "'%s'")))
            out[k] = self.coerce(k, v, "%s.%s in %s" % (name, k, source))
        return out

    # ----------------------------------------------------------------- value coercion
    def coerce(self, key, value, where):
        """Convert ``value`` (a YAML value or a command-line string) to the type of ``key``.

        ``where`` names the source in error messages (e.g. ``--max_epoch`` or ``lr in x.yaml``).
        """
        if key in self.choices:
            return self._coerce_choice(key, value, where)
        tp = self.types[key]
        bad = ConfigError("%s: expected %s, got %r" % (where, _type_name(tp), value))
        if tp is bool:
            parsed = _parse_bool(value)
            if parsed is None:
                raise bad
            return parsed
        if tp is int:
            if _is_int(value):
                return value
            if isinstance(value, str):
                try:
                    return int(value.strip(), 10)
                except ValueError:
                    raise bad from None
            raise bad
        if tp is float:
            if _is_int(value) or isinstance(value, float):
                out = float(value)
            elif isinstance(value, str):
                # Also covers YAML 1.1 reading "1e-5" (no dot) as a string.
                try:
                    out = float(value.strip())
                except ValueError:
                    raise bad from None
            else:
                raise bad
            if not math.isfinite(out):
                raise ConfigError("%s: expected a finite number, got %r" % (where, value))
            return out
        if tp is str:
            if isinstance(value, str):
                return value
            if value is None:
                return ""
            if _is_int(value) or isinstance(value, float):
                return str(value)
            raise bad
        if tp is list:
            if isinstance(value, list):
                return value
            raise bad
        if value is None or isinstance(value, tp):
            return value
        raise bad

    def _coerce_choice(self, key, value, where):
        choices = self.choices[key]
        for c in choices:
            if type(c) is type(value) and c == value:
                return c
        int_choices = [c for c in choices if _is_int(c)]
        if isinstance(value, bool) and int(value) in int_choices:
            return int(value)
        if _is_int(value) and value in (0, 1) and bool(value) in [c for c in choices if isinstance(c, bool)]:
            return bool(value)
        if isinstance(value, str) or _is_int(value) or isinstance(value, float):
            s = str(value).strip()
            for c in choices:
                if str(c).lower() == s.lower():
                    return c
            if isinstance(value, str) and set(int_choices) >= {0, 1} and _parse_bool(value) is not None:
                return int(_parse_bool(value))
        shown = ", ".join(str(c) for c in choices)
        hits = _suggest(value, [str(c) for c in choices], 0.75) if value is not None else []
        raise ConfigError("%s: invalid choice %r (choose from %s)%s"
                          % (where, value, shown, _did_you_mean(hits, "'%s'")))


_SCHEMA_CACHE = {}


def _schema(path=DEFAULT_CONFIG_PATH):
    path = os.path.abspath(path)
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = None
    cached = _SCHEMA_CACHE.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, _Schema(path))
        _SCHEMA_CACHE[path] = cached
    return cached[1]


# --------------------------------------------------------------------------- Config
class Config:
    """Attribute namespace over the merged config.

    Config keys are plain attributes (``cfg.lr``); scripts may add runtime attributes
    (``cfg.rank = 0``). Profiles are available through ``cfg.profiles`` (not as attributes).
    """

    def __init__(self, values, explicit=(), profiles=None, defaults=None):
        object.__setattr__(self, "_explicit", frozenset(explicit))
        object.__setattr__(self, "_profiles", dict(profiles or {}))
        object.__setattr__(self, "_defaults", dict(defaults or {}))
        object.__setattr__(self, "_config_keys", tuple(values))
        object.__setattr__(self, "applied_profile", {})
        object.__setattr__(self, "applied_profile_name", None)
        for k, v in values.items():
            object.__setattr__(self, k, v)

    # mapping-style helpers
    def __contains__(self, key):
        return not key.startswith("_") and key in self.__dict__

    def __getitem__(self, key):
        if key not in self:
            raise KeyError(key)
        return self.__dict__[key]

    def get(self, key, default=None):
        return self.__dict__[key] if key in self else default

    def __getattr__(self, name):
        # Only called when normal lookup fails: give a helpful message for typos in code.
        if name.startswith("__"):
            raise AttributeError(name)
        keys = [k for k in self.__dict__ if not k.startswith("_")]
        raise AttributeError("config has no key %r%s"
                             % (name, _did_you_mean(_suggest_key(name, keys), "'%s'")))

    def __repr__(self):
        items = ", ".join("%s=%r" % kv for kv in self.to_dict().items())
        return "Config(%s)" % items

    def __eq__(self, other):
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    __hash__ = None

    @property
    def profiles(self):
        """Profile name -> mapping of key -> value (validated)."""
        return {k: dict(v) for k, v in self._profiles.items()}

    def config_keys(self):
        """The keys of the config file (not the runtime attributes), in file order."""
        return list(self._config_keys)

    def to_dict(self):
        """All config keys plus runtime attributes, in insertion order."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")
                and k not in ("applied_profile", "applied_profile_name")}

    def is_explicit(self, key):
        """True if ``key`` was given on the command line, or in a user YAML with a value that
        differs from the repository default."""
        return key in self._explicit

    def explicit_keys(self):
        return sorted(self._explicit)

    def apply_profile(self, name):
        """Set the values of profile ``name`` for every key that is not explicit.

        Returns (and stores in ``self.applied_profile``) the mapping of the keys actually changed
        to their new values; ``self.applied_profile_name`` records the profile name.
        """
        if name not in self._profiles:
            raise ConfigError("unknown profile %r (available: %s)%s"
                              % (name, ", ".join(sorted(self._profiles)) or "none",
                                 _did_you_mean(_suggest(name, self._profiles, 0.6), "'%s'")))
        changed = {}
        for k, v in self._profiles[name].items():
            if self.is_explicit(k):
                continue
            if self.__dict__.get(k) != v or type(self.__dict__.get(k)) is not type(v):
                object.__setattr__(self, k, v)
                changed[k] = v
        object.__setattr__(self, "applied_profile", changed)
        object.__setattr__(self, "applied_profile_name", name)
        return dict(changed)


# --------------------------------------------------------------------------- command line
class _ArgumentParser(argparse.ArgumentParser):
    """ArgumentParser that raises ConfigError instead of printing usage and exiting."""

    def error(self, message):
        raise ConfigError("command line: %s" % message)


def _help_text(schema, key):
    text = schema.helps.get(key, "See %s." % schema.path)
    if key in schema.choices:
        text += " Choices: %s." % ", ".join(str(c) for c in schema.choices[key])
    text += " Default: %r." % (schema.defaults[key],)
    return text.replace("%", "%%")


def _build_parser(schema, prog=None):
    parser = _ArgumentParser(
        prog=prog,
        description="CSPDarkNet53. Every key of %s is a --key flag; precedence: command line > "
                    "--config_path YAML > defaults." % os.path.basename(schema.path),
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config_path", metavar="PATH",
                        help="YAML file with config values overriding %s." % schema.path)
    for key, default in schema.defaults.items():
        if isinstance(default, list):
            continue
        kwargs = {"dest": key, "help": _help_text(schema, key), "metavar": key.upper()}
        if key in schema.choices:
            kwargs["metavar"] = "{%s}" % ",".join(str(c) for c in schema.choices[key])
        if schema.types[key] is bool:
            # `--flag` alone means true; `--flag=false` etc. also work.
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        parser.add_argument("--" + key, **kwargs)
    return parser


def _split_config_path(argv):
    """Return the value of --config_path in argv (last one wins), or None."""
    value = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            break
        if a == "--config_path":
            if i + 1 >= len(argv):
                raise ConfigError("command line: --config_path needs a file path")
            value = argv[i + 1]
            i += 2
            continue
        if a.startswith("--config_path="):
            value = a.split("=", 1)[1]
        i += 1
    return value


def _check_unknown_cli(schema, argv):
    """Raise ConfigError for the first unknown option in argv, with a suggestion."""
    known = set(schema.defaults) | {"config_path", "help"}
    for a in argv:
        if a == "--":
            break
        if a.startswith("--"):
            name = a[2:].split("=", 1)[0]
            if name in known:
                continue
            if name in schema.profiles:
                raise ConfigError("command line: --%s is a profile, not an option; scripts apply it "
                                  "themselves" % name)
            hits = _suggest_key(name, [k for k in known if k != "help"])
            raise ConfigError("command line: unknown option --%s%s"
                              % (name, _did_you_mean(hits, "--%s")))


# --------------------------------------------------------------------------- loading
def load_config(argv=None, config_path=None):
    """Load the config: repository defaults < user YAML < command line.

    argv: command-line arguments without the program name (None: ``sys.argv[1:]``).
    config_path: user YAML; a ``--config_path`` in argv takes precedence. Passing the repository's
    default file (or nothing) means no user YAML.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    schema = _schema(DEFAULT_CONFIG_PATH)
    cli_config_path = _split_config_path(argv)
    if cli_config_path is not None:
        config_path = cli_config_path
    if config_path is not None and str(config_path) == "":
        config_path = None

    _check_unknown_cli(schema, argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else None
    parser = _build_parser(schema, prog=prog)
    args, extra = parser.parse_known_args(argv)
    if extra:
        raise ConfigError("command line: unexpected argument(s): %s" % " ".join(extra))
    cli = {k: v for k, v in vars(args).items() if k != "config_path"}

    values = dict(schema.defaults)
    profiles = dict(schema.profiles)
    explicit = set()

    used_path = DEFAULT_CONFIG_PATH
    if config_path is not None:
        config_path = os.path.abspath(os.path.expanduser(str(config_path)))
        used_path = config_path
        same = (os.path.exists(config_path)
                and os.path.samefile(config_path, DEFAULT_CONFIG_PATH))
        if not same:
            user = _read_yaml_documents(config_path)[0]
            for k, v in user.items():
                if k == RUNTIME_KEY and isinstance(v, dict):
                    continue  # runtime attributes written by save_config: informational only
                if k in schema.profiles:
                    profiles[k] = schema.validate_profile(k, v, config_path)
                    continue
                if k not in schema.defaults:
                    raise ConfigError("unknown key %r in %s%s"
                                      % (k, config_path,
                                         _did_you_mean(_suggest_key(k, schema.defaults), "'%s'")))
                if isinstance(v, dict):
                    raise ConfigError("%s in %s: expected %s, got a mapping"
                                      % (k, config_path, _type_name(schema.types[k])))
                coerced = schema.coerce(k, v, "%s in %s" % (k, config_path))
                values[k] = coerced
                if coerced != schema.defaults[k]:
                    explicit.add(k)

    for k, v in cli.items():
        values[k] = schema.coerce(k, v, "--%s" % k)
        explicit.add(k)

    cfg = Config(values, explicit=explicit, profiles=profiles, defaults=schema.defaults)
    cfg.config_path = used_path
    return cfg


# --------------------------------------------------------------------------- saving
def _plain(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return False


def save_config(cfg, path):
    """Write the resolved config to ``path`` as YAML, atomically.

    Config keys are written at the top level (so the file can be given back with --config_path);
    runtime attributes that are plain scalars or lists are written under ``runtime:``, which
    load_config ignores. Other runtime attributes (loggers, objects) are skipped.
    """
    data = cfg.to_dict()
    keys = cfg.config_keys() if isinstance(cfg, Config) else list(data)
    top = {k: data[k] for k in keys if k in data and _plain(data[k])}
    for k in top:
        if isinstance(top[k], tuple):
            top[k] = list(top[k])
    runtime = {}
    for k, v in data.items():
        if k in top or k in keys or not _plain(v):
            continue
        runtime[k] = list(v) if isinstance(v, tuple) else v
    if isinstance(cfg, Config) and cfg.applied_profile_name:
        runtime["applied_profile"] = cfg.applied_profile_name
    if runtime:
        top[RUNTIME_KEY] = runtime
    text = yaml.safe_dump(top, sort_keys=False, default_flow_style=False, allow_unicode=True)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


# --------------------------------------------------------------------------- helpers
def parse_int_list(value, key="value", length=None):
    """Parse "224,224" (or an int, or a list of ints) into a list of ints.

    Raises ConfigError naming ``key`` on bad input or when ``length`` is given and differs.
    """
    if _is_int(value):
        out = [value]
    elif isinstance(value, (list, tuple)) and all(_is_int(x) for x in value):
        out = list(value)
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        try:
            if not value.strip() or any(p == "" for p in parts):
                raise ValueError
            out = [int(p, 10) for p in parts]
        except ValueError:
            raise ConfigError("%s: expected comma-separated integers such as '224,224', got %r"
                              % (key, value)) from None
    else:
        raise ConfigError("%s: expected comma-separated integers such as '224,224', got %r"
                          % (key, value))
    if length is not None and len(out) != length:
        raise ConfigError("%s: expected %d comma-separated integers, got %r" % (key, length, value))
    return out


def _env_int(environ, name):
    raw = environ.get(name)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ConfigError("environment variable %s=%r is not an integer" % (name, raw)) from None


def resolve_is_distributed(value, environ=None):
    """Resolve the ``is_distributed`` setting to a bool.

    1/True -> True, 0/False -> False; "auto" -> True iff launched by msrun (MS_ROLE set, or
    MS_WORKER_NUM > 1) or RANK_SIZE > 1 in ``environ`` (default: os.environ).
    """
    parsed = _parse_bool(value)
    if parsed is not None:
        return parsed
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            env = os.environ if environ is None else environ
            if str(env.get("MS_ROLE", "")).strip():
                return True
            workers = _env_int(env, "MS_WORKER_NUM")
            if workers is not None and workers > 1:
                return True
            rank_size = _env_int(env, "RANK_SIZE")
            return rank_size is not None and rank_size > 1
    raise ConfigError("is_distributed: invalid value %r (choose from auto, 0, 1)" % (value,))
