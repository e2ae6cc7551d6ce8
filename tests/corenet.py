"""A tiny deterministic network of pure cores, for core unit tests.

Each node's "disk" keeps what its Ready asked to persist, so a node can be
crashed and restored from exactly that. Messages travel through one queue
whose delivery order a seeded random decides.
"""

from __future__ import annotations

import random

from ledgerpaxos.core import Core, CoreSettings, Ready
from ledgerpaxos.core.messages import (
    AcceptRecord,
    Ballot,
    ClientReply,
    ClientRequest,
    Command,
    CommandKind,
    CommitRecord,
    LogEntry,
    PromiseRecord,
    Snapshot,
    Transfer,
)


class Disk:
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.promised = Ballot.zero()
        self.entries: dict[int, LogEntry] = {}
        self.commit_slot = 0
        self.compacts = True  # False: like a store whose WAL stays under compact_size_min

    def apply(self, ready: Ready) -> None:
        for r in ready.persist + ready.persist_lazy:
            self._record(r)
        for s in ready.snapshots:
            if self.snapshot is None or s.slot > self.snapshot.slot:
                self.snapshot = s
        if ready.compact is not None and self.compacts:
            self.promised, self.entries, self.commit_slot = Ballot.zero(), {}, 0
            for r in ready.compact:
                self._record(r)

    def _record(self, r: object) -> None:
        if isinstance(r, PromiseRecord):
            self.promised = max(self.promised, r.ballot)
        elif isinstance(r, AcceptRecord):
            self.entries[r.entry.slot] = r.entry
        elif isinstance(r, CommitRecord):
            self.commit_slot = max(self.commit_slot, r.commit_slot)


def settings(node: str, n: int = 5, **kw: object) -> CoreSettings:
    base: dict[str, object] = dict(  # noqa: C408  # keyword form reads as the settings
        node_id=node,
        node_ids=tuple(f"n{i}" for i in range(1, n + 1)),
        accounts=tuple("ABCDEFGHIJ"),
        initial_balance=10,
        checkpoint_interval=10,
        snapshot_interval=10,  # a snapshot file at every checkpoint unless a test says otherwise
        heartbeat_ticks=5,
        election_timeout_ticks_min=40,
        election_timeout_ticks_max=80,
    )
    base.update(kw)
    return CoreSettings(**base)  # type: ignore[arg-type]


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
        self.disks = {i: Disk() for i in self.ids}
        self.cores = {i: Core(settings(i, n, **kw), random.Random(f"{seed}-{i}")) for i in self.ids}
        self.alive = set(self.ids)
        self.queue: list[tuple[str, str | None, object]] = []  # (to, from, message)
        self.replies: dict[str, list[ClientReply]] = {i: [] for i in self.ids}
        self.alarms: list[str] = []
        self.executed: dict[str, list[tuple[int, tuple]]] = {i: [] for i in self.ids}
        self.request_no = 0

    # ---------------------------------------------------------------- driving

    def flush(self, node: str) -> None:
        ready = self.cores[node].take_ready()
        self.disks[node].apply(ready)
        self.alarms.extend(ready.alarms)
        for e in ready.executed:
            self.executed[node].append((e.slot, e.batch))
        if node not in self.alive:
            return
        for to, message in ready.send_early + ready.send:
            self.queue.append((to, node, message))
        self.replies[node].extend(ready.replies)

    def deliver_all(self) -> None:
        while self.queue:
            batch, self.queue = self.queue, []
            self.rng.shuffle(batch)
            touched = set()
            for to, sender, message in batch:
                if sender is not None and self.rng.random() < self.loss:
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
                self.cores[node].tick()
                self.flush(node)
            self.deliver_all()

    def run_until(self, predicate, ticks_max: int = 2000) -> int:
        for t in range(ticks_max):
            if predicate():
                return t
            self.run(1)
        raise AssertionError(f"condition not reached within {ticks_max} ticks")

    # ---------------------------------------------------------------- helpers

    def leader(self) -> str | None:
        leaders = [i for i in sorted(self.alive) if self.cores[i].role.value == "leader"]
        if not leaders:
            return None
        return max(leaders, key=lambda i: self.cores[i].ballot)

    def submit(
        self,
        node: str,
        client: str,
        transfers=None,
        *,
        request_no: int | None = None,
        kind: CommandKind = CommandKind.transfer,
    ) -> Command:
        if request_no is None:
            self.request_no += 1
            request_no = self.request_no
        command = Command(
            client_id=client,
            request_no=request_no,
            kind=kind,
            transfers=tuple(
                Transfer(sender=s, receiver=r, amount=a) for s, r, a in (transfers or ())
            ),
        )
        self.cores[node].step(ClientRequest(command=command), None)
        self.flush(node)
        return command

    def reply_for(self, node: str, command: Command) -> ClientReply | None:
        for r in self.replies[node]:
            if (r.client_id, r.request_no) == (command.client_id, command.request_no):
                return r
        return None

    def crash(self, node: str) -> None:
        self.alive.discard(node)

    def restart(self, node: str) -> None:
        d = self.disks[node]
        self.cores[node] = Core(
            settings(node, self.n, **self.kw),
            random.Random(f"restart-{node}-{self.rng.random()}"),
            snapshot=d.snapshot,
            promised=d.promised,
            entries=dict(d.entries),
            commit_slot=d.commit_slot,
        )
        self.alive.add(node)
        self.flush(node)

    def check_agreement(self) -> None:
        """No two replicas executed different batches for one slot."""
        chosen: dict[int, tuple] = {}
        for node, executed in self.executed.items():
            for slot, batch in executed:
                if slot in chosen:
                    assert chosen[slot] == batch, f"slot {slot} differs at {node}"
                else:
                    chosen[slot] = batch
