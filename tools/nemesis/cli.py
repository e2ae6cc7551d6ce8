"""ledgerpaxos-nemesis: the real cluster under real faults, then its history checked.

    make nemesis                       # 60 s, table on stdout
    make nemesis DURATION=600          # and docs/nemesis.json, docs/nemesis.png
    .venv/bin/ledgerpaxos-nemesis --duration 30 --seed 7 --plot /tmp/n.png --keep-logs /tmp/logs

Five replica processes on 127.0.0.11-15 with fsync and TLS on, ten clients
(each owning its account) and an auditor; faults one at a time, each touching at
most two replicas (tools/nemesis/run.py). Partitions need root and nftables,
the full disk root (a tmpfs); without them those kinds are skipped with one
line each. Exit status 0 when every check passed, 1 when one failed, 2 for a
usage error.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from tools.nemesis import report
from tools.nemesis.run import NemesisError, duration_s_max, run_nemesis

REPO = Path(__file__).resolve().parent.parent.parent


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ledgerpaxos-nemesis", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of load and faults (default 60)"
    )
    parser.add_argument(
        "--clients", type=int, default=10, help="clients, each owning one account (default 10)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="the faults' and the load's random seed"
    )
    parser.add_argument("--json", type=Path, help="write the summary as JSON here")
    parser.add_argument("--plot", type=Path, help="write the timeline PNG here (needs matplotlib)")
    parser.add_argument("--keep-logs", type=Path, help="copy the replicas' logs here")
    args = parser.parse_args(argv)
    if not 5 <= args.duration <= duration_s_max:
        parser.error(f"--duration must be 5-{duration_s_max} s, got {args.duration:g}")
    if not 2 <= args.clients <= 64:
        parser.error(f"--clients must be 2-64, got {args.clients}")
    return args


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def progress(line: str) -> None:
        print(line, flush=True)

    try:
        result = trio.run(
            lambda: run_nemesis(
                duration_s=args.duration,
                clients=args.clients,
                seed=args.seed,
                progress=progress,
                keep=args.keep_logs,
            )
        )
    except NemesisError as error:
        print(f"ledgerpaxos-nemesis: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "ledgerpaxos-nemesis: interrupted; every process and rule was removed", file=sys.stderr
        )
        return 130
    data = report.summary(result)
    data["commit"] = _commit()
    data["seed"] = args.seed
    data["clients"] = args.clients
    print()
    print(report.render(data))
    if args.json is not None:
        report.write_json(data, args.json)
    if args.plot is not None:
        title = (
            f"ledgerpaxos nemesis, 5 replicas, {args.clients} clients, "
            f"{result.duration_s:.0f} s, commit {data['commit']}"
        )
        report.write_plot(result, data, args.plot, title=title)
        print(f"timeline: {args.plot}")
    return 0 if data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
