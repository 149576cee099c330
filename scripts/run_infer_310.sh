#!/usr/bin/env bash
# C++ inference flow: build ascend310_infer for the engine the model file implies, run it on every image,
# write the label file and score the results.
#   .mindir -> ASCEND310 (MindSpore C++ API on an Ascend 310; needs the MindSpore Ascend package)
#   .onnx   -> ORT_CPU   (ONNX Runtime on CPU; needs bash .ci/install_cxx_deps.sh once)
# Outputs go to the current directory: build.log, infer.log, result_Files/, time_Result/,
# imagenet_label.json, acc.log.
# The model's own record (ONNX metadata, or <model>.json beside a MINDIR) gives the input size, the eval
# preprocessing and the class names: the label file numbers the class folders by those names and acc.log
# lists per-class accuracy with them.
# Env: PYTHON (default: the repository's .venv, else python3/python on PATH; see scripts/common.sh),
#      THREADS (ORT_CPU threads, default 0 = ONNX Runtime default),
#      RESIZE/CROP (overrides: squash side and crop side; default: the model record's),
#      BUILD_DIR (default ascend310_infer/out), JOBS (default 2).
set -euo pipefail

usage() {
  echo "Usage: bash $0 [MODEL_PATH] [DATA_PATH] [DEVICE_ID]"
  echo "  MODEL_PATH  .mindir (Ascend 310) or .onnx (ONNX Runtime on CPU)"
  echo "  DATA_PATH   image folder with one sub-folder per class (ImageNet val layout)"
  echo "  DEVICE_ID   Ascend device id, optional (default 0; ignored on CPU)"
  echo "Env: RESIZE=N CROP=N override the model record's preprocessing; THREADS, PYTHON, BUILD_DIR, JOBS"
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
# a wrong command line: the error and the usage, exit 2 (die_usage); a failed build or run: the error, exit 1 (die)
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [ $# -lt 2 ] || [ $# -gt 3 ]; then die_usage "expected 2 or 3 arguments, got $#"; fi
abspath() { realpath -m -s -- "$1"; }   # absolute, links kept (the extension picks the engine)

MODEL_PATH="$(abspath "$1")"
DATA_PATH="$(abspath "$2")"
DEVICE_ID="${3:-0}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
WORK_DIR="$(pwd)"

[ -f "$MODEL_PATH" ] || die_usage "model file not found: $MODEL_PATH"
[ -d "$DATA_PATH" ] || die_usage "data folder not found: $DATA_PATH"
check_uint DEVICE_ID "$DEVICE_ID" 4095
for var in RESIZE CROP; do
  value="${!var:-}"
  [ -z "$value" ] || [[ "$value" =~ ^[1-9][0-9]{0,4}$ ]] || die_usage "$var must be a positive integer, got '$value'"
done
case "${MODEL_PATH,,}" in
  *.mindir) ENGINE=ASCEND310 ;;
  *.onnx) ENGINE=ORT_CPU ;;
  *) die_usage "cannot tell the engine from '$MODEL_PATH': use a .mindir (Ascend 310) or .onnx (CPU) file" ;;
esac
resolve_python
for f in create_imagenet2012_label.py postprocess.py; do
  [ -f "$ROOT/$f" ] || die "$ROOT/$f is missing"
done

echo "model:  $MODEL_PATH"
echo "data:   $DATA_PATH"
echo "engine: $ENGINE (device $DEVICE_ID), outputs in $WORK_DIR"

export BUILD_DIR="${BUILD_DIR:-$ROOT/ascend310_infer/out}"
echo "building ascend310_infer ($ENGINE) ... (log: build.log)"
if ! PYTHON="$PYTHON_BIN" bash "$ROOT/ascend310_infer/build.sh" "$ENGINE" > "$WORK_DIR/build.log" 2>&1; then
  tail -n 15 "$WORK_DIR/build.log" >&2
  die "build failed (full log: $WORK_DIR/build.log)"
fi

rm -rf "$WORK_DIR/result_Files" "$WORK_DIR/time_Result"
echo "running inference ... (log: infer.log)"
if ! "$BUILD_DIR/main" --model_path="$MODEL_PATH" --dataset_path="$DATA_PATH" --device_id="$DEVICE_ID" \
      --result_path="$WORK_DIR/result_Files" --time_path="$WORK_DIR/time_Result" --threads="${THREADS:-0}" \
      ${RESIZE:+--resize="$RESIZE"} ${CROP:+--crop="$CROP"} > "$WORK_DIR/infer.log" 2>&1; then
  tail -n 15 "$WORK_DIR/infer.log" >&2
  die "inference failed (full log: $WORK_DIR/infer.log)"
fi
grep "NN inference cost average time" "$WORK_DIR/infer.log" || true
# The app reports the logits' dtype ("output 0: float16 [1,1000], 2000 bytes per image"); pass it on so
# postprocess.py need not guess it from the file size.
OUT_DTYPE="$(sed -n 's/^output 0: \(float16\|float32\) .*/\1/p' "$WORK_DIR/infer.log" | head -n 1)"
# ... and whether the model has a record ("model record: none" otherwise): then the label file and the
# scoring use its class names
RECORD_ARGS=()
if grep -q "^model record: " "$WORK_DIR/infer.log" && ! grep -q "^model record: none" "$WORK_DIR/infer.log"; then
  RECORD_ARGS=(--model_path="$MODEL_PATH")
fi

echo "creating the label file ..."
"$PYTHON_BIN" "$ROOT/create_imagenet2012_label.py" --img_path="$DATA_PATH" --output="$WORK_DIR/imagenet_label.json" \
  "${RECORD_ARGS[@]}" || die "create_imagenet2012_label.py failed"

echo "scoring ... (acc.log)"
if ! "$PYTHON_BIN" "$ROOT/postprocess.py" --result_path="$WORK_DIR/result_Files" \
      --label_path="$WORK_DIR/imagenet_label.json" ${OUT_DTYPE:+--dtype="$OUT_DTYPE"} "${RECORD_ARGS[@]}" \
      > "$WORK_DIR/acc.log" 2>&1; then
  cat "$WORK_DIR/acc.log" >&2
  die "postprocess.py failed (log: $WORK_DIR/acc.log)"
fi
cat "$WORK_DIR/acc.log"
