#!/usr/bin/env bash
# The project's one test command: every test, from a fresh clone, on a fresh machine
# of this kind (a Rust toolchain; Python, Java and Node as the machine image has
# them). It installs what else it needs, starts LocalStack itself and stops it.
#
#   ./test.sh                       everything (CI runs exactly this)
#   HEALTHPAY_SKIP_LOCALSTACK=1 ./test.sh   only what needs no emulator (quick local loop)
#
# Phases: format; unit + conformance + end-to-end tests on the embedded backends;
# test tooling (.tools/venv); Schemathesis against the embedded server (its OpenAPI
# document, every operation); template lint (cfn-lint, sam validate --lint);
# LocalStack install + start; the
# DynamoDB adapter's conformance suite on LocalStack's DynamoDB; deploy
# template.yaml to LocalStack; integration tests against the deployed stack; the
# functions through the SAM CLI (sam local invoke / start-api, in Docker containers
# of a Docker engine the test starts and stops itself).
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

step "test tooling (.tools/venv: Schemathesis, cfn-lint, SAM CLI, pytest)"
TOOLS="$ROOT/.tools/venv"
stamp="$(sha256sum tools/requirements.txt | cut -c1-16)"
if [[ ! -x "$TOOLS/bin/pytest" || "$(cat "$TOOLS/.stamp" 2>/dev/null)" != "$stamp" ]]; then
  rm -rf "$TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements.txt
  echo "$stamp" > "$TOOLS/.stamp"
fi

step "Schemathesis: fuzz every operation of the embedded server against its OpenAPI document"
# The server (in memory, on a free port) serves GET /openapi.json, which a unit test
# holds equal to docs/openapi.json. The ledger is first seeded with real wallets,
# payments, cards and claims, whose ids the fuzzer uses part of the time (Schemathesis
# dictionaries), so that it reaches the business rules and not only 404s. Two passes:
# a party (roles insurer and pharmacy, owning what was seeded) and an admin. Checks:
# no 5xx, every status and content type documented, every body matching its schema.
# Bounded: HEALTHPAY_FUZZ_EXAMPLES cases per operation and phase (default 25);
# HEALTHPAY_FUZZ_SEED=<seed> replays a run (each pass prints its seed).
fuzz() {
  local dir port server base status=0
  dir="$(mktemp -d)"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  target/debug/healthpay serve --in-memory --port "$port" --data-dir "$dir" > "$dir/server.log" 2>&1 &
  server=$!
  base="http://127.0.0.1:$port"
  local party admin
  party="$(target/debug/healthpay token --sub fuzzer --roles insurer,pharmacy --data-dir "$dir")"
  admin="$(target/debug/healthpay token --sub fuzz-admin --roles admin --data-dir "$dir")"
  HEALTHPAY_URL="$base" HEALTHPAY_TOKEN="$party" "$TOOLS/bin/python" - "$dir/schemathesis.toml" <<'PY' || status=$?
import json, os, sys, time, uuid
import requests

base = os.environ["HEALTHPAY_URL"]
auth = {"Authorization": "Bearer " + os.environ["HEALTHPAY_TOKEN"]}
for _ in range(100):
    try:
        if requests.get(base + "/health", timeout=1).status_code == 200:
            break
    except requests.ConnectionError:
        pass
    time.sleep(0.1)

def call(method, path, body=None):
    r = requests.request(method, base + path, json=body, headers=auth, timeout=10)
    assert r.status_code in (200, 201, 202), f"seeding: {method} {path} answered {r.status_code}: {r.text}"
    return r.json()

def wallet(kind, funds):
    w = call("POST", "/api/v2/commands/wallets/create", {"walletType": kind})["walletId"]
    call("POST", f"/api/v2/commands/wallets/{w}/activate")
    if funds:
        call("POST", f"/api/v2/commands/wallets/{w}/credit", {"amount": funds, "transactionType": "deposit", "reference": "seed"})
    return w

wallets = [wallet("personal", 100000), wallet("personal", 5000), wallet("merchant", 0), wallet("business", 250000)]
payer, other, merchant, sponsor = wallets
transfers = [call("POST", "/api/v2/commands/transfers", {"sourceWalletId": payer, "destinationWalletId": other, "amount": 10, "reference": "seed"})["transferId"]]
payments = [call("POST", "/api/v2/commands/payments", {"payerWalletId": payer, "merchantWalletId": merchant, "amount": a, "reference": "seed"})["paymentId"] for a in (100, 200, 300)]
call("POST", f"/api/v2/commands/payments/{payments[1]}/capture", {})
beneficiaries = [str(uuid.uuid4()), str(uuid.uuid4())]
cards = []
for _ in range(2):
    card = call("POST", "/api/v2/commands/medcards", {"holderId": "fuzzer", "sponsorWalletId": sponsor, "planName": "seed", "coveragePercent": 80, "monthlyLimit": 5000, "expiresAt": "2099-01-01T00:00:00Z"})["medcardId"]
    call("POST", f"/api/v2/commands/medcards/{card}/activate")
    for b in beneficiaries:
        call("POST", f"/api/v2/commands/medcards/{card}/beneficiaries", {"beneficiaryId": b, "name": "seed", "relationship": "self"})
    cards.append(card)
claims = [call("POST", "/api/v2/commands/claims/prescriptions", {"medcardId": cards[0], "beneficiaryId": beneficiaries[0], "prescriptionId": "seed-rx", "pharmacyWalletId": merchant, "patientWalletId": payer, "items": [{"drugCode": "D1", "drugName": "seed", "quantity": 2, "unitPrice": 12.5}]})["claimId"]]
claims += [call("POST", "/api/v2/commands/insurance-claims", {"medcardId": cards[0], "providerWalletId": merchant, "amount": a, "description": "seed"})["claimId"] for a in (50, 70)]
time.sleep(0.5)  # the projections and the claim saga catch up

dictionaries = {"wallets": wallets, "transfers": transfers, "payments": payments, "cards": cards, "beneficiaries": beneficiaries, "claims": claims}
bindings = {
    "wallets": ["path.walletId", "path.pharmacyWalletId", "body.sourceWalletId", "body.destinationWalletId", "body.payerWalletId",
                "body.merchantWalletId", "body.sponsorWalletId", "body.pharmacyWalletId", "body.patientWalletId", "body.providerWalletId"],
    "transfers": ["path.transferId"],
    "payments": ["path.paymentId"],
    "cards": ["path.medcardId", "body.medcardId"],
    "beneficiaries": ["path.beneficiaryId", "body.beneficiaryId"],
    "claims": ["path.claimId"],
}
with open(sys.argv[1], "w") as config:
    for name, values in dictionaries.items():
        config.write(f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n\n")
    config.write("[parameters]\n")
    for name, keys in bindings.items():
        for key in keys:
            config.write(f'"{key}" = {{ dictionary = "{name}", probability = 0.7 }}\n')
print(f"seeded {len(wallets)} wallets, {len(transfers)} transfer, {len(payments)} payments, {len(cards)} cards, {len(claims)} claims")
PY
  local who token
  for who in party admin; do
    [[ $status == 0 ]] || break
    token="$party"
    [[ $who == admin ]] && token="$admin"
    echo "-- as $who"
    # From the temporary directory: Schemathesis leaves its caches in the working directory.
    (cd "$dir" && timeout 300 "$TOOLS/bin/schemathesis" --config-file "$dir/schemathesis.toml" run "$base/openapi.json" \
      --header "Authorization: Bearer $token" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
      --max-examples "${HEALTHPAY_FUZZ_EXAMPLES:-25}" ${HEALTHPAY_FUZZ_SEED:+--seed "$HEALTHPAY_FUZZ_SEED"} \
      --request-timeout 10 --no-color) || status=$?
  done
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  if [[ $status != 0 ]]; then
    echo "Schemathesis failed (exit $status); the server's log:" >&2
    tail -n 50 "$dir/server.log" >&2
  fi
  rm -rf "$dir"
  return "$status"
}
fuzz

if [[ "${HEALTHPAY_SKIP_LOCALSTACK:-}" == 1 ]]; then
  echo "HEALTHPAY_SKIP_LOCALSTACK=1: skipping the template lint and every LocalStack phase"
  exit 0
fi

step "template lint"
"$TOOLS/bin/cfn-lint" template.yaml
"$TOOLS/bin/sam" validate --lint --region us-east-1 --template-file template.yaml

step "LocalStack: install and start (no Docker)"
localstack/install.sh
cleanup() {
  # the sam local phase's Docker engine (a no-op when it never started), then LocalStack
  if [[ -d localstack/.state/sam-local ]]; then
    printf '\n== stopping the sam local Docker engine\n'
    tools/sam-local/sam-local.sh down || true
  fi
  printf '\n== stopping LocalStack\n'
  localstack/stop.sh || true
}
trap cleanup EXIT
LOCALSTACK_SKIP_INSTALL=1 localstack/start.sh
# shellcheck source=localstack/env.sh
source localstack/env.sh

step "DynamoDB: the adapter's conformance suite, and healthpay serve --backend dynamodb, on LocalStack"
# The only #[ignore]d tests are those that need a DynamoDB endpoint. Run over the
# whole workspace so features unify as in the step above: nothing is rebuilt.
HEALTHPAY_DYNAMODB_ENDPOINT="$AWS_ENDPOINT_URL" cargo test --workspace --locked -- --ignored

step "deploy template.yaml to LocalStack"
# The fraud rules' defaults would suspend the burst tests' wallets (more than 10
# transfers a minute each): the test stack counts velocity from 1,000 and judges
# new wallets and large movements from amounts only tests/localstack/test_fraud.py moves.
localstack/.state/venv/bin/python localstack/deploy.py \
  --parameter FraudVelocityCount=1000 --parameter FraudNewWalletOutflow=20000 --parameter FraudHighValue=30000

step "integration tests against the deployed stack"
"$TOOLS/bin/pytest" -q tests/localstack

step "sam local: events/ fixtures through sam local invoke, the README flow through sam local start-api"
# A Docker engine of the test's own (Debian's docker.io, installed when missing), the
# offline stand-in for provided.al2023, LocalStack reachable from the containers, the
# deployed stack's names as --env-vars; the functions are the debug builds deploy.py
# linked, and one function built by `sam build` (cargo-lambda, debug; the only
# compiling here; HEALTHPAY_SAM_BUILD=0 skips it). Stopped by the EXIT trap.
tools/sam-local/sam-local.sh up
"$TOOLS/bin/pytest" -q tests/sam_local

step "done"
