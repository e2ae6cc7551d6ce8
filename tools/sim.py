"""ledgerpaxos-sim: run the deterministic simulator (ledgerpaxos/sim) from a console.

    ledgerpaxos-sim --seeds 1000 [--replicas 5] [--start 0] [--jobs 2]
    ledgerpaxos-sim --seed 4242 [--trace]
    ledgerpaxos-sim --planted quorum-one-short --seeds 200 --first-failure
    ledgerpaxos-sim --list-planted

A batch shows a progress bar on stderr and a summary table on stdout, and
exits 1 when a seed fails; a batch of 1000 seeds or more also fails when a
required coverage mark was never hit or fewer than 25 % of the client sends
were re-sends (--require-coverage / --no-require-coverage override). A failing
seed is printed with the violated property and the one command that replays
it. A single-seed run ends with `trace hash: <hex>`, the same on every run of
that seed and under any PYTHONHASHSEED.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from ledgerpaxos.sim import coverage
from ledgerpaxos.sim.batch import BatchReport, iterate_seeds
from ledgerpaxos.sim.checkers import PROPERTIES
from ledgerpaxos.sim.harness import SimResult, run_seed
from ledgerpaxos.sim.planted import PLANTED

RESEND_RATIO_MIN = 0.25
COVERAGE_REQUIRED_FROM_SEEDS = 1000
FAILURES_LISTED_MAX = 20


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ledgerpaxos-sim",
        description="Deterministic simulation of a ledgerpaxos cluster: seeded faults, "
        "safety and liveness checkers, coverage marks.",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--seeds", type=int, metavar="N", help="run a batch of N seeds (default 100)")
    what.add_argument("--seed", type=int, metavar="S", help="run one seed")
    what.add_argument(
        "--list-planted", action="store_true", help="list the plantable bugs and exit"
    )
    parser.add_argument(
        "--start", type=int, default=0, metavar="S", help="first seed of a batch (default 0)"
    )
    parser.add_argument(
        "--replicas", type=int, default=5, metavar="N", help="odd number of replicas (default 5)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        metavar="J",
        help="worker processes for a batch (default: one per CPU)",
    )
    parser.add_argument("--trace", action="store_true", help="with --seed: print every event")
    parser.add_argument(
        "--planted",
        choices=sorted(PLANTED),
        metavar="BUG",
        help="plant a known bug (see --list-planted) to see the checkers catch it",
    )
    parser.add_argument(
        "--first-failure", action="store_true", help="stop a batch at its first failing seed"
    )
    coverage_group = parser.add_mutually_exclusive_group()
    coverage_group.add_argument(
        "--require-coverage",
        dest="require_coverage",
        action="store_true",
        default=None,
        help="fail the batch if a required mark is missed or re-sends are under 25%%",
    )
    coverage_group.add_argument(
        "--no-require-coverage", dest="require_coverage", action="store_false"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.replicas < 1 or args.replicas % 2 == 0 or args.replicas > 15:
        print("ledgerpaxos-sim: --replicas must be an odd number from 1 to 15", file=sys.stderr)
        return 2
    if args.list_planted:
        for name, bug in sorted(PLANTED.items()):
            print(f"{name:28} {bug.description} (caught by {bug.caught_by})")
        return 0
    if args.seed is not None:
        return _run_one(args.seed, args.replicas, planted=args.planted, trace=args.trace)
    if args.trace:
        print("ledgerpaxos-sim: --trace needs --seed", file=sys.stderr)
        return 2
    count = args.seeds if args.seeds is not None else 100
    if count < 1:
        print("ledgerpaxos-sim: --seeds must be at least 1", file=sys.stderr)
        return 2
    require = args.require_coverage
    if require is None:
        require = count >= COVERAGE_REQUIRED_FROM_SEEDS and args.planted is None
    return _run_batch(
        args.start,
        count,
        args.replicas,
        jobs=max(1, args.jobs),
        planted=args.planted,
        first_failure=args.first_failure,
        require_coverage=require,
    )


# ---------------------------------------------------------------- one seed


def _run_one(seed: int, replicas: int, *, planted: str | None, trace: bool) -> int:
    out = sys.stdout
    result = run_seed(
        seed,
        replicas,
        planted=planted,
        trace=True,
        emit=(lambda line: print(line, file=out)) if trace else None,
    )
    if not trace:
        print(result.plan, file=out)
    if result.ok:
        print(
            f"seed {seed}: ok — {result.slots} slots, {result.answered} requests answered "
            f"({result.resends} re-sends of {result.submissions} sends), {result.crashes} crashes, "
            f"{result.faults} faults, converged {result.converged_ms} ms after the heal",
            file=out,
        )
        print("marks: " + (", ".join(f"{m} ×{n}" for m, n in result.marks) or "none"), file=out)
    else:
        _print_failure(result, out)
    print(f"trace hash: {result.trace_hash}", file=out)
    return 0 if result.ok else 1


def _print_failure(result: SimResult, out: TextIO, indent: str = "") -> None:
    assert result.property is not None
    print(
        f"{indent}FAILED seed {result.seed}: {result.property} — {PROPERTIES[result.property]}",
        file=out,
    )
    print(f"{indent}  {result.detail}", file=out)
    print(f"{indent}  replay: {result.replay_command()}", file=out)


# ---------------------------------------------------------------- batches


class _Progress:
    """A one-line progress bar on stderr (a line per 10 % when not a terminal)."""

    width = 30

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.started = time.perf_counter()
        self.tty = stream.isatty()
        self.last_drawn = 0.0
        self.last_tenth = -1

    def update(self, done: int, failures: int) -> None:
        now = time.perf_counter()
        final = done == self.total
        if self.tty:
            if not final and now - self.last_drawn < 0.1:
                return
        else:
            tenth = done * 10 // self.total
            if tenth == self.last_tenth and not final:
                return
            self.last_tenth = tenth
        self.last_drawn = now
        filled = done * self.width // self.total
        rate = done / (now - self.started) if now > self.started else 0.0
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} seeds "
            f"{rate:5.1f}/s  failures {failures}"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _run_batch(
    start: int,
    count: int,
    replicas: int,
    *,
    jobs: int,
    planted: str | None,
    first_failure: bool,
    require_coverage: bool,
) -> int:
    started = time.perf_counter()
    progress = _Progress(count)
    results: list[SimResult] = []
    failures = 0
    stopped_early = False
    for result in iterate_seeds(
        list(range(start, start + count)), replicas, planted=planted, jobs=jobs
    ):
        results.append(result)
        failures += not result.ok
        progress.update(len(results), failures)
        if first_failure and not result.ok:
            stopped_early = len(results) < count
            break
    if stopped_early:
        progress.finish()
    report = BatchReport(
        results=tuple(results), wall_seconds=time.perf_counter() - started, jobs=jobs
    )
    problems = _print_summary(report, start, replicas, planted, require_coverage, sys.stdout)
    return 1 if problems else 0


def _print_summary(
    report: BatchReport,
    start: int,
    replicas: int,
    planted: str | None,
    require_coverage: bool,
    out: TextIO,
) -> list[str]:
    results = report.results
    count = len(results)
    last = start + count - 1
    print(file=out)
    title = f"ledgerpaxos-sim: seeds {start}..{last} ({count}), {replicas} replicas"
    if planted:
        title += f", planted bug: {planted} ({PLANTED[planted].description})"
    print(title, file=out)
    print(
        f"  {report.wall_seconds:.1f} s on {report.jobs} worker(s): {report.seeds_per_second:.1f} seeds/s",
        file=out,
    )
    passed = count - len(report.failures)
    rows = [
        ("seeds passed", f"{passed}/{count}"),
        ("virtual time", f"{sum(r.virtual_ms for r in results) / 1000:.0f} s in all"),
        (
            "slots executed",
            f"median {statistics.median(r.slots for r in results):.0f}, max {max(r.slots for r in results)}",
        ),
        (
            "client sends",
            f"{report.submissions} ({report.resends} re-sends: {report.resend_ratio:.1%})",
        ),
        ("requests answered", f"{sum(r.answered for r in results)}"),
        ("messages sent", f"{sum(r.messages for r in results)}"),
        (
            "faults / crashes",
            f"{sum(r.faults for r in results)} / {sum(r.crashes for r in results)}",
        ),
    ]
    converged = [r.converged_ms for r in results if r.converged_ms is not None]
    if converged:
        rows.append(
            (
                "converged after heal",
                f"median {statistics.median(converged):.0f} ms, max {max(converged)} ms",
            )
        )
    for label, value in rows:
        print(f"  {label:22} {value}", file=out)

    counts = report.mark_counts()
    print("  coverage marks (runs that hit each):", file=out)
    for mark in coverage.REQUIRED:
        flag = "" if counts[mark] else "   <-- MISSED"
        print(f"    {mark:48} {counts[mark]:6d}{flag}", file=out)
    for mark in coverage.INFORMATIONAL:
        print(f"    {mark:48} {counts[mark]:6d}  (informational)", file=out)

    problems: list[str] = []
    if report.failures:
        by_property: dict[str, int] = {}
        for failure in report.failures:
            assert failure.property is not None
            by_property[failure.property] = by_property.get(failure.property, 0) + 1
        print(
            f"  FAILED seeds: {len(report.failures)} — "
            + ", ".join(f"{prop} ×{n}" for prop, n in sorted(by_property.items())),
            file=out,
        )
        for failure in report.failures[:FAILURES_LISTED_MAX]:
            _print_failure(failure, out, indent="    ")
        if len(report.failures) > FAILURES_LISTED_MAX:
            print(
                f"  ... and {len(report.failures) - FAILURES_LISTED_MAX} more failing seeds",
                file=out,
            )
        problems.append("failing seeds")
    if require_coverage:
        missing = report.missing_required_marks()
        if missing:
            print(f"  COVERAGE: no run hit {', '.join(missing)}", file=out)
            problems.append("missed coverage marks")
        if report.resend_ratio < RESEND_RATIO_MIN:
            print(
                f"  COVERAGE: re-sends are {report.resend_ratio:.1%} of client sends, under {RESEND_RATIO_MIN:.0%}",
                file=out,
            )
            problems.append("too few re-sends")
    print("  result: " + ("FAIL (" + ", ".join(problems) + ")" if problems else "ok"), file=out)
    return problems


if __name__ == "__main__":
    sys.exit(main())
