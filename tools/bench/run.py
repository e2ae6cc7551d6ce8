"""One benchmark run: wait for a leader, start the load processes, sample, collect the figures.

`run_once` loads a running cluster for a window and returns its figures (the
dict the table, --json and --plot are made of); the load itself runs in the
processes of tools/bench/load.py.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import trio

from ledgerpaxos import constants, replicas, tls
from ledgerpaxos.client import open_client
from ledgerpaxos.config import Config
from ledgerpaxos.core.messages import ControlOp
from tools.bench.cluster import REPO
from tools.bench.load import (
    LoadResult,
    LoadSpec,
    acknowledged_mismatches,
    drain_s,
    run_load_process,
)
from tools.bench.stats import percentile
from tools.cluster.processes import cpu_seconds, resident_bytes, stop_process, wakeups

prog = "ledgerpaxos-bench"

leader_timeout_s = 30.0
settle_timeout_s = 30.0
ready_timeout_s = 60.0
timeline_bucket_s = 0.25
control_timeout_s = 5.0


class BenchError(Exception):
    """The benchmark could not run (no leader, a replica died, bad arguments)."""


def load_processes_for(clients: int) -> int:
    """How many processes generate the load (measured: see docs/performance.md).

    One, whatever the load, unless LEDGERPAXOS_BENCH_LOAD_PROCESSES says
    otherwise: on two shared cores a second process did not raise 64 small
    requests' throughput in interleaved runs but added wake-ups (six pairs
    at 64 x 1 in the median 3,190 against 2,545/s), and big requests are
    cheap per transfer anyway. etcd's load is one process too."""
    forced = os.environ.get("LEDGERPAXOS_BENCH_LOAD_PROCESSES")
    if forced:
        return max(1, min(clients, int(forced)))
    return 1


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
    return every replica's print_view (its checkpoint digests among them)."""
    last = ""
    with trio.move_on_after(settle_timeout_s):
        while True:
            views = await ask_all(config, ControlOp.print_view)
            commit = max(v["commit_slot"] for v in views.values())
            executed = {n: v["executed_slot"] for n, v in views.items()}
            if all(slot == commit for slot in executed.values()):
                return views
            last = f"commit {commit}, executed {executed}"
            await trio.sleep(0.1)
    raise BenchError(f"replicas did not settle within {settle_timeout_s:.0f} s: {last}")


async def read_balances(config: Config, accounts: Iterable[str]) -> dict[str, int]:
    """The balances of `accounts`, read through the log as the operator (an
    auditor): a few reads of at most accounts_per_request_max accounts each,
    so the check costs what the load touched, not what the ledger holds."""
    names = sorted(accounts)
    step = constants.accounts_per_request_max
    balances: dict[str, int] = {}
    operator = tls.operator(tls.default_operator)
    async with open_client(config, tls.default_operator, identity=operator) as client:
        for start in range(0, len(names), step):
            balances.update(await client.balances(names[start : start + step], timeout=60))
    return balances


def digests_agree(views: dict[str, dict[str, Any]]) -> bool:
    """Every replica's digest of the newest checkpoint they all remember is the same."""
    remembered = [set(v.get("checkpoint_digests", {})) for v in views.values()]
    common = set.intersection(*remembered) if remembered else set()
    if not common:
        return len({v["executed_slot"] for v in views.values()}) <= 1
    slot = max(common, key=int)
    return len({v["checkpoint_digests"][slot] for v in views.values()}) == 1


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

    def wait_ready(self, timeout_s: float) -> frozenset[str]:
        """Wait until every load process has connected its clients; returns
        the accounts their transfers may touch."""
        deadline = time.monotonic() + timeout_s
        touched: set[str] = set()
        for slot, pipe in enumerate(self.pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise BenchError(f"load process {slot} not ready within {timeout_s:.0f} s")
            message = pipe.recv()
            if not (isinstance(message, tuple) and message[0] == "ready"):
                raise BenchError(f"load process {slot} failed: {message}")
            touched |= message[1]
        return frozenset(touched)

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
    accounts: Sequence[str],
    replica_pids: dict[str, int],
    check_alive: Any = None,
    label: str = "",
    trace_dir: Path | None = None,
) -> dict[str, Any]:
    """Load the running cluster of `config` and measure; returns the figures.
    `trace_dir`: write there when each request was sent and answered
    (`requests.txt`, for tools/bench/hops.py)."""
    leader = trio.run(wait_for_leader, config, check_alive)
    processes = load_processes_for(clients)
    # Each client is named like an account, the one it may debit (request
    # numbers start from the clock, so runs on one cluster never collide).
    if clients > len(accounts):
        raise BenchError(
            f"{clients} clients need as many accounts (each sends from its own); "
            f"use --accounts {clients} or more"
        )
    ids = list(accounts[:clients])
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
        touched = workers.wait_ready(ready_timeout_s)  # every client connected, registered
        before = trio.run(read_balances, config, touched)
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
    if trace_dir is not None:
        write_requests(trace_dir / "requests.txt", start_at, end_at, results)
    if check_alive is not None:
        check_alive()
    views = trio.run(settle, config)
    after = trio.run(read_balances, config, touched)
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
        views=views,
        balances_before=before,
        balances_after=after,
        load=(load_before, load_after),
    )


def write_requests(
    path: Path, start_at: float, end_at: float, results: Sequence[LoadResult]
) -> None:
    """The window and every request's send and reply time, in ns of
    time.monotonic() (the clock tools/bench/trace stamps with)."""
    lines = [f"window {round(start_at * 1e9)} {round(end_at * 1e9)}"]
    lines += [
        f"req {round((at - lat) * 1e9)} {round(at * 1e9)}" for at, lat in completions(results)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def completions(results: Sequence[LoadResult]) -> list[tuple[float, float]]:
    """(time.monotonic() when it was answered, latency s) of every request of
    every load process."""
    done_at, latency = array("d"), array("d")
    for result in results:
        done_at.frombytes(result.done_at)
        latency.frombytes(result.latency_s)
    return list(zip(done_at, latency, strict=True))


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

    async def counters() -> tuple[
        float, dict[str, float | None], dict[str, dict[str, Any]], dict[str, int | None]
    ]:
        pids = {**replica_pids, "bench": os.getpid()}
        for i, pid in enumerate(workers.pids):
            pids[f"load{i}"] = pid
        cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        woken = {name: wakeups(pid) for name, pid in pids.items()}
        at = time.monotonic()
        views = await ask_all(config, ControlOp.print_view)
        return at, cpu, views, woken

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
    resident = {name: resident_bytes(pid) for name, pid in replica_pids.items()}
    for profiler in profilers:
        await trio.to_thread.run_sync(profiler.wait)
    return {"first": first, "second": second, "resident": resident}


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
    accounts: Sequence[str],
    processes: int,
    start_at: float,
    end_at: float,
    results: list[LoadResult],
    samples: dict[str, Any],
    views: dict[str, dict[str, Any]],
    balances_before: dict[str, int],
    balances_after: dict[str, int],
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> dict[str, Any]:
    in_window = [(at, lat) for at, lat in completions(results) if start_at <= at <= end_at]
    requests = len(in_window)
    transfers = requests * transfers_per_request
    latencies_ms = sorted(lat * 1000 for _, lat in in_window)
    buckets = [0] * max(1, math.ceil(duration / timeline_bucket_s))
    for at, _ in in_window:
        buckets[min(len(buckets) - 1, int((at - start_at) / timeline_bucket_s))] += 1
    timeline = [count * transfers_per_request / timeline_bucket_s for count in buckets]

    at1, cpu1, views1, woken1 = samples["first"]
    at2, cpu2, views2, woken2 = samples["second"]
    # The ControlOp.print_view round trips between the two samples wake the
    # replicas a few times too: noise below one in a thousand requests.
    wakeups_per_request = {
        name: (woken2[name] - woken1[name]) / requests
        for name in woken2
        if requests and woken1.get(name) is not None and woken2[name] is not None
    }
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
    # Agreement: every replica's state digest at the newest common checkpoint
    # (a digest covers every balance and session). The money the load moved
    # stays among the accounts it touched, read through the log before and after.
    agree = digests_agree(views)
    reference = balances_after
    sum_unchanged = sum(balances_before.values()) == sum(balances_after.values())
    net_flow: dict[str, int] = {}
    for result in results:
        for account, amount in result.net_flow:
            net_flow[account] = net_flow.get(account, 0) + amount
    unknown = [t for result in results for t in result.unknown]
    mismatches = acknowledged_mismatches(balances_before, reference, net_flow, unknown)
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
        "tls": config.tls_enabled,
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
        # each replica's resident memory at the end of the window, MiB
        "replica_rss_mib": {
            node: round(size / 2**20, 1)
            for node, size in samples.get("resident", {}).items()
            if size is not None
        },
        "cpu_s_per_1k_transfers": cpu_per_1k,
        "wakeups_per_request": wakeups_per_request,
        "cpu_count": os.cpu_count(),
        "load_average_before": list(load[0]),
        "load_average_after": list(load[1]),
        "balances_agree": agree,
        "sum_unchanged": sum_unchanged,
        "acknowledged_match": not mismatches,
        "acknowledged_mismatches": mismatches[:20],
        "unanswered_transfers": len(unknown),
        "accounts_checked": len(balances_before),
        "total_before": sum(balances_before.values()),
        "total_after": sum(balances_after.values()),
        "client_errors": errors[:20],
        "timeline_bucket_s": timeline_bucket_s,
        "timeline_transfers_per_s": timeline,
        "latency_histogram_ms": histogram(latencies_ms),
        "_latencies_ms": latencies_ms,  # for the plot; not written to JSON
    }


def histogram(latencies_ms: Sequence[float]) -> dict[str, list[float] | list[int]]:
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
