"""A tiny deterministic network of pure cores, for core unit tests.

Each node's Ready is carried out by the one executor (host/executor.py) on a
MemoryStorage, so a node can be crashed and restored from exactly what it
persisted. Messages travel through one queue whose delivery order a seeded
random decides.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence

from ledgerpaxos import constants
from ledgerpaxos.core import Core, CoreSettings, Ready
from ledgerpaxos.core.ledger import SnapshotView
from ledgerpaxos.core.messages import (
    Batch,
    ClientReply,
    ClientRequest,
    Command,
    CommandKind,
    PeerMessage,
    Transfer,
)
from ledgerpaxos.host import ReadyExecutor, Waiters
from ledgerpaxos.testing.storage import MemoryStorage

CLIENT = "test"  # the one waiter: whoever submits through the CoreNet


def settings(node: str, n: int = 5, **kw: object) -> CoreSettings:
    base: dict[str, object] = {
        "node_id": node,
        "node_ids": tuple(f"n{i}" for i in range(1, n + 1)),
        "accounts": tuple("ABCDEFGHIJ"),
        "initial_balance": 10,
        "checkpoint_interval": 10,
        "snapshot_interval": 10,  # a snapshot file at every checkpoint unless a test says otherwise
        "heartbeat_ticks": 5,
        "election_timeout_ticks_min": 40,
        "election_timeout_ticks_max": 80,
    }
    base.update(kw)
    return CoreSettings(**base)  # type: ignore[arg-type]


class _Wire:
    """One node's Transport: messages into the net's queue, replies into its list."""

    def __init__(self, net: CoreNet, node: str) -> None:
        self.net, self.node = net, node

    def send(self, messages: Sequence[tuple[str, PeerMessage | ClientRequest]]) -> None:
        self.net.queue.extend((to, self.node, message) for to, message in messages)

    def reply(self, waiters: Collection[str], reply: ClientReply) -> None:
        self.net.replies[self.node].append(reply)


class CoreNet:
    def __init__(
        self,
        n: int = 5,
        seed: int = 1,
        *,
        loss: float = 0.0,
        duplication: float = 0.0,
        **kw: object,
    ) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.duplication = duplication
        self.kw = kw
        self.ids = [f"n{i}" for i in range(1, n + 1)]
        self.n = n
        self.storages = {i: MemoryStorage() for i in self.ids}
        self.cores = {i: Core(settings(i, n, **kw), random.Random(f"{seed}-{i}")) for i in self.ids}
        self.alive = set(self.ids)
        self.queue: list[tuple[str, str | None, object]] = []  # (to, from, message)
        self.replies: dict[str, list[ClientReply]] = {i: [] for i in self.ids}
        self.alarms: list[str] = []
        self.executed: dict[str, list[tuple[int, Batch]]] = {i: [] for i in self.ids}
        self.watchers: dict[str, list[Callable[[Ready], None]]] = {i: [] for i in self.ids}
        self.executors = {i: self._executor(i) for i in self.ids}
        # Ready.snapshot_later per node: written, and the core told, at its next tick.
        self.snapshots_due: dict[str, SnapshotView] = {}
        self.request_no = 0
        # client -> the session submit() or register() registered for it
        self.sessions: dict[str, int] = {}
        # A test's filter: (to, sender, message) -> lost on the way.
        self.drop: Callable[[str, str | None, object], bool] = lambda to, sender, message: False

    def _executor(self, node: str) -> ReadyExecutor[str]:
        storage = self.storages[node]
        return ReadyExecutor(
            storage,
            _Wire(self, node),
            Waiters(
                keys_max=constants.pending_commands_max,
                per_waiter_max=constants.pending_commands_max,  # one waiter: every request
            ),
            recovered=storage.recovered(),
            observe=lambda ready: self._observe(node, ready),
        )

    def _observe(self, node: str, ready: Ready) -> None:
        self.alarms.extend(ready.alarms)
        self.executed[node].extend((e.slot, e.batch) for e in ready.executed)
        for watch in self.watchers[node]:
            watch(ready)

    # ---------------------------------------------------------------- driving

    def flush(self, node: str) -> None:
        executor = self.executors[node]
        executor.muted = node not in self.alive
        ready = self.cores[node].take_ready()
        executor.carry_out(ready)
        if ready.snapshot_later is not None:
            assert node not in self.snapshots_due
            self.snapshots_due[node] = ready.snapshot_later
        if self.cores[node].execution_due():  # as the runtime does after a Ready
            self.cores[node].execute_committed()
            self.flush(node)

    def write_snapshot(self, node: str) -> None:
        """The host's background write of the node's snapshot is done."""
        view = self.snapshots_due.pop(node, None)
        if view is not None:
            snapshot = self.executors[node].write_snapshot_later(view)
            self.executors[node].snapshot_written(snapshot)
            self.cores[node].snapshot_written(snapshot)

    def deliver_all(self) -> None:
        while self.queue:
            batch, self.queue = self.queue, []
            self.rng.shuffle(batch)
            touched = set()
            for to, sender, message in batch:
                if sender is not None and self.rng.random() < self.loss:
                    continue
                if self.drop(to, sender, message):
                    continue
                if sender is not None and self.rng.random() < self.duplication:
                    self.queue.append((to, sender, message))
                if to in self.alive and (sender is None or sender in self.alive):
                    self.cores[to].step(message, sender)
                    touched.add(to)
            for node in sorted(touched):
                self.flush(node)

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            for node in self.ids:
                if node in self.alive:
                    self.write_snapshot(node)
                self.cores[node].tick()
                self.flush(node)
            self.deliver_all()

    def run_until(self, predicate: Callable[[], bool], ticks_max: int = 2000) -> int:
        for t in range(ticks_max):
            if predicate():
                return t
            self.run(1)
        raise AssertionError(f"condition not reached within {ticks_max} ticks")

    # ---------------------------------------------------------------- helpers

    def leader(self) -> str | None:
        leaders = [i for i in sorted(self.alive) if self.cores[i].status().role.value == "leader"]
        if not leaders:
            return None
        return max(leaders, key=lambda i: self.cores[i].status().ballot)

    def submit(
        self,
        node: str,
        client: str,
        transfers: Sequence[tuple[str, str, int]] | None = None,
        *,
        request_no: int | None = None,
        kind: CommandKind = CommandKind.transfer,
        accounts: Sequence[str] = (),
        session: int | None = None,
    ) -> Command:
        """A request from `client` to `node`. A transfer or an opening names
        the client's session (`session`, or else the one registered for it
        here, which is done first, running the net until it has executed)."""
        if kind in (CommandKind.transfer, CommandKind.open) and session is None:
            if client not in self.sessions:
                self.register(node, client, ticks=0)
            session = self.sessions[client]
        if request_no is None:
            self.request_no += 1
            request_no = self.request_no
        command = Command(
            client_id=client,
            request_no=request_no,
            kind=kind,
            session=session or 0,
            transfers=tuple(
                Transfer(sender=s, receiver=r, amount=a) for s, r, a in (transfers or ())
            ),
            accounts=tuple(accounts),
        )
        self.request(node, command)
        return command

    def register(self, node: str, *clients: str, ticks: int = 20) -> None:
        """Register the sessions of `clients` now (submit() would before their
        first transfer), under a number below any of their requests; run until
        `node` executed them, then `ticks` more."""
        new = [c for c in clients if c not in self.sessions]
        for client in new:
            self.request(node, Command(client_id=client, request_no=0, kind=CommandKind.register))
        self.run_until(lambda: all(c in self.cores[node].ledger.clients for c in new))
        for client in new:
            self.sessions[client] = self.cores[node].ledger.clients[client].session
        self.run(ticks)

    def request(self, node: str, command: Command) -> None:
        """`command` from a client of `node`, who waits there for the reply."""
        self.executors[node].waiters.wait(command.key, CLIENT)
        self.cores[node].step(ClientRequest(command=command), None)
        self.flush(node)

    def reply_for(self, node: str, command: Command) -> ClientReply | None:
        for r in self.replies[node]:
            if (r.client_id, r.request_no) == command.key:
                return r
        return None

    def crash(self, node: str) -> None:
        self.alive.discard(node)
        self.snapshots_due.pop(node, None)  # lost with the process: never written

    def restart(self, node: str, *, disk_lost: bool = False) -> None:
        """Start a crashed node again on its storage; `disk_lost`: on an empty
        one, as after --recover (it rejoins)."""
        if disk_lost:
            self.storages[node] = MemoryStorage(rejoining=True)
        storage = self.storages[node]
        recovered = storage.recovered()
        self.cores[node] = Core(
            settings(node, self.n, **self.kw),
            random.Random(f"restart-{node}-{self.rng.random()}"),
            snapshot=recovered.snapshot,
            promised=recovered.promised,
            entries=dict(recovered.entries),
            commit_slot=recovered.commit_slot,
            rejoining=storage.rejoining,
        )
        self.executors[node] = self._executor(node)
        self.alive.add(node)
        self.flush(node)

    def check_agreement(self) -> None:
        """No two replicas executed different batches for one slot."""
        chosen: dict[int, Batch] = {}
        for node, executed in self.executed.items():
            for slot, batch in executed:
                if slot in chosen:
                    assert chosen[slot] == batch, f"slot {slot} differs at {node}"
                else:
                    chosen[slot] = batch
