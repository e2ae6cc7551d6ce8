"""Phase 2 as the leader runs it: numbering slots, counting votes, heartbeats.

The leader cuts its queue of client commands into slots (batching), sends
each as an Accept without waiting for the previous one (pipelining), at once
only to the followers a majority needs (core/fanout.py), and
decides a slot once a majority accepted it (`Core.is_chosen`), counting a
vote only when it names the digest of the value proposed. Heartbeats
carry the commit point when no Accept did, and their acknowledgements tell
the leader which checkpoint each follower holds (so the log can be purged
below the one a majority holds) and whether its digest agrees.

Functions of a `Core` in the leader role, called by its dispatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ledgerpaxos import constants
from ledgerpaxos.core import clients, election, execution, fanout
from ledgerpaxos.core.messages import (
    Accepted,
    AcceptedMany,
    Ballot,
    Batch,
    ClientRequest,
    Command,
    Heartbeat,
    HeartbeatAck,
    LogEntry,
    Nack,
)
from ledgerpaxos.core.status import Role
from ledgerpaxos.core.timers import Deadline, soonest

if TYPE_CHECKING:
    from ledgerpaxos.core.replica import Core


def tick(core: Core) -> None:
    if core.heartbeat.passed(core.now):
        fanout.send_backlogs(core)  # every follower holds every slot before the heartbeat
        resend_undecided(core)
        broadcast_heartbeat(core)
    else:
        if fanout.stalled(core):
            fanout.send_backlogs(core)
        if core.commit_slot > core.commit_announced:
            # Followers learn the commit point from the next Accept; when none
            # went out since it moved, a Heartbeat tells them within a tick (they
            # execute, and reply to clients waiting on them).
            announce_commit(core)
    step_down_if_isolated(core)


def ticks_until_due(core: Core) -> int | None:
    """When tick() next does something (Core.ticks_until_due): a heartbeat, a
    commit point to announce, or a peer heard too long ago, which may make
    this leader step down (each peer's silence counts only from the tick its
    stamp ages out of the window, so that is when to look again)."""
    if core.commit_slot > core.commit_announced:
        return 1
    window = core.s.election_timeout_ticks_max
    return soonest(
        core.heartbeat.ticks_left(core.now),
        fanout.ticks_until_due(core),
        core.leading_since.ticks_until_older(core.now, window),
        *(core.peer_heard[p].ticks_until_older(core.now, window) for p in core.peers),
    )


def on_client_request(core: Core, request: ClientRequest, sender: str | None) -> None:
    if not clients.admit(core, request, sender):
        return
    key = request.command.key
    if key in core.in_flight or key in core.pending:
        return  # ignore: already on its way; the client hears when it executes
    transfers = len(request.command.transfers)
    if (
        len(core.pending) >= core.s.pending_commands_max
        or core.pending_transfers + transfers > core.s.pending_transfers_max
    ):
        # The client retries; by then the queue has gone into slots.
        core.ready.events.append(f"leader queue full, dropped {key}")
        return
    core.pending[key] = request.command
    core.pending_transfers += len(request.command.transfers)
    if sender is not None:
        core.forwarded[key] = sender  # its client waits on it there (core/fanout.py)


def step_down_if_isolated(core: Core) -> None:
    window = core.s.election_timeout_ticks_max
    if core.leading_since.within(core.now, window):
        return
    heard = [p for p in core.peers if core.peer_heard[p].within(core.now, window)]
    if not core.quorum.reached([core.me, *heard]):
        core.ready.events.append("lost contact with a majority")
        election.become_follower(core, leader=None, ballot=Ballot.zero())
        election.reset_election_timer(core)


def on_nack(core: Core, m: Nack, sender: str) -> None:
    election.see(core, m.promised)
    if m.ballot == core.ballot and m.promised > core.ballot:
        core.ready.events.append(f"{sender} promised {m.promised}, above our {core.ballot}")
        election.become_follower(core, leader=None, ballot=Ballot.zero())
        election.reset_election_timer(core)


# ---------------------------------------------------------------- proposing


def propose_pending(core: Core) -> None:
    """Cut the queue into slots: at most batch_commands_max commands and
    batch_transfers_max transfers each (one command may exceed the latter alone).

    With no slot in flight the queue goes out at once. While slots are in
    flight another is proposed only for at least half a slot of commands or
    transfers: the rest waits, at most until a slot in flight is decided, and
    goes out as one fuller batch: a round costs the same frames and fsyncs on
    every replica whatever it carries, so fuller slots carry more for the
    same cost (docs/performance.md). Under a load that fills slots the
    pipeline still runs up to pipeline_slots_max deep."""
    while core.pending and len(core.votes) < core.s.pipeline_slots_max:
        if core.votes and not (
            2 * len(core.pending) >= core.s.batch_commands_max
            or 2 * core.pending_transfers >= constants.batch_transfers_max
        ):
            return  # a fuller batch once a slot in flight is decided
        batch: list[Command] = []
        transfers = 0
        while core.pending and len(batch) < core.s.batch_commands_max:
            key, command = next(iter(core.pending.items()))
            if batch and transfers + len(command.transfers) > constants.batch_transfers_max:
                break
            del core.pending[key]
            core.pending_transfers -= len(command.transfers)
            core.in_flight.add(key)
            batch.append(command)
            transfers += len(command.transfers)
        propose(core, tuple(batch))


def commit_chain(core: Core) -> bytes:
    """The chain digest of our decided log at the commit point we announce."""
    chain = execution.chain_at(core, core.commit_slot)
    assert chain is not None, "a leader holds every slot up to its commit point"
    return chain


def propose(core: Core, batch: Batch) -> None:
    assert core.role == Role.leader
    slot = core.next_slot
    core.next_slot += 1
    core.store(LogEntry(slot=slot, ballot=core.ballot, batch=batch))
    core.votes[slot] = {core.me}
    core.resend[slot] = _resend_deadline(core)
    fanout.proposed(
        core, slot, fanout.accept(core, slot, batch, core.commit_slot, commit_chain(core))
    )
    core.commit_announced = core.commit_slot
    check_decided(core, slot)


def _resend_deadline(core: Core) -> Deadline:
    """No re-send before two heartbeats: the answers are probably on their way."""
    return Deadline(core.now + 2 * core.s.heartbeat_ticks)


def resend_undecided(core: Core) -> None:
    """Accepts (or their replies) may have been lost: ask again whoever has
    not answered for a slot that is still open."""
    for slot in [s for s in core.resend if s not in core.votes]:
        del core.resend[slot]
    chain = commit_chain(core)
    for slot in sorted(core.votes)[: core.s.pipeline_slots_max]:
        deadline = core.resend.get(slot)
        if deadline is not None and deadline.pending(core.now):
            continue  # proposed a moment ago: its answers are probably on their way
        core.resend[slot] = _resend_deadline(core)
        entry = core.log[slot]
        for peer in core.peers:
            if peer not in core.votes[slot] and peer not in core.other_values.get(slot, ()):
                core.send(peer, fanout.accept(core, slot, entry.batch, core.commit_slot, chain))


# ---------------------------------------------------------------- deciding


def on_accepted(core: Core, m: Accepted, sender: str) -> None:
    if m.ballot != core.ballot:
        return  # ignore: from an earlier view
    core.peer_heard[sender].mark(core.now)
    _count_vote(core, m.slot, m.digest, sender)


def on_accepted_many(core: Core, m: AcceptedMany, sender: str) -> None:
    """A lazy follower's votes for its backlog: most of them for slots long
    decided, which cost a lookup each here instead of a message each."""
    if m.ballot != core.ballot:
        return  # ignore: from an earlier view
    core.peer_heard[sender].mark(core.now)
    for slot, digest in m.votes:
        # After a vote for another value made us prepare again (on_other_value)
        # no slot has voters left: the rest count for nothing.
        _count_vote(core, slot, digest, sender)


def _count_vote(core: Core, slot: int, digest: bytes, sender: str) -> None:
    voters = core.votes.get(slot)
    if voters is None:
        return  # ignore: already decided (or never proposed: nothing to count)
    if digest != core.log[slot].digest:
        on_other_value(core, slot, digest, sender)
        return
    voters.add(sender)
    check_decided(core, slot)


def on_other_value(core: Core, slot: int, digest: bytes, sender: str) -> None:
    """`sender` accepted for an open slot, under our ballot, a value we never
    proposed: a forged Accept reached it first, and it refuses ours for good
    under this ballot (following.accept_entry). Its vote counts for nothing.
    When too many hold another value for our value still to be chosen, the
    slot can never be decided under this ballot: a new one re-proposes our
    value (our own promise reports it, and election.highest_ballot_values
    prefers the entry of a ballot's own node)."""
    core.ready.alarms.append(
        f"{sender} accepted for slot {slot} under our ballot {core.ballot} a value "
        f"we did not propose (digest {digest.hex()[:16]}); its vote is not counted"
    )
    holders = core.other_values.setdefault(slot, set())
    holders.add(sender)
    if not core.quorum.reached(set(core.s.node_ids) - holders):
        election.prepare_again(core, f"slot {slot} cannot be decided under ballot {core.ballot}")


def check_decided(core: Core, slot: int) -> None:
    if not core.is_chosen(slot, core.votes[slot]):
        return
    fanout.decided(core, slot, core.votes.pop(slot))
    core.other_values.pop(slot, None)
    if slot > core.commit_slot:
        core.decided.add(slot)
        advance_commit(core)


def advance_commit(core: Core) -> None:
    while core.commit_slot + 1 in core.decided:
        core.commit_slot += 1
        core.decided.discard(core.commit_slot)
    core.known_commit = max(core.known_commit, core.commit_slot)
    execution.execute_decided(core)


# ---------------------------------------------------------------- heartbeats


def broadcast_heartbeat(core: Core) -> None:
    core.heartbeat.arm(core.now, core.s.heartbeat_ticks)
    _heartbeat_to(core, core.peers)


def announce_commit(core: Core) -> None:
    """The commit point, to the followers that hold every slot up to it (the
    others hear it with the next heartbeat, after their backlog: core/fanout.py).
    The heartbeat timer runs on: that heartbeat is what brings the others up."""
    _heartbeat_to(core, fanout.current(core))


def _heartbeat_to(core: Core, peers: Sequence[str]) -> None:
    core.commit_announced = core.commit_slot
    heartbeat = Heartbeat(
        ballot=core.ballot,
        commit_slot=core.commit_slot,
        commit_chain=commit_chain(core),
        purge_slot=core.purge_slot,
    )
    for peer in peers:
        core.send(peer, heartbeat)


def on_heartbeat_ack(core: Core, m: HeartbeatAck, sender: str) -> None:
    if m.ballot != core.ballot:
        return  # ignore: from an earlier view
    core.peer_heard[sender].mark(core.now)
    core.peer_executed[sender] = m.executed_slot
    core.peer_checkpoint[sender] = m.checkpoint_slot
    mine = core.checkpoint_digests.get(m.checkpoint_slot)
    if mine is not None and m.checkpoint_digest != mine:
        core.ready.alarms.append(
            f"checkpoint digest mismatch at slot {m.checkpoint_slot}: "
            f"{core.me} has {mine.hex()[:16]}, {sender} has {m.checkpoint_digest.hex()[:16]}"
        )
    purge_to_majority_checkpoint(core)


def purge_to_majority_checkpoint(core: Core) -> None:
    """Entries at or below a checkpoint that a majority holds may be purged."""
    held = core.quorum.held_by_majority([core.checkpoint_slot, *core.peer_checkpoint.values()])
    if held is not None:
        execution.purge_to(core, held)
