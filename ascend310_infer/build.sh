#!/usr/bin/env bash
# Builds the inference app: ascend310_infer/out/main (or $BUILD_DIR/main).
# Usage: bash build.sh [ASCEND310|ORT_CPU] [extra cmake -D options]
#   ASCEND310 (default, the model zoo's path): MINDSPORE_PATH defaults to the location of the installed
#             mindspore-ascend (else mindspore) Python package.
#   ORT_CPU:  ORT_ROOT defaults to the cache filled by .ci/install_cxx_deps.sh.
# Env: BUILD_DIR, JOBS (default 2), PYTHON (default python3), MINDSPORE_PATH, ORT_ROOT.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENGINE="${1:-ASCEND310}"
[ $# -gt 0 ] && shift
BUILD_DIR="${BUILD_DIR:-$HERE/out}"
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python3}"

die() { echo "build.sh: ERROR: $*" >&2; exit 1; }

case "$ENGINE" in
  ASCEND310|ORT_CPU) ;;
  -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
  *) die "unknown engine '$ENGINE' (use ASCEND310 or ORT_CPU)" ;;
esac

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v "${CXX:-c++}" >/dev/null 2>&1 || missing+=(g++)
if [ "${#missing[@]}" -gt 0 ]; then
  die "missing build tools: ${missing[*]}. Install them (Debian/Ubuntu: apt-get install ${missing[*]}) or run bash .ci/install_cxx_deps.sh"
fi

# OpenCV: Debian's -dev packages (no CMake config) or any install CMake can find (OpenCV_DIR, CMAKE_PREFIX_PATH).
opencv_found=0
for d in /usr/include/opencv4 /usr/local/include/opencv4 /usr/include; do
  [ -f "$d/opencv2/core.hpp" ] && opencv_found=1 && break
done
if [ "$opencv_found" = 0 ] && [ -z "${OpenCV_DIR:-}" ] && [ -z "${CMAKE_PREFIX_PATH:-}" ] && \
   ! printf '%s\n' "$@" | grep -q -- '-DOpenCV_DIR='; then
  die "OpenCV development files not found (opencv2/core.hpp). Install them (Debian/Ubuntu: apt-get install libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev, or bash .ci/install_cxx_deps.sh) or pass -DOpenCV_DIR=<dir with OpenCVConfig.cmake>"
fi

CMAKE_ARGS=(-DENGINE="$ENGINE" -DCMAKE_BUILD_TYPE=Release)
if [ "$ENGINE" = ASCEND310 ]; then
  if [ -z "${MINDSPORE_PATH:-}" ]; then
    for pkg in mindspore-ascend mindspore; do
      loc="$("$PYTHON" -m pip show "$pkg" 2>/dev/null | sed -n 's/^Location: //p' || true)"
      if [ -n "$loc" ] && [ -d "$loc/mindspore" ]; then MINDSPORE_PATH="$(realpath "$loc/mindspore")"; break; fi
    done
  fi
  [ -n "${MINDSPORE_PATH:-}" ] || die "no MindSpore package found (pip show mindspore-ascend / mindspore with $PYTHON); install the MindSpore Ascend package or set MINDSPORE_PATH"
  if [ ! -f "$MINDSPORE_PATH/include/api/model.h" ] || [ ! -e "$MINDSPORE_PATH/lib/libmindspore.so" ]; then
    die "$MINDSPORE_PATH has no MindSpore C++ inference API (include/api/model.h + lib/libmindspore.so). The CPU wheel from PyPI does not ship it: install the MindSpore Ascend package matching your CANN, or use an .onnx model with the ORT_CPU engine"
  fi
  CMAKE_ARGS+=(-DMINDSPORE_PATH="$MINDSPORE_PATH")
else
  ORT_ROOT="${ORT_ROOT:-${CSPDARKNET53_CXX_CACHE:-$HOME/.cache/cspdarknet53-cxx}/onnxruntime}"
  if [ ! -f "$ORT_ROOT/include/onnxruntime_cxx_api.h" ] || ! ls "$ORT_ROOT"/lib/libonnxruntime.so* >/dev/null 2>&1; then
    die "ONNX Runtime headers/library not found under $ORT_ROOT (include/onnxruntime_cxx_api.h, lib/libonnxruntime.so). Run: bash .ci/install_cxx_deps.sh (or set ORT_ROOT)"
  fi
  CMAKE_ARGS+=(-DORT_ROOT="$ORT_ROOT")
fi

mkdir -p "$BUILD_DIR"
cmake -S "$HERE" -B "$BUILD_DIR" "${CMAKE_ARGS[@]}" "$@"
cmake --build "$BUILD_DIR" -- -j"$JOBS"
echo "build.sh: built $BUILD_DIR/main (engine $ENGINE)"
