#!/usr/bin/env bash
# Compile check of the ASCEND310 engine (no Ascend hardware or MindSpore Ascend package needed):
# every source of the ASCEND310 build is compiled with -fsyntax-only -Wall -Wextra -Werror and the
# Ascend build's _GLIBCXX_USE_CXX11_ABI=0 against the MindSpore C++ API headers (include/api/*.h) of the
# mindspore-lite 2.0.0 wheel, which .ci/install_cxx_deps.sh extracts.
# With --link-check it also compiles the objects and links them with OpenCV but without MindSpore: every
# unresolved symbol must then be a mindspore:: one. That proves the old-ABI objects link against this
# OpenCV (a cv:: call taking std::string, such as cv::imread, would not).
# Usage: bash check_ascend_syntax.sh [--link-check] [MINDSPORE_API_ROOT]   (the folder holding include/api/model.h)
set -euo pipefail

LINK_CHECK=0
if [ "${1:-}" = "--link-check" ]; then LINK_CHECK=1; shift; fi

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
for src in src/main.cc src/utils.cc src/record.cc src/engine_ascend310.cc; do
  if "$CXX" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -D_GLIBCXX_USE_CXX11_ABI=0 \
       -I"$HERE" -isystem "$MS_ROOT" -isystem "$MS_ROOT/include" -isystem "$OPENCV_INC" "$HERE/$src"; then
    echo "ok: $src"
  else
    echo "FAILED: $src" >&2
    status=1
  fi
done
[ "$status" = 0 ] || exit 1
echo "ASCEND310 sources compile against the MindSpore C++ API headers in $MS_ROOT"

if [ "$LINK_CHECK" = 1 ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  for src in src/main.cc src/utils.cc src/record.cc src/engine_ascend310.cc; do
    "$CXX" -std=c++17 -c -O0 -Wall -Wextra -Werror -D_GLIBCXX_USE_CXX11_ABI=0 -I"$HERE" -isystem "$MS_ROOT" \
      -isystem "$MS_ROOT/include" -isystem "$OPENCV_INC" "$HERE/$src" -o "$tmp/$(basename "$src" .cc).o"
  done
  if "$CXX" "$tmp"/*.o -o "$tmp/main" -lopencv_imgcodecs -lopencv_imgproc -lopencv_core > "$tmp/link.log" 2>&1; then
    die "linking without MindSpore unexpectedly succeeded"
  fi
  others="$(grep -o "undefined reference to \`[^']*'" "$tmp/link.log" | grep -v "mindspore::" | sort -u || true)"
  if [ -n "$others" ]; then
    echo "FAILED: symbols other than MindSpore's are unresolved (old-ABI objects vs this OpenCV/libstdc++?):" >&2
    echo "$others" >&2
    exit 1
  fi
  n="$(grep -o "undefined reference to \`[^']*'" "$tmp/link.log" | sort -u | wc -l)"
  [ "$n" -gt 0 ] || { cat "$tmp/link.log" >&2; die "the link failed for another reason"; }
  echo "link check: only MindSpore symbols unresolved ($n), OpenCV and libstdc++ resolve under _GLIBCXX_USE_CXX11_ABI=0"
fi
