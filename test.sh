#!/usr/bin/env bash
# The project's one test command: every test, from a fresh clone, on a fresh machine
# of this kind (Rust toolchain present; nothing else assumed).
#
#   ./test.sh          formatting, unit + conformance + end-to-end tests
#
# CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n== %s\n' "$*"; }

step "format"
if rustfmt --version >/dev/null 2>&1; then
  cargo fmt --all --check
else
  echo "rustfmt is not installed: skipping the format check"
fi

step "unit, conformance and end-to-end tests (embedded backends)"
cargo test --workspace --locked
