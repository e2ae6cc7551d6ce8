"""Where one request's time goes, hop by hop: medians from a traced run.

    LEDGERPAXOS_BENCH_TRACE=DIR ledgerpaxos-bench --launch --clients 1 --transfers-per-request 1
    python -m tools.bench.hops DIR/1x1

The replicas of a traced run stamp every read, write and fsync
(tools/bench/trace/sitecustomize.py, `<node>.log`), and the benchmark writes
when each request of the window was sent and its reply arrived
(`requests.txt`), all on one clock. For each request this finds, in the
events between its send and its reply: the leader (the first to read), its
first write (the first Accept), each follower's read of it, that follower's
next write (its WAL record), fsync and the write after it (its Accepted),
and the leader's last read and last write before the reply (the deciding
vote, the reply). The hops' medians and 90th percentiles are what a change
to one request's path moves; throughput on this machine drifts too much to
show a few percent (docs/performance.md). Meant for one client: with many in
flight the events of one request are not told apart from the others'.
"""

from __future__ import annotations

import argparse
import bisect
import sys
from collections.abc import Sequence
from pathlib import Path

HOPS = (
    ("to_leader", "the request from the load to the leader's read"),
    ("leader_ingest", "the leader, from that read to its first Accept written"),
    ("follower_in", "a follower, from reading the Accept to writing its WAL record"),
    ("follower_fsync", "that follower's fsync"),
    ("follower_out", "that follower, from the fsync to its Accepted written"),
    ("leader_decide", "the leader, from the deciding read to the reply written"),
    ("to_client", "the reply from the leader's write to the load"),
    ("total", "the request's latency"),
)

Event = tuple[int, str, str, int]  # time ns, node, call, file descriptor


class TraceError(Exception):
    """The directory does not hold a traced run."""


def read_trace(directory: Path) -> tuple[list[Event], list[tuple[int, int]]]:
    """Every replica's events in time order, and the (send, reply) times of
    the requests in the measuring window."""
    requests_file = directory / "requests.txt"
    if not requests_file.exists():
        raise TraceError(
            f"{requests_file} is missing: run ledgerpaxos-bench with LEDGERPAXOS_BENCH_TRACE=DIR"
        )
    events: list[Event] = []
    for log in sorted(directory.glob("*.log")):
        node = log.stem
        for line in log.read_text(encoding="ascii").splitlines():
            at, call, fd, _size = line.split()
            events.append((int(at), node, call, int(fd)))
    events.sort()
    window = (0, 0)
    requests = []
    for line in requests_file.read_text(encoding="ascii").splitlines():
        kind, first, second = line.split()
        if kind == "window":
            window = (int(first), int(second))
        else:
            requests.append((int(first), int(second)))
    return events, sorted(r for r in requests if window[0] <= r[0] and r[1] <= window[1])


def hops(events: Sequence[Event], requests: Sequence[tuple[int, int]]) -> dict[str, list[int]]:
    """Per hop, its duration in ns for each request where it was found."""
    found: dict[str, list[int]] = {name: [] for name, _ in HOPS}
    times = [e[0] for e in events]
    for sent, replied in requests:
        inside = events[bisect.bisect_left(times, sent) : bisect.bisect_right(times, replied)]
        if not inside or inside[0][2] != "read":
            continue
        leader, client = inside[0][1], inside[0][3]  # the request's connection
        writes = [e for e in inside if e[1] == leader and e[2] == "write"]
        replies = [e[0] for e in writes if e[3] == client]
        if len(writes) < 2 or not replies:
            continue
        first_accept, reply = writes[0][0], replies[-1]
        reads = [e[0] for e in inside if e[1] == leader and e[2] == "read" and e[0] < reply]
        for node in sorted({e[1] for e in inside} - {leader}):
            steps = _follower(
                [e for e in inside if e[1] == node and e[0] >= first_accept], reads[-1]
            )
            if steps is not None:
                found["follower_in"].append(steps[0])
                found["follower_fsync"].append(steps[1])
                found["follower_out"].append(steps[2])
        found["to_leader"].append(inside[0][0] - sent)
        found["leader_ingest"].append(first_accept - inside[0][0])
        found["leader_decide"].append(reply - reads[-1])
        found["to_client"].append(replied - reply)
        found["total"].append(replied - sent)
    return found


def _follower(events: Sequence[Event], decided_at: int) -> tuple[int, int, int] | None:
    """(read to WAL write, fsync, fsync to Accepted) of a follower whose
    Accepted left before the leader's deciding read; None otherwise. The WAL
    write is the last write to the file it then syncs; the Accepted the first
    write elsewhere after the sync."""
    reads = [e for e in events if e[2] == "read"]
    if not reads:
        return None
    read_at = reads[0][0]
    sync = next((i for i, e in enumerate(events) if e[2] == "fsync0" and e[0] > read_at), None)
    if sync is None or sync + 1 >= len(events) or events[sync + 1][2] != "fsync1":
        return None
    wal = events[sync][3]
    wal_writes = [e[0] for e in events[:sync] if e[2] == "write" and e[3] == wal]
    synced_at = events[sync + 1][0]
    accepted = next((e[0] for e in events[sync + 2 :] if e[2] == "write" and e[3] != wal), None)
    if not wal_writes or wal_writes[-1] < read_at or accepted is None or accepted > decided_at:
        return None
    return wal_writes[-1] - read_at, synced_at - events[sync][0], accepted - synced_at


def render(found: dict[str, list[int]]) -> str:
    lines = [
        f"{len(found['total']):,} requests",
        "",
        f"{'hop':<15} {'n':>6} {'p50 µs':>8} {'p90 µs':>8}  what",
    ]
    for name, what in HOPS:
        values = sorted(found[name])
        if not values:
            continue
        p50, p90 = values[len(values) // 2] / 1e3, values[int(len(values) * 0.9)] / 1e3
        lines.append(f"{name:<15} {len(values):>6} {p50:>8.0f} {p90:>8.0f}  {what}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hops", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="a traced run (DIR/<clients>x<T>)")
    args = parser.parse_args(argv)
    try:
        events, requests = read_trace(args.directory)
    except (TraceError, OSError, ValueError) as error:
        print(f"hops: {error}", file=sys.stderr)
        return 2
    print(render(hops(events, requests)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
