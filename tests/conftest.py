"""Shared test helpers: in-process clusters of real runtimes on a MemoryNetwork.

    async def test_something(tmp_path, autojump_clock):
        async with open_cluster(tmp_path) as cluster:
            leader = await cluster.wait_for_leader()
            async with cluster.client("A") as client:
                assert (await client.transfer("A", "B", 1)).ok

Request `autojump_clock` in every test that runs a cluster: virtual time, no
real sleeping (pytest-trio only uses a clock the test function asks for).
`cluster.stop(n)` / `cluster.start(n)` / `cluster.restart(n)` crash and revive a
replica on its data directory; `cluster.control(n, op)` and `set_alive` reach
the control endpoint; `cluster.network.cut(n)` / `heal(n)` isolate a replica.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import wire
from ledgerpaxos.client import Client, control, open_client
from ledgerpaxos.config import Config, make_local_config
from ledgerpaxos.core.messages import ClientReply, ClientRequest, Command, ControlOp
from ledgerpaxos.runtime import Replica, RuntimeOptions
from ledgerpaxos.storage.identity import Start
from ledgerpaxos.testing.network import MemoryNetwork
from tools.cluster.ports import PortReservation

REPO = Path(__file__).resolve().parent.parent
# Clients the tests use that may debit every account: they move money every
# way with few clients (tests/test_authorization.py has the rule itself).
TREASURER = {
    c: {"accounts": list("ABCDEFGHIJ")} for c in ["A", "raw", *(f"c{i}" for i in range(32))]
}


class Cluster:
    """n replicas in one nursery; each can be stopped and started again on its data."""

    def __init__(self, config: Config, nursery: trio.Nursery, *, seed: int) -> None:
        self.config = config
        self.network = MemoryNetwork()
        self.seed = seed
        self.replicas: dict[str, Replica] = {}
        self._nursery = nursery
        self._scopes: dict[str, trio.CancelScope] = {}
        self._stopped: dict[str, trio.Event] = {}
        self._starts = 0
        self._formatted: set[str] = set()

    @property
    def node_ids(self) -> tuple[str, ...]:
        return self.config.node_ids

    # ------------------------------------------------------------ lifetime

    async def start(self, node_id: str, *, recover: bool = False) -> Replica:
        """Start (or restart, on the same data directory) one replica: the
        first start formats its directory; `recover`: it lost its disk."""
        assert node_id not in self._scopes, f"{node_id} is running"
        self._starts += 1
        rng = random.Random(self.seed * 1000 + self._starts)
        if recover:
            start = Start.recover
        elif node_id in self._formatted:
            start = Start.existing
        else:
            start = Start.format
        self._formatted.add(node_id)
        replica = Replica(
            self.config,
            node_id,
            network=self.network,
            rng=rng,
            options=RuntimeOptions(thorough_checks=True),
            start=start,
        )
        self.replicas[node_id] = replica
        await self._nursery.start(self._run, replica)
        return replica

    async def _run(self, replica: Replica, *, task_status: trio.TaskStatus[int]) -> None:
        node_id = replica.node_id
        stopped = self._stopped[node_id] = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scopes[node_id] = scope
                await replica.run(task_status=task_status)
        finally:
            self._scopes.pop(node_id, None)
            stopped.set()

    async def stop(self, node_id: str) -> None:
        """Stop one replica as a crash would (its data directory stays)."""
        self._scopes[node_id].cancel()
        await self._stopped[node_id].wait()

    async def restart(self, node_id: str) -> Replica:
        await self.stop(node_id)
        return await self.start(node_id)

    def running(self, node_id: str) -> bool:
        return node_id in self._scopes

    # ------------------------------------------------------------ control and clients

    async def control(self, node_id: str, op: ControlOp | str, argument: int = 0) -> dict[str, Any]:
        """A control request; returns the JSON body with "ok" added."""
        reply = await control(self.config, node_id, op, argument, network=self.network)
        body: dict[str, Any] = json.loads(reply.body)
        body["ok"] = reply.ok
        return body

    async def set_alive(self, node_id: str, alive: bool) -> None:
        body = await self.control(node_id, ControlOp.set_alive, int(alive))
        assert body["ok"] and body["alive"] == alive

    def client(self, client_id: str) -> contextlib.AbstractAsyncContextManager[Client]:
        return open_client(self.config, client_id, network=self.network)

    async def raw_request(
        self, node_id: str, command: Command, *, timeout_s: float = 5.0
    ) -> ClientReply:
        """Send one ClientRequest frame on a fresh connection and read its reply."""
        frame = wire.encode_frame(
            ClientRequest(command=command), cluster_id=self.config.cluster_id, sender=0
        )
        decoder = wire.FrameDecoder(cluster_id=self.config.cluster_id)
        with trio.fail_after(timeout_s):
            async with await self.network.connect(node_id) as stream:
                await stream.send_all(frame)
                while data := await stream.receive_some():
                    for _, message in decoder.feed(data):
                        if isinstance(message, ClientReply):
                            return message
        raise AssertionError(f"{node_id} closed the connection without a reply")

    # ------------------------------------------------------------ waiting

    def balances_agree(self) -> dict[str, int] | None:
        """The balances, if every running alive replica has the same."""
        views = [r.core.balances() for n, r in self.replicas.items() if self.running(n) and r.alive]
        return views[0] if views and all(v == views[0] for v in views) else None

    def leaders(self) -> list[str]:
        """Running, alive replicas that believe they lead."""
        return [
            n
            for n, r in self.replicas.items()
            if self.running(n) and r.alive and r.core.basic_status().is_leader
        ]

    async def wait_for_leader(self, *, timeout_s: float = 10.0, not_: str | None = None) -> str:
        """A leader that a majority of alive replicas follow (virtual time)."""

        def settled() -> str | None:
            for leader in self.leaders():
                if leader == not_:
                    continue
                ballot = self.replicas[leader].core.basic_status().ballot
                followers = [
                    n
                    for n, r in self.replicas.items()
                    if self.running(n)
                    and r.alive
                    and (r.core.basic_status().leader, r.core.basic_status().ballot)
                    == (leader, ballot)
                ]
                if len(followers) >= self.config.majority:
                    return leader
            return None

        return await self.wait_until(settled, timeout_s=timeout_s, what="a leader")

    async def wait_until(
        self, condition: Callable[[], Any], *, timeout_s: float = 10.0, what: str = "a condition"
    ) -> Any:
        """Poll `condition` every 10 ms of virtual time until it returns something truthy."""
        with trio.move_on_after(timeout_s):
            while not (result := condition()):
                await trio.sleep(0.01)
            return result
        raise AssertionError(f"no {what} within {timeout_s} s")


@contextlib.asynccontextmanager
async def open_cluster(
    tmp_path: Path, n: int = 5, *, seed: int = 1, start: bool = True, **overrides: Any
) -> AsyncIterator[Cluster]:
    """A cluster of n replicas with fsync off, data under tmp_path; all stopped on exit."""
    overrides.setdefault("fsync", False)
    # A snapshot file at every checkpoint, so that a few dozen transfers purge
    # the log (installs, purged slots); tests/test_core.py covers larger intervals.
    overrides.setdefault("snapshot_interval", 10)
    overrides.setdefault("clients", TREASURER)
    config = make_local_config(n, 7001, tmp_path / "data", **overrides)
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        cluster = Cluster(config, nursery, seed=seed)
        try:
            if start:
                for node_id in config.node_ids:
                    await cluster.start(node_id)
            yield cluster
        except BaseException as raised:  # re-raised outside the nursery: a plain failure
            error = raised
        finally:
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Five started replicas (request `autojump_clock` in the test too)."""
    async with open_cluster(tmp_path) as started:
        yield started


ReservePorts = Callable[[int], tuple[int, ...]]


@pytest.fixture
def reserve_ports() -> Iterator[ReservePorts]:
    """`reserve_ports(n)`: n loopback ports held for this test's replicas until
    it ends (tools/cluster/ports.py). A replica listens on one with
    `TcpNetwork(config, reuse_port=True)`, a replica process with
    LEDGERPAXOS_REUSE_PORT=1 in its environment."""
    held: list[PortReservation] = []

    def reserve(count: int) -> tuple[int, ...]:
        held.append(PortReservation(count))
        return held[-1].ports

    yield reserve
    for reservation in held:
        reservation.close()
