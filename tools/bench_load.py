"""The benchmark's load: C clients, each with one request in flight, in one process.

`tools.bench` starts one or more load processes (`run_load_process`) and gives
each a share of the client ids. Each connects its clients and says "ready"
through its pipe; the parent then sends every process the same window on the
system-wide monotonic clock (`time.monotonic()`, the same in every process on
Linux) and later collects a `LoadResult` from each through the pipe.

Each client is a real `ledgerpaxos.client.Client` on its own connection to the
leader. A request carries T transfers between random distinct accounts,
amounts 1-100, taken from a pool generated before the window opens, so the
load costs the benchmark little more than the client library itself. Requests
are sent from the start of the window until its end; what is still in flight
then is waited for a little (`drain_s`) and counted only if it completes by
the end of the window.
"""

from __future__ import annotations

import multiprocessing.connection
import random
import signal
import time
from array import array
from typing import Any

import attrs
import trio

from ledgerpaxos.client import open_client
from ledgerpaxos.config import load_config
from ledgerpaxos.core.messages import CommandKind, Transfer

drain_s = 5.0  # after the window, how long in-flight requests may still take
pool_size_min = 16384  # transfers in the random pool


@attrs.frozen(kw_only=True)
class LoadSpec:
    config_path: str
    leader: str
    client_ids: tuple[str, ...]
    transfers_per_request: int
    accounts: tuple[str, ...]
    seed: int


@attrs.frozen(kw_only=True)
class LoadResult:
    done_at: bytes  # array("d"): time.monotonic() when each request completed
    latency_s: bytes  # array("d"): its latency, same order
    transfers_refused: int  # transfers the ledger refused (insufficient funds)
    errors: tuple[str, ...]  # clients that failed, and why


def transfer_pool(accounts: tuple[str, ...], size: int, rng: random.Random) -> tuple[Transfer, ...]:
    """Random transfers between distinct accounts; the pool is doubled so that
    any slice of up to `size` transfers can start anywhere in the first half."""
    if len(accounts) < 2:
        raise ValueError("the benchmark needs at least 2 accounts")
    pool = []
    for _ in range(size):
        sender, receiver = rng.sample(accounts, 2)
        pool.append(Transfer(sender=sender, receiver=receiver, amount=rng.randint(1, 100)))
    return tuple(pool + pool)


async def run_load(
    spec: LoadSpec,
    get_window: Any,
    progress: Any = None,
    slot: int = 0,
) -> LoadResult:
    """Connect the clients of `spec`, then `await get_window()` -> (start_at, end_at)
    and drive them through that window; `progress[slot]` counts transfers."""
    config = load_config(spec.config_path)
    rng = random.Random(spec.seed)
    size = max(pool_size_min, 4 * spec.transfers_per_request)
    pool = transfer_pool(spec.accounts, size, rng)
    per_request = spec.transfers_per_request
    done_at = array("d")
    latency = array("d")
    refused = 0
    errors: list[str] = []
    window: list[float] = []
    window_known = trio.Event()
    connected = trio.Semaphore(0)

    async def client_task(client_id: str, seed: int) -> None:
        nonlocal refused
        pick = random.Random(seed).randrange
        try:
            async with open_client(config, client_id) as client:
                client.leader = spec.leader
                try:
                    await client.connect()
                finally:
                    connected.release()
                await window_known.wait()
                start_at, end_at = window
                await trio.sleep(max(0.0, start_at - time.monotonic()))
                while (sent := time.monotonic()) < end_at:
                    start = pick(size)
                    reply = await client.request(
                        CommandKind.transfer, pool[start : start + per_request]
                    )
                    now = time.monotonic()
                    done_at.append(now)
                    latency.append(now - sent)
                    if not reply.outcome.ok:
                        refused += sum(1 for r in reply.outcome.results if not r.ok)
                    if progress is not None:
                        progress[slot] += per_request
        except Exception as error:  # noqa: BLE001 - reported, the other clients go on
            errors.append(f"{client_id}: {type(error).__name__}: {error}")

    async with trio.open_nursery() as nursery:
        for i, client_id in enumerate(spec.client_ids):
            nursery.start_soon(client_task, client_id, spec.seed * 100_003 + i)
        for _ in spec.client_ids:
            await connected.acquire()
        start_at, end_at = await get_window()
        window.extend((start_at, end_at))
        window_known.set()
        # In-flight requests may finish a little after the window, then stop.
        nursery.cancel_scope.deadline = trio.current_time() + (end_at - time.monotonic()) + drain_s
    return LoadResult(
        done_at=done_at.tobytes(),
        latency_s=latency.tobytes(),
        transfers_refused=refused,
        errors=tuple(errors),
    )


def run_load_process(
    spec: LoadSpec, progress: Any, slot: int, pipe: multiprocessing.connection.Connection
) -> None:
    """The body of one load process (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us

    async def get_window() -> tuple[float, float]:
        pipe.send("ready")
        window: tuple[float, float] = await trio.to_thread.run_sync(pipe.recv)
        return window

    try:
        result = trio.run(run_load, spec, get_window, progress, slot)
    except BaseException as error:  # noqa: BLE001 - the parent reports it
        pipe.send(f"{type(error).__name__}: {error}")
        raise
    pipe.send(result)
    pipe.close()
