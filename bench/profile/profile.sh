#!/usr/bin/env bash
# Where `healthpay serve` spends its time under load, split by layer.
#
#   bench/profile/profile.sh [--in-memory] [--seconds N] [--binary PATH]
#
# Starts the server (SQLite by default) in a fresh directory, drives it with
# `healthpay bench http` (64 clients, 64 wallets, credits and debits), and while the
# load runs records:
#   - on-CPU: `perf record` with DWARF call graphs, split into layers by
#     breakdown.py (HTTP, auth, JSON logging, command service, event writer,
#     projections, …);
#   - off-CPU: each thread's time on a CPU, waiting for a CPU (runnable) and asleep
#     (I/O, locks, idle), from /proc/<pid>/task/*/schedstat, summed by thread name.
# Needs perf (Debian: linux-perf) and a release binary with symbols:
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=false \
#     cargo build --release --bin healthpay
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="$here/../../target/release/healthpay"
seconds=8
serve_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --in-memory) serve_args+=(--in-memory) ;;
    --seconds) seconds="$2"; shift ;;
    --binary) binary="$2"; shift ;;
    *) echo "profile.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
command -v perf >/dev/null || { echo "profile.sh: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
dir="$(mktemp -d /tmp/healthpay-profile-XXXXXX)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$binary" serve --port "$port" --data-dir "$dir" "${serve_args[@]}" > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 1
"$binary" bench http --url "http://127.0.0.1:$port" --data-dir "$dir" --server-pid "$server" \
  --clients 64 --wallets 64 --mix credit=50,debit=50 --warmup 3 --duration $((seconds + 6)) > "$dir/bench.txt" 2>&1 &
load=$!
sleep 5 # setup and warm-up

threads() { # name on-CPU-ns runqueue-ns, per thread
  for task in /proc/"$server"/task/*; do
    printf '%s %s\n' "$(tr ' ' '_' < "$task/comm")" "$(cut -d' ' -f1,2 < "$task/schedstat")"
  done 2>/dev/null
}
threads > "$dir/sched.before"
started=$(date +%s.%N)
perf record -q -F 499 --call-graph dwarf,16384 -p "$server" -o "$dir/perf.data" -- sleep "$seconds" 2>/dev/null
ended=$(date +%s.%N)
threads > "$dir/sched.after"
wait $load || true

grep -E "^\| steady|^CPU|projection lag " "$dir/bench.txt" || cat "$dir/bench.txt"
echo
echo "On-CPU ($seconds s of the server under load):"
perf script -i "$dir/perf.data" -F comm,ip,sym 2>/dev/null | python3 "$here/breakdown.py"
echo
echo "Off-CPU: seconds per second of wall time, by thread name (threads of a name summed)"
python3 - "$dir/sched.before" "$dir/sched.after" "$started" "$ended" <<'PY'
import sys
from collections import defaultdict
def read(path):
    """(on-CPU ns, runnable ns) of every thread, grouped by thread name."""
    threads = defaultdict(list)
    for line in open(path):
        name, run, wait = line.split()
        threads[name].append((int(run), int(wait)))
    return threads
before, after = read(sys.argv[1]), read(sys.argv[2])
wall = float(sys.argv[4]) - float(sys.argv[3])
print("| threads | count | on a CPU | waiting for a CPU | asleep (I/O, locks, idle) |")
print("|---|---|---|---|---|")
for name in sorted(after):
    run = sum(r for r, _ in after[name]) - sum(r for r, _ in before.get(name, []))
    wait = sum(w for _, w in after[name]) - sum(w for _, w in before.get(name, []))
    n = len(after[name])
    asleep = max(0.0, n * wall - (run + wait) / 1e9)
    print(f"| {name} | {n} | {run / 1e9 / wall:.2f} | {wait / 1e9 / wall:.2f} | {asleep / wall:.2f} |")
PY
echo
echo "data: $dir (perf.data, server.log, bench.txt)"
