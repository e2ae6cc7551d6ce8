"""What a wake-up costs on this machine: the CPU of one round trip after an idle gap.

    python -m tools.bench.wakeprobe [--rounds 150] [--gaps-ms 0.5,20]

A child process sleeps for the gap, then pokes this one over a socket pair;
this one wakes (plain epoll, or trio's wait_readable), touches N small
objects scattered over a few MiB, and answers. The CPU time per wake-up
(time.process_time) is printed for each gap and N. On a shared host the
difference between the short and the long gap is what an idle process pays
to get its caches back: it grows with the memory a wake-up touches, not with
the instructions it runs, which is why a replica's hop costs several times
what the same code costs in a warm loop (docs/performance.md, "Step 2, fifth
part"). Compare days with it: the rows move with the machine's neighbours.
"""

from __future__ import annotations

import argparse
import os
import random
import select
import socket
import sys
import time
from collections.abc import Sequence

import trio

OBJECTS = (0, 1000, 4000)  # objects touched per wake-up
WARMUP_ROUNDS = 10  # not counted: the first wake-ups also fault pages in
SPREAD = 64  # the touched objects are picked out of SPREAD times as many


def _poke(sock: socket.socket, rounds: int, gap_s: float) -> None:
    for _ in range(rounds):
        time.sleep(gap_s)
        sock.send(b"x")
        sock.recv(16)


def _answer_plain(sock: socket.socket, rounds: int, touch: list[list[int]]) -> float:
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN)
    started = 0.0
    try:
        for i in range(rounds):
            if i == WARMUP_ROUNDS:
                started = time.process_time()
            poller.poll()
            sock.recv(16)
            total = 0
            for item in touch:
                total += item[0]
            sock.send(b"y")
    finally:
        poller.close()
    return (time.process_time() - started) / (rounds - WARMUP_ROUNDS)


def _answer_trio(sock: socket.socket, rounds: int, touch: list[list[int]]) -> float:
    async def answer() -> float:
        started = 0.0
        for i in range(rounds):
            if i == WARMUP_ROUNDS:
                started = time.process_time()
            await trio.lowlevel.wait_readable(sock)
            sock.recv(16)
            total = 0
            for item in touch:
                total += item[0]
            sock.send(b"y")
        return (time.process_time() - started) / (rounds - WARMUP_ROUNDS)

    return trio.run(answer)


def wake_cost_s(*, gap_s: float, objects: int, rounds: int, loop: str) -> float:
    """CPU seconds this process spends per wake-up (`loop`: "epoll" or "trio")."""
    if rounds <= WARMUP_ROUNDS:
        raise ValueError(f"rounds must be above {WARMUP_ROUNDS}")
    pool = [[i] for i in range(max(1, objects) * SPREAD)]
    touch = random.Random(1).sample(pool, objects)
    mine, theirs = socket.socketpair()
    mine.setblocking(False)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which exits at once
        mine.close()
        try:
            _poke(theirs, rounds, gap_s)
        finally:
            os._exit(0)
    theirs.close()
    try:
        answer = _answer_trio if loop == "trio" else _answer_plain
        return answer(mine, rounds, touch)
    finally:
        mine.close()
        os.waitpid(child, 0)


def probe(gaps_s: Sequence[float], rounds: int) -> list[dict[str, float | int | str]]:
    rows: list[dict[str, float | int | str]] = []
    for loop in ("epoll", "trio"):
        for objects in OBJECTS if loop == "epoll" else (0,):
            for gap_s in gaps_s:
                cost = wake_cost_s(gap_s=gap_s, objects=objects, rounds=rounds, loop=loop)
                rows.append(
                    {"loop": loop, "objects": objects, "gap_ms": gap_s * 1000, "cpu_us": cost * 1e6}
                )
    return rows


def render(rows: Sequence[dict[str, float | int | str]]) -> str:
    gaps = sorted({float(r["gap_ms"]) for r in rows})
    lines = ["CPU per wake-up, us (time.process_time), by idle gap before it:"]
    lines.append(f"{'loop':6} {'objects':>8} " + " ".join(f"{g:>9g} ms" for g in gaps))
    seen: list[tuple[str, int]] = []
    for r in rows:
        key = (str(r["loop"]), int(r["objects"]))
        if key in seen:
            continue
        seen.append(key)
        costs = {
            float(x["gap_ms"]): float(x["cpu_us"]) for x in rows if (x["loop"], x["objects"]) == key
        }
        lines.append(f"{key[0]:6} {key[1]:>8,} " + " ".join(f"{costs[g]:>12.1f}" for g in gaps))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.wakeprobe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=150, help="wake-ups per row (default 150)")
    parser.add_argument(
        "--gaps-ms", default="0.5,20", help="idle gaps before each wake-up (default 0.5,20)"
    )
    args = parser.parse_args(argv)
    try:
        gaps_s = [float(g) / 1000 for g in args.gaps_ms.split(",") if g.strip()]
    except ValueError:
        parser.error(f"--gaps-ms: not a comma-separated list of numbers: {args.gaps_ms!r}")
    if not gaps_s or min(gaps_s) < 0 or args.rounds <= WARMUP_ROUNDS:
        parser.error(f"--gaps-ms needs gaps >= 0 and --rounds must be above {WARMUP_ROUNDS}")
    print(render(probe(gaps_s, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
