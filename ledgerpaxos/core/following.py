"""Phase 2 as a follower runs it: accepting the leader's values, learning the commit.

Accept, AcceptMany, NewView and Heartbeat all pass one gate (`accept_leader`): a ballot
below our promise is refused with a Nack; any other makes its sender our
leader and is promised (a NewView or an Accept is also a Prepare of its
ballot, so a follower that missed the election still votes safely). The
commit point the leader announces is applied only to entries of the leader's
own ballot: any other entry for a slot may hold a value that was not chosen,
and is fetched by catch-up instead. And only when the chain digest of those
entries is the one the leader announces with its commit point
(core/digests.py): an entry that is not the leader's value (a forged Accept
came first) is never executed; the decided values are fetched instead.

Functions of a `Core`; any role handles these messages (they make it a
follower of their sender when they carry a ballot it may not refuse).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ledgerpaxos.core import catchup, clients, digests, election, execution
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    AcceptedMany,
    AcceptMany,
    Ballot,
    ClientRequest,
    Heartbeat,
    HeartbeatAck,
    LogEntry,
    Nack,
    NewView,
)
from ledgerpaxos.core.status import Role

if TYPE_CHECKING:
    from ledgerpaxos.core.replica import Core


def on_client_request(core: Core, request: ClientRequest, sender: str | None) -> None:
    """Not the leader: forward our own client's request to the one we know."""
    if not clients.admit(core, request, sender):
        return
    if core.leader is not None and sender is None:
        core.send(core.leader, request)  # our own copy replies once executed
    # else ignore: no leader known (the client retries) or a forward loop


def accept_leader(core: Core, ballot: Ballot, sender: str) -> bool:
    """The gate of Accept, AcceptMany, NewView and Heartbeat. False: refused with a Nack."""
    election.see(core, ballot)
    if ballot < core.promised:
        core.send(sender, Nack(ballot=ballot, promised=core.promised))
        return False
    assert ballot.node == core.s.index_of(sender), "a ballot is only used by its own node"
    election.promise(core, ballot)
    if core.role != Role.follower or core.leader_ballot != ballot:
        election.become_follower(core, leader=sender, ballot=ballot)
    core.leader_heard.mark(core.now)
    election.reset_election_timer(core)
    return True


def on_accept(core: Core, m: Accept, sender: str) -> None:
    if not accept_leader(core, m.ballot, sender):
        return
    held = accept_entry(core, LogEntry(slot=m.slot, ballot=m.ballot, batch=m.batch), sender)
    if held is not None:
        core.send(sender, Accepted(ballot=m.ballot, slot=m.slot, digest=held.digest))
    learn_commit(core, m.commit_slot, m.commit_chain, m.purge_slot)


def on_accept_many(core: Core, m: AcceptMany, sender: str) -> None:
    """A backlog (core/fanout.py): every entry as an Accept of its own would be,
    one vote naming all we hold, the commit point once they are all in."""
    if not accept_leader(core, m.ballot, sender):
        return
    votes = accept_entries(core, m.entries, sender)
    if votes:
        core.send(sender, AcceptedMany(ballot=m.ballot, votes=tuple(votes)))
    learn_commit(core, m.commit_slot, m.commit_chain, m.purge_slot)


def on_new_view(core: Core, m: NewView, sender: str) -> None:
    if not accept_leader(core, m.ballot, sender):
        return
    for slot, digest in accept_entries(core, m.entries, sender):
        core.send(sender, Accepted(ballot=m.ballot, slot=slot, digest=digest))
    learn_commit(core, m.commit_slot, m.commit_chain, m.purge_slot)


def accept_entries(core: Core, entries: Iterable[LogEntry], sender: str) -> list[tuple[int, bytes]]:
    """Accept each of `entries` (each of the message's ballot: core/validation.py);
    the (slot, digest) vote for each one held."""
    votes = []
    for entry in entries:
        held = accept_entry(core, entry, sender)
        if held is not None:
            votes.append((entry.slot, held.digest))
    return votes


def on_heartbeat(core: Core, m: Heartbeat, sender: str) -> None:
    if not accept_leader(core, m.ballot, sender):
        return
    learn_commit(core, m.commit_slot, m.commit_chain, m.purge_slot)
    core.send(sender, heartbeat_ack(core, m.ballot))


def heartbeat_ack(core: Core, ballot: Ballot) -> HeartbeatAck:
    """What we executed and the checkpoint we hold, for the leader of `ballot`."""
    return HeartbeatAck(
        ballot=ballot,
        executed_slot=core.executed_slot,
        checkpoint_slot=core.checkpoint_slot,
        checkpoint_digest=core.checkpoint_digests.get(core.checkpoint_slot, b""),
    )


def accept_entry(core: Core, entry: LogEntry, sender: str) -> LogEntry | None:
    """Accept `entry` (stored before any Accepted leaves) and return what we
    hold for its slot under its ballot: the entry, or the value we accepted
    first when the slot comes again with another value under the same ballot
    (a leader proposes a slot once per ballot, so one of the two is not its
    value; the Accepted we answer names the first, and the leader counts it for
    no value of its own). None: refused, no Accepted (a decided slot proposed
    with another value)."""
    mine = core.log.get(entry.slot)
    if mine is not None and mine.ballot == entry.ballot and mine.batch != entry.batch:
        core.ready.alarms.append(
            f"slot {entry.slot} proposed twice under ballot {entry.ballot} by {sender}, "
            "with another value the second time; refused"
        )
        return mine
    if entry.slot <= core.commit_slot:
        if mine is None:
            return entry  # purged: the checkpoint on disk holds its effect
        # Decided here already: by Paxos the same value. Still stored at the
        # new ballot, so the Accepted we answer is true on disk too.
        if mine.batch != entry.batch:
            # No correct leader proposes this: a bug, or a peer that lies.
            core.ready.alarms.append(
                f"slot {entry.slot} decided with another value: {sender} proposes a "
                f"different batch under ballot {entry.ballot}; refused"
            )
            return None
    if mine != entry:
        core.store(entry)
    return entry


def learn_commit(core: Core, leader_commit: int, leader_chain: bytes, purge_slot: int) -> None:
    """The leader decided every slot up to `leader_commit`, and `leader_chain`
    is the chain digest of its decided log there. Our entries of its ballot
    up to that slot are committed when they give the same chain; otherwise
    (one is missing, of another ballot, or not the leader's value) we fetch
    the decided values by catch-up."""
    core.known_commit = max(core.known_commit, leader_commit)
    advanced = False
    if leader_commit > core.commit_slot:
        slot = core.commit_slot
        chain = execution.chain_at(core, slot)
        assert chain is not None, "the chain at the commit point is always known"
        while slot < leader_commit:
            entry = core.log.get(slot + 1)
            if entry is None or entry.ballot != core.leader_ballot:
                break
            slot += 1
            chain = digests.chain_next(chain, slot, entry.digest)
        if slot == leader_commit and chain == leader_chain:
            # Executed once the Ready of this step is carried out, its Accepted
            # gone (Core.execute_committed): the vote does not wait for it.
            core.commit_slot = slot
            advanced = True
        elif slot == leader_commit:
            core.ready.alarms.append(
                f"our entries up to slot {leader_commit} are not the values {core.leader} "
                "decided there (their chain digest differs); fetching the decided values"
            )
    execution.purge_to(core, purge_slot)
    if core.commit_slot < core.known_commit and not advanced:
        catchup.ask_if_stuck(core)
