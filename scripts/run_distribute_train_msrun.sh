#!/usr/bin/env bash
# Data-parallel training through MindSpore's own launcher msrun (GPU, CPU, also Ascend without a rank
# table). One run folder per job: train.py's outputs (log.txt for rank 0, log_rank<r>.txt for the
# others), msrun's logs (msrun_log/worker_<r>.log, scheduler.log) and msrun.log (the launcher's output).
#
# Watchdog: when a worker exits with an error, msrun kills the other local workers and then waits for
# its scheduler, which gives up on the dead node after the heartbeat timeout (about 30 s measured on
# CPU) or, if the cluster was not built yet, after cluster_time_out. This script polls msrun's output
# once a second, maps the failed worker's pid to its rank, and if msrun has not ended EXIT_GRACE_S
# seconds after the failure it kills what is left of the job. It always ends with a non-zero status
# and a message naming the rank.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/run_distribute_train_msrun.sh [DEVICE_NUM] [DATA_DIR] [DEVICE_TARGET] (option)[--key value | --key=value ...]
  DEVICE_NUM     processes (devices) on this node
  DATA_DIR       training ImageFolder root (DATA_DIR/<class>/<image>)
  DEVICE_TARGET  GPU | CPU | Ascend
  --key value    further train.py flags (also --key=value), e.g. --pretrained x.ckpt --per_batch_size=32
Environment:
  NODE_NUM (1), NODE_RANK (0)      multi-node: run the script on every node with its NODE_RANK;
                                   global ranks are NODE_RANK*DEVICE_NUM + 0..DEVICE_NUM-1
  MASTER_ADDR                      address of node 0 (default 127.0.0.1; required when NODE_NUM>1)
  MASTER_PORT                      scheduler port (default: a free port on one node, 8118 on several)
  CLUSTER_TIME_OUT (600)           seconds msrun waits for all workers to join
  EXIT_GRACE_S (60)                seconds the watchdog gives msrun to stop after a worker failed
  BIND_CORE=1                      msrun --bind_core=True
  PYTHON                           default: the repository's .venv, else python3 on PATH (must have MindSpore)
  GLOG_v (3)                       MindSpore's C++ log level (3: errors only)
  MSRUN, OUTPUT_ROOT (./outputs), CSPDARKNET53_RUN_NAME (same on every node), DRY_RUN=1, QUIET=1
EOF
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 3 ] || die_usage "expected at least 3 arguments, got $#"
DEVICE_NUM="$1"
DATA_DIR="$2"
DEVICE_TARGET="$3"
shift 3
{ is_uint "$DEVICE_NUM" && [ "${#DEVICE_NUM}" -le 4 ] && [ "$((10#$DEVICE_NUM))" -ge 1 ] && [ "$((10#$DEVICE_NUM))" -le 4096 ]; } \
  || die_usage "DEVICE_NUM must be an integer in 1..4096, got '$DEVICE_NUM'"
[ -d "$DATA_DIR" ] || die_usage "DATA_DIR is not a folder: $DATA_DIR"
case "$DEVICE_TARGET" in
  GPU|CPU|Ascend) ;;
  *) die_usage "DEVICE_TARGET must be GPU, CPU or Ascend, got '$DEVICE_TARGET'" ;;
esac
DATA_DIR="$(abs_path "$DATA_DIR")"
NODE_NUM="${NODE_NUM:-1}"
NODE_RANK="${NODE_RANK:-0}"
{ is_uint "$NODE_NUM" && [ "${#NODE_NUM}" -le 4 ] && [ "$((10#$NODE_NUM))" -ge 1 ] && [ "$((10#$NODE_NUM))" -le 4096 ]; } \
  || die_usage "NODE_NUM must be an integer in 1..4096, got '$NODE_NUM'"
NODE_NUM=$((10#$NODE_NUM))
DEVICE_NUM=$((10#$DEVICE_NUM))
{ is_uint "$NODE_RANK" && [ "${#NODE_RANK}" -le 4 ] && [ "$((10#$NODE_RANK))" -lt "$NODE_NUM" ]; } \
  || die_usage "NODE_RANK must be in 0..$((NODE_NUM - 1)), got '$NODE_RANK'"
[ $((DEVICE_NUM * NODE_NUM)) -le 65536 ] \
  || die_usage "DEVICE_NUM x NODE_NUM must be at most 65536 workers, got $DEVICE_NUM x $NODE_NUM"
if [ "$NODE_NUM" -gt 1 ]; then
  [ -n "${MASTER_ADDR:-}" ] || die_usage "NODE_NUM=$NODE_NUM: set MASTER_ADDR to the address of node 0"
  MASTER_PORT="${MASTER_PORT:-8118}"
else
  MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
fi
CLUSTER_TIME_OUT="${CLUSTER_TIME_OUT:-600}"
EXIT_GRACE_S="${EXIT_GRACE_S:-60}"
check_uint "CLUSTER_TIME_OUT (seconds)" "$CLUSTER_TIME_OUT" 999999999
check_uint "EXIT_GRACE_S (seconds)" "$EXIT_GRACE_S" 999999999
if [ -n "${MASTER_PORT:-}" ]; then
  { is_uint "$MASTER_PORT" && [ "${#MASTER_PORT}" -le 5 ] && [ "$((10#$MASTER_PORT))" -ge 1 ] && [ "$((10#$MASTER_PORT))" -le 65535 ]; } \
    || die_usage "MASTER_PORT must be a port number in 1..65535, got '$MASTER_PORT'"
fi
parse_extra_flags "$@"
resolve_python
check_job_flags ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"}
if [ -z "${MASTER_PORT:-}" ]; then
  MASTER_PORT="$("$PYTHON_BIN" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
WORKER_NUM=$((DEVICE_NUM * NODE_NUM))
if [ "$DEVICE_TARGET" = CPU ] && [ "$DEVICE_NUM" -gt "$(nproc)" ]; then
  echo "warning: $DEVICE_NUM CPU workers on $(nproc) cores: they will share cores" >&2
fi

make_run_dir ""
LOG_DIR="$RUN_DIR/msrun_log"
if [ "$NODE_NUM" -gt 1 ]; then MSRUN_LOG="$RUN_DIR/msrun_node$NODE_RANK.log"; else MSRUN_LOG="$RUN_DIR/msrun.log"; fi

# msrun starts the workers as `python <script>` from PATH: make that name run PYTHON_BIN.
if [ -n "${MSRUN:-}" ]; then
  read -r -a MSRUN_CMD <<<"$MSRUN"
elif [ -x "$(dirname "$PYTHON_BIN")/msrun" ]; then
  MSRUN_CMD=("$(dirname "$PYTHON_BIN")/msrun")
else
  MSRUN_CMD=("$PYTHON_BIN" -m mindspore.parallel.cluster.run)
fi
cmd=("${MSRUN_CMD[@]}" "--worker_num=$WORKER_NUM" "--local_worker_num=$DEVICE_NUM" "--master_addr=$MASTER_ADDR"
     "--master_port=$MASTER_PORT" "--log_dir=$LOG_DIR" --join=True "--cluster_time_out=$CLUSTER_TIME_OUT")
[ "$NODE_NUM" -eq 1 ] || cmd+=("--node_rank=$NODE_RANK")
[ "${BIND_CORE:-0}" != 1 ] || cmd+=(--bind_core=True)
cmd+=("$CSPD_REPO/train.py" --is_distributed=1 "--device_target=$DEVICE_TARGET" "--data_dir=$DATA_DIR"
      "--ckpt_path=$OUTPUT_ROOT" ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"})

if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "[dry run] cd $RUN_DIR; CSPDARKNET53_RUN_NAME=$RUN_NAME $(show_cmd "${cmd[@]}") > $MSRUN_LOG"
  exit 0
fi

cd "$RUN_DIR"
if [ "$(command -v python 2>/dev/null || true)" != "$PYTHON_BIN" ]; then
  mkdir -p "$RUN_DIR/.bin"
  printf '#!/bin/sh\nexec %q "$@"\n' "$PYTHON_BIN" > "$RUN_DIR/.bin/python"
  chmod +x "$RUN_DIR/.bin/python"
  export PATH="$RUN_DIR/.bin:$PATH"
fi
env > env.log
echo "run folder: $RUN_DIR; $WORKER_NUM workers ($DEVICE_NUM on node $NODE_RANK of $NODE_NUM), master $MASTER_ADDR:$MASTER_PORT"
show_cmd "${cmd[@]}" > msrun_cmd.txt

"${cmd[@]}" > "$MSRUN_LOG" 2>&1 &
MSRUN_PID=$!
TAIL_PID=""
if [ "${QUIET:-0}" != 1 ]; then
  # msrun copies the workers' logs to its output; MindSpore's cluster code logs "[INFO] DISTRIBUTED(...)"
  # lines at exit whatever GLOG_v says: the console leaves out INFO/DEBUG lines (msrun.log keeps them)
  tail -n +1 -F --pid="$MSRUN_PID" "$MSRUN_LOG" 2>/dev/null | grep --line-buffered -v -E '^\[(INFO|DEBUG)\] [A-Z_]+\(' &
  TAIL_PID=$!
fi

declare -A WORKER_RANK   # worker pid -> global rank
map_workers() {
  local pid role rank
  for pid in $(ps -o pid= --ppid "$MSRUN_PID" 2>/dev/null); do
    [ -z "${WORKER_RANK[$pid]:-}" ] || continue
    [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != tail ] || continue
    role="$(proc_env "$pid" MS_ROLE)"
    if [ "$role" = MS_WORKER ]; then
      rank="$(proc_env "$pid" MS_NODE_ID)"
      [ -n "$rank" ] || rank="?(local $(proc_env "$pid" DEVICE_ID))"
      WORKER_RANK[$pid]="$rank"
    fi
  done
}

force_stop() {  # kills what is left of this job: the workers' process groups, msrun's other children, msrun
  local pid
  for pid in "${!WORKER_RANK[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
  for pid in $(descendants "$MSRUN_PID"); do kill -KILL "$pid" 2>/dev/null || true; done
  kill -KILL "$MSRUN_PID" 2>/dev/null || true
}

FAIL_PID=""
FAIL_CODE=""
FAIL_AT=""
FORCED=0
find_failure() {  # msrun's line: "Worker process <pid> exit with exception. Error code: <code>."
  local line
  line="$(grep -m 1 -E 'Worker process [0-9]+ exit with exception' "$MSRUN_LOG" 2>/dev/null || true)"
  if [ -n "$line" ] && [ -z "$FAIL_PID" ]; then
    FAIL_PID="$(sed -E 's/.*Worker process ([0-9]+) exit with exception.*/\1/' <<<"$line")"
    FAIL_CODE="$(sed -nE 's/.*Error code: (-?[0-9]+).*/\1/p' <<<"$line")"
    FAIL_AT=$SECONDS
  fi
}

interrupted() {
  echo "interrupted: stopping the job" >&2
  kill -INT "$MSRUN_PID" 2>/dev/null || true  # msrun kills its workers on SIGINT
  sleep 3
  force_stop
  exit 130
}
trap interrupted INT TERM

while alive "$MSRUN_PID"; do
  map_workers
  if [ -z "$FAIL_PID" ]; then
    find_failure
    if [ -n "$FAIL_PID" ]; then
      echo "watchdog: rank ${WORKER_RANK[$FAIL_PID]:-?} (pid $FAIL_PID) $(describe_status "${FAIL_CODE:-?}"); waiting up to ${EXIT_GRACE_S} s for msrun to stop the job" >&2
    fi
  elif [ $((SECONDS - FAIL_AT)) -ge "$EXIT_GRACE_S" ]; then
    echo "watchdog: msrun still running ${EXIT_GRACE_S} s after the failure; killing the job" >&2
    FORCED=1
    force_stop
    break
  fi
  sleep 1
done
rc=0
{ wait "$MSRUN_PID"; } 2>/dev/null || rc=$?  # (no "Killed" job notice from bash)
[ -z "$TAIL_PID" ] || wait "$TAIL_PID" 2>/dev/null || true
[ -n "$FAIL_PID" ] || find_failure

rank_logs() {  # the logs of one rank
  local rank="$1"
  tail_log "$LOG_DIR/worker_$rank.log" 10
  if [ "$rank" = 0 ]; then tail_log "$RUN_DIR/log.txt" 5; else tail_log "$RUN_DIR/log_rank$rank.txt" 5; fi
}

if [ -n "$FAIL_PID" ]; then
  rank="${WORKER_RANK[$FAIL_PID]:-}"
  if [ -z "$rank" ]; then  # died before the watchdog saw it: name the ranks whose logs show an error
    rank="$(grep -l -E 'Traceback|Error' "$LOG_DIR"/worker_*.log 2>/dev/null | sed -E 's/.*worker_([0-9]+)\.log/\1/' | paste -sd, || true)"
    rank="${rank:-unknown}"
  fi
  {
    echo "error: distributed training failed: rank $rank (pid $FAIL_PID) $(describe_status "${FAIL_CODE:-?}");" \
         "$([ "$FORCED" = 1 ] && echo "the watchdog killed the rest of the job after ${EXIT_GRACE_S} s" || echo "msrun stopped the other workers (msrun status $rc)")"
    [[ "$rank" =~ ^[0-9]+$ ]] && rank_logs "$rank"
    echo "  logs: $RUN_DIR (msrun.log, msrun_log/worker_<rank>.log, log.txt / log_rank<rank>.txt)"
  } >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  {
    echo "error: msrun $(describe_status "$rc")"
    tail_log "$MSRUN_LOG" 10
    echo "  logs: $RUN_DIR"
  } >&2
  exit "$rc"
fi
echo "done: $WORKER_NUM workers finished; outputs in $RUN_DIR"
