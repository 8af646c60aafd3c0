#!/usr/bin/env python3
"""Splits an on-CPU perf profile of `healthpay serve` by layer.

    perf script -i perf.data -F comm,ip,sym --no-demangle? (see profile.sh) | breakdown.py

Each sample's call stack (innermost frame first) is given to the first layer, in
the order below, one of whose markers occurs in any frame; samples matching none
are "other". The order matters: a JSON encode inside the event writer is the
writer's, a malloc inside a projection is the projection's. Prints each layer's
share of the server's CPU samples.
"""
import re
import sys
from collections import Counter

# (layer, markers: regexes searched in every frame of the stack)
LAYERS = [
    ("event writer thread: fsync", [r"^COMM sqlite-event-wr$"], [r"fsync|ext4_sync_file|jbd2|blkdev_issue_flush|file_write_and_wait"]),
    ("event writer thread: WAL checkpoint", [r"^COMM sqlite-event-wr$"], [r"walCheckpoint|sqlite3WalDefaultHook"]),
    ("event writer thread: SQL", [r"^COMM sqlite-event-wr$"], [r"."]),
    ("logging (tracing JSON lines)", [], [r"tracing_subscriber::fmt|tracing_serde|Stdout|std::io::stdio"]),
    ("JWT (verify, decode claims)", [], [r"jsonwebtoken"]),
    ("projections: read-model store", [], [r"store_sqlite::read_store|SqliteReadStore|store_sqlite::common::Db"]),
    ("projections: logic", [], [r"shared::projection"]),
    ("event store: reads (loads, feed, first events)", [], [r"store_sqlite::event_store::.*(read_after|load|first_event|idempotency|snapshot)|ReadPool"]),
    ("event store: encode + enqueue (append)", [], [r"store_sqlite::event_store::.*(prepare|append)"]),
    ("command service (load, decide, apply)", [], [r"shared::command|shared::wallet|shared::app::"]),
    ("sagas, payment expiry sweep", [], [r"shared::saga|payment_expiry"]),
    ("api: parse, render, metrics", [], [r"\bapi::|healthpay::gateway|healthpay::metrics|prometheus"]),
    ("HTTP (hyper, sockets)", [], [r"hyper::|hyper_util|tcp_|sock_|inet_|__sys_sendto|__sys_recvfrom|sys_write|sys_read|ksys_write|ksys_read|axum::"]),
    ("tokio scheduler, thread hops (futex, epoll)", [], [r"tokio::runtime|futex|epoll|schedule"]),
]
LAYERS = [(name, [re.compile(c) for c in comm], [re.compile(m) for m in marks]) for name, comm, marks in LAYERS]


def samples(lines):
    comm, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif not line.startswith((" ", "\t")):
            comm = line.split()[0]
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else parts[0])
    if comm is not None:
        yield comm, frames


def layer_of(comm, frames):
    for name, comms, marks in LAYERS:
        if comms and not any(c.match("COMM " + comm) for c in comms):
            continue
        if any(m.search(frame) for m in marks for frame in frames):
            return name
    return "other"


def main():
    counts, total = Counter(), 0
    for comm, frames in samples(sys.stdin):
        counts[layer_of(comm, frames)] += 1
        total += 1
    if not total:
        sys.exit("no samples on standard input")
    print(f"| layer | share of the server's CPU samples |")
    print(f"|---|---|")
    for name, _, _ in LAYERS + [("other", [], [])]:
        if counts[name]:
            print(f"| {name} | {counts[name] * 100 / total:.1f} % |")
    print(f"\n{total} samples")


if __name__ == "__main__":
    main()
