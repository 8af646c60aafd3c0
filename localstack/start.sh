#!/usr/bin/env bash
# Starts LocalStack (installed by install.sh) in the background on
# 127.0.0.1:4566, without Docker and without internet, and waits until it is
# ready.  Lambda functions run as host processes through the `local-process`
# runtime executor (./plugin).
#
# Writes .state/run/localstack.pid and .state/localstack.log.  Exits non-zero
# (printing the log tail) when LocalStack does not become ready in time.
#
# Environment knobs (all optional):
#   LOCALSTACK_START_TIMEOUT  seconds to wait for readiness (default 90)
#   LOCALSTACK_SERVICES       override the service list
#   LOCALSTACK_DEBUG=1        DEBUG=1 for LocalStack (verbose log)
#   LOCALSTACK_SKIP_INSTALL=1 do not run install.sh first
#   LOCALSTACK_PORT           gateway port (default 4566; e.g. a second copy)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$HERE/.state"
PIDFILE="$STATE/run/localstack.pid"
LOGFILE="$STATE/localstack.log"
PORT="${LOCALSTACK_PORT:-4566}"
ENDPOINT="http://127.0.0.1:$PORT"
TIMEOUT="${LOCALSTACK_START_TIMEOUT:-90}"
# services the project uses; every name here is a LocalStack 2026.3.0 provider
SERVICES="${LOCALSTACK_SERVICES:-dynamodb,dynamodbstreams,kinesis,lambda,stepfunctions,cloudformation,apigateway,iam,sts,sqs,sns,s3,logs,events,scheduler,ssm,cloudwatch}"

log() { printf '[start] %s\n' "$*" >&2; }

is_running() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

if is_running; then
  if curl -fsS -m 2 "$ENDPOINT/_localstack/health" >/dev/null 2>&1; then
    log "already running (pid $(cat "$PIDFILE"))"
    exit 0
  fi
  log "pid $(cat "$PIDFILE") is alive but not answering: stopping it first"
  "$HERE/stop.sh"
fi

# install (a no-op taking well under a second when nothing changed); only
# when not running, so a running instance's files are never swapped under it
if [[ "${LOCALSTACK_SKIP_INSTALL:-0}" != 1 ]]; then
  "$HERE/install.sh"
fi

# the gateway port must be free, or LocalStack would fail half-way
if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then
  echo "[start] ERROR: something else listens on 127.0.0.1:$PORT (not started by this script)" >&2
  exit 1
fi

mkdir -p "$STATE/run/lambda" "$STATE/tmp" "$STATE/cache" "$STATE/lambda-logs" "$STATE/s3-storage"
# leftovers of a killed run: its function processes were stopped by stop.sh
rm -f "$STATE/run/lambda/"*

# --- environment for LocalStack -----------------------------------------------------------
# Host mode: FILESYSTEM_ROOT holds what the container image would have under
# /var/lib/localstack and /tmp/localstack; OVERRIDE_IN_DOCKER=0 because the
# sandbox has a /.dockerenv that would make LocalStack think it is in its image.
export FILESYSTEM_ROOT="$STATE/filesystem"
export OVERRIDE_IN_DOCKER=0
# loopback only; hypercorn honours the host (the default server binds 0.0.0.0)
export GATEWAY_LISTEN="127.0.0.1:$PORT"
export GATEWAY_SERVER=hypercorn
# no DNS server (it would want port 53), no analytics events (no internet),
# no certificate download (no internet)
export DNS_ADDRESS=0
export DISABLE_EVENTS=1
export SKIP_SSL_CERT_DOWNLOAD=1
export SERVICES
export EAGER_SERVICE_LOADING=0
# DynamoDB Local in memory; the v2 providers use DynamoDB Local's own streams
# (the default provider keeps them in kinesis-mock and breaks when a table is
# deleted and re-created)
export DYNAMODB_IN_MEMORY=1
export PROVIDER_OVERRIDE_DYNAMODB=v2
export PROVIDER_OVERRIDE_DYNAMODBSTREAMS=v2
# kinesis-mock in its Node flavour (installed from npm by install.sh)
export KINESIS_MOCK_PROVIDER_ENGINE=node
# Lambda: run bootstraps as host processes (plugin/), logs under .state
export LAMBDA_RUNTIME_EXECUTOR=local-process
export LOCAL_LAMBDA_STATE_DIR="$STATE"
# helper processes (DynamoDB Local, kinesis-mock) get ports from a fixed
# range (plugin hook) and bind loopback only: the Java agent installed as
# ddb-local-loader-0.1.jar does it for DynamoDB Local, this Node preload for
# kinesis-mock
export LOCAL_PORT_RANGE="${LOCAL_PORT_RANGE:-4510-4559}"
export NODE_OPTIONS="--require $HERE/support/loopback-listen.js"
# keep LocalStack's scratch files (unzipped Lambda code, S3 objects, plux
# entry-point cache) inside .state instead of /tmp and ~/.cache
export TMPDIR="$STATE/tmp"
export XDG_CACHE_HOME="$STATE/cache"
export LOCAL_S3_STORAGE_DIR="$STATE/s3-storage"
# DynamoDB Local's JVM ignores TMPDIR: its sqlite4java native library would be
# unpacked into /tmp (and left there), and hsperfdata written to /tmp too
export JAVA_TOOL_OPTIONS="-Djava.io.tmpdir=$STATE/tmp -XX:-UsePerfData"
if [[ "${LOCALSTACK_DEBUG:-0}" == 1 ]]; then export DEBUG=1; fi
# LocalStack's own AWS clients must not inherit a developer's real account
unset AWS_PROFILE AWS_ENDPOINT_URL
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1

T0=$(date +%s%3N)
log "starting LocalStack ($LOGFILE)"
# setsid: own session and process group, so stop.sh can signal the whole
# tree (LocalStack, DynamoDB Local, kinesis-mock) and it survives this shell
setsid "$STATE/venv/bin/python" -m localstack.runtime.main >"$LOGFILE" 2>&1 </dev/null &
echo $! >"$PIDFILE"
PID=$(cat "$PIDFILE")

fail() {
  echo "[start] ERROR: $*" >&2
  echo "[start] ---- last 40 lines of $LOGFILE ----" >&2
  tail -n 40 "$LOGFILE" >&2 || true
  "$HERE/stop.sh" >/dev/null 2>&1 || true
  exit 1
}

# --- wait for health: every service we need "available" or "running" -------------------
HEALTH_CHECK='
import json, sys
want = sys.argv[1].split(",")
try:
    services = json.loads(sys.argv[2]).get("services", {})
except ValueError:
    sys.exit(1)
bad = [s for s in want if services.get(s) not in ("available", "running")]
sys.exit(1 if bad else 0)
'
health_ok() {
  local body
  body="$(curl -fsS -m 2 "$ENDPOINT/_localstack/health" 2>/dev/null)" || return 1
  "$STATE/venv/bin/python" -c "$HEALTH_CHECK" "$SERVICES" "$body"
}
deadline=$(( $(date +%s) + TIMEOUT ))
until health_ok; do
  kill -0 "$PID" 2>/dev/null || fail "LocalStack exited during start-up"
  (( $(date +%s) < deadline )) || fail "not ready after ${TIMEOUT}s"
  sleep 0.25
done
# milliseconds as "s.mmm" without needing bc
elapsed() { local ms=$(( $(date +%s%3N) - T0 )); printf '%d.%03ds' $((ms / 1000)) $((ms % 1000)); }
log "gateway ready after $(elapsed)"

# --- pre-warm DynamoDB: the first call starts the DynamoDB Local JVM ------------------------
"$STATE/venv/bin/python" - "$ENDPOINT" <<'PY' || fail "DynamoDB pre-warm failed"
import sys, time
import boto3
from botocore.config import Config
client = boto3.client("dynamodb", endpoint_url=sys.argv[1], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test",
                      config=Config(retries={"max_attempts": 10, "mode": "standard"},
                                    read_timeout=60))
deadline = time.time() + 60
while True:
    try:
        client.list_tables()
        break
    except Exception as e:  # JVM still starting
        if time.time() > deadline:
            raise
        time.sleep(0.5)
PY
log "ready: $ENDPOINT (pid $PID; DynamoDB warm after $(elapsed) in total)"
