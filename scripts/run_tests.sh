#!/usr/bin/env bash
# The test suite in one command, on a fresh Linux machine (Debian 12 / Python 3.11 checked):
#   1. creates the virtual environment (or reuses it) and installs requirements-test.txt into it
#      (runtime + test packages in one resolve; again only when the requirement files change);
#   2. installs the C++ inference app's build dependencies: bash .ci/install_cxx_deps.sh
#      (apt packages, ONNX Runtime, MindSpore C++ API headers; a second run only checks);
#   3. runs python -m pytest -q from the repository root, with the arguments given here.
#
# Usage: bash scripts/run_tests.sh [PYTEST_ARGS...]
#   bash scripts/run_tests.sh                     the whole suite (tests/unit and tests/e2e)
#   bash scripts/run_tests.sh tests/unit          the fast in-process subset
#   bash scripts/run_tests.sh -m e2e -x           any pytest arguments (paths relative to the repository)
# Environment:
#   CSPDARKNET53_VENV  the virtual environment (default: <repository>/.venv)
#   PYTHON_BIN         the interpreter that creates it (default: python3; MindSpore 2.10 wants 3.9-3.11)
#   SKIP_CXX_DEPS=1    skip step 2 (tests/e2e/test_cpp_infer.py then fails, or skips with SKIP_CXX_INFER=1)
# Exit status: pytest's (0 passed, 1 tests failed, 2 interrupted, 3 internal error, 4 usage error,
# 5 no tests collected: reported as an error); 2 for a bad argument caught before the set-up (as the
# other scripts: the error line, then this usage).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CSPDARKNET53_VENV:-$REPO/.venv}"
PYTHON_BIN="${PYTHON_BIN:-python3}"

usage() { sed -n '9,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "run_tests.sh: error: $*" >&2; exit 1; }
die_usage() { echo "run_tests.sh: error: $*" >&2; usage >&2; exit 2; }  # as scripts/common.sh

# Arguments go to pytest. Catch the common mistakes before minutes of set-up: help, and a test path
# (tests/..., *.py, node ids with ::) that does not exist.
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    -*) ;;
    tests|tests/*|*.py|*::*)
      path="${arg%%::*}"
      { [ "${path#/}" != "$path" ] && [ -e "$path" ]; } || [ -e "$REPO/$path" ] \
        || die_usage "no such test file or folder: $path (paths are relative to $REPO)" ;;
  esac
done

# ---- 1. virtual environment, keyed by the requirement files' hash
HASH="$(cat "$REPO/requirements.txt" "$REPO/requirements-test.txt" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON_BIN" >/dev/null 2>&1 || die "$PYTHON_BIN not found: install Python 3.11 or set PYTHON_BIN"
  echo "run_tests.sh: creating $VENV with $("$PYTHON_BIN" --version 2>&1)"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON_BIN" -m venv "$VENV" \
    || die "'$PYTHON_BIN -m venv $VENV' failed (Debian/Ubuntu: apt-get install python3-venv)"
fi
if [ "$(cat "$VENV/.complete" 2>/dev/null || true)" != "$HASH" ]; then
  echo "run_tests.sh: installing requirements-test.txt into $VENV (several minutes the first time)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # One resolve for runtime and test packages, so that nothing can pull NumPy 2 back in.
  "$VENV/bin/python" -m pip install -q -r "$REPO/requirements-test.txt"
  "$VENV/bin/python" -c "import numpy, mindspore, pytest_timeout; assert numpy.__version__.startswith('1.'), numpy.__version__"
  echo "$HASH" > "$VENV/.complete"
else
  echo "run_tests.sh: reusing $VENV"
fi

# ---- 2. the C++ app's build dependencies (tests/e2e/test_cpp_infer.py)
if [ "${SKIP_CXX_DEPS:-0}" != 1 ]; then
  PYTHON="$VENV/bin/python" bash "$REPO/.ci/install_cxx_deps.sh"
fi

# ---- 3. pytest (per-test timeout and markers: pytest.ini)
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
