#!/usr/bin/env bash
# Stops the LocalStack started by start.sh and everything it started:
# DynamoDB Local (java), kinesis-mock (node) and Lambda function processes.
# Safe to run when nothing runs; leaves no process behind.
#
# Order: SIGTERM to LocalStack (its shutdown stops the emulators and the Lambda
# environments), then SIGTERM/SIGKILL to whatever of the remembered tree is
# still there, then a sweep for processes running from .state (e.g. a JVM
# left over from a LocalStack that was killed with SIGKILL).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$HERE/.state"
PIDFILE="$STATE/run/localstack.pid"
LAMBDA_PIDS="$STATE/run/lambda"
GRACE="${LOCALSTACK_STOP_GRACE:-20}"

log() { printf '[stop] %s\n' "$*" >&2; }

alive() { kill -0 "$1" 2>/dev/null; }

cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true; }

# children of every process, from /proc (no dependency on ps)
declare -A CHILDREN=()
snapshot_tree() {
  CHILDREN=()
  local stat pid rest ppid
  for stat in /proc/[0-9]*/stat; do
    pid="${stat#/proc/}"; pid="${pid%/stat}"
    rest="$(cat "$stat" 2>/dev/null)" || continue
    # the command name may contain spaces and ')': fields start after the last ')'
    rest="${rest##*) }"
    ppid="$(cut -d' ' -f2 <<<"$rest")"
    CHILDREN[$ppid]+=" $pid"
  done
}
descendants() {
  local pid child
  for child in ${CHILDREN[$1]:-}; do
    echo "$child"
    descendants "$child"
  done
}

wait_gone() { # wait_gone SECONDS PID... -> 0 when all are gone
  local end=$(( $(date +%s) + $1 )); shift
  local pid any
  while :; do
    any=0
    for pid in "$@"; do alive "$pid" && any=1 && break; done
    [[ $any -eq 0 ]] && return 0
    (( $(date +%s) < end )) || return 1
    sleep 0.2
  done
}

TARGETS=()
STOPPED_SOMETHING=0

if [[ -f "$PIDFILE" ]]; then
  PID="$(cat "$PIDFILE")"
  # a stale pid file may name an unrelated process by now: check what it runs
  if alive "$PID" && [[ "$(cmdline "$PID")" == *localstack.runtime.main* ]]; then
    snapshot_tree
    mapfile -t TREE < <(descendants "$PID")
    TARGETS+=("$PID" "${TREE[@]}")
    log "stopping LocalStack (pid $PID, ${#TREE[@]} child processes)"
    kill -TERM "$PID" 2>/dev/null || true
    if ! wait_gone "$GRACE" "$PID"; then
      log "LocalStack did not exit in ${GRACE}s: SIGKILL"
      kill -KILL "$PID" 2>/dev/null || true
    fi
    STOPPED_SOMETHING=1
  fi
fi

# Lambda function processes registered by the executor (each leads its own
# process group, which also holds whatever the bootstrap started)
if [[ -d "$LAMBDA_PIDS" ]]; then
  for f in "$LAMBDA_PIDS"/*; do
    [[ -e "$f" ]] || continue
    pid="$(basename "$f")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid"; then
      TARGETS+=("$pid")
      kill -TERM -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
fi

# anything still running from .state: DynamoDB Local (java) and kinesis-mock
# (node) are started from $STATE/filesystem/..., LocalStack from $STATE/venv,
# so their command lines name it.  Only those programs are matched, never a
# shell or editor that merely mentions the path.
for proc in /proc/[0-9]*; do
  pid="${proc#/proc/}"
  line="$(cmdline "$pid")"
  [[ "$line" == *"$STATE/"* ]] || continue
  prog="${line%% *}"
  case "${prog##*/}" in
    java | node) TARGETS+=("$pid") ;;
    python*) [[ "$line" == *localstack.runtime.main* ]] && TARGETS+=("$pid") ;;
  esac
done

if [[ ${#TARGETS[@]} -gt 0 ]]; then
  for pid in "${TARGETS[@]}"; do
    if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  if ! wait_gone 5 "${TARGETS[@]}"; then
    for pid in "${TARGETS[@]}"; do
      if alive "$pid"; then
        log "SIGKILL $pid ($(cmdline "$pid" | cut -c1-80))"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    wait_gone 5 "${TARGETS[@]}" || log "WARNING: some processes survived SIGKILL"
  fi
  STOPPED_SOMETHING=1
fi

rm -f "$PIDFILE"
if [[ $STOPPED_SOMETHING -eq 1 ]]; then log "stopped"; else log "nothing was running"; fi
