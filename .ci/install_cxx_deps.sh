#!/usr/bin/env bash
# Installs what the C++ inference app (ascend310_infer/) needs for its ORT_CPU build and for the
# ASCEND310 compile check, on a fresh Debian 12 (bookworm) x86_64 machine. Idempotent and quiet:
# a second run only checks. Downloads live in a cache outside the repository:
#   ${CSPDARKNET53_CXX_CACHE:-$HOME/.cache/cspdarknet53-cxx}/
#     onnxruntime/{include,lib}         ONNX Runtime C++ headers (Debian trixie's libonnxruntime-dev .deb)
#                                        + libonnxruntime.so.1.32.0 (from the onnxruntime==1.32.0 PyPI wheel)
#     mindspore-lite-2.0.0/mindspore_lite/include   MindSpore C++ API headers (mindspore-lite==2.0.0 wheel)
# Apt (as root, --no-install-recommends): g++, cmake, make and the development packages of the three
# OpenCV modules the app uses (core, imgproc, imgcodecs). Before installing anything, the script prints
# what it will install: the apt packages with their count and size, and each download.
# Usage: bash .ci/install_cxx_deps.sh [--dry-run] [--no-apt] [--no-mindspore-headers]
#   --dry-run  print what would be installed or fetched, change nothing
set -euo pipefail

CACHE="${CSPDARKNET53_CXX_CACHE:-${HOME}/.cache/cspdarknet53-cxx}"
ORT_VERSION="${ORT_VERSION:-1.32.0}"
LITE_VERSION="2.0.0"
PYTHON="${PYTHON:-}"
DO_APT=1
DO_LITE=1
DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --no-apt) DO_APT=0 ;;
    --no-mindspore-headers) DO_LITE=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install_cxx_deps.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

if [ "$DRY" = 1 ]; then
  LOG=/dev/null
else
  mkdir -p "$CACHE"
  LOG="$CACHE/install.log"
  : > "$LOG"
fi
say() { echo "[install_cxx_deps] $([ "$DRY" = 1 ] && echo "[dry run] would: ")$*"; }
die() { echo "[install_cxx_deps] ERROR: $*" >&2; echo "[install_cxx_deps] last lines of $LOG:" >&2; tail -n 20 "$LOG" >&2 || true; exit 1; }
quiet() { "$@" >>"$LOG" 2>&1; }

# Python with pip, used only as a download client.
if [ -z "$PYTHON" ]; then
  for cand in /root/venvs/dev/bin/python python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -m pip --version >/dev/null 2>&1; then PYTHON="$cand"; break; fi
  done
fi
[ -n "$PYTHON" ] || die "no Python with pip found (set PYTHON=/path/to/python)"

# ---------------------------------------------------------------------------------------------
# 1. apt: compiler, cmake, the OpenCV modules' development packages (each pulls its module's library;
#    Debian's libopencv-imgcodecs406 itself depends on GDAL, GDCM, OpenEXR, ...: most of the count).
APT_PKGS=(g++ cmake make libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev)
if [ "$DO_APT" = 1 ]; then
  missing=()
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Another process may hold the dpkg lock: wait for it (up to 5 minutes).
    if [ "$DRY" = 0 ]; then
      [ "$(id -u)" = 0 ] || die "installing apt packages needs root; as root run this script, or: apt-get install --no-install-recommends ${missing[*]}"
      quiet apt-get -o DPkg::Lock::Timeout=300 update || die "apt-get update failed"
    fi
    plan="$(apt-get -s install --no-install-recommends "${missing[@]}" 2>>"$LOG")" \
      || die "apt-get cannot install ${missing[*]} (apt-get update first?)"
    mapfile -t new < <(sed -n 's/^Inst \([^ ]*\) .*/\1/p' <<<"$plan")
    mb="$(apt-cache show --no-all-versions "${new[@]}" 2>/dev/null \
          | awk '/^Installed-Size:/ {s += $2} END {printf "%.0f", s / 1024}')"
    say "apt-get install --no-install-recommends ${missing[*]}: ${#new[@]} packages, ${mb} MB installed:"
    echo "${new[*]}" | fold -s -w 106 | sed 's/^/    /'
    if [ "$DRY" = 0 ]; then
      quiet apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
    fi
  fi
fi

# ---------------------------------------------------------------------------------------------
# 2. ONNX Runtime: library from the PyPI wheel, C/C++ headers from Debian trixie's libonnxruntime-dev.
ORT_DIR="$CACHE/onnxruntime"
ORT_LIB="$ORT_DIR/lib/libonnxruntime.so.$ORT_VERSION"
if [ ! -f "$ORT_LIB" ] && [ "$DRY" = 1 ]; then
  say "fetch the onnxruntime==$ORT_VERSION wheel from PyPI (about 28 MB) into $CACHE, keeping libonnxruntime.so"
elif [ ! -f "$ORT_LIB" ]; then
  say "fetching the onnxruntime==$ORT_VERSION wheel from PyPI (about 28 MB) into $CACHE, keeping libonnxruntime.so"
  mkdir -p "$CACHE/wheels" "$ORT_DIR/lib"
  quiet "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
        --implementation cp --abi cp311 -d "$CACHE/wheels" "onnxruntime==$ORT_VERSION" \
    || die "pip download onnxruntime==$ORT_VERSION failed"
  whl=$(ls "$CACHE"/wheels/onnxruntime-"$ORT_VERSION"-*.whl | head -n 1)
  "$PYTHON" - "$whl" "$ORT_DIR/lib" "$ORT_VERSION" <<'PY' || die "could not extract libonnxruntime from the wheel"
import sys, zipfile, os, shutil
whl, dst, ver = sys.argv[1:]
name = "onnxruntime/capi/libonnxruntime.so." + ver
with zipfile.ZipFile(whl) as z, z.open(name) as src, open(os.path.join(dst, os.path.basename(name)) + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out)
os.replace(os.path.join(dst, os.path.basename(name)) + ".tmp", os.path.join(dst, os.path.basename(name)))
PY
fi
if [ "$DRY" = 0 ]; then
  ln -sfn "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/lib/libonnxruntime.so.1"
  ln -sfn "libonnxruntime.so.1" "$ORT_DIR/lib/libonnxruntime.so"
fi

if [ ! -f "$ORT_DIR/include/onnxruntime_cxx_api.h" ] && [ "$DRY" = 1 ]; then
  say "fetch ONNX Runtime's headers: Debian trixie's libonnxruntime-dev .deb (private apt state, nothing installed) into $CACHE"
elif [ ! -f "$ORT_DIR/include/onnxruntime_cxx_api.h" ]; then
  say "fetching ONNX Runtime headers (Debian trixie libonnxruntime-dev, private apt state; system sources untouched)"
  A="$CACHE/apt-trixie"
  mkdir -p "$A/lists/partial" "$A/archives/partial" "$A/parts" "$A/debs"
  echo "deb http://deb.debian.org/debian trixie main" > "$A/sources.list"
  APT_OPTS=(-o "Dir::Etc::SourceList=$A/sources.list" -o "Dir::Etc::SourceParts=$A/parts"
            -o "Dir::State::Lists=$A/lists" -o "Dir::Cache::Archives=$A/archives"
            -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "Acquire::Languages=none"
            -o "APT::Architectures::=amd64" -o "Debug::NoLocking=1")
  quiet apt-get "${APT_OPTS[@]}" update || die "apt-get update for Debian trixie (private lists) failed"
  ( cd "$A/debs" && apt-get "${APT_OPTS[@]}" download libonnxruntime-dev >>"$LOG" 2>&1 ) \
    || die "apt-get download libonnxruntime-dev (trixie) failed"
  deb=$(ls "$A"/debs/libonnxruntime-dev_*.deb | head -n 1)
  rm -rf "$A/x" && mkdir -p "$A/x"
  dpkg-deb -x "$deb" "$A/x" || die "dpkg-deb -x $deb failed"
  hdr=$(dirname "$(find "$A/x" -name onnxruntime_cxx_api.h | head -n 1)")
  [ -f "$hdr/onnxruntime_c_api.h" ] || die "no onnxruntime_c_api.h inside $deb"
  rm -rf "$ORT_DIR/include.tmp" && mkdir -p "$ORT_DIR/include.tmp"
  cp "$hdr"/*.h "$ORT_DIR/include.tmp/"
  rm -rf "$ORT_DIR/include" && mv "$ORT_DIR/include.tmp" "$ORT_DIR/include"
  basename "$deb" > "$ORT_DIR/include/SOURCE_DEB"
  rm -rf "$A/x" "$A/lists" "$A/archives"   # keep only the .deb
fi

# ---------------------------------------------------------------------------------------------
# 3. MindSpore C++ API headers (include/api/*.h) for the ASCEND310 compile check.
LITE_DIR="$CACHE/mindspore-lite-$LITE_VERSION"
if [ "$DO_LITE" = 1 ] && [ ! -f "$LITE_DIR/mindspore_lite/include/api/model.h" ] && [ "$DRY" = 1 ]; then
  say "fetch the mindspore-lite==$LITE_VERSION wheel from PyPI (169 MB, deleted after) for its C++ API headers (0.3 MB) into $CACHE"
elif [ "$DO_LITE" = 1 ] && [ ! -f "$LITE_DIR/mindspore_lite/include/api/model.h" ]; then
  say "fetching the mindspore-lite==$LITE_VERSION wheel (169 MB) for its C++ API headers"
  mkdir -p "$CACHE/wheels"
  if ! ls "$CACHE"/wheels/mindspore_lite-"$LITE_VERSION"-*.whl >/dev/null 2>&1; then
    quiet "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.7 \
          --platform manylinux1_x86_64 --implementation cp --abi cp37m -d "$CACHE/wheels" \
          "mindspore-lite==$LITE_VERSION" || die "pip download mindspore-lite==$LITE_VERSION failed"
  fi
  whl=$(ls "$CACHE"/wheels/mindspore_lite-"$LITE_VERSION"-*.whl | head -n 1)
  rm -rf "$LITE_DIR.tmp" && mkdir -p "$LITE_DIR.tmp"
  "$PYTHON" - "$whl" "$LITE_DIR.tmp" <<'PY' || die "could not extract the headers from the mindspore-lite wheel"
import sys, zipfile
whl, dst = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith("mindspore_lite/include/") and not n.endswith("/")]
    if not any(n.endswith("include/api/model.h") for n in names):
        sys.exit("no mindspore_lite/include/api/model.h in " + whl)
    z.extractall(dst, names)
PY
  rm -rf "$LITE_DIR" && mv "$LITE_DIR.tmp" "$LITE_DIR"
  rm -f "$whl"   # 169 MB; only the headers (~0.3 MB) are needed
fi

if [ "$DRY" = 1 ]; then echo "[install_cxx_deps] [dry run] nothing changed"; exit 0; fi
say "ok: ONNX Runtime $ORT_VERSION in $ORT_DIR$( [ "$DO_LITE" = 1 ] && echo "; MindSpore C++ API headers in $LITE_DIR/mindspore_lite" )"
