#!/usr/bin/env bash
# End-to-end proof that Lambda functions really execute on this LocalStack
# without Docker: invoke, errors, timeouts, init failures, logs, Step Functions
# Retry/Catch, DynamoDB-stream and Kinesis event source mappings, a SAM stack,
# API Gateway REST proxy integration and a function calling LocalStack back.
# The test function is a shell script using curl (support/selftest/function),
# so no Rust build is needed.
#
# Starts LocalStack when it is not running (and stops it again afterwards);
# reuses a running one otherwise.  Prints one line per check and
# "N passed, N failed"; exits non-zero when a check failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$HERE/.state"

command -v curl >/dev/null || { echo "selftest: curl is needed by the test function" >&2; exit 1; }

STARTED=0
if ! curl -fsS -m 2 "http://127.0.0.1:${LOCALSTACK_PORT:-4566}/_localstack/health" >/dev/null 2>&1; then
  "$HERE/start.sh"
  STARTED=1
fi
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() { if [[ $STARTED -eq 1 ]]; then "$HERE/stop.sh"; fi; }
trap cleanup EXIT

# shellcheck source=env.sh
source "$HERE/env.sh"
export SELFTEST_STATE_DIR="$STATE"
export SELFTEST_RECORD_DIR="$STATE/selftest"
mkdir -p "$SELFTEST_RECORD_DIR"

T0=$(date +%s%3N)
rc=0
"$STATE/venv/bin/python" "$HERE/support/selftest/selftest.py" || rc=$?
echo "selftest: checks took $(( ($(date +%s%3N) - T0) / 1000 )).$(( ($(date +%s%3N) - T0) % 1000 / 100 ))s" >&2
exit $rc
