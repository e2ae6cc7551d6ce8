"""ledgerpaxos-bench: throughput and latency of a cluster under a closed-loop load.

    ledgerpaxos-bench [--config PATH] [--launch] [--replicas N] [--clients C]
                      [--transfers-per-request T] [--duration SECONDS] [--accounts K]
                      [--plaintext] [--json PATH] [--plot PATH] [--matrix]

C clients each keep one request of T transfers (random distinct accounts of
K, amounts 1-100) in flight for SECONDS. With --launch, N replica processes
start on 127.0.0.1 with fresh data directories, fsync on, in a temporary
directory, and are stopped afterwards (also on Ctrl-C); without it the
cluster of --config must be running. --matrix runs 1x1, 64x1 and 64x100
(clients x transfers per request) on freshly launched clusters, one table.

The table: transfers/s, requests/s, latency percentiles, the leader's WAL
fsyncs per second, and CPU seconds per 1,000 transfers for every process
(replicas and the benchmark's own). Then a check: every replica holds the same
balances, their sum is what it was before the load, and each balance is what
the acknowledged transfers give (the load remembers what every reply said was
applied; a request never answered may or may not have applied). The exit
status is 1 if the check fails.

The load runs in a separate process (tools/bench/load.py; one, see
`load_processes_for`); the environment variable LEDGERPAXOS_BENCH_LOAD_PROCESSES
sets how many. With
LEDGERPAXOS_BENCH_PYSPY=DIR, py-spy (if installed) samples every replica and
load process during the window (threads holding the GIL only: Python CPU time) into
DIR/<run>-<process>.txt (collapsed stacks;
`python -m tools.bench.profile DIR/*.txt` summarizes them). --matrix also
measures PySyncObj's peak in the same run when it is installed
(tools/bench/versus_pysyncobj.py; an optional comparison, not a dependency). For experiments,
LEDGERPAXOS_BENCH_OVERRIDES='{"pipeline_slots_max": 4}' (JSON) overrides keys of
the launched config, and LEDGERPAXOS_RUNTIME (see runtime/main.py) reaches the
launched replicas through the environment; both are recorded in --json. On a small
machine the load generator and the replicas share the same cores: the figures
are for the whole system, the CPU columns show where the time went.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledgerpaxos.client import ClientTimeout
from ledgerpaxos.config import ConfigError, load_config
from tools.bench import versus_etcd as bench_etcd
from tools.bench import versus_pysyncobj as bench_pysyncobj
from tools.bench.cluster import LaunchedCluster
from tools.bench.report import (
    render_accounts_sweep,
    render_comparison,
    render_table,
    render_tls_cost,
    render_versus_etcd,
    round_figures,
    run_ok,
    write_json,
    write_plot,
)
from tools.bench.run import BenchError, Unanswered, histogram, load_processes_for, prog, run_once

__all__ = [
    "BenchError",
    "histogram",
    "load_processes_for",
    "render_comparison",
    "render_table",
    "render_tls_cost",
    "render_versus_etcd",
    "round_figures",
    "run_ok",
    "run_once",
    "write_json",
    "write_plot",
]

MATRIX = ((1, 1), (64, 1), (64, 100))  # (clients, transfers per request)
# --matrix also runs these loads (TLS on) on ledgers of these many accounts.
ACCOUNTS_SWEEP_LOADS = ((16, 10), (64, 100))
ACCOUNTS_SWEEP = (1_000, 100_000, 1_000_000)
# ---------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Measure the throughput and latency of a ledgerpaxos cluster.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        default="configs/cluster.toml",
        help="cluster to load (without --launch)",
    )
    parser.add_argument(
        "--launch", action="store_true", help="start fresh replicas on 127.0.0.1 (fsync on)"
    )
    parser.add_argument(
        "--replicas", metavar="N", type=int, default=5, help="with --launch (default 5)"
    )
    parser.add_argument(
        "--clients", metavar="C", type=int, default=64, help="concurrent clients (default 64)"
    )
    parser.add_argument(
        "--transfers-per-request",
        metavar="T",
        type=int,
        default=100,
        help="transfers per request (default 100)",
    )
    parser.add_argument(
        "--duration", metavar="SECONDS", type=float, default=10.0, help="default 10"
    )
    parser.add_argument(
        "--accounts",
        metavar="K",
        type=int,
        default=None,
        help="K accounts (default 1000 with --launch, all of the config's otherwise)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG (needs matplotlib)")
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="run 1x1, 64x1 and 64x100 (clients x transfers) on launched clusters, "
        "each with TLS and in plaintext",
    )
    parser.add_argument(
        "--etcd-rounds",
        metavar="R",
        type=int,
        default=3,
        help="with --matrix and etcd on the PATH: R rounds of our 1x1 and 64x1 then etcd's "
        "two loads, the ratios taken within each round (default 3)",
    )
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="launched clusters without TLS (loopback only; with --matrix: no TLS runs)",
    )
    args = parser.parse_args(argv)
    if args.matrix:
        args.launch = True
    if args.replicas < 1 or args.clients < 1 or args.duration <= 0 or args.etcd_rounds < 1:
        parser.error("--replicas, --clients, --duration and --etcd-rounds must be positive")
    if not 1 <= args.transfers_per_request <= 8190:
        parser.error("--transfers-per-request must be 1-8190 (transfers_per_request_max)")
    if args.accounts is not None and args.accounts < 2:
        parser.error("--accounts must be at least 2")
    return args


# ---------------------------------------------------------------- main


def config_overrides() -> dict[str, Any]:
    text = os.environ.get("LEDGERPAXOS_BENCH_OVERRIDES", "")
    if not text:
        return {}
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise BenchError(f"LEDGERPAXOS_BENCH_OVERRIDES is not JSON: {error}") from None
    if not isinstance(overrides, dict):
        raise BenchError("LEDGERPAXOS_BENCH_OVERRIDES must be a JSON object of config keys")
    return overrides


def _run_launched(
    args: argparse.Namespace,
    clients: int,
    transfers: int,
    *,
    tls_on: bool,
    accounts: int | None = None,
) -> dict[str, Any]:
    accounts = accounts or args.accounts or 1000
    overrides = config_overrides()
    label = f"{clients}x{transfers}"
    traces = os.environ.get("LEDGERPAXOS_BENCH_TRACE")
    trace_dir = Path(traces) / label if traces else None
    with LaunchedCluster(
        replicas=args.replicas,
        accounts=accounts,
        overrides=overrides,
        clients=clients,
        tls_on=tls_on,
        trace_dir=trace_dir,
    ) as cluster:
        cluster.start()

        def check_alive() -> None:
            exited = cluster.exited()
            if exited:
                node, code = next(iter(exited.items()))
                raise BenchError(
                    f"replica {node} exited with status {code}:\n{cluster.log_tail(node)}"
                )

        figures = run_once(
            cluster.config,
            cluster.config_path,
            clients=clients,
            transfers_per_request=transfers,
            duration=args.duration,
            accounts=cluster.config.accounts,
            replica_pids=cluster.pids,
            check_alive=check_alive,
            label=label,
            trace_dir=trace_dir,
        )
        figures["config_overrides"] = overrides
        return figures


def _versus_etcd(args: argparse.Namespace) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Rounds of ours (1x1 and 64x1, TLS) then etcd (1 and 64 clients, a fresh
    cluster each round), one right after the other: this machine's speed
    drifts by a third within minutes (docs/performance.md), so a ratio is only
    taken between runs of the same round. Returns etcd's figures with the
    rounds (None if not one round completed), and our runs (their end checks
    count like the matrix's). An etcd that fails ends the rounds, not the
    ones it completed."""
    rounds: list[dict[str, Any]] = []
    ours_runs: list[dict[str, Any]] = []
    about: dict[str, Any] = {}
    for number in range(1, args.etcd_rounds + 1):
        if sys.stderr.isatty():
            print(f"{prog}: versus etcd, round {number} of {args.etcd_rounds} ...", file=sys.stderr)
        ours = [_run_launched(args, clients, 1, tls_on=True) for clients in bench_etcd.LOADS]
        ours_runs += ours
        try:
            theirs = bench_etcd.measure(members=args.replicas, duration=args.duration)
        except (bench_etcd.EtcdError, OSError) as error:
            print(f"{prog}: etcd comparison, round {number}: {error}", file=sys.stderr)
            break
        about = {k: v for k, v in theirs.items() if k != "loads"}
        rounds.append({"ours": [round_figures(run) for run in ours], "etcd": theirs["loads"]})
    return ({**about, "rounds": rounds} if rounds else None), ours_runs


def _run_existing(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    accounts = config.accounts[: args.accounts] if args.accounts else config.accounts
    if len(accounts) < 2:
        raise BenchError(f"{args.config} has fewer than 2 accounts")
    return run_once(
        config,
        Path(args.config).resolve(),
        clients=args.clients,
        transfers_per_request=args.transfers_per_request,
        duration=args.duration,
        accounts=accounts,
        replica_pids={},
    )


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _stop_on_sigterm()  # like Ctrl-C: unwind, stopping every process we started
    if args.plot:
        try:
            import matplotlib  # noqa: F401 - fail before a long run, not after
        except ImportError:
            print(f"{prog}: --plot needs matplotlib: pip install -e '.[plot]'", file=sys.stderr)
            return 2
    pysyncobj: dict[str, Any] | None = None
    etcd: dict[str, Any] | None = None
    ours_versus_etcd: list[dict[str, Any]] = []  # our runs of the etcd rounds
    try:
        if args.matrix:
            modes = [False] if args.plaintext else [True, False]
            runs = [
                _run_launched(args, clients, transfers, tls_on=mode)
                for clients, transfers in MATRIX
                for mode in modes
            ]
            if not args.plaintext:
                runs += [
                    _run_launched(args, clients, transfers, tls_on=True, accounts=accounts)
                    for clients, transfers in ACCOUNTS_SWEEP_LOADS
                    for accounts in ACCOUNTS_SWEEP
                ]
            if bench_pysyncobj.available():
                if sys.stderr.isatty():
                    print(
                        f"{prog}: measuring PySyncObj's peak ({args.duration:g} s) ...",
                        file=sys.stderr,
                    )
                try:
                    pysyncobj = bench_pysyncobj.measure(
                        replicas=args.replicas, duration=args.duration
                    )
                except RuntimeError as error:
                    print(f"{prog}: PySyncObj comparison failed: {error}", file=sys.stderr)
            if bench_etcd.available():
                etcd, ours_versus_etcd = _versus_etcd(args)
        elif args.launch:
            runs = [
                _run_launched(
                    args, args.clients, args.transfers_per_request, tls_on=not args.plaintext
                )
            ]
        else:
            runs = [_run_existing(args)]
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    except (BenchError, Unanswered, ConfigError, OSError, ClientTimeout) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    print(render_table(runs))
    if args.matrix:
        print()
        cost = render_tls_cost(runs)
        if cost:
            print(cost)
        print(render_comparison(runs, pysyncobj))
        print(render_versus_etcd(etcd, failed=bench_etcd.available() and etcd is None))
        sweep = render_accounts_sweep(runs)
        if sweep:
            print(sweep)
    if args.json:
        write_json(runs, args.json, pysyncobj, etcd)
    if args.plot:
        try:
            write_plot(runs, args.plot)
        except BenchError as error:
            print(f"{prog}: {error}", file=sys.stderr)
            return 2
    for run in ours_versus_etcd:
        if not run_ok(run):
            print(
                f"{prog}: versus etcd: our {run['clients']}x1 run failed its end check",
                file=sys.stderr,
            )
    ok = all(run_ok(run) for run in [*runs, *ours_versus_etcd])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
