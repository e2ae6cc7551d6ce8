"""Rejoining after a lost disk: learn what we may have promised and accepted, then vote.

A replica started with --recover (its data directory was lost, replaced or
rolled back) remembers none of its promises and acceptances, yet its peers
may count on them: a candidate may hold its promise, a chosen value may
count its vote. Voting at once could break either (two values decided for one
slot: the simulator's planted bug `naive-rejoin`). So it starts in the role
`rejoining` and votes for nothing, until:

1. it has waited `rejoin_wait_ticks`, twice the longest election timeout: a
   candidacy that holds a promise it made before the loss ends by then (a
   candidate keeps its promises only for one election timeout, then starts
   over with a new ballot and asks again), or it succeeded, and then a
   majority has promised its ballot durably;
2. then it asks every peer with a fresh nonce (RejoinRequest) and waits for
   answers to it from a majority of the *other* replicas (a rejoining peer
   does not answer: it knows no more than we do). Any majority that counted
   on us (the promisers of a ballot, the acceptors of a chosen value) holds
   a majority minus us of others, and any majority of the others meets it;
3. it takes the highest ballot promised among the answers as its promise,
   and per slot above their checkpoints the highest-ballot entry as its own
   acceptance (each was accepted by the one who reports it, under a ballot
   whose leader proposed it; a value chosen with our forgotten vote is the
   highest-ballot value of that slot in any majority: Paxos's phase 1), and
   votes again, once it holds every value decided at or below the newest
   checkpoint among the answers (step 4).
4. Below an answerer's checkpoint the answers report no acceptances, so a
   value chosen there with our forgotten vote is in no answer: until it has
   fetched those slots by catch-up (or installed a checkpoint past them), its
   promises would leave that value out, and a new leader counting on them, or
   itself as leader, could fill the slot with another value. So it keeps
   following without voting until its commit point reaches that checkpoint.

Meanwhile it follows: it learns the leader and the commit point, fetches the
decided values and executes them, answers heartbeats and forwards its
clients' requests; it never promises, accepts or stands. The idea is Paxos
Made Live's (§5.1: a replica whose disk was lost takes part as a non-voting
member until it is safe), the majority of answers with a nonce Viewstamped
Replication Revisited's recovery protocol (§4.3); the argument for this
protocol is in docs/protocol.md, "Rejoining after a lost disk".

Functions of a `Core`; the role `rejoining` dispatches here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledgerpaxos.core import catchup, election, following
from ledgerpaxos.core.messages import (
    Accept,
    AcceptMany,
    Ballot,
    Heartbeat,
    NewView,
    PromiseRecord,
    RejoinReply,
    RejoinRequest,
)
from ledgerpaxos.core.status import Role

if TYPE_CHECKING:
    from ledgerpaxos.core.replica import Core


def begin(core: Core) -> None:
    """Start rejoining: called by a core that was started with --recover."""
    core.role = Role.rejoining
    core.rejoin_nonce = core.rng.getrandbits(64)
    core.rejoin_answers = {}
    core.rejoin_asked = False
    core.rejoin_after.arm(core.now, core.s.rejoin_wait_ticks)
    core.ready.events.append(
        f"rejoining after a lost or damaged disk: voting for nothing; asking a majority in "
        f"{core.s.rejoin_wait_ticks} ticks"
    )


def tick(core: Core) -> None:
    """Ask once the wait is over, and again every rejoin_retry_ticks until a
    majority answered (peers may be down, or the answers lost)."""
    if core.rejoin_floor is not None:
        catch_up_done(core)
        return
    if core.rejoin_after.pending(core.now):
        return
    core.rejoin_after.arm(core.now, core.s.rejoin_retry_ticks)
    if core.rejoin_asked:
        heard = ", ".join(sorted(core.rejoin_answers))
        core.ready.events.append(
            f"rejoining: {len(core.rejoin_answers)} of the {needed(core)} answers needed "
            f"(from {heard}); asking again"
        )
    core.rejoin_asked = True
    for peer in core.peers:
        core.send(peer, RejoinRequest(nonce=core.rejoin_nonce))


def ticks_until_due(core: Core) -> int | None:
    """When tick() next does something (Core.ticks_until_due): voting again
    once the slots are decided, or asking (again) once the wait is over."""
    if core.rejoin_floor is not None:
        return 1 if core.commit_slot >= core.rejoin_floor else None
    due = core.rejoin_after.ticks_left(core.now)
    return 1 if due is None else due  # unarmed: it asks at the next tick


def needed(core: Core) -> int:
    """Answers from other replicas: a majority of them (not counting us)."""
    return core.quorum.majority


def describe(core: Core) -> str | None:
    """For print view: where the rejoin stands; None when not rejoining."""
    if core.role is not Role.rejoining:
        return None
    if not core.rejoin_asked:
        assert core.rejoin_after.due is not None
        return f"waiting {core.rejoin_after.due - core.now} ticks before asking a majority"
    if core.rejoin_floor is not None:
        return (
            f"answered; fetching the decided slots up to {core.rejoin_floor} before voting "
            f"(commit point {core.commit_slot})"
        )
    heard = ", ".join(sorted(core.rejoin_answers)) or "nobody yet"
    return f"asked the peers: answers from {heard}, {needed(core)} needed"


def on_rejoin_request(core: Core, m: RejoinRequest, sender: str) -> None:
    """Any role but rejoining: tell what we promised and accepted."""
    core.send(
        sender,
        RejoinReply(
            nonce=m.nonce,
            promised=core.promised,
            checkpoint_slot=core.checkpoint_slot,
            commit_slot=core.commit_slot,
            entries=election.accepted_above_checkpoint(core),
        ),
    )


def on_rejoin_reply(core: Core, m: RejoinReply, sender: str) -> None:
    if m.nonce != core.rejoin_nonce or core.rejoin_floor is not None:
        return  # ignore: not an answer to this rejoin, or answered enough
    core.rejoin_answers[sender] = m
    election.see(core, m.promised)
    if len(core.rejoin_answers) >= needed(core):
        finish(core)


def finish(core: Core) -> None:
    answers = core.rejoin_answers
    promised = max([core.promised, *(a.promised for a in answers.values())])
    if promised != core.promised:
        core.promised = promised
        core.ready.persist.append(PromiseRecord(ballot=promised))
    start = max(a.checkpoint_slot for a in answers.values())
    # Per slot the value a new leader would adopt from these (Paxos phase 1).
    adopted = election.highest_ballot_values(answers, start, core.s.node_ids)
    taken = 0
    for slot, entry in sorted(adopted.items()):
        mine = core.log.get(slot)
        if slot > core.commit_slot and (mine is None or mine.ballot < entry.ballot):
            core.store(entry)
            taken += 1
    core.known_commit = max([core.known_commit, *(a.commit_slot for a in answers.values())])
    core.rejoin_answers = {}
    core.rejoin_floor = start
    core.ready.events.append(
        f"rejoin answered by {', '.join(sorted(answers))}; promised {promised}, "
        f"took {taken} accepted entries above slot {start}"
    )
    catch_up_done(core)
    catchup.ask_if_stuck(core)


def catch_up_done(core: Core) -> None:
    """Vote again once every slot up to the answers' newest checkpoint is
    decided here (step 4)."""
    assert core.rejoin_floor is not None
    if core.commit_slot < core.rejoin_floor:
        return
    core.ready.events.append(
        f"rejoined: decided up to {core.commit_slot}, past slot {core.rejoin_floor}; voting again"
    )
    core.rejoin_floor = None
    core.role = Role.follower
    core.ready.rejoined = True
    election.reset_election_timer(core)


# ---------------------------------------------------------------- following without voting


def _follow(core: Core, ballot: Ballot, sender: str, commit_slot: int) -> None:
    """Learn who leads and how far it decided; fetch the decided values."""
    election.see(core, ballot)
    if ballot >= core.leader_ballot:
        core.leader, core.leader_ballot = sender, ballot
    core.known_commit = max(core.known_commit, commit_slot)
    catchup.ask_if_stuck(core)


def on_accept(core: Core, m: Accept, sender: str) -> None:
    _follow(core, m.ballot, sender, m.commit_slot)


def on_accept_many(core: Core, m: AcceptMany, sender: str) -> None:
    _follow(core, m.ballot, sender, m.commit_slot)


def on_new_view(core: Core, m: NewView, sender: str) -> None:
    _follow(core, m.ballot, sender, m.commit_slot)


def on_heartbeat(core: Core, m: Heartbeat, sender: str) -> None:
    _follow(core, m.ballot, sender, m.commit_slot)
    core.send(sender, following.heartbeat_ack(core, m.ballot))


on_client_request = following.on_client_request
