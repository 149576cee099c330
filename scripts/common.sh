#!/usr/bin/env bash
# Shared helpers of the launch scripts (sourced, not run). Each script defines usage() first.
#
# Environment read here (all optional):
#   PYTHON                  interpreter that runs train.py / eval.py (default: the repository's .venv,
#                           which README's first command makes, else python3, else python, on PATH)
#   GLOG_v                  MindSpore's C++ log level (default here: 3, errors only; msrun and the jobs
#                           inherit it)
#   OUTPUT_ROOT             where run folders go (default: ./outputs of the current directory);
#                           a --ckpt_path= / --log_path= flag given to the script wins
#   CSPDARKNET53_RUN_NAME   run folder name (default: the zoo's timestamp); exported so that every
#                           rank of a job writes into the same folder
#   DRY_RUN=1               print what would be launched, launch nothing

# shellcheck disable=SC2034  # used by the scripts that source this file
CSPD_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GLOG_v="${GLOG_v:-3}"  # no MindSpore C++ INFO/WARNING lines from msrun, its scheduler or the jobs

# A wrong command line (the user's to fix): the error, then the usage, on stderr; exit 2 (the status
# train.py / eval.py give bad input)
die_usage() {
  echo "error: $*" >&2
  usage >&2
  exit 2
}

# error without usage (a problem found after the arguments were accepted), exit 1
die() {
  echo "error: $*" >&2
  exit 1
}

is_uint() { [[ "${1:-}" =~ ^[0-9]+$ ]]; }

abs_path() { realpath -m -- "$1"; }

# "NAME must be an integer in 0..MAX, got 'X'" unless $2 is one (digits only, no overflow): exit 2
check_uint() {
  local name="$1" value="$2" max="$3"
  if ! is_uint "$value" || [ "${#value}" -gt 9 ] || [ "$((10#$value))" -gt "$max" ]; then
    die_usage "$name must be an integer in 0..$max, got '$value'"
  fi
}

# PYTHON_BIN: absolute path of the interpreter that runs the jobs. The first of: $PYTHON when set; the
# repository's .venv (README's first command makes it); python3, then python, on PATH. It must have
# MindSpore; if not, one error line names what was tried and how to fix it, exit 2, before anything is
# created.
resolve_python() {
  local venv_python="$CSPD_REPO/.venv/bin/python" how found fix
  fix="make the project's environment (cd $CSPD_REPO && python3 -m venv .venv && .venv/bin/pip install -r requirements.txt) or set PYTHON=/path/to/python of an environment with MindSpore"
  if [ -n "${PYTHON:-}" ]; then
    how="PYTHON=$PYTHON"
    found="$(command -v -- "$PYTHON" 2>/dev/null || true)"
    if [ -z "$found" ] || [ -d "$found" ]; then
      echo "error: PYTHON=$PYTHON is not an interpreter that can be run; $fix" >&2
      exit 2
    fi
  elif [ -x "$venv_python" ]; then
    how="PYTHON unset, so the repository's .venv"
    found="$venv_python"
  else
    how="PYTHON unset, no $venv_python"
    found="$(command -v python3 2>/dev/null || command -v python 2>/dev/null || true)"
    if [ -z "$found" ]; then
      echo "error: no Python found ($how, no python3 or python on PATH); $fix" >&2
      exit 2
    fi
    how+=", so $(basename "$found") on PATH"
  fi
  PYTHON_BIN="$(realpath -m -s -- "$found")"  # -s: a venv's python is a symlink; keep the venv
  # stdin, not -c: a stand-in interpreter in the tests answers "-" with the real one
  if ! "$PYTHON_BIN" - >/dev/null 2>&1 <<'PYEOF'
import importlib.util, sys
sys.exit(0 if importlib.util.find_spec("mindspore") else 1)
PYEOF
  then
    echo "error: no MindSpore in $PYTHON_BIN ($how); $fix" >&2
    exit 2
  fi
}

# Extra arguments are train.py/eval.py flags, written as either `--key=value` or `--key value` (a bare
# `--flag` followed by another flag, or last, is a boolean switch). Values are passed on as one word
# each, spaces and all. Paths among them (known path keys) are made absolute, because the job runs in
# its run folder. Result in EXTRA_FLAGS (every flag as `--key=value`, or a bare `--flag`);
# --ckpt_path/--log_path also set FLAG_OUTPUT_ROOT.
CSPD_PATH_KEYS=" pretrained resume data_dir data_list val_data_dir config_path ckpt_path log_path ckpt_file "
CSPD_PATH_KEYS+="image_path class_names_file result_file file_name "
parse_extra_flags() {
  EXTRA_FLAGS=()
  FLAG_OUTPUT_ROOT=""
  local arg key value has_value
  while [ $# -gt 0 ]; do
    arg="$1"
    shift
    if [[ "$arg" =~ ^--([A-Za-z_][A-Za-z0-9_-]*)=(.*)$ ]]; then
      key="${BASH_REMATCH[1]}"
      value="${BASH_REMATCH[2]}"
      has_value=1
    elif [[ "$arg" =~ ^--([A-Za-z_][A-Za-z0-9_-]*)$ ]]; then
      key="${BASH_REMATCH[1]}"
      if [ $# -gt 0 ] && [[ "$1" != --* ]]; then
        value="$1"
        shift
        has_value=1
      else
        value=""
        has_value=0
      fi
    else
      die_usage "extra arguments must be --key value or --key=value flags of train.py/eval.py, got '$arg'"
    fi
    if [ "$has_value" = 0 ]; then
      EXTRA_FLAGS+=("--$key")
      continue
    fi
    if [[ "$CSPD_PATH_KEYS" == *" $key "* ]] && [ -n "$value" ] && [[ "$value" != *://* ]]; then
      value="$(abs_path "$value")"
    fi
    if [ "$key" = ckpt_path ] || [ "$key" = log_path ]; then
      FLAG_OUTPUT_ROOT="$value"
    fi
    EXTRA_FLAGS+=("--$key=$value")
  done
}

# Checks the job's command line as train.py/eval.py would load it (the config loader alone: no MindSpore,
# nothing written), so that a bad flag or value is reported before a run folder exists:
#   check_job_flags --key=value ...      (after resolve_python)
# On a bad one: its error: line on stderr, exit 2.
check_job_flags() {
  local out status=0
  out="$("$PYTHON_BIN" - "$CSPD_REPO" "$@" 2>&1 <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
from src.config import ConfigError, load_config
try:
    load_config(sys.argv[2:])
except ConfigError as err:
    print(f"error: {err}")
    sys.exit(2)
PYEOF
)" || status=$?
  if [ "$status" -ne 0 ]; then
    if [ "$status" -eq 2 ] && [[ "$out" == error:* ]]; then
      echo "$out" >&2
      exit 2
    fi
    die "cannot check the flags with $PYTHON_BIN (status $status): $out"
  fi
}

# RUN_DIR / RUN_NAME: a fresh run folder under OUTPUT_ROOT (or the --ckpt_path/--log_path flag);
# CSPDARKNET53_RUN_NAME is exported so that train.py / eval.py (every rank) use the same folder.
# $1: prefix of the generated name ("" or e.g. "eval_")
make_run_dir() {
  local prefix="${1:-}" root name base i=1
  root="${FLAG_OUTPUT_ROOT:-${OUTPUT_ROOT:-$PWD/outputs}}"
  OUTPUT_ROOT="$(abs_path "$root")"
  if [ -n "${CSPDARKNET53_RUN_NAME:-}" ]; then
    name="$CSPDARKNET53_RUN_NAME"
  else
    base="${prefix}$(date +%Y-%m-%d_time_%H_%M_%S)"
    name="$base"
    while [ -e "$OUTPUT_ROOT/$name" ]; do name="${base}_$i"; i=$((i + 1)); done
  fi
  RUN_NAME="$name"
  RUN_DIR="$OUTPUT_ROOT/$RUN_NAME"
  export CSPDARKNET53_RUN_NAME="$RUN_NAME"
  if [ "${DRY_RUN:-0}" != 1 ]; then
    mkdir -p "$RUN_DIR" || die "cannot create the run folder $RUN_DIR"
  fi
}

# prints a command line, shell-quoted
show_cmd() {
  local out="" a
  for a in "$@"; do out+="$(printf '%q' "$a") "; done
  echo "${out% }"
}

# "exited with status 1" / "was killed by signal 9 (KILL)" for an exit status as bash
# (128 + signal) or Python's Popen (-signal) report it
describe_status() {
  local code="$1" sig=""
  if [[ "$code" =~ ^-[0-9]+$ ]]; then sig="${code#-}";
  elif is_uint "$code" && [ "$code" -gt 128 ] && [ "$code" -le 192 ]; then sig=$((code - 128)); fi
  if [ -n "$sig" ]; then
    echo "was killed by signal $sig ($(kill -l "$sig" 2>/dev/null || echo '?'))"
  else
    echo "exited with status $code"
  fi
}

# true while process $1 runs (a zombie does not count)
alive() {
  local st
  st="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ "$st" != Z* ]]
}

# pids of all descendants of $1 (children first level, then theirs)
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

# value of variable $2 in the environment of process $1 ("" when unreadable)
proc_env() {
  { tr '\0' '\n' < "/proc/$1/environ" | sed -n "s/^$2=//p" | head -n 1; } 2>/dev/null || true
}

# last lines of a log file, indented, for error messages
tail_log() {
  local file="$1" n="${2:-15}"
  if [ -s "$file" ]; then
    echo "  last lines of $file:"
    tail -n "$n" "$file" | sed 's/^/    | /'
  else
    echo "  ($file is empty or missing)"
  fi
}

# Runs one single-device job (train.py or eval.py) in $RUN_DIR with its console copied to <log name>:
#   run_single_job SCRIPT_NAME LOG_NAME DONE_NOTE cmd...
# DRY_RUN=1 only prints the launch. Exits with the job's status, naming the script and the log.
run_single_job() {
  local script="$1" log_name="$2" done_note="$3"
  shift 3
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "[dry run] cd $RUN_DIR; DEVICE_ID=$DEVICE_ID RANK_ID=0 RANK_SIZE=1 CSPDARKNET53_RUN_NAME=$RUN_NAME $(show_cmd "$@")"
    exit 0
  fi
  echo "run folder: $RUN_DIR"
  cd "$RUN_DIR"
  env > env.log
  local status=0 line left
  "$@" 2>&1 | tee "$log_name" || status=$?
  if [ "$status" -ne 0 ]; then
    # exit 2 is the job refusing its input: when it wrote nothing, nothing of the run is kept
    line="$(grep -m 1 '^error: ' "$log_name" 2>/dev/null || true)"
    left="$(ls -A "$RUN_DIR" | grep -v -x -e env.log -e "$log_name" || true)"
    if [ "$status" -eq 2 ] && [ -n "$line" ] && [ -z "$left" ]; then
      cd /
      rm -rf -- "$RUN_DIR"
      echo "$line" >&2
      exit 2
    fi
    echo "error: $script $(describe_status "$status"); see $RUN_DIR/$log_name" >&2
    exit "$status"
  fi
  echo "done: $RUN_DIR$done_note"
}
