"""Phase 1: pre-votes, Prepare/Promise, and the change of view either way.

A follower whose election deadline passes becomes a candidate. It first asks
for pre-votes with the ballot it would use, which cost nothing durable and are
granted only by replicas that have not heard a leader lately (so a replica
that was cut off cannot depose a healthy leader). With a majority of them it
promises its own ballot and sends Prepare; with a majority of Promises it
becomes leader, re-proposing for every open slot the value the promises
report (`Core.values_to_adopt`) under its own ballot, in one NewView.

Functions of a `Core` (etcd raft's step functions), called by its dispatch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ledgerpaxos import constants
from ledgerpaxos.core import catchup, fanout, leading
from ledgerpaxos.core.messages import (
    NOOP,
    Ballot,
    LogEntry,
    Nack,
    NewView,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    PromiseRecord,
    RejoinReply,
)
from ledgerpaxos.core.status import Phase, Role
from ledgerpaxos.core.timers import Stamp

if TYPE_CHECKING:
    from ledgerpaxos.core.replica import Core


def tick(core: Core) -> None:
    """A follower's or candidate's tick: no word from a leader in time, stand."""
    if core.election.passed(core.now):
        start_pre_vote(core)


def ticks_until_due(core: Core) -> int | None:
    """When tick() next does something (Core.ticks_until_due)."""
    return core.election.ticks_left(core.now)


def reset_election_timer(core: Core) -> None:
    core.election.arm(
        core.now,
        core.rng.randint(core.s.election_timeout_ticks_min, core.s.election_timeout_ticks_max),
    )


def heard_leader_recently(core: Core) -> bool:
    """Less than the shortest election timeout ago: a leader may still be up."""
    return core.leader_heard.within(core.now, core.s.election_timeout_ticks_min - 1)


def see(core: Core, ballot: Ballot) -> None:
    core.highest_seen = max(core.highest_seen, ballot)


def outbid(core: Core, ballot: Ballot) -> Ballot:
    """This replica's smallest ballot above `ballot`, but never more than
    ballot_round_jump_max rounds above its own promise: a peer that promised
    as much as this one accepts it (validation.py), also when a faulty peer
    made this one see a round far ahead."""
    cap = core.promised.round + constants.ballot_round_jump_max - 1
    if ballot.round > cap:
        ballot = Ballot(cap, ballot.node)
    return ballot.next_for(core.my_index)


# ---------------------------------------------------------------- pre-vote


def start_pre_vote(core: Core) -> None:
    core.role = Role.candidate
    core.phase = Phase.pre_vote
    core.leader = None
    core.candidate_ballot = outbid(core, max(core.promised, core.highest_seen))
    core.pre_votes = {core.me}
    reset_election_timer(core)
    core.ready.events.append(
        f"election timeout: asking pre-votes for ballot {core.candidate_ballot}"
    )
    for peer in core.peers:
        core.send(peer, PreVote(ballot=core.candidate_ballot))
    check_pre_votes(core)


def on_pre_vote(core: Core, m: PreVote, sender: str) -> None:
    see(core, m.ballot)
    granted = m.ballot > core.promised and not heard_leader_recently(core)
    core.send(sender, PreVoteReply(ballot=m.ballot, granted=granted))


def refuse_pre_vote(core: Core, m: PreVote, sender: str) -> None:
    """A leader: it is the leader the candidate has not heard."""
    see(core, m.ballot)
    core.send(sender, PreVoteReply(ballot=m.ballot, granted=False))


def on_pre_vote_reply(core: Core, m: PreVoteReply, sender: str) -> None:
    if core.phase != Phase.pre_vote:
        return  # ignore: no longer asking
    if m.ballot != core.candidate_ballot or not m.granted:
        return  # ignore: an old round, or refused
    core.pre_votes.add(sender)
    check_pre_votes(core)


def check_pre_votes(core: Core) -> None:
    if not core.quorum.reached(core.pre_votes):
        return
    start_prepare(core)


def prepare_again(core: Core, why: str) -> None:
    """The leader's ballot can no longer decide a slot (leading.on_other_value):
    prepare a higher one at once. No pre-votes: they ask whether a leader was
    heard lately, and every peer has heard this one."""
    core.ready.events.append(f"{why}: preparing a new ballot")
    become_follower(core, leader=None, ballot=Ballot.zero())
    core.role = Role.candidate
    core.candidate_ballot = outbid(core, max(core.promised, core.highest_seen))
    core.pre_votes = {core.me}
    reset_election_timer(core)
    start_prepare(core)


def start_prepare(core: Core) -> None:
    core.phase = Phase.prepare
    core.candidate_ballot = max(core.candidate_ballot, outbid(core, core.highest_seen))
    promise(core, core.candidate_ballot)
    core.promises = {core.me: make_promise(core, core.candidate_ballot)}
    for peer in core.peers:
        core.send(peer, Prepare(ballot=core.candidate_ballot))
    check_promises(core)


# ---------------------------------------------------------------- prepare / promise


def promise(core: Core, ballot: Ballot) -> None:
    assert ballot >= core.promised
    if ballot != core.promised:
        core.promised = ballot
        core.ready.persist.append(PromiseRecord(ballot=ballot))
    see(core, ballot)


def make_promise(core: Core, ballot: Ballot) -> Promise:
    return Promise(
        ballot=ballot,
        checkpoint_slot=core.checkpoint_slot,
        commit_slot=core.commit_slot,
        entries=accepted_above_checkpoint(core),
    )


def accepted_above_checkpoint(core: Core) -> tuple[LogEntry, ...]:
    """Our accepted entries above our checkpoint, in slot order: what a
    Promise (and a RejoinReply) reports."""
    return tuple(e for s, e in sorted(core.log.items()) if s > core.checkpoint_slot)


def on_prepare(core: Core, m: Prepare, sender: str) -> None:
    see(core, m.ballot)
    repeat = m.ballot == core.promised and m.ballot.node == core.s.index_of(sender)
    if m.ballot < core.promised or (m.ballot == core.promised and not repeat):
        core.send(sender, Nack(ballot=m.ballot, promised=core.promised))
        return
    if core.role != Role.follower or core.leader is not None:
        become_follower(core, leader=None, ballot=Ballot.zero())
    promise(core, m.ballot)
    reset_election_timer(core)
    core.send(sender, make_promise(core, m.ballot))


def on_promise(core: Core, m: Promise, sender: str) -> None:
    if core.phase != Phase.prepare:
        return  # ignore: late
    if m.ballot != core.candidate_ballot:
        return  # ignore: for an earlier round
    core.promises[sender] = m
    check_promises(core)


def check_promises(core: Core) -> None:
    if core.quorum.reached(core.promises):
        become_leader(core)


def highest_ballot_values(
    promises: Mapping[str, Promise | RejoinReply], start: int, node_ids: Sequence[str]
) -> dict[int, LogEntry]:
    """Per slot above `start`, the value of the highest ballot any promise
    reports: the only value that may have been chosen there (Paxos phase 1).

    One ballot has one value per slot, unless a forged Accept put another in
    some acceptors (following.accept_entry): then the entry the ballot's own
    node reports wins, as only it proposed under that ballot."""
    best: dict[int, LogEntry] = {}
    own: set[int] = set()  # slots whose best entry is its ballot's own node's
    for sender, p in promises.items():
        mine = node_ids.index(sender) + 1
        for e in p.entries:
            if e.slot <= start:
                continue
            held = best.get(e.slot)
            if (
                held is None
                or e.ballot > held.ballot
                or (e.ballot == held.ballot and e.ballot.node == mine and e.slot not in own)
            ):
                best[e.slot] = e
                if e.ballot.node == mine:
                    own.add(e.slot)
                else:
                    own.discard(e.slot)
    return best


def on_nack(core: Core, m: Nack, sender: str) -> None:
    """A follower: only the ballot it names is news."""
    see(core, m.promised)


def on_nack_as_candidate(core: Core, m: Nack, sender: str) -> None:
    see(core, m.promised)
    if m.ballot == core.candidate_ballot:
        become_follower(core, leader=None, ballot=Ballot.zero())
        reset_election_timer(core)


# ---------------------------------------------------------------- changes of view


def become_leader(core: Core) -> None:
    b = core.candidate_ballot
    assert b == core.promised
    promises = core.promises
    core.role = Role.leader
    core.ballot = b
    core.leader = core.me
    core.leader_ballot = b
    note_view(core, b, core.me)
    core.leading_since.mark(core.now)
    core.heartbeat.arm(core.now, core.s.heartbeat_ticks)
    core.peer_heard = {p: Stamp(core.now) for p in core.peers}
    core.votes = {}
    core.other_values = {}
    core.decided = set()
    core.pending = OrderedDict()
    core.pending_transfers = 0
    core.in_flight = set()

    # Everything at or below the highest checkpoint among the promises is
    # decided; above it, adopt per slot what the promises report.
    start = max(p.checkpoint_slot for p in promises.values())
    best = core.values_to_adopt(promises, start)
    # Our own decided values win: they are what any quorum would give.
    for slot in range(start + 1, core.commit_slot + 1):
        best[slot] = core.log[slot]
    top = max([start, core.commit_slot, *best])
    entries = []
    for slot in range(start + 1, top + 1):
        batch = best[slot].batch if slot in best else NOOP
        entries.append(core.store(LogEntry(slot=slot, ballot=b, batch=batch)))
        if slot > core.commit_slot:  # our own decided slots need no votes
            core.votes[slot] = {core.me}
            core.in_flight.update(c.key for c in batch)
    core.next_slot = top + 1
    core.known_commit = max(core.known_commit, start)
    core.ready.events.append(
        f"leader for ballot {b}: re-proposing slots {start + 1}..{top}"
        + (f", catching up to {start} first" if start > core.commit_slot else "")
    )
    for peer in core.peers:
        core.send(
            peer,
            NewView(
                ballot=b,
                entries=tuple(entries),
                commit_slot=core.commit_slot,
                commit_chain=leading.commit_chain(core),
                purge_slot=core.purge_slot,
            ),
        )
    fanout.begin(core, promises, sent_through=top)
    if start > core.commit_slot:
        # Behind the checkpoint of a promiser: fetch from it.
        source = max(promises, key=lambda n: promises[n].checkpoint_slot)
        catchup.ask(core, source)
    for slot in list(core.votes):
        leading.check_decided(core, slot)


def become_follower(core: Core, *, leader: str | None, ballot: Ballot) -> None:
    was_leader = core.role == Role.leader
    core.role = Role.follower
    core.leader = leader
    core.leader_ballot = ballot
    if was_leader:
        dropped = len(core.pending)
        core.pending.clear()
        core.pending_transfers = 0
        core.votes.clear()
        core.other_values.clear()
        core.decided = {s for s in core.decided if s > core.commit_slot}
        core.in_flight.clear()
        fanout.end(core)
        core.ready.events.append(
            f"stepped down from ballot {core.ballot}; dropped {dropped} queued commands"
        )
    if leader is not None:
        note_view(core, ballot, leader)


def note_view(core: Core, ballot: Ballot, leader: str) -> None:
    if not core.views or core.views[-1] != (ballot, leader):
        core.views.append((ballot, leader))
        del core.views[: -constants.views_remembered_max]
        core.ready.events.append(f"view {ballot}: leader {leader}")
