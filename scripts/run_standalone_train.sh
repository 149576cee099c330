#!/usr/bin/env bash
# Train on one device. Works from any directory; outputs in one run folder.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/run_standalone_train.sh [DEVICE_ID] [DATA_DIR] (option)[PATH_CHECKPOINT] (option)[--key value | --key=value ...]
  DEVICE_ID        device to use (Ascend/GPU; ignored on CPU)
  DATA_DIR         training ImageFolder root (DATA_DIR/<class>/<image>)
  PATH_CHECKPOINT  warm-start checkpoint (train.py --pretrained)
  --key value      further train.py flags (also --key=value), e.g. --arch cspdarknet_tiny --max_epoch=1
Environment: PYTHON (default: the repository's .venv, else python3 on PATH; it must have MindSpore),
OUTPUT_ROOT (default ./outputs), CSPDARKNET53_RUN_NAME, DRY_RUN=1, GLOG_v (default 3).
The run folder <OUTPUT_ROOT>/<run> gets train.py's outputs (log.txt, config.yaml, metrics.csv,
ckpt_0/) and console.log (everything the process printed).
EOF
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 2 ] || die_usage "expected at least 2 arguments, got $#"
DEVICE_ID="$1"
DATA_DIR="$2"
shift 2
PATH_CHECKPOINT=""
if [ $# -ge 1 ] && [[ "$1" != --* ]]; then
  PATH_CHECKPOINT="$1"
  shift
fi
check_uint DEVICE_ID "$DEVICE_ID" 4095  # MindSpore's device_id range
[ -d "$DATA_DIR" ] || die_usage "DATA_DIR is not a folder: $DATA_DIR"
DATA_DIR="$(abs_path "$DATA_DIR")"
if [ -n "$PATH_CHECKPOINT" ]; then
  [ -e "$PATH_CHECKPOINT" ] || die_usage "PATH_CHECKPOINT not found: $PATH_CHECKPOINT"
  PATH_CHECKPOINT="$(abs_path "$PATH_CHECKPOINT")"
fi
parse_extra_flags "$@"
resolve_python
check_job_flags ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"}
make_run_dir ""

export DEVICE_ID RANK_ID=0 RANK_SIZE=1
cmd=("$PYTHON_BIN" "$CSPD_REPO/train.py" --is_distributed=0 "--data_dir=$DATA_DIR" "--ckpt_path=$OUTPUT_ROOT")
[ -z "$PATH_CHECKPOINT" ] || cmd+=("--pretrained=$PATH_CHECKPOINT")
cmd+=(${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"})

run_single_job train.py console.log "" "${cmd[@]}"
