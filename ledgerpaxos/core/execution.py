"""The learner: applying decided slots in order, checkpoints, purging the log.

Slots are applied strictly in slot order, each once: `executed_slot` follows
`commit_slot`, and `chain` follows `executed_slot` (the chain digest of the
decided log, core/digests.py; `chains` keeps it per executed slot still in
the log, for the catch-up replies this replica serves). Every `checkpoint_interval` slots the ledger is checkpointed
(a digest compared across replicas, and the snapshot a lagging replica
installs); some checkpoints are also written as snapshot files, and only
entries at or below a written snapshot are ever purged from the log.

Functions of a `Core`; any role runs these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledgerpaxos import constants
from ledgerpaxos.core import clients, digests, leading
from ledgerpaxos.core.messages import (
    AcceptRecord,
    Checkpoint,
    CommitRecord,
    Outcome,
    PromiseRecord,
    Snapshot,
    WalRecord,
)
from ledgerpaxos.core.ready import Executed
from ledgerpaxos.core.status import Role

if TYPE_CHECKING:
    from ledgerpaxos.core.replica import Core


def execute_decided(core: Core) -> None:
    while core.executed_slot < core.commit_slot:
        slot = core.executed_slot + 1
        entry = core.log[slot]
        outcomes: list[Outcome | None] = []
        for index, command in enumerate(entry.batch):
            core.transfers_since_snapshot += len(command.transfers)
            outcome = core.ledger.execute(command, slot=slot, index=index)
            outcomes.append(outcome)
            key = command.key
            core.in_flight.discard(key)
            if key in core.asked_here:
                del core.asked_here[key]
                reply = outcome if outcome is not None else core.ledger.stored_outcome(*key)
                if reply is not None:
                    clients.reply(core, command, reply)
        core.executed_slot = slot
        core.chain = digests.chain_next(core.chain, slot, entry.digest)
        core.chains[slot] = core.chain
        core.ready.executed.append(Executed(slot=slot, batch=entry.batch, outcomes=tuple(outcomes)))
        if slot % core.s.checkpoint_interval == 0:
            checkpoint(core, slot)


def checkpoint(core: Core, slot: int) -> None:
    """Every checkpoint gets a digest (compared across replicas), which costs
    what changed since the last one (core/ledger.py). A snapshot (the state
    for a file, and for installs) costs what differs from the initial state,
    an encoding and two fsyncs, so only some checkpoints are snapshots: once
    `snapshot_interval` slots or `snapshot_transfers_min` transfers have been
    executed since the last one; and a large state (more rows than
    snapshot_rows_cheap_max: balances moved, accounts opened, sessions) no
    sooner than its rows are paid for by the work since the last one
    (snapshot_work_per_row_min slots plus transfers per row), so what snapshots
    cost per transfer does not grow with the state. The host writes it in the
    background from a view of the ledger (Ready.snapshot_later), one at a
    time. The WAL holds everything in between, and the log is purged only up
    to a written snapshot, the newest of which installs are served."""
    digest = core.ledger.digest()
    core.ledger.check_conservation()
    core.checkpoint_slot = slot
    remember_digest(core, slot, digest)
    core.ready.checkpoints.append(Checkpoint(slot=slot, digest=digest))
    slots = slot - core.snapshot_slot
    transfers = core.transfers_since_snapshot
    if (
        not core.snapshot_writing
        and (slots >= core.s.snapshot_interval or transfers >= core.s.snapshot_transfers_min)
        and (
            (rows := core.ledger.rows) <= constants.snapshot_rows_cheap_max
            or slots + transfers >= rows * core.s.snapshot_work_per_row_min
        )
    ):
        assert core.ready.snapshot_later is None
        core.ready.snapshot_later = core.ledger.freeze(slot, chain=core.chain)
        core.snapshot_writing = slot
        core.transfers_since_snapshot = 0
    if core.role == Role.leader:
        leading.purge_to_majority_checkpoint(core)


def snapshot_written(core: Core, snapshot: Snapshot) -> None:
    """Our snapshot is durable: the log may be purged up to it, and installs
    served from it (unless an installed checkpoint overtook it meanwhile)."""
    core.ledger.thaw()
    if snapshot.slot > core.snapshot_slot:
        core.snapshot_slot = snapshot.slot
        core.last_snapshot = snapshot
    if core.role == Role.leader:
        leading.purge_to_majority_checkpoint(core)


def chain_at(core: Core, slot: int) -> bytes | None:
    """The chain digest of the decided log up to `slot`, at or above the
    checkpoint we started from; None for a slot purged from the log here."""
    if slot == core.executed_slot:
        return core.chain
    if slot < core.executed_slot:
        return core.chains.get(slot)
    chain = core.chain
    for s in range(core.executed_slot + 1, slot + 1):
        entry = core.log.get(s)
        if entry is None:
            return None
        chain = digests.chain_next(chain, s, entry.digest)
    return chain


def remember_digest(core: Core, slot: int, digest: bytes) -> None:
    core.checkpoint_digests[slot] = digest
    while len(core.checkpoint_digests) > constants.checkpoint_digests_remembered_max:
        core.checkpoint_digests.popitem(last=False)


def purge_to(core: Core, purge_slot: int) -> None:
    """Drop log entries at or below a checkpoint a majority holds, and we
    hold in a snapshot file."""
    target = min(purge_slot, core.snapshot_slot)
    if target <= core.purge_slot:
        return
    core.purge_slot = target
    for slot in [s for s in core.log if s <= target]:
        del core.log[slot]
    for slot in [s for s in core.chains if s <= target]:
        del core.chains[slot]
    for slot in [s for s in core.votes if s <= target]:
        del core.votes[slot]  # executed here, so decided: no more Accepts for it
        core.other_values.pop(slot, None)
    core.compact_wanted = True


def adopt_snapshot(core: Core, snapshot: Snapshot) -> None:
    """Make `snapshot` our state: recovered from disk, or installed from a peer."""
    core.ledger.install(snapshot)
    core.executed_slot = snapshot.slot
    core.chain = snapshot.chain
    core.chains = {snapshot.slot: snapshot.chain}
    core.commit_slot = max(core.commit_slot, snapshot.slot)
    core.checkpoint_slot = snapshot.slot
    core.snapshot_slot = snapshot.slot  # recovered from disk, or installed and written now
    core.transfers_since_snapshot = 0
    core.last_snapshot = snapshot
    remember_digest(core, snapshot.slot, snapshot.digest)
    core.purge_slot = max(core.purge_slot, snapshot.slot)
    for slot in [s for s in core.log if s <= snapshot.slot]:
        # Executed in the installed state, never here: no longer on its way.
        # Left in `in_flight`, a re-sent read (never a duplicate: it is not
        # answered from the client table) would be dropped for good by a
        # leader that installed past the slot it re-proposed it in.
        core.in_flight.difference_update(command.key for command in core.log[slot].batch)
        del core.log[slot]
    # A leader that installs past the slots it has proposed goes on above the
    # checkpoint: every slot up to it is decided, whatever it held for it.
    core.next_slot = max(core.next_slot, snapshot.slot + 1)
    core.decided = {s for s in core.decided if s > core.commit_slot}
    for slot in [s for s in core.votes if s <= core.commit_slot]:
        del core.votes[slot]
        core.other_values.pop(slot, None)
    # Walk on through decided entries we may already hold.
    while core.commit_slot + 1 in core.decided:
        core.commit_slot += 1
        core.decided.discard(core.commit_slot)


def wal_seed(core: Core) -> tuple[WalRecord, ...]:
    """The records a fresh WAL segment needs to stand for the whole current state."""
    records: list[WalRecord] = [PromiseRecord(ballot=core.promised)]
    records.extend(AcceptRecord(entry=e) for _, e in sorted(core.log.items()))
    records.append(CommitRecord(commit_slot=core.commit_slot))
    return tuple(records)
