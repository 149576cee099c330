#!/usr/bin/env bash
# Evaluate a checkpoint (or a folder of checkpoints) on one device. Works from any directory.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/run_eval.sh [DEVICE_ID] [DATA_DIR] [PATH_CHECKPOINT] (option)[--key value | --key=value ...]
  DEVICE_ID        device to use (Ascend/GPU; ignored on CPU)
  DATA_DIR         validation ImageFolder root (DATA_DIR/<class>/<image>)
  PATH_CHECKPOINT  checkpoint file, or a folder of checkpoints (eval.py --pretrained)
  --key value      further eval.py flags (also --key=value), e.g. --per_batch_size 32 --arch=cspdarknet_tiny
Environment: PYTHON (default: the repository's .venv, else python3 on PATH; it must have MindSpore),
OUTPUT_ROOT (default ./outputs), CSPDARKNET53_RUN_NAME, DRY_RUN=1, GLOG_v (default 3).
The run folder <OUTPUT_ROOT>/eval_<timestamp> gets eval.py's outputs (eval_result.json,
eval_rank0.log, config.yaml) and log.txt (everything the process printed, with the result lines).
EOF
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 3 ] || die_usage "expected 3 arguments, got $#"
DEVICE_ID="$1"
DATA_DIR="$2"
PATH_CHECKPOINT="$3"
shift 3
check_uint DEVICE_ID "$DEVICE_ID" 4095  # MindSpore's device_id range
[ -d "$DATA_DIR" ] || die_usage "DATA_DIR is not a folder: $DATA_DIR"
[ -e "$PATH_CHECKPOINT" ] || die_usage "PATH_CHECKPOINT not found: $PATH_CHECKPOINT"
DATA_DIR="$(abs_path "$DATA_DIR")"
PATH_CHECKPOINT="$(abs_path "$PATH_CHECKPOINT")"
parse_extra_flags "$@"
resolve_python
check_job_flags ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"}
make_run_dir "eval_"

export DEVICE_ID RANK_ID=0 RANK_SIZE=1
cmd=("$PYTHON_BIN" "$CSPD_REPO/eval.py" --is_distributed=0 "--data_dir=$DATA_DIR" "--pretrained=$PATH_CHECKPOINT"
     "--log_path=$OUTPUT_ROOT" ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"})

run_single_job eval.py log.txt " (eval_result.json)" "${cmd[@]}"
