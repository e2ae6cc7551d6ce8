"""ledgerpaxos-bench: throughput and latency of a cluster under a closed-loop load.

    ledgerpaxos-bench [--config PATH] [--launch] [--replicas N] [--clients C]
                      [--transfers-per-request T] [--duration SECONDS] [--accounts K]
                      [--json PATH] [--plot PATH] [--matrix]

C clients each keep one request of T transfers (random distinct accounts of
K, amounts 1-100) in flight for SECONDS. With --launch, N replica processes
start on 127.0.0.1 with fresh data directories, fsync on, in a temporary
directory, and are stopped afterwards (also on Ctrl-C); without it the
cluster of --config must be running. --matrix runs 1x1, 64x1 and 64x100
(clients x transfers per request) on freshly launched clusters, one table.

The table: transfers/s, requests/s, latency percentiles, the leader's WAL
fsyncs per second, and CPU seconds per 1,000 transfers for every process
(replicas and the benchmark's own). Then a check: every replica holds the same
balances and their sum is what it was before the load. The exit status is 1
if the check fails.

The load runs in separate processes (tools/bench/load.py); how many is
decided from the clients and request size (see `load_processes_for`) and can be forced
with the environment variable LEDGERPAXOS_BENCH_LOAD_PROCESSES. With
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
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from ledgerpaxos import replicas
from ledgerpaxos.client import ClientTimeout
from ledgerpaxos.config import Config, ConfigError, load_config
from ledgerpaxos.core.messages import ControlOp
from tools.bench import versus_pysyncobj as bench_pysyncobj
from tools.bench.cluster import REPO, LaunchedCluster, account_names
from tools.bench.load import LoadResult, LoadSpec, drain_s, run_load_process
from tools.bench.stats import percentile
from tools.cluster.processes import cpu_seconds, stop_process

prog = "ledgerpaxos-bench"

MATRIX = ((1, 1), (64, 1), (64, 100))  # (clients, transfers per request)
leader_timeout_s = 30.0
settle_timeout_s = 30.0
ready_timeout_s = 60.0
timeline_bucket_s = 0.25
control_timeout_s = 5.0


class BenchError(Exception):
    """The benchmark could not run (no leader, a replica died, bad arguments)."""


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
        help="run 1x1, 64x1 and 64x100 (clients x transfers) on launched clusters",
    )
    args = parser.parse_args(argv)
    if args.matrix:
        args.launch = True
    if args.replicas < 1 or args.clients < 1 or args.duration <= 0:
        parser.error("--replicas, --clients and --duration must be positive")
    if not 1 <= args.transfers_per_request <= 8190:
        parser.error("--transfers-per-request must be 1-8190 (transfers_per_request_max)")
    if args.accounts is not None and args.accounts < 2:
        parser.error("--accounts must be at least 2")
    return args


def load_processes_for(clients: int, transfers_per_request: int = 1) -> int:
    """How many processes generate the load (measured: see docs/performance.md).

    Small requests cost the generator CPU per request, so many clients with
    small requests get two processes; big requests are cheap per transfer and
    one process drives them best. More than two only adds scheduling on a
    two-core machine."""
    forced = os.environ.get("LEDGERPAXOS_BENCH_LOAD_PROCESSES")
    if forced:
        return max(1, min(clients, int(forced)))
    return 2 if clients >= 16 and transfers_per_request < 10 else 1


# ---------------------------------------------------------------- talking to replicas


class Unanswered(Exception):
    """A replica did not answer a control request."""


async def ask_all(config: Config, op: ControlOp) -> dict[str, dict[str, Any]]:
    """Every replica's answer, asked in parallel; Unanswered if one did not answer."""
    answers = await replicas.ask_all(config, op, timeout_s=control_timeout_s)
    for node_id, answer in answers.items():
        if answer.body is None:
            raise Unanswered(f"{node_id} did not answer {op.name}: {answer.error}")
    return replicas.bodies(answers)


async def wait_for_leader(config: Config, check_alive: Callable[[], None] | None = None) -> str:
    """The leader every replica names (they all answer a ping first)."""
    try:
        return await replicas.wait_for_leader(config, timeout_s=leader_timeout_s, check=check_alive)
    except replicas.NoLeader as error:
        raise BenchError(str(error)) from None


async def settle(config: Config) -> dict[str, dict[str, Any]]:
    """Wait until every replica has executed what the leader committed, then
    return every replica's print_db."""
    last = ""
    with trio.move_on_after(settle_timeout_s):
        while True:
            views = await ask_all(config, ControlOp.print_view)
            commit = max(v["commit_slot"] for v in views.values())
            executed = {n: v["executed_slot"] for n, v in views.items()}
            if all(slot == commit for slot in executed.values()):
                dbs = await ask_all(config, ControlOp.print_db)
                again = await ask_all(config, ControlOp.print_view)
                if all(v["executed_slot"] == commit for v in again.values()):
                    return dbs
            last = f"commit {commit}, executed {executed}"
            await trio.sleep(0.1)
    raise BenchError(f"replicas did not settle within {settle_timeout_s:.0f} s: {last}")


# ---------------------------------------------------------------- one run


def _git_commit() -> tuple[str, bool]:
    """The commit the code under test comes from, and whether the tree has changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, bool(status)


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    width = 30

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.shown = False

    def show(self, elapsed: float, total: float, transfers: int, rate: float) -> None:
        if not self.enabled:
            return
        done = min(1.0, max(0.0, elapsed / total))
        bar = "#" * int(done * self.width)
        line = (
            f"\r{self.label} [{bar:<{self.width}}] {min(elapsed, total):5.1f}/{total:.0f} s "
            f"{transfers:>10,} transfers {rate:>10,.0f}/s "
        )
        sys.stderr.write(line)
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


class _Workers:
    """The load processes of one run; terminated whatever happens."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[Any] = []
        self.pipes: list[Any] = []
        self.progress: Any = None

    def start(self, specs: list[LoadSpec]) -> None:
        self.progress = self.context.RawArray("q", len(specs))
        for slot, spec in enumerate(specs):
            parent_end, child_end = self.context.Pipe()
            process = self.context.Process(
                target=run_load_process,
                args=(spec, self.progress, slot, child_end),
                name=f"bench-load-{slot}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self.processes.append(process)
            self.pipes.append(parent_end)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for slot, pipe in enumerate(self.pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise BenchError(f"load process {slot} not ready within {timeout_s:.0f} s")
            message = pipe.recv()
            if message != "ready":
                raise BenchError(f"load process {slot} failed: {message}")

    def open_window(self, start_at: float, end_at: float) -> None:
        for pipe in self.pipes:
            pipe.send((start_at, end_at))

    def transfers(self) -> int:
        return sum(self.progress) if self.progress is not None else 0

    def collect(self, timeout_s: float) -> list[LoadResult]:
        results = []
        deadline = time.monotonic() + timeout_s
        for slot, pipe in enumerate(self.pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise BenchError(f"load process {slot} did not report within {timeout_s:.0f} s")
            result = pipe.recv()
            if not isinstance(result, LoadResult):
                raise BenchError(f"load process {slot} failed: {result}")
            results.append(result)
        return results

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process, grace_s=2)


def run_once(
    config: Config,
    config_path: Path,
    *,
    clients: int,
    transfers_per_request: int,
    duration: float,
    accounts: tuple[str, ...],
    replica_pids: dict[str, int],
    check_alive: Any = None,
    label: str = "",
) -> dict[str, Any]:
    """Load the running cluster of `config` and measure; returns the figures."""
    leader = trio.run(wait_for_leader, config, check_alive)
    before = trio.run(ask_all, config, ControlOp.print_db)
    total_before = sum(before[leader]["balances"].values())
    processes = load_processes_for(clients, transfers_per_request)
    # Client ids are unique per run: request numbers start from the clock anyway.
    run_tag = f"{os.getpid()}-{int(time.time())}"
    ids = [f"bench-{run_tag}-{i}" for i in range(clients)]
    specs = [
        LoadSpec(
            config_path=str(config_path),
            leader=leader,
            client_ids=tuple(ids[p::processes]),
            transfers_per_request=transfers_per_request,
            accounts=accounts,
            seed=1000 * (p + 1) + clients,
        )
        for p in range(processes)
    ]
    workers = _Workers()
    progress = Progress(label or f"{clients}x{transfers_per_request}")
    load_before = os.getloadavg()
    try:
        workers.start(specs)
        workers.wait_ready(ready_timeout_s)  # every client connected to the leader
        start_at = time.monotonic() + 0.1
        end_at = start_at + duration
        workers.open_window(start_at, end_at)
        samples = trio.run(
            _sample_window, config, workers, replica_pids, start_at, end_at, progress, check_alive
        )
        progress.close()
        results = workers.collect(duration + drain_s + 30)
    finally:
        progress.close()
        workers.stop()
    load_after = os.getloadavg()
    if check_alive is not None:
        check_alive()
    dbs = trio.run(settle, config)
    return _figures(
        config=config,
        leader=leader,
        clients=clients,
        transfers_per_request=transfers_per_request,
        duration=duration,
        accounts=accounts,
        processes=processes,
        start_at=start_at,
        end_at=end_at,
        results=results,
        samples=samples,
        dbs=dbs,
        total_before=total_before,
        load=(load_before, load_after),
    )


async def _sample_window(
    config: Config,
    workers: _Workers,
    replica_pids: dict[str, int],
    start_at: float,
    end_at: float,
    progress: Progress,
    check_alive: Any,
) -> dict[str, Any]:
    """CPU and fsync counters at the start and the end of the window; progress between."""

    async def counters() -> tuple[float, dict[str, float | None], dict[str, dict[str, Any]]]:
        pids = {**replica_pids, "bench": os.getpid()}
        for i, pid in enumerate(workers.pids):
            pids[f"load{i}"] = pid
        cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        at = time.monotonic()
        views = await ask_all(config, ControlOp.print_view)
        return at, cpu, views

    await trio.sleep(max(0.0, start_at - time.monotonic()))
    profilers = _start_profilers(replica_pids, workers.pids, end_at - start_at, progress.label)
    first = await counters()
    last_count, last_at = workers.transfers(), time.monotonic()
    rate = 0.0
    while (now := time.monotonic()) < end_at:
        if check_alive is not None:
            check_alive()
        count = workers.transfers()
        if now - last_at >= 0.5:
            rate = (count - last_count) / (now - last_at)
            last_count, last_at = count, now
        progress.show(now - start_at, end_at - start_at, count, rate)
        await trio.sleep(min(0.25, max(0.0, end_at - now)))
    second = await counters()
    for profiler in profilers:
        await trio.to_thread.run_sync(profiler.wait)
    return {"first": first, "second": second}


def _start_profilers(
    replica_pids: dict[str, int], load_pids: list[int], duration: float, label: str
) -> list[subprocess.Popen[bytes]]:
    """py-spy on every replica and load process, when LEDGERPAXOS_BENCH_PYSPY names a directory."""
    directory = os.environ.get("LEDGERPAXOS_BENCH_PYSPY")
    if not directory:
        return []
    py_spy = Path(sys.executable).with_name("py-spy")
    command = str(py_spy) if py_spy.exists() else "py-spy"
    Path(directory).mkdir(parents=True, exist_ok=True)
    targets = {**replica_pids, **{f"load{i}": pid for i, pid in enumerate(load_pids)}}
    profilers = []
    for name, pid in targets.items():
        output = Path(directory) / f"{label}-{name}.txt"
        try:
            profilers.append(
                subprocess.Popen(
                    [
                        command,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(max(1, int(duration))),
                        "--rate",
                        "200",
                        "--nonblocking",
                        "--gil",
                        "--format",
                        "raw",
                        "--output",
                        str(output),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        except OSError as error:
            print(f"{prog}: cannot run py-spy: {error}", file=sys.stderr)
            break
    return profilers


def _figures(
    *,
    config: Config,
    leader: str,
    clients: int,
    transfers_per_request: int,
    duration: float,
    accounts: tuple[str, ...],
    processes: int,
    start_at: float,
    end_at: float,
    results: list[LoadResult],
    samples: dict[str, Any],
    dbs: dict[str, dict[str, Any]],
    total_before: int,
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> dict[str, Any]:
    done_at = array("d")
    latency = array("d")
    for result in results:
        done_at.frombytes(result.done_at)
        latency.frombytes(result.latency_s)
    in_window = [
        (at, lat) for at, lat in zip(done_at, latency, strict=True) if start_at <= at <= end_at
    ]
    requests = len(in_window)
    transfers = requests * transfers_per_request
    latencies_ms = sorted(lat * 1000 for _, lat in in_window)
    buckets = [0] * max(1, math.ceil(duration / timeline_bucket_s))
    for at, _ in in_window:
        buckets[min(len(buckets) - 1, int((at - start_at) / timeline_bucket_s))] += 1
    timeline = [count * transfers_per_request / timeline_bucket_s for count in buckets]

    at1, cpu1, views1 = samples["first"]
    at2, cpu2, views2 = samples["second"]
    elapsed = at2 - at1
    cpu_s = {}
    cpu_per_1k = {}
    for name in cpu2:
        if cpu1.get(name) is None or cpu2[name] is None:
            continue
        cpu_s[name] = cpu2[name] - cpu1[name]
        cpu_per_1k[name] = cpu_s[name] / (transfers / 1000) if transfers else math.nan
    bench_names = [name for name in cpu_s if name == "bench" or name.startswith("load")]
    if bench_names:
        cpu_s["bench (all)"] = sum(cpu_s[name] for name in bench_names)
        cpu_per_1k["bench (all)"] = (
            cpu_s["bench (all)"] / (transfers / 1000) if transfers else math.nan
        )
    fsyncs_per_s = {
        node: (views2[node]["wal_fsyncs"] - views1[node]["wal_fsyncs"]) / elapsed
        for node in config.node_ids
        if "wal_fsyncs" in views2[node]
    }
    snapshots_per_s = {
        node: (views2[node]["snapshots_written"] - views1[node]["snapshots_written"]) / elapsed
        for node in config.node_ids
        if "snapshots_written" in views2[node]
    }
    balances = {node: db["balances"] for node, db in dbs.items()}
    reference = balances[leader]
    agree = all(b == reference for b in balances.values())
    total_after = {node: sum(b.values()) for node, b in balances.items()}
    sum_unchanged = all(total == total_before for total in total_after.values())
    errors = [error for result in results for error in result.errors]
    commit, dirty = _git_commit()
    return {
        "commit": commit,
        "uncommitted_changes": dirty,
        "runtime_options": os.environ.get("LEDGERPAXOS_RUNTIME", ""),
        "checkpoint_interval": config.checkpoint_interval,
        "snapshot_interval": config.snapshot_interval,
        "pipeline_slots_max": config.pipeline_slots_max,
        "batch_commands_max": config.batch_commands_max,
        "replicas": len(config.node_ids),
        "clients": clients,
        "transfers_per_request": transfers_per_request,
        "accounts": len(accounts),
        "duration_s": duration,
        "load_processes": processes,
        "fsync": config.fsync,
        "leader": leader,
        "transfers_per_s": transfers / duration,
        "requests_per_s": requests / duration,
        "requests": requests,
        "transfers": transfers,
        "transfers_refused": sum(result.transfers_refused for result in results),
        "p50_ms": percentile(latencies_ms, 0.50),
        "p90_ms": percentile(latencies_ms, 0.90),
        "p99_ms": percentile(latencies_ms, 0.99),
        "max_ms": latencies_ms[-1] if latencies_ms else math.nan,
        "mean_ms": sum(latencies_ms) / len(latencies_ms) if latencies_ms else math.nan,
        "fsyncs_per_s": fsyncs_per_s.get(leader, math.nan),
        "wal_fsyncs_per_s": fsyncs_per_s,
        "snapshots_per_s": snapshots_per_s,
        "cpu_s": cpu_s,
        "cpu_s_per_1k_transfers": cpu_per_1k,
        "cpu_count": os.cpu_count(),
        "load_average_before": list(load[0]),
        "load_average_after": list(load[1]),
        "balances_agree": agree,
        "sum_unchanged": sum_unchanged,
        "total_before": total_before,
        "total_after": total_after,
        "client_errors": errors[:20],
        "timeline_bucket_s": timeline_bucket_s,
        "timeline_transfers_per_s": timeline,
        "latency_histogram_ms": _histogram(latencies_ms),
        "_latencies_ms": latencies_ms,  # for the plot; not written to JSON
    }


def _histogram(latencies_ms: Sequence[float]) -> dict[str, list[float] | list[int]]:
    """Counts in logarithmic bins (10 per decade) from 0.01 ms."""
    if not latencies_ms:
        return {"edges_ms": [], "counts": []}
    top = max(latencies_ms)
    edges = [0.01 * 10 ** (i / 10) for i in range(int(10 * math.log10(max(top, 0.02) / 0.01)) + 2)]
    counts = [0] * (len(edges) - 1)
    for value in latencies_ms:
        index = int(10 * math.log10(max(value, 0.01) / 0.01))
        counts[min(len(counts) - 1, index)] += 1
    return {"edges_ms": [round(edge, 5) for edge in edges], "counts": counts}


# ---------------------------------------------------------------- output


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def render_table(runs: list[dict[str, Any]]) -> str:
    first = runs[0]
    commit = first["commit"][:12] + (
        " + uncommitted changes" if first["uncommitted_changes"] else ""
    )
    load = max(max(run["load_average_before"][0], run["load_average_after"][0]) for run in runs)
    lines = [
        f"{prog}: {first['replicas']} replicas on 127.0.0.1, fsync {'on' if first['fsync'] else 'OFF'}, "
        f"{first['accounts']} accounts, {first['duration_s']:g} s per run, "
        f"{first['cpu_count']} CPUs shared by replicas and load, load average up to {load:.1f}",
        f"code: {commit}",
        "",
    ]
    header = (
        f"{'clients':>7} {'T':>5} {'transfers/s':>12} {'requests/s':>11} "
        f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'fsyncs/s':>9}  "
        f"{'CPU s per 1k transfers: leader':>30} {'followers':>9} {'bench':>7}"
    )
    lines += [header, "-" * len(header)]
    for run in runs:
        cpu = run["cpu_s_per_1k_transfers"]
        leader_cpu = cpu.get(run["leader"], math.nan)
        followers = [v for name, v in cpu.items() if name.startswith("n") and name != run["leader"]]
        follower_cpu = sum(followers) / len(followers) if followers else math.nan
        bench_cpu = cpu.get("bench (all)", math.nan)
        lines.append(
            f"{run['clients']:>7} {run['transfers_per_request']:>5} {run['transfers_per_s']:>12,.0f} "
            f"{run['requests_per_s']:>11,.0f} {_ms(run['p50_ms']):>7} {_ms(run['p90_ms']):>7} "
            f"{_ms(run['p99_ms']):>7} {_ms(run['max_ms']):>7} {run['fsyncs_per_s']:>9,.0f}  "
            f"{leader_cpu:>30.3f} {follower_cpu:>9.3f} {bench_cpu:>7.3f}"
        )
    lines.append("")
    lines.append("CPU seconds per 1,000 transfers, per process (followers: mean above):")
    for run in runs:
        cpu = run["cpu_s_per_1k_transfers"]
        parts = [
            f"{name}{'*' if name == run['leader'] else ''} {value:.3f}"
            for name, value in cpu.items()
            if name != "bench (all)"
        ]
        lines.append(
            f"  {run['clients']}x{run['transfers_per_request']}: "
            + ", ".join(parts)
            + "   (* leader)"
        )
    lines.append("")
    for run in runs:
        ok = run["balances_agree"] and run["sum_unchanged"]
        totals = set(run["total_after"].values())
        lines.append(
            f"check {run['clients']}x{run['transfers_per_request']}: "
            + (
                f"all {run['replicas']} replicas hold the same balances; sum {run['total_before']:,} unchanged"
                if ok
                else f"FAILED: balances agree={run['balances_agree']}, sums {sorted(totals)} "
                f"(before {run['total_before']:,})"
            )
            + (
                f"; {run['transfers_refused']:,} transfers refused"
                if run["transfers_refused"]
                else ""
            )
        )
        if run["client_errors"]:
            lines.append(f"  client errors: {'; '.join(run['client_errors'][:3])}")
    return "\n".join(lines)


def render_comparison(runs: list[dict[str, Any]], pysyncobj: dict[str, Any] | None) -> str:
    """PySyncObj's peak next to ours (the issue's 3x target)."""
    if pysyncobj is None:
        return (
            "PySyncObj comparison skipped: not installed "
            f"({bench_pysyncobj.install_hint}; an optional comparison)"
        )
    ours = max(runs, key=lambda run: run["transfers_per_s"])
    ratio = (
        ours["transfers_per_s"] / pysyncobj["transfers_per_s"]
        if pysyncobj["transfers_per_s"]
        else math.inf
    )
    return "\n".join(
        [
            bench_pysyncobj.render(pysyncobj),
            f"ours at its best ({ours['clients']}x{ours['transfers_per_request']}, fsync on): "
            f"{ours['transfers_per_s']:,.0f} transfers/s = {ratio:.1f}x PySyncObj's peak "
            f"(no fsync) in the same run",
        ]
    )


def write_json(
    runs: list[dict[str, Any]], path: str, pysyncobj: dict[str, Any] | None = None
) -> None:
    public = [{k: v for k, v in run.items() if not k.startswith("_")} for run in runs]
    document: Any = public[0] if len(public) == 1 else {"runs": public}
    if pysyncobj is not None:
        document = {"runs": public, "pysyncobj": pysyncobj}
    Path(path).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_plot(runs: list[dict[str, Any]], path: str) -> None:
    """Throughput over time and the latency distribution, one line per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("--plot needs matplotlib: pip install -e '.[plot]'") from None
    figure, (over_time, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in runs:
        clients = run["clients"]
        label = f"{clients} client{'s' if clients != 1 else ''} x {run['transfers_per_request']}"
        bucket = run["timeline_bucket_s"]
        series = run["timeline_transfers_per_s"]
        over_time.plot([bucket * (i + 0.5) for i in range(len(series))], series, label=label)
        values = run["_latencies_ms"]
        if values:
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            latency.plot(values, fractions, label=label)
    over_time.set_xlabel("seconds into the run")
    over_time.set_ylabel("transfers/s")
    over_time.set_title("throughput over time")
    over_time.set_yscale("log")
    over_time.grid(True, alpha=0.3)
    over_time.legend()
    latency.set_xscale("log")
    latency.set_xlabel("request latency (ms)")
    latency.set_ylabel("fraction of requests")
    latency.set_title("latency distribution (CDF)")
    latency.grid(True, alpha=0.3)
    latency.legend()
    first = runs[0]
    figure.suptitle(
        f"ledgerpaxos, {first['replicas']} replicas, fsync on, {first['cpu_count']} CPUs, "
        f"commit {first['commit'][:12]}{' +changes' if first['uncommitted_changes'] else ''}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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


def _run_launched(args: argparse.Namespace, clients: int, transfers: int) -> dict[str, Any]:
    accounts = args.accounts or 1000
    overrides = config_overrides()
    with LaunchedCluster(replicas=args.replicas, accounts=accounts, overrides=overrides) as cluster:
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
            accounts=tuple(account_names(accounts)),
            replica_pids=cluster.pids,
            check_alive=check_alive,
            label=f"{clients}x{transfers}",
        )
        figures["config_overrides"] = overrides
        return figures


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
        accounts=tuple(accounts),
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
    try:
        if args.matrix:
            runs = [_run_launched(args, clients, transfers) for clients, transfers in MATRIX]
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
        elif args.launch:
            runs = [_run_launched(args, args.clients, args.transfers_per_request)]
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
        print(render_comparison(runs, pysyncobj))
    if args.json:
        write_json(runs, args.json, pysyncobj)
    if args.plot:
        try:
            write_plot(runs, args.plot)
        except BenchError as error:
            print(f"{prog}: {error}", file=sys.stderr)
            return 2
    ok = all(run["balances_agree"] and run["sum_unchanged"] for run in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
