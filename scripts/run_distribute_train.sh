#!/usr/bin/env bash
# Data-parallel training on Ascend with an HCCL rank table: one train.py process per device of this
# server, RANK_ID/DEVICE_ID/RANK_SIZE from the table, optional taskset core binding, one run folder
# shared by the ranks with one sub-folder and console log per rank. If any rank fails, the others
# are stopped and the script exits non-zero naming the rank (no hang until the HCCL timeout).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/run_distribute_train.sh [RANK_TABLE_FILE] [DATA_DIR] (option)[PATH_CHECKPOINT] (option)[--key value | --key=value ...]
  RANK_TABLE_FILE  HCCL rank table JSON (version 1.0 "server_list", or the older "group_list" form)
  DATA_DIR         training ImageFolder root (DATA_DIR/<class>/<image>)
  PATH_CHECKPOINT  warm-start checkpoint (train.py --pretrained)
  --key value      further train.py flags (also --key=value)
Environment: PYTHON (default: the repository's .venv, else python3 on PATH; it must have MindSpore),
OUTPUT_ROOT (default ./outputs), CSPDARKNET53_RUN_NAME (set the same name on
every server of a multi-server job), SERVER_ID (this server's server_id in the table; default: the
only server, or the one whose id is a local IP address), BIND_CORES=0 (no taskset),
HCCL_CONNECT_TIMEOUT (default 600), STOP_GRACE_S (default 10), DRY_RUN=1 (print the launches only).
EOF
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 2 ] || die_usage "expected at least 2 arguments, got $#"
RANK_TABLE_FILE="$1"
DATA_DIR="$2"
shift 2
PATH_CHECKPOINT=""
if [ $# -ge 1 ] && [[ "$1" != --* ]]; then
  PATH_CHECKPOINT="$1"
  shift
fi
[ -f "$RANK_TABLE_FILE" ] || die_usage "RANK_TABLE_FILE not found: $RANK_TABLE_FILE"
[ -d "$DATA_DIR" ] || die_usage "DATA_DIR is not a folder: $DATA_DIR"
RANK_TABLE_FILE="$(abs_path "$RANK_TABLE_FILE")"
DATA_DIR="$(abs_path "$DATA_DIR")"
if [ -n "$PATH_CHECKPOINT" ]; then
  [ -e "$PATH_CHECKPOINT" ] || die_usage "PATH_CHECKPOINT not found: $PATH_CHECKPOINT"
  PATH_CHECKPOINT="$(abs_path "$PATH_CHECKPOINT")"
fi
parse_extra_flags "$@"
resolve_python
check_job_flags ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"}

# ---- rank table: "RANK_SIZE <n>" then "<rank_id> <device_id>" per device of this server
LOCAL_IPS="$(hostname -I 2>/dev/null || true)"
table="$("$PYTHON_BIN" - "$RANK_TABLE_FILE" "${SERVER_ID:-}" "$LOCAL_IPS" <<'PYEOF' 2>&1
import json, sys

path, server_id, local_ips = sys.argv[1], sys.argv[2], sys.argv[3].split()
def fail(msg):
    print(f"rank table {path}: {msg}")
    sys.exit(1)
LIMITS = {"rank_id": 65535, "device_id": 4095}  # as src/config.py bounds RANK_ID and DEVICE_ID
def index(entry, key):
    """entry[key] as an int: a whole number, written as a JSON number or a string of digits, within LIMITS."""
    value = entry[key]
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isascii()
                                                                    and value.isdigit())):
        fail(f"every device needs integer rank_id and device_id (0, 1, ... as a number or a string), "
             f"got {key} {json.dumps(value)}")
    if len(str(value)) > 10 or not 0 <= int(value) <= LIMITS[key]:
        fail(f"{key} {str(value)[:20]}{'...' if len(str(value)) > 20 else ''} is out of range 0..{LIMITS[key]}")
    number = int(value)
    return number
try:
    with open(path, encoding="utf-8") as f:
        table = json.load(f)
except (OSError, ValueError) as err:
    fail(f"cannot be parsed as JSON ({err})")
if not isinstance(table, dict):
    fail("is not a JSON object")
servers = []  # (server_id, [(rank_id, device_id)])
if "server_list" in table:  # version 1.0
    if not isinstance(table["server_list"], list):
        fail("server_list is not a list")
    for s in table["server_list"]:
        devs = s.get("device") if isinstance(s, dict) else None
        if not isinstance(devs, list):
            fail("a server_list entry has no device list")
        try:
            servers.append((str(s.get("server_id", "")), [(index(d, "rank_id"), index(d, "device_id")) for d in devs]))
        except (KeyError, TypeError):
            fail("every device needs integer rank_id and device_id")
    if "server_count" in table and str(table["server_count"]) != str(len(servers)):
        fail(f"server_count is {table['server_count']} but server_list has {len(servers)} servers")
elif "group_list" in table:  # version 0.1
    by_server = {}
    try:
        for g in table["group_list"]:
            for inst in g["instance_list"]:
                for d in inst["devices"]:
                    by_server.setdefault(str(inst.get("server_id", "")), []).append(
                        (index(inst, "rank_id"), index(d, "device_id")))
    except (KeyError, TypeError):
        fail("group_list entries need instance_list/devices with integer rank_id and device_id")
    servers = list(by_server.items())
else:
    fail("lists no devices (no server_list or group_list)")
ranks = [r for _, devs in servers for r, _ in devs]
if not ranks:
    fail("lists no devices")
if sorted(ranks) != list(range(len(ranks))):
    fail(f"rank_id values must be 0..{len(ranks) - 1} once each, got {sorted(ranks)}")
for sid, devs in servers:
    ids = [d for _, d in devs]
    if len(set(ids)) != len(ids):
        fail(f"server {sid!r} lists a device_id twice: {ids}")
if len(servers) == 1:
    local = servers[0]
else:
    wanted = [server_id] if server_id else local_ips
    match = [s for s in servers if s[0] in wanted]
    if len(match) != 1:
        fail(f"{len(servers)} servers ({', '.join(s[0] for s in servers)}); cannot tell which one this is "
             f"(SERVER_ID={server_id!r}, local addresses {local_ips}): set SERVER_ID")
    local = match[0]
print("RANK_SIZE", len(ranks))
for rank, device in sorted(local[1]):
    print(rank, device)
PYEOF
)" || die_usage "$table"

RANK_SIZE="$(sed -n 's/^RANK_SIZE //p' <<<"$table")"
mapfile -t LOCAL_RANKS < <(grep -v '^RANK_SIZE ' <<<"$table")
LOCAL_NUM=${#LOCAL_RANKS[@]}

make_run_dir ""
export RANK_TABLE_FILE RANK_SIZE
export HCCL_CONNECT_TIMEOUT="${HCCL_CONNECT_TIMEOUT:-600}"
export DEPLOY_MODE=0 GE_USE_STATIC_MEMORY=1

# taskset binding as in the zoo: the cores split evenly over this server's devices
CORES="$(nproc --all 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
PER_RANK=$((CORES / LOCAL_NUM))
BIND=0
if [ "${BIND_CORES:-1}" != 0 ] && [ "$PER_RANK" -ge 1 ] && command -v taskset >/dev/null 2>&1; then BIND=1; fi

echo "rank table $RANK_TABLE_FILE: $RANK_SIZE devices in all, $LOCAL_NUM on this server; run folder $RUN_DIR"
[ "$BIND" = 1 ] || echo "no core binding (BIND_CORES=${BIND_CORES:-1}, $CORES cores, taskset $(command -v taskset >/dev/null 2>&1 && echo found || echo missing))"

declare -A PID_RANK PID_DEVICE
PIDS=()
stop_all() {  # stops the ranks still running: SIGTERM to each rank's process group, SIGKILL after a grace
  local pid deadline
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + ${STOP_GRACE_S:-10}))
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
trap 'echo "interrupted: stopping all ranks" >&2; stop_all; exit 130' INT TERM

i=0
for line in "${LOCAL_RANKS[@]}"; do
  read -r rank device <<<"$line"
  rank_dir="$RUN_DIR/rank$rank"
  cmd=("$PYTHON_BIN" "$CSPD_REPO/train.py" --is_distributed=1 --device_target=Ascend "--data_dir=$DATA_DIR"
       "--ckpt_path=$OUTPUT_ROOT")
  [ -z "$PATH_CHECKPOINT" ] || cmd+=("--pretrained=$PATH_CHECKPOINT")
  cmd+=(${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"})
  if [ "$BIND" = 1 ]; then
    cmd=(taskset -c "$((i * PER_RANK))-$((i * PER_RANK + PER_RANK - 1))" "${cmd[@]}")
  fi
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "[dry run] rank $rank: cd $rank_dir; RANK_TABLE_FILE=$RANK_TABLE_FILE RANK_SIZE=$RANK_SIZE RANK_ID=$rank DEVICE_ID=$device CSPDARKNET53_RUN_NAME=$RUN_NAME $(show_cmd "${cmd[@]}") > $rank_dir/console.log"
  else
    mkdir -p "$rank_dir"
    (
      cd "$rank_dir"
      export RANK_ID="$rank" DEVICE_ID="$device"
      env > env.log
      exec setsid -w "${cmd[@]}" > console.log 2>&1
    ) &
    PIDS+=($!)
    PID_RANK[$!]="$rank"
    PID_DEVICE[$!]="$device"
    echo "rank $rank (device $device, pid $!): log $rank_dir/console.log"
  fi
  i=$((i + 1))
done
[ "${DRY_RUN:-0}" != 1 ] || exit 0

# ---- wait; the first rank that fails stops the job
running=("${PIDS[@]}")
while [ ${#running[@]} -gt 0 ]; do
  status=0
  done_pid=""
  wait -n -p done_pid "${running[@]}" || status=$?
  [ -n "$done_pid" ] || die "lost track of the rank processes (wait returned $status)"
  still=()
  for pid in "${running[@]}"; do [ "$pid" = "$done_pid" ] || still+=("$pid"); done
  running=(${still[@]+"${still[@]}"})
  if [ "$status" -ne 0 ]; then
    rank="${PID_RANK[$done_pid]}"
    {
      echo "error: rank $rank (device ${PID_DEVICE[$done_pid]}, pid $done_pid) $(describe_status "$status"); stopping the other ranks"
      tail_log "$RUN_DIR/rank$rank/console.log"
    } >&2
    stop_all
    echo "error: distributed training failed: rank $rank $(describe_status "$status"); logs in $RUN_DIR" >&2
    exit 1
  fi
done
echo "done: all $LOCAL_NUM ranks finished; outputs in $RUN_DIR"
