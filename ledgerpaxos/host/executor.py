"""The one executor of the Ready contract (core/ready.py), for every host.

A host plugs in its I/O: a `Storage` (the WAL and snapshot files:
ReplicaStore, on the operating system's disk or the simulator's), a
`Transport` (frames to peers, replies to the clients waiting here) and an
observer that sees each Ready first. The order lives here once:

    begin(ready)         observe; send_early; append persist + persist_lazy (one write)
    make_durable(ready)  one fsync when there is anything to persist; snapshots; compaction
    finish(ready)        send; replies to the waiters of this replica; persist_lazy
                         when nothing else is persisted (it waits for no fsync)

`carry_out()` does all three in a row. A host that must not stall for the
disk runs make_durable() elsewhere (the runtime in a worker thread, the
simulator after a virtual disk latency) and calls finish() once it is done;
nothing else is begun in between.

A checkpoint of the replica's own (Ready.snapshot_later) holds up no Ready:
the host runs write_snapshot_later() off its loop, while later Readies go
on, then snapshot_written() and Core.snapshot_written() back on it.

Persist before you speak is checked here, on every message that leaves
(DurableAudit): a Promise, a vote or a NewView never reveals a promise or
an acceptance that no fsync covered yet, and an Accept never leaves before the
promise of its ballot. A failed check is our bug and raises UnpersistedSend.

Extension points (the simulator's planted bugs use them): a subclass may
override begin() or finish() and call `send()`, the checked path every
message takes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Generic, Protocol, TypeVar

from ledgerpaxos.core.ledger import SnapshotView
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    AcceptedMany,
    AcceptMany,
    AcceptRecord,
    Ballot,
    ClientReply,
    ClientRequest,
    CommitRecord,
    NewView,
    PeerMessage,
    Promise,
    PromiseRecord,
    Snapshot,
    WalRecord,
)
from ledgerpaxos.core.ready import Ready
from ledgerpaxos.host.waiters import Waiters
from ledgerpaxos.storage.recovered import Recovered

Outgoing = Sequence[tuple[str, PeerMessage | ClientRequest]]
W = TypeVar("W")
W_contra = TypeVar("W_contra", contravariant=True)


class Storage(Protocol):
    """A replica's WAL and snapshot files (storage.ReplicaStore satisfies it)."""

    def append(self, records: Sequence[WalRecord]) -> None: ...

    def sync(self) -> None: ...

    def write_snapshot(self, snapshot: Snapshot) -> None: ...

    def compact(self, seed_records: Sequence[WalRecord]) -> bool: ...

    def mark_rejoined(self) -> None:
        """The replica rejoined after a lost disk (core/rejoin.py): say so durably."""


class Transport(Protocol[W_contra]):
    """How messages leave: to peers by node id, replies to waiters."""

    def send(self, messages: Outgoing) -> None: ...

    def reply(self, waiters: Collection[W_contra], reply: ClientReply) -> None: ...


class UnpersistedSend(Exception):
    """A message would reveal a promise or an acceptance that is not durable:
    a bug of ours (the core's order or a host's), never of a peer."""


class ReadyExecutor(Generic[W]):
    def __init__(
        self,
        storage: Storage,
        transport: Transport[W],
        waiters: Waiters[W],
        *,
        recovered: Recovered,
        observe: Callable[[Ready], None] | None = None,
    ) -> None:
        self.storage = storage
        self.transport = transport
        self.waiters = waiters
        self.audit = DurableAudit(recovered)
        self.observe = observe
        self.muted = False  # nothing leaves: the runtime's "dead" replica, a cut-off test node
        self.snapshots_written = 0
        self._open: Ready | None = None  # begun, not finished
        self._durable_due = False

    def reset(self, recovered: Recovered) -> None:
        """The replica starts over on a wiped store (control `reset`): what is
        durable is what `recovered` says, nobody waits any more."""
        assert self._open is None, "reset in the middle of a Ready"
        self.audit = DurableAudit(recovered)
        self.waiters.clear()

    def carry_out(self, ready: Ready) -> None:
        if self.begin(ready):
            self.make_durable(ready)
        self.finish(ready)

    def begin(self, ready: Ready) -> bool:
        """Observe, send what may leave early, append what must be durable
        (and the lazy records with it); returns whether make_durable() must
        run before finish()."""
        assert self._open is None, "a Ready begun before the previous one finished"
        if self.observe is not None:
            self.observe(ready)
        if ready.send_early:
            self.send(ready.send_early)
        if ready.persist:
            self.storage.append([*ready.persist, *ready.persist_lazy])
        self._open = ready
        self._durable_due = ready.needs_sync()
        return self._durable_due

    def make_durable(self, ready: Ready) -> None:
        """The part that waits for the disk: one fsync, snapshots, compaction."""
        assert ready is self._open and self._durable_due
        storage = self.storage
        if ready.persist:
            storage.sync()
            self.audit.synced(ready.persist)
        for snapshot in ready.snapshots:
            storage.write_snapshot(snapshot)
            self.audit.snapshot_written(snapshot)
            self.snapshots_written += 1
        if ready.compact is not None and storage.compact(ready.compact):
            self.audit.synced(ready.compact)  # the new segment restates the state, durably
        if ready.rejoined:
            storage.mark_rejoined()  # only now: what it learned is durable above
        self._durable_due = False

    def write_snapshot_later(self, view: SnapshotView) -> Snapshot:
        """Build and write Ready.snapshot_later: off the host's loop (the
        runtime runs it in a worker thread), while other Readies are carried out."""
        snapshot = view.build()
        self.storage.write_snapshot(snapshot)
        return snapshot

    def snapshot_written(self, snapshot: Snapshot) -> None:
        """Back on the host's loop once write_snapshot_later() returned; the
        host then tells the core (Core.snapshot_written)."""
        self.audit.snapshot_written(snapshot)
        self.snapshots_written += 1

    def finish(self, ready: Ready) -> None:
        """Speak: messages to peers, then the replies this replica owes."""
        assert ready is self._open, "finish() of a Ready that was not begun"
        assert not self._durable_due, "speaking before the Ready is durable"
        self._open = None
        if ready.send:
            self.send(ready.send)
        for reply in ready.replies:
            waiting = self.waiters.take((reply.client_id, reply.request_no))
            if waiting and not self.muted:
                self.transport.reply(waiting, reply)
        if ready.persist_lazy and not ready.persist:
            # Only the commit point, which is never synced for its own sake:
            # written after the replies, not on their way (begin() writes it
            # with whatever else the Ready persists).
            self.storage.append(ready.persist_lazy)

    def send(self, messages: Outgoing) -> None:
        """The one path out to peers, checked against what is durable."""
        if self.muted:
            return
        check = self.audit.check_send
        for to, message in messages:
            check(to, message)
        self.transport.send(messages)


class DurableAudit:
    """What this replica process has made durable, as far as a message may
    reveal it: the highest promise, every (slot, ballot) acceptance an fsync
    covered (a later record for the slot supersedes it on disk, but a message
    sent after that fsync may still report it), and the slots decided on disk.
    Starts from what recovery found."""

    def __init__(self, recovered: Recovered) -> None:
        self.promised = recovered.promised
        self.accepted = {(slot, e.ballot) for slot, e in recovered.entries.items()}
        self.commit_slot = recovered.commit_slot
        self.snapshot_slot = recovered.snapshot.slot if recovered.snapshot is not None else 0
        self._accepted_after_prune = len(self.accepted)

    def synced(self, records: Sequence[WalRecord]) -> None:
        for record in records:
            if isinstance(record, AcceptRecord):
                self.accepted.add((record.entry.slot, record.entry.ballot))
            elif isinstance(record, PromiseRecord):
                self.promised = max(self.promised, record.ballot)
            elif isinstance(record, CommitRecord):
                self.commit_slot = max(self.commit_slot, record.commit_slot)
        if len(self.accepted) > 2 * self._accepted_after_prune + 1024:
            self._prune()

    def snapshot_written(self, snapshot: Snapshot) -> None:
        self.snapshot_slot = max(self.snapshot_slot, snapshot.slot)

    def check_send(self, to: str, message: object) -> None:
        """Raise UnpersistedSend if `message` reveals what is not durable."""
        if isinstance(message, Accepted):
            self._check_accepted(to, "Accepted", message.ballot, message.slot)
        elif isinstance(message, AcceptedMany):
            for slot, _ in message.votes:
                self._check_accepted(to, "AcceptedMany", message.ballot, slot)
        elif isinstance(message, Accept | AcceptMany):
            # A proposal, not a vote: it may leave before the leader's own
            # acceptance is on disk, never before its promise of the ballot.
            if self.promised < message.ballot:
                raise UnpersistedSend(
                    f"{type(message).__name__} {message.ballot} to {to} "
                    f"with only promise {self.promised} on disk"
                )
        elif isinstance(message, Promise):
            if self.promised < message.ballot:
                raise UnpersistedSend(
                    f"Promise {message.ballot} to {to} with only {self.promised} on disk"
                )
        elif isinstance(message, NewView):
            for entry in message.entries:
                self._check_accepted(to, "NewView", message.ballot, entry.slot)

    def _decided(self, slot: int) -> bool:
        return slot <= max(self.commit_slot, self.snapshot_slot)

    def _check_accepted(self, to: str, kind: str, ballot: Ballot, slot: int) -> None:
        if (slot, ballot) in self.accepted or self._decided(slot):
            return
        raise UnpersistedSend(
            f"{kind} {ballot} slot {slot} to {to} before its acceptance was on disk"
        )

    def _prune(self) -> None:
        """Acceptances of decided slots are never needed again."""
        decided = max(self.commit_slot, self.snapshot_slot)
        self.accepted = {(slot, b) for slot, b in self.accepted if slot > decided}
        self._accepted_after_prune = len(self.accepted)
