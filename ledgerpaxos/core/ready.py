"""What one round of core steps asks the runtime to do, as plain data."""

from __future__ import annotations

import attrs

from ledgerpaxos.core.ledger import SnapshotView
from ledgerpaxos.core.messages import (
    Batch,
    Checkpoint,
    ClientReply,
    ClientRequest,
    Outcome,
    PeerMessage,
    Snapshot,
    WalRecord,
)


@attrs.frozen(kw_only=True)
class Executed:
    """A committed slot the ledger has just applied."""

    slot: int
    batch: Batch
    outcomes: tuple[Outcome | None, ...]  # None: a duplicate, not applied again


@attrs.define
class Ready:
    """Carried out by the runtime strictly in this order:

    0. `send_early`: may leave before anything below is done, the moment the
       runtime has it: a leader's Accepts, and only when the promise of their
       ballot is already durable (never in the Ready that persists it). An
       Accept reveals no vote of the leader's, only its proposal under a
       ballot no other node uses; the leader counts its own vote at once, but
       the other votes a decision needs arrive only after this Ready is done.
       So the leader's WAL write runs while the followers write theirs;
    1. `persist`: append to the WAL, then one fsync for all of it (group commit);
       `persist_lazy` is appended with it but needs no fsync before anything
       below: records a crash may lose without harm (the commit point); alone,
       it is appended after the replies (5), off their way;
    2. `snapshots`: write each (temporary file, fsync, rename, directory fsync):
       installed checkpoints (a checkpoint of our own goes in `snapshot_later`);
    3. `compact`: when set, start a WAL segment holding exactly these records and
       drop the older segments (only after the snapshots above are durable);
    4. `send`: only now may messages leave (persist before you speak);
    5. `replies`: answer the clients waiting on this replica.

    `snapshot_later`: a checkpoint of our own the core chose to keep on disk
    (not every one: see execution.checkpoint), as a view of the ledger
    (core/ledger.SnapshotView). The host builds and writes it off its loop,
    holding up nothing of this Ready or the next (a large state takes seconds
    to write), and once it is durable calls Core.snapshot_written() with the
    snapshot; until then the core relies on it for nothing (the log is
    purged only up to `snapshot_slot`, which moves then), so it may be lost in
    a crash, or never written when the process stops first.

    `executed`, `checkpoints` (every checkpoint taken, written or not),
    `events` and `alarms` are for observers (logs, tests, the simulator).

    The core keeps this order safe to crash in at any point: a CommitRecord
    never covers slots whose only durable record is a snapshot of the
    same Ready (an installed checkpoint); that CommitRecord waits for the next Ready.
    """

    send_early: list[tuple[str, PeerMessage | ClientRequest]] = attrs.field(factory=list)
    persist: list[WalRecord] = attrs.field(factory=list)
    persist_lazy: list[WalRecord] = attrs.field(factory=list)
    snapshots: list[Snapshot] = attrs.field(factory=list)
    snapshot_later: SnapshotView | None = None
    compact: tuple[WalRecord, ...] | None = None
    send: list[tuple[str, PeerMessage | ClientRequest]] = attrs.field(factory=list)
    replies: list[ClientReply] = attrs.field(factory=list)
    executed: list[Executed] = attrs.field(factory=list)
    checkpoints: list[Checkpoint] = attrs.field(factory=list)
    events: list[str] = attrs.field(factory=list)
    alarms: list[str] = attrs.field(factory=list)
    # A rejoin after a lost disk is done (core/rejoin.py): once `persist` is
    # durable, the data directory may say so (it votes again after a restart).
    rejoined: bool = False

    def needs_sync(self) -> bool:
        return (
            bool(self.persist) or bool(self.snapshots) or self.compact is not None or self.rejoined
        )
