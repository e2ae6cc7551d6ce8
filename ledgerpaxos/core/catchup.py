"""Catch-up: a replica behind the commit point fetches decided slots, or a checkpoint.

A replica that knows of a commit point beyond its own asks for the slots
after its commit point: the leader asks the peer that has executed the most,
anyone else asks the leader, at most once per `catchup_retry_ticks` unless
a reply showed there is more. The answer is the decided entries (bounded in
slots and transfers) or, once they are purged, the newest checkpoint, which
the receiver checks against its digest and installs in place of its state.

Only the answer to the request asked last counts: from the peer asked, with
the request's random nonce (as in Viewstamped Replication's recovery), so no
frame that was not asked for can replace entries or the state. Entries are
committed only when they chain onto our decided log to the chain digest the
reply names (core/digests.py). A checkpoint comes in parts, asked for one
at a time (core/install.py).

Functions of a `Core`; any role serves and uses these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledgerpaxos import constants
from ledgerpaxos.core import digests, execution, install, leading, validation
from ledgerpaxos.core.install import PartialInstall
from ledgerpaxos.core.ledger import state_digest
from ledgerpaxos.core.messages import (
    CatchupReply,
    CatchupRequest,
    InstallCheckpoint,
    LogEntry,
    Snapshot,
)
from ledgerpaxos.core.status import Role

if TYPE_CHECKING:
    from ledgerpaxos.core.replica import Core


def ask_if_stuck(core: Core) -> None:
    if core.commit_slot >= core.known_commit:
        core.catchup_retry.disarm()
        return
    if core.catchup_retry.pending(core.now):
        return
    if core.role == Role.leader:
        # Ask whoever has executed the most.
        ahead = [p for p in core.peers if core.peer_executed.get(p, 0) > core.commit_slot]
        source = max(ahead, key=lambda p: core.peer_executed[p]) if ahead else None
        if source is None and core.peers:
            source = core.rng.choice(core.peers)
    else:
        source = core.leader
    if source is not None and source != core.me:
        ask(core, source)


def ticks_until_due(core: Core) -> int | None:
    """When ask_if_stuck() next may ask (Core.ticks_until_due)."""
    if core.commit_slot >= core.known_commit:
        return None
    due = core.catchup_retry.ticks_left(core.now)
    return 1 if due is None else due


def ask(core: Core, source: str) -> None:
    core.catchup_retry.arm(core.now, core.s.catchup_retry_ticks)
    core.catchup_source = source
    core.catchup_nonce = core.rng.getrandbits(64)
    partial = core.installing
    if partial is not None and partial.slot <= core.executed_slot:
        core.installing = partial = None  # we got past it by other means
    core.send(
        source,
        CatchupRequest(
            after_slot=core.commit_slot,
            nonce=core.catchup_nonce,
            install_slot=0 if partial is None else partial.slot,
            part=0 if partial is None else partial.received,
        ),
    )


def on_catchup_request(core: Core, m: CatchupRequest, sender: str) -> None:
    after = m.after_slot
    if after >= core.commit_slot:
        return  # ignore: we know no more than they do
    last = min(core.commit_slot, after + core.s.catchup_slots_max)
    if after < core.checkpoint_slot and any(
        s not in core.log for s in range(after + 1, core.checkpoint_slot + 1)
    ):
        parts = parts_to_install(core)
        # The part asked for if the asker is installing our checkpoint, else its first.
        part = m.part if m.install_slot == parts[0].slot and m.part < len(parts) else 0
        core.send(
            sender,
            InstallCheckpoint(snapshot=parts[part], nonce=m.nonce, part=part, parts=len(parts)),
        )
        return
    entries: list[LogEntry] = []
    transfers = 0
    for slot in range(after + 1, last + 1):
        entry = core.log.get(slot)
        if entry is None or (entries and transfers > constants.batch_transfers_max):
            break
        entries.append(entry)
        transfers += entry.transfers
    chain = execution.chain_at(core, entries[-1].slot) if entries else None
    if chain is not None:
        reply = CatchupReply(
            entries=tuple(entries), commit_slot=core.commit_slot, chain=chain, nonce=m.nonce
        )
        core.send(sender, reply)


def on_catchup_reply(core: Core, m: CatchupReply, sender: str) -> None:
    if sender != core.catchup_source or m.nonce != core.catchup_nonce:
        return  # ignore: not the answer to our last request: its slots are not vouched for
    entries = [e for e in m.entries if e.slot > core.commit_slot]
    if not entries or entries[0].slot != core.commit_slot + 1:
        return  # ignore: a gap, or decided here already (the entries are consecutive)
    chain = execution.chain_at(core, core.commit_slot)
    assert chain is not None, "the chain at the commit point is always known"
    for entry in entries:
        chain = digests.chain_next(chain, entry.slot, entry.digest)
    if chain != m.chain:
        core.ready.alarms.append(
            f"catch-up reply from {sender} for slots {entries[0].slot}..{entries[-1].slot} "
            "does not chain onto our decided log; ignored"
        )
        return
    core.known_commit = max(core.known_commit, m.commit_slot)
    for entry in entries:
        if core.log.get(entry.slot) != entry:
            core.store(entry)
        core.commit_slot += 1
        # A leader may have proposed the slot again; it is decided now.
        core.decided.discard(entry.slot)
        core.votes.pop(entry.slot, None)
        core.other_values.pop(entry.slot, None)
    if core.role == Role.leader:
        leading.advance_commit(core)  # decided slots of ours may follow
    else:
        execution.execute_decided(core)
    if core.commit_slot < core.known_commit:
        ask(core, sender)


def parts_to_install(core: Core) -> tuple[Snapshot, ...]:
    """Our last snapshot in parts, cut once per snapshot (a sort: O(rows log rows))."""
    snapshot = core.last_snapshot
    assert snapshot is not None
    if not core.install_parts or core.install_parts[0].slot != snapshot.slot:
        core.install_parts = install.split(snapshot, core.s.install_part_units_max)
    return core.install_parts


def on_install_checkpoint(core: Core, m: InstallCheckpoint, sender: str) -> None:
    if sender != core.catchup_source or m.nonce != core.catchup_nonce:
        return  # ignore: not asked: a checkpoint replaces our whole state
    if m.snapshot.slot <= core.executed_slot:
        return  # ignore: we are past it
    partial = core.installing
    if partial is not None and partial.of_this(m) and m.part < partial.received:
        return  # ignore: a part we have (duplicated, or asked for again)
    if partial is None or not partial.continues(m):
        if m.part != 0:
            return  # ignore: not the part we asked for; the retry asks again
        if partial is not None:
            core.ready.events.append(
                f"checkpoint {partial.slot}: {partial.received} of {partial.parts} parts "
                f"dropped for checkpoint {m.snapshot.slot} from {sender}"
            )
        core.installing = partial = PartialInstall.start(m, sender)
    partial.add(m, sender)
    if not partial.complete:
        ask(core, sender)  # the next part
        return
    core.installing = None
    snapshot = partial.whole()
    reason = validation.snapshot_refusal(core, snapshot)
    if reason is None and state_digest(snapshot, core.s.initial_balance) != snapshot.digest:
        reason = "it fails its digest"
    if reason is not None:
        parts = f" in {partial.parts} parts, the last" if partial.parts > 1 else ""
        core.ready.alarms.append(
            f"checkpoint {snapshot.slot}{parts} from {sender} refused: {reason}"
        )
        return
    core.ready.events.append(
        f"installing checkpoint {snapshot.slot} from {sender}"
        + (f" ({partial.parts} parts)" if partial.parts > 1 else "")
        + (", resumed from another replica" if partial.resumed else "")
    )
    core.adopt_snapshot(snapshot, source=sender)
    core.ready.snapshots.append(snapshot)
    core.installed_this_round = True
    core.compact_wanted = True
    core.known_commit = max(core.known_commit, snapshot.slot)
    execution.execute_decided(core)
    if core.commit_slot < core.known_commit:
        ask(core, sender)
