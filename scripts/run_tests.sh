#!/usr/bin/env bash
# The test suite in one command, on a fresh Linux machine (Debian 12 / Python 3.11 checked). It never
# touches the runtime environment .venv that README's first command makes; the tests get their own:
#   1. the test environment <repository>/.venv-test (created, or reused while the requirement files are
#      unchanged): requirements-test.txt (the runtime + pytest, onnx, onnxruntime, ...), plus
#      requirements-reference.txt (torch, torchvision, timm: ~5 GB) only when a selected test module is
#      in tests/reference/ or imports torch, torchvision or timm (the whole suite does; tests/unit never does);
#   2. the C++ inference app's build dependencies (bash .ci/install_cxx_deps.sh: apt packages as root,
#      ONNX Runtime, MindSpore C++ API headers; it lists them before installing) only when a selected
#      test module builds the app (tests/e2e/test_cpp_infer.py; the whole suite does);
#   3. python -m pytest -q from the repository root, with the arguments given here.
#
# Usage: bash scripts/run_tests.sh [TIER | PYTEST_ARGS...]
#   bash scripts/run_tests.sh                     the whole suite (every tier)
#   bash scripts/run_tests.sh unit                one tier: a folder of tests/ (unit, reference, e2e)
#   bash scripts/run_tests.sh unit -x -k config   a tier, then any pytest arguments
#   bash scripts/run_tests.sh tests/e2e/test_scripts.py -m e2e   paths relative to the repository
# Environment:
#   CSPDARKNET53_TEST_VENV  the test environment (default: <repository>/.venv-test; never .venv)
#   PYTHON_BIN              the interpreter that creates it (default: python3; MindSpore 2.10 wants 3.9-3.11)
#   SKIP_CXX_DEPS=1         skip step 2 (the C++ app tests then fail, or skip with SKIP_CXX_INFER=1)
#   DRY_RUN=1               print what would be installed and run, change nothing
# Exit status: pytest's (0 passed, 1 tests failed, 2 interrupted, 3 internal error, 4 usage error,
# 5 no tests collected: reported as an error); 2 for a bad argument caught before the set-up (as the
# other scripts: the error line, then this usage).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CSPDARKNET53_TEST_VENV:-$REPO/.venv-test}"
PYTHON_BIN="${PYTHON_BIN:-python3}"

usage() { sed -n '14,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
say() { echo "run_tests.sh: $*"; }
die() { echo "run_tests.sh: error: $*" >&2; exit 1; }
die_usage() { echo "run_tests.sh: error: $*" >&2; usage >&2; exit 2; }  # as scripts/common.sh

if [ -n "${CSPDARKNET53_VENV:-}" ]; then
  die_usage "CSPDARKNET53_VENV is no longer read (it used to put the test packages into the runtime .venv); set CSPDARKNET53_TEST_VENV=$CSPDARKNET53_VENV to use that folder for the tests"
fi
VENV="$(realpath -m -- "$VENV")"
[ "$VENV" != "$(realpath -m -- "$REPO/.venv")" ] \
  || die_usage "CSPDARKNET53_TEST_VENV is the runtime environment $REPO/.venv; the tests need their own (default $REPO/.venv-test)"

# A bare word first is a tier, i.e. a folder of tests/ ("all": every tier); the rest goes to pytest as it is.
if [ $# -gt 0 ] && [[ "$1" =~ ^[a-z][a-z0-9_]*$ ]] && [ "$1" != tests ]; then
  tier="$1"
  shift
  if [ "$tier" != all ]; then
    tiers="$(cd "$REPO/tests" && find . -mindepth 2 -maxdepth 2 -name 'test_*.py' | cut -d/ -f2 | sort -u | paste -sd ' ')"
    [ -d "$REPO/tests/$tier" ] || die_usage "tier '$tier': no folder tests/$tier (the tiers: ${tiers:-none} or all)"
    set -- "tests/$tier" "$@"
  fi
fi

# Catch the common mistakes before minutes of set-up: help, and a test path (tests/..., *.py, node ids
# with ::) that does not exist. The paths also tell which packages the selected tests need.
selected=()
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    -*) ;;
    tests|tests/*|*.py|*::*)
      path="${arg%%::*}"
      if [ "${path#/}" != "$path" ] && [ -e "$path" ]; then selected+=("$path")
      elif [ -e "$REPO/$path" ]; then selected+=("$REPO/$path")
      else die_usage "no such test file or folder: $path (paths are relative to $REPO)"; fi ;;
  esac
done
[ "${#selected[@]}" -gt 0 ] || selected=("$REPO/tests")
modules=()
while IFS= read -r -d '' f; do modules+=("$f"); done < <(find "${selected[@]}" -name 'test_*.py' -print0)
uses() { [ "${#modules[@]}" -gt 0 ] && grep -qlE "$1" "${modules[@]}"; }
NEED_REFERENCE=0
NEED_CXX=0
uses '^\s*(import|from) (torch|torchvision|timm)\b|importorskip\("(torch|torchvision|timm)"' && NEED_REFERENCE=1
for m in "${modules[@]}"; do case "$m" in */tests/reference/*) NEED_REFERENCE=1 ;; esac; done
uses 'ascend310_infer' && NEED_CXX=1
[ "${SKIP_CXX_DEPS:-0}" != 1 ] || NEED_CXX=0

# ---- 1. the test environment, keyed by the requirement files' hash
hash_of() { (cd "$REPO" && cat "$@") | sha256sum | cut -c1-16; }
if [ "$NEED_REFERENCE" = 1 ]; then
  REQ=requirements-reference.txt
  MARK="$VENV/.complete-reference"
  HASH="$(hash_of requirements.txt requirements-test.txt requirements-reference.txt)"
else
  REQ=requirements-test.txt
  MARK="$VENV/.complete-test"
  HASH="$(hash_of requirements.txt requirements-test.txt)"
fi
if [ ! -x "$VENV/bin/python" ]; then state=create
elif [ "$(cat "$MARK" 2>/dev/null || true)" != "$HASH" ]; then state=install
else state=reuse; fi

if [ "${DRY_RUN:-0}" = 1 ]; then
  say "[dry run] test environment: $VENV ($state; $REQ)"
  say "[dry run] C++ build dependencies: $([ "$NEED_CXX" = 1 ] && echo "bash .ci/install_cxx_deps.sh" || echo "not needed")"
  say "[dry run] cd $REPO; $VENV/bin/python -m pytest -q $*"
  exit 0
fi

if [ "$state" = create ]; then
  command -v "$PYTHON_BIN" >/dev/null 2>&1 || die "$PYTHON_BIN not found: install Python 3.11 or set PYTHON_BIN"
  say "creating the test environment $VENV with $("$PYTHON_BIN" --version 2>&1)"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON_BIN" -m venv "$VENV" \
    || die "'$PYTHON_BIN -m venv $VENV' failed (Debian/Ubuntu: apt-get install python3-venv)"
fi
if [ "$state" != reuse ]; then
  say "installing $REQ into $VENV$([ "$NEED_REFERENCE" = 1 ] && echo " (torch, torchvision, timm: about 5 GB, several minutes the first time)")"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # One resolve for runtime and test packages, so that nothing can pull NumPy 2 back in.
  "$VENV/bin/python" -m pip install -q -r "$REPO/$REQ"
  "$VENV/bin/python" -c "import numpy, mindspore, pytest_timeout; assert numpy.__version__.startswith('1.'), numpy.__version__"
  echo "$HASH" > "$MARK"
  [ "$NEED_REFERENCE" = 0 ] || hash_of requirements.txt requirements-test.txt > "$VENV/.complete-test"
fi
say "test environment $VENV: $(du -sh "$VENV" 2>/dev/null | cut -f1) ($REQ$([ "$state" = reuse ] && echo ", reused")); the runtime .venv is not touched"

# ---- 2. the C++ app's build dependencies (tests/e2e/test_cpp_infer.py)
if [ "$NEED_CXX" = 1 ]; then
  PYTHON="$VENV/bin/python" bash "$REPO/.ci/install_cxx_deps.sh"
fi

# ---- 3. pytest (per-test timeout, markers and temporary-folder retention: pytest.ini)
export PATH="$VENV/bin:$PATH"
export GLOG_v=3
cd "$REPO"
rc=0
"$VENV/bin/python" -m pytest -q "$@" || rc=$?
case "$rc" in
  0) ;;
  4) echo "run_tests.sh: pytest usage error (exit 4): check the arguments ($*)" >&2; usage >&2 ;;
  5) echo "run_tests.sh: error: pytest collected no tests (exit 5) from: ${*:-tests}; check the paths, -k and -m" >&2 ;;
  *) echo "run_tests.sh: pytest exited with status $rc" >&2 ;;
esac
exit "$rc"
