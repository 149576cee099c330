#!/usr/bin/env bash
# Compile check of the ASCEND310 engine (no Ascend hardware or MindSpore Ascend package needed):
# every source of the ASCEND310 build is compiled with -fsyntax-only -Wall -Wextra -Werror and the
# Ascend build's _GLIBCXX_USE_CXX11_ABI=0 against the MindSpore C++ API headers (include/api/*.h) of the
# mindspore-lite 2.0.0 wheel, which .ci/install_cxx_deps.sh extracts.
# Usage: bash check_ascend_syntax.sh [MINDSPORE_API_ROOT]   (the folder that holds include/api/model.h)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${CSPDARKNET53_CXX_CACHE:-$HOME/.cache/cspdarknet53-cxx}"
MS_ROOT="${1:-$CACHE/mindspore-lite-2.0.0/mindspore_lite}"
CXX="${CXX:-c++}"

die() { echo "check_ascend_syntax.sh: ERROR: $*" >&2; exit 1; }
command -v "$CXX" >/dev/null 2>&1 || die "no C++ compiler ($CXX): apt-get install g++"
[ -f "$MS_ROOT/include/api/model.h" ] || die "MindSpore C++ API headers not found at $MS_ROOT/include/api; run bash .ci/install_cxx_deps.sh (or pass the folder holding include/api)"
OPENCV_INC=""
for d in /usr/include/opencv4 /usr/local/include/opencv4; do
  [ -f "$d/opencv2/core.hpp" ] && OPENCV_INC="$d" && break
done
[ -n "$OPENCV_INC" ] || die "OpenCV headers not found: apt-get install libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev"

status=0
for src in src/main.cc src/utils.cc src/engine_ascend310.cc; do
  if "$CXX" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -D_GLIBCXX_USE_CXX11_ABI=0 \
       -I"$HERE" -isystem "$MS_ROOT" -isystem "$MS_ROOT/include" -isystem "$OPENCV_INC" "$HERE/$src"; then
    echo "ok: $src"
  else
    echo "FAILED: $src" >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "ASCEND310 sources compile against the MindSpore C++ API headers in $MS_ROOT"
exit "$status"
