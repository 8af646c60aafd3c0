#!/usr/bin/env bash
# Runs `healthpay bench dynamodb` against a freshly started LocalStack (DynamoDB
# Local inside), then stops that LocalStack again.
#
# Why fresh: DynamoDB Local (in memory, in LocalStack's JVM) gets slower as
# stream records pile up, and our events table has a stream; a run on a
# long-lived emulator measures its history, not this code. So every run gets
# its own emulator.
#
# It uses its own copy of localstack/ (default /tmp/healthpay-bench-localstack)
# on its own port (default 4577) and helper-port range (4600-4649), so a
# LocalStack that CI or a developer runs on 4566 is left alone.
#
#   cargo build --release -p healthpay && cargo build --release -p bench-peer
#   bench/dynamodb.sh --clients 16 --wallets 256 --duration 20 [--skip-server] …
#
# Environment: HEALTHPAY (the healthpay binary; default $CARGO_TARGET_DIR or
# target/, release), LOCALSTACK_PORT, BENCH_LOCALSTACK_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${LOCALSTACK_PORT:-4577}"
DIR="${BENCH_LOCALSTACK_DIR:-/tmp/healthpay-bench-localstack}"
HEALTHPAY="${HEALTHPAY:-${CARGO_TARGET_DIR:-$ROOT/target}/release/healthpay}"

[[ -x "$HEALTHPAY" ]] || { echo "bench/dynamodb.sh: no $HEALTHPAY (cargo build --release -p healthpay)" >&2; exit 1; }
if curl -fsS -m 2 "http://127.0.0.1:$PORT/_localstack/health" >/dev/null 2>&1; then
  echo "bench/dynamodb.sh: something already answers on 127.0.0.1:$PORT; set LOCALSTACK_PORT to a free port" >&2
  exit 1
fi

# A copy of localstack/ (scripts only; its .state is its own), refreshed when the scripts change.
mkdir -p "$DIR"
(cd "$ROOT/localstack" && tar --exclude=.state -cf - .) | tar -C "$DIR" -xf -
"$DIR/install.sh"

export LOCALSTACK_PORT="$PORT" LOCAL_PORT_RANGE="${LOCAL_PORT_RANGE:-4600-4649}" LOCALSTACK_SERVICES=dynamodb,dynamodbstreams
trap '"$DIR/stop.sh" >/dev/null 2>&1 || true' EXIT
LOCALSTACK_SKIP_INSTALL=1 "$DIR/start.sh"
# shellcheck source=/dev/null
source "$DIR/env.sh"
unset AWS_ENDPOINT_URL   # the endpoint is given explicitly
echo "uptime before the run: $(uptime)" >&2
"$HEALTHPAY" bench dynamodb --endpoint-url "http://127.0.0.1:$PORT" "$@"
