#!/usr/bin/env bash
# `sam local invoke` / `sam local start-api` on a machine with no Docker engine running
# and no image registry, against the stack deployed to LocalStack (localstack/deploy.py).
#
#   tools/sam-local/sam-local.sh up     # idempotent; prints what it did
#   tools/sam-local/sam-local.sh env    # the export line for DOCKER_HOST (eval it)
#   tools/sam-local/sam-local.sh down   # stops what `up` started; safe when nothing runs
#
# `up`:
#  1. installs Debian's docker.io and busybox-static when missing (as root, apt-get);
#  2. starts a Docker engine of its own, unless one already answers (DOCKER_HOST or
#     /var/run/docker.sock): dockerd with every file under localstack/.state/sam-local/
#     (data root, exec root, containerd, socket, log), no iptables, on a bridge of its
#     own (`hps<6 hex>`, 172.29.<n>.1/24, both derived from the checkout's path;
#     SAM_LOCAL_BRIDGE and SAM_LOCAL_BRIDGE_CIDR override them).
#     Containers on it have no route out; the ports SAM publishes are served by
#     docker-proxy on 127.0.0.1;
#  3. builds the local stand-in for AWS's base image `public.ecr.aws/lambda/provided:al2023-x86_64`
#     with `docker import` from an offline root file system: busybox (Debian's
#     busybox-static), the host's glibc and libgcc_s (what a Rust `bootstrap` links to)
#     and the host's CA bundle. SAM builds its emulation image on top of it (it adds the
#     Lambda runtime interface emulator its wheel ships). A real AWS image of that name
#     is never replaced: elsewhere SAM pulls the real one, and this stand-in exists only
#     for machines that cannot;
#  4. makes LocalStack reachable from the containers: a small TCP forwarder
#     (bridge.py) listens on the bridge's gateway address, port LOCALSTACK_PORT
#     (default 4566), and forwards to LocalStack on 127.0.0.1. Nothing listens on any
#     other interface;
#  5. writes, from localstack/.state/stack-outputs.json (so after deploy.py):
#       localstack/.state/sam-local/template.json  template.yaml with every function's
#           CodeUri pointing at its prebuilt bootstrap (localstack/.state/functions/<bin>,
#           what deploy.py linked from the cargo build; SAM_LOCAL_CODE_DIR overrides,
#           e.g. target/lambda after `cargo lambda build`) and the Architecture
#           parameter defaulting to this host's;
#       localstack/.state/sam-local/env-vars.json  the deployed stack's table, stream,
#           state machine and queue names, the JWT secret and the endpoint
#           http://<gateway>:<port> (for `sam local … --env-vars`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE="$ROOT/localstack/.state/sam-local"
# The bridge's name and subnet come from this checkout's path, so that two checkouts
# (two engineers' test runs on one machine) never share a bridge or addresses.
KEY="$(printf '%s' "$STATE" | sha256sum | cut -c1-6)"
BRIDGE="${SAM_LOCAL_BRIDGE:-hps$KEY}"
CIDR="${SAM_LOCAL_BRIDGE_CIDR:-172.29.$((16#${KEY:0:2})).1/24}"
GATEWAY="${CIDR%/*}"
PORT="${LOCALSTACK_PORT:-4566}"
IMAGE_REPO="public.ecr.aws/lambda/provided"
IMAGE_TAG="al2023-x86_64"
STAND_IN_LABEL="io.healthpay.sam-local.stand-in"

log() { printf '[sam-local] %s\n' "$*" >&2; }
die() { printf '[sam-local] ERROR: %s\n' "$*" >&2; exit 1; }

# A unix socket path must stay under 108 bytes: deep checkouts get one in /tmp.
socket_path() {
  local path="$STATE/docker.sock"
  if (( ${#path} > 100 )); then
    path="/tmp/healthpay-sam-local-$(printf '%s' "$STATE" | sha256sum | cut -c1-12).sock"
  fi
  printf '%s' "$path"
}
SOCKET="$(socket_path)"
OWN_HOST="unix://$SOCKET"

engine_answers() { DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# The engine in use: ours when it runs, else one that was already there, else none.
current_host() {
  if [[ -f "$STATE/dockerd.pid" ]] && kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null && engine_answers "$OWN_HOST"; then
    printf '%s' "$OWN_HOST"
  elif [[ -n "${DOCKER_HOST:-}" && "$DOCKER_HOST" != "$OWN_HOST" ]] && engine_answers "$DOCKER_HOST"; then
    printf '%s' "$DOCKER_HOST"
  elif [[ -z "${DOCKER_HOST:-}" && -S /var/run/docker.sock ]] && engine_answers unix:///var/run/docker.sock; then
    printf '%s' unix:///var/run/docker.sock
  fi
}

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  # a statically linked busybox: it goes into the stand-in image as it is
  dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
  command -v docker >/dev/null 2>&1 || missing+=(docker.io)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) == 0 ]] || die "needs ${missing[*]} (Debian packages); install them as root: apt-get install ${missing[*]}"
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
}

start_engine() {
  [[ $(id -u) == 0 ]] || die "starting dockerd needs root (or start a Docker engine yourself and set DOCKER_HOST)"
  mkdir -p "$STATE/data" "$STATE/exec"
  # our own bridge, so that no other engine's docker0 is touched
  local taken
  taken="$(ip -o -4 addr show | awk -v gw="$GATEWAY" -v br="$BRIDGE" 'index($4, gw "/") == 1 && $2 != br { print $2 }')"
  [[ -z "$taken" ]] || die "$GATEWAY is already an address of $taken: set SAM_LOCAL_BRIDGE_CIDR to a free subnet (e.g. 172.30.0.1/24)"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add name "$BRIDGE" type bridge
    ip addr add "$CIDR" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  # no host-wide daemon.json: every setting is here
  echo '{}' >"$STATE/daemon.json"
  log "starting dockerd ($STATE/dockerd.log)"
  setsid dockerd \
    --config-file "$STATE/daemon.json" \
    --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" \
    -H "$OWN_HOST" \
    --iptables=false --ip6tables=false --ip-masq=false \
    --bridge "$BRIDGE" \
    >"$STATE/dockerd.log" 2>&1 </dev/null &
  local deadline=$((SECONDS + 60))
  until engine_answers "$OWN_HOST"; do
    if (( SECONDS > deadline )); then
      tail -n 30 "$STATE/dockerd.log" >&2
      die "dockerd did not answer within 60 s"
    fi
    sleep 0.5
  done
  log "dockerd $(DOCKER_HOST=$OWN_HOST docker version --format '{{.Server.Version}}') ready on $OWN_HOST"
}

# The stand-in base image, made again when this script's recipe or the host's
# libraries change (the label holds a digest of both).
build_image() {
  local name="$IMAGE_REPO:$IMAGE_TAG" libs=(
    /lib64/ld-linux-x86-64.so.2
    /lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libm.so.6 /lib/x86_64-linux-gnu/libgcc_s.so.1
    /lib/x86_64-linux-gnu/libdl.so.2 /lib/x86_64-linux-gnu/libpthread.so.0 /lib/x86_64-linux-gnu/librt.so.1
    /lib/x86_64-linux-gnu/libutil.so.1 /lib/x86_64-linux-gnu/libresolv.so.2
    /lib/x86_64-linux-gnu/libnss_dns.so.2 /lib/x86_64-linux-gnu/libnss_files.so.2
  )
  [[ "$(uname -m)" == x86_64 ]] || die "the stand-in image is made for x86_64 hosts only (this is $(uname -m))"
  local digest existing
  digest="$(cat "${BASH_SOURCE[0]}" /bin/busybox "${libs[@]}" | sha256sum | cut -c1-16)"
  if existing="$(docker image inspect --format "{{ index .Config.Labels \"$STAND_IN_LABEL\" }}" "$name" 2>/dev/null)"; then
    if [[ "$existing" == "$digest" ]]; then
      log "stand-in image $name is up to date"
      return 0
    elif [[ -z "$existing" || "$existing" == "<no value>" ]]; then
      log "$name is present and is not our stand-in (AWS's own image): using it"
      return 0
    fi
    log "stand-in image $name is out of date: rebuilding"
  fi
  local rootfs
  rootfs="$(mktemp -d "$STATE/rootfs.XXXXXX")"
  mkdir -p "$rootfs"/{bin,usr/bin,etc/ssl/certs,tmp,var/task,var/runtime,opt,lib64,lib/x86_64-linux-gnu,proc,sys,dev}
  chmod 1777 "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
  done
  local lib
  for lib in "${libs[@]}"; do
    [[ -e "$lib" ]] || continue
    cp -L "$lib" "$rootfs$lib"
  done
  cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\n' >"$rootfs/etc/group"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  log "building the stand-in image $name (not AWS's: busybox + the host's glibc)"
  tar -C "$rootfs" -c . | docker import \
    --change "LABEL $STAND_IN_LABEL=$digest" \
    --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin' \
    --change 'ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib' \
    --change 'ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime LANG=C.UTF-8' \
    --change 'WORKDIR /var/task' \
    - "$name" >/dev/null
  rm -rf "$rootfs"
  # the stand-in this one replaces, if any
  docker image prune --force --filter "label=$STAND_IN_LABEL" >/dev/null
}

start_forwarder() {
  local pidfile="$STATE/forwarder.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    if [[ "$(cat "$STATE/forwarder.addr" 2>/dev/null)" == "$GATEWAY:$PORT" ]]; then
      return 0
    fi
    kill "$(cat "$pidfile")" 2>/dev/null || true
    sleep 0.2
  fi
  setsid python3 "$HERE/bridge.py" "$GATEWAY" "$PORT" 127.0.0.1 "$PORT" >"$STATE/forwarder.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "$GATEWAY:$PORT" >"$STATE/forwarder.addr"
  local deadline=$((SECONDS + 10))
  until (exec 3<>"/dev/tcp/$GATEWAY/$PORT") 2>/dev/null; do
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { cat "$STATE/forwarder.log" >&2; die "the LocalStack forwarder did not start"; }
    (( SECONDS < deadline )) || die "the LocalStack forwarder does not listen on $GATEWAY:$PORT"
    sleep 0.1
  done
  log "LocalStack is reachable from the containers at http://$GATEWAY:$PORT (forwarded to 127.0.0.1:$PORT)"
}

cmd_up() {
  mkdir -p "$STATE"
  install_packages
  local host
  host="$(current_host)"
  if [[ -z "$host" ]]; then
    start_engine
    host="$OWN_HOST"
  elif [[ "$host" != "$OWN_HOST" ]]; then
    log "using the Docker engine already running at $host (not started here; down leaves it alone)"
    # containers reach the host at that engine's bridge gateway
    GATEWAY="$(DOCKER_HOST=$host docker network inspect bridge --format '{{ (index .IPAM.Config 0).Gateway }}')"
  fi
  echo "$host" >"$STATE/docker-host"
  export DOCKER_HOST="$host"
  build_image
  start_forwarder
  if [[ -f "$ROOT/localstack/.state/stack-outputs.json" ]]; then
    # PyYAML: the test tooling's venv (SAM CLI) has it, so does LocalStack's
    local py=python3
    for py in "$ROOT/.tools/venv/bin/python" "$ROOT/localstack/.state/venv/bin/python" python3; do
      [[ -x "$py" ]] || command -v "$py" >/dev/null 2>&1 && break
    done
    "$py" "$HERE/generate.py" --endpoint "http://$GATEWAY:$PORT" --out "$STATE"
  else
    log "no localstack/.state/stack-outputs.json yet: deploy the stack (localstack/deploy.py), then run up again"
  fi
  log "ready; now: eval \"\$($0 env)\""
}

cmd_env() {
  local host
  host="$(cat "$STATE/docker-host" 2>/dev/null || true)"
  [[ -n "$host" ]] || die "not up: run $0 up"
  printf 'export DOCKER_HOST=%q SAM_CLI_TELEMETRY=0\n' "$host"
}

cmd_down() {
  local pid stopped=0
  if [[ -f "$STATE/forwarder.pid" ]]; then
    pid="$(cat "$STATE/forwarder.pid")"
    if kill -0 "$pid" 2>/dev/null && grep -q bridge.py "/proc/$pid/cmdline" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      stopped=1
    fi
    rm -f "$STATE/forwarder.pid" "$STATE/forwarder.addr"
  fi
  if [[ -f "$STATE/dockerd.pid" ]]; then
    pid="$(cat "$STATE/dockerd.pid")"
    if kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/cmdline" 2>/dev/null; then
      log "stopping dockerd (pid $pid) and its containers"
      # containers SAM left behind (an interrupted start-api) go first
      DOCKER_HOST="$OWN_HOST" timeout 30 sh -c 'ids=$(docker ps -aq); [ -z "$ids" ] || docker rm -f $ids >/dev/null' 2>/dev/null || true
      kill -TERM "$pid" 2>/dev/null || true
      local deadline=$((SECONDS + 30))
      while kill -0 "$pid" 2>/dev/null; do
        if (( SECONDS > deadline )); then
          log "dockerd did not stop within 30 s: SIGKILL"
          kill -KILL "$pid" 2>/dev/null || true
          break
        fi
        sleep 0.2
      done
      stopped=1
    fi
    rm -f "$STATE/dockerd.pid"
  fi
  # containerd and shims it started (their command lines name our exec root)
  local proc line
  for proc in /proc/[0-9]*; do
    line="$({ tr '\0' ' ' <"$proc/cmdline"; } 2>/dev/null || true)"
    if [[ "$line" == *"$STATE/exec"* || "$line" == *"$STATE/data"* ]]; then
      case "${line%% *}" in
        containerd* | */containerd* | containerd-shim* | */containerd-shim*)
          kill -TERM "${proc#/proc/}" 2>/dev/null || true
          stopped=1
          ;;
      esac
    fi
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    ip link delete "$BRIDGE" 2>/dev/null || true
  fi
  rm -f "$STATE/docker-host"
  if [[ $stopped == 1 ]]; then log "stopped"; else log "nothing was running"; fi
}

case "${1:-}" in
  up) cmd_up ;;
  env) cmd_env ;;
  down) cmd_down ;;
  *) echo "usage: $0 up|env|down" >&2; exit 2 ;;
esac
