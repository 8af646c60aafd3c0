#!/usr/bin/env bash
# The project's one test command: every test, from a fresh clone, on a fresh machine
# of this kind (a Rust toolchain; Python, Java and Node as the machine image has
# them). It installs what else it needs, starts LocalStack itself and stops it.
#
#   ./test.sh                       everything (CI runs exactly this)
#   HEALTHPAY_SKIP_LOCALSTACK=1 ./test.sh   only what needs no emulator (quick local loop)
#
# Phases: format; unit + conformance + end-to-end tests on the embedded backends;
# template lint (cfn-lint, sam validate --lint); LocalStack install + start; the
# DynamoDB adapter's conformance suite on LocalStack's DynamoDB; deploy
# template.yaml to LocalStack; integration tests against the deployed stack.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$PWD"

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export SAM_CLI_TELEMETRY=0
# One build from a fresh clone: incremental-compilation caches would only take disk
# (gigabytes across 50 function binaries and the test binaries) and never be reused.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
started=$SECONDS
step() { printf '\n== %s  (+%ss)\n' "$*" "$((SECONDS - started))"; }

step "format"
if rustfmt --version >/dev/null 2>&1; then
  cargo fmt --all --check
else
  echo "rustfmt is not installed: skipping the format check"
fi

step "unit, conformance and end-to-end tests (embedded backends)"
cargo test --workspace --locked

if [[ "${HEALTHPAY_SKIP_LOCALSTACK:-}" == 1 ]]; then
  echo "HEALTHPAY_SKIP_LOCALSTACK=1: skipping the template lint and every LocalStack phase"
  exit 0
fi

step "test tooling (.tools/venv: cfn-lint, SAM CLI, pytest)"
TOOLS="$ROOT/.tools/venv"
stamp="$(sha256sum tools/requirements.txt | cut -c1-16)"
if [[ ! -x "$TOOLS/bin/pytest" || "$(cat "$TOOLS/.stamp" 2>/dev/null)" != "$stamp" ]]; then
  rm -rf "$TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements.txt
  echo "$stamp" > "$TOOLS/.stamp"
fi

step "template lint"
"$TOOLS/bin/cfn-lint" template.yaml
"$TOOLS/bin/sam" validate --lint --region us-east-1 --template-file template.yaml

step "LocalStack: install and start (no Docker)"
localstack/install.sh
trap 'printf "\n== stopping LocalStack\n"; localstack/stop.sh || true' EXIT
LOCALSTACK_SKIP_INSTALL=1 localstack/start.sh
# shellcheck source=localstack/env.sh
source localstack/env.sh

step "DynamoDB: the adapter's conformance suite, and healthpay serve --backend dynamodb, on LocalStack"
# The only #[ignore]d tests are those that need a DynamoDB endpoint. Run over the
# whole workspace so features unify as in the step above: nothing is rebuilt.
HEALTHPAY_DYNAMODB_ENDPOINT="$AWS_ENDPOINT_URL" cargo test --workspace --locked -- --ignored

step "deploy template.yaml to LocalStack"
localstack/.state/venv/bin/python localstack/deploy.py

step "integration tests against the deployed stack"
"$TOOLS/bin/pytest" -q tests/localstack

step "done"
