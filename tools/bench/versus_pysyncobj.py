"""PySyncObj's peak on this machine: the reference the benchmark compares with.

    python -m tools.bench.versus_pysyncobj [--replicas 5] [--duration 10] [--outstanding 5000]
                                    [--accounts 1000] [--json PATH]

An optional comparison, not a dependency: `pip install pysyncobj==0.3.17`
(without it this prints how to get it and exits 0). Five PySyncObj replicas
run on 127.0.0.1 in their own processes with PySyncObj's defaults: no fsync
(no journal file at all), a 100 ms append-entries timer that batches the log,
pickle on the wire. Each replica holds the same ledger as ours (balances, the
same transfer rules) as a `@replicated` method. The load runs inside the
leader's process, as PySyncObj's own benchmarks do: it keeps `--outstanding`
transfers in flight (one transfer per command; a callback per commit) for
`--duration` seconds and counts commits. At the end every replica reports its
balances, which must agree and keep their sum.

`measure()` returns the figures; `ledgerpaxos-bench --matrix` prints them next to
ours.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from tools.bench.cluster import account_names, initial_balance_for
from tools.bench.comparison import run_alone
from tools.bench.stats import percentile
from tools.cluster.ports import unreserved_ports
from tools.cluster.processes import cpu_seconds, stop_process

prog = "bench_pysyncobj"
install_hint = "pip install pysyncobj==0.3.17"
ready_timeout_s = 60.0
settle_s = 3.0


def available() -> bool:
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        return False
    return True


def _make_ledger_class() -> Any:
    from pysyncobj import SyncObj, replicated

    class ReplicatedLedger(SyncObj):
        """Our ledger's rules, applied by PySyncObj in log order on every replica."""

        def __init__(self, me: str, partners: list[str], accounts: list[str], balance: int) -> None:
            super().__init__(me, partners)  # PySyncObj's defaults: no journal, no fsync
            self.balances = dict.fromkeys(accounts, balance)

        @replicated
        def transfer(self, sender: str, receiver: str, amount: int) -> bool:
            if amount <= 0 or sender == receiver:
                return False
            if sender not in self.balances or receiver not in self.balances:
                return False
            if self.balances[sender] < amount:
                return False
            self.balances[sender] -= amount
            self.balances[receiver] += amount
            return True

    return ReplicatedLedger


def _replica(
    index: int,
    addresses: list[str],
    accounts: list[str],
    balance: int,
    duration: float,
    outstanding: int,
    commands: Any,
    results: Any,
) -> None:
    """One PySyncObj replica; if it is the leader when told to, it runs the load."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    ledger_class = _make_ledger_class()
    me = addresses[index]
    node = ledger_class(me, [a for a in addresses if a != me], accounts, balance)
    try:
        while True:
            command = commands.get()
            if command == "status":
                results.put(("status", index, node._isReady(), str(node._getLeader())))
            elif command == "load":
                if str(node._getLeader()) == me:
                    results.put(("load", index, _drive(node, accounts, duration, outstanding)))
                else:
                    results.put(("load", index, None))
            elif command == "balances":
                results.put(("balances", index, dict(node.balances)))
            elif command == "stop":
                return
    finally:
        node.destroy()


def _drive(node: Any, accounts: list[str], duration: float, outstanding: int) -> dict[str, Any]:
    """Keep `outstanding` transfers in flight on the leader for `duration` seconds."""
    rng = random.Random(5)
    pool = []
    for _ in range(65536):
        sender, receiver = rng.sample(accounts, 2)
        pool.append((sender, receiver, rng.randint(1, 100)))
    slots = threading.Semaphore(outstanding)
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]
    start = time.monotonic()
    end = start + duration
    cpu_before = time.process_time()

    def done(sent: float) -> Any:
        def callback(result: Any, error: Any) -> None:
            now = time.monotonic()
            with lock:
                if now <= end:
                    if error == 0 and result is not None:  # FAIL_REASON.SUCCESS
                        latencies.append(now - sent)
                    else:
                        failures[0] += 1
            slots.release()

        return callback

    i = 0
    while (now := time.monotonic()) < end:
        if not slots.acquire(timeout=max(0.0, end - now)):
            break
        sender, receiver, amount = pool[i % len(pool)]
        i += 1
        node.transfer(sender, receiver, amount, callback=done(time.monotonic()))
    cpu = time.process_time() - cpu_before
    with lock:
        committed = sorted(latencies)
    return {
        "committed": len(committed),
        "latencies": committed,
        "failures": failures[0],
        "duration": duration,
        "cpu_s": cpu,
    }


def measure(
    *, replicas: int = 5, duration: float = 10.0, outstanding: int = 5000, accounts: int = 1000
) -> dict[str, Any]:
    """Run PySyncObj replicas and load its leader; the figures (no fsync: its defaults)."""
    if not available():
        raise RuntimeError(f"pysyncobj is not installed: {install_hint}")
    names = account_names(accounts)
    balance = initial_balance_for(accounts)
    base = unreserved_ports(replicas)  # PySyncObj binds by itself: picked and freed
    addresses = [f"127.0.0.1:{base + i}" for i in range(replicas)]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    queues = [context.Queue() for _ in range(replicas)]
    processes = [
        context.Process(
            target=_replica,
            args=(i, addresses, names, balance, duration, outstanding, queues[i], results),
            daemon=True,
            name=f"pysyncobj-{i}",
        )
        for i in range(replicas)
    ]
    try:
        for process in processes:
            process.start()
        leader = _wait_for_leader(queues, results, addresses)
        pids = {f"p{i}": p.pid for i, p in enumerate(processes) if p.pid is not None}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        for queue in queues:
            queue.put("load")
        load = None
        for _ in queues:
            kind, index, figures = results.get(timeout=duration + 120)
            assert kind == "load"
            if figures is not None:
                load = figures
        cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if load is None:
            raise RuntimeError("the leader changed before the load started; run again")
        time.sleep(settle_s)  # followers apply what they got
        for queue in queues:
            queue.put("balances")
        balances = {}
        for _ in queues:
            kind, index, value = results.get(timeout=30)
            balances[index] = value
    finally:
        for queue in queues:
            queue.put("stop")
        for process in processes:
            stop_process(process, grace_s=5)
    latencies_ms = [lat * 1000 for lat in load["latencies"]]
    totals = {index: sum(b.values()) for index, b in balances.items()}
    committed = load["committed"]
    cpu = {}
    for name in pids:
        before, after = cpu_before[name], cpu_after[name]
        if before is not None and after is not None and committed:
            cpu[name] = (after - before) / (committed / 1000)
    return {
        "system": "pysyncobj 0.3.17 (defaults: no fsync, 100 ms append-entries timer)",
        "replicas": replicas,
        "leader": leader,
        "outstanding": outstanding,
        "clients": outstanding,
        "transfers_per_request": 1,
        "duration_s": duration,
        "transfers_per_s": committed / duration,
        "requests_per_s": committed / duration,
        "p50_ms": percentile(latencies_ms, 0.50),
        "p90_ms": percentile(latencies_ms, 0.90),
        "p99_ms": percentile(latencies_ms, 0.99),
        "max_ms": latencies_ms[-1] if latencies_ms else math.nan,
        "failed_commands": load["failures"],
        "cpu_s_per_1k_transfers": cpu,
        "balances_agree": len({json.dumps(b, sort_keys=True) for b in balances.values()}) == 1,
        "sum_unchanged": all(total == balance * accounts for total in totals.values()),
        "load_average": list(os.getloadavg()),
    }


def _wait_for_leader(queues: list[Any], results: Any, addresses: list[str]) -> str:
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        for queue in queues:
            queue.put("status")
        leaders = set()
        ready = 0
        for _ in queues:
            _, _, is_ready, leader = results.get(timeout=30)
            ready += bool(is_ready)
            leaders.add(leader)
        if ready == len(queues) and len(leaders) == 1:
            leader = leaders.pop()
            if leader in addresses:
                return leader
        time.sleep(0.2)
    raise RuntimeError(f"PySyncObj elected no leader within {ready_timeout_s:.0f} s")


def render(figures: dict[str, Any]) -> str:
    cpu = ", ".join(
        f"{name} {value:.3f}" for name, value in figures["cpu_s_per_1k_transfers"].items()
    )
    return "\n".join(
        [
            f"{figures['system']}, {figures['replicas']} replicas, "
            f"{figures['outstanding']:,} transfers outstanding, load in the leader's process:",
            f"  {figures['transfers_per_s']:,.0f} transfers/s, p50 {figures['p50_ms']:.0f} ms, "
            f"p99 {figures['p99_ms']:.0f} ms, max {figures['max_ms']:.0f} ms",
            f"  CPU s per 1k transfers: {cpu}",
            f"  check: balances agree={figures['balances_agree']}, sum unchanged={figures['sum_unchanged']}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="PySyncObj's peak transfers/s here.")
    parser.add_argument("--replicas", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--outstanding", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if not available():
        print(f"{prog}: skipped, PySyncObj is not installed ({install_hint})")
        return 0
    return run_alone(
        prog,
        lambda: measure(
            replicas=args.replicas,
            duration=args.duration,
            outstanding=args.outstanding,
            accounts=args.accounts,
        ),
        render,
        args.json,
    )


if __name__ == "__main__":
    sys.exit(main())
