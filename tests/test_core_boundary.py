"""Peer messages no correct peer sends: refused with an alarm, never an assertion.

Each is what a forged or faulty peer could send (the attacks of the trust
boundary issue, at the core): the replica stays up, its state unchanged, and
says so loudly (an alarm: the runtime logs it, the simulator fails on it).
"""

from __future__ import annotations

import random

import attrs

from ledgerpaxos.constants import (
    ballot_round_jump_max,
    ballot_round_max,
    slots_ahead_max,
)
from ledgerpaxos.core import Core, Ledger
from ledgerpaxos.core.ledger import state_digest
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    AcceptedMany,
    AcceptMany,
    Ballot,
    CatchupReply,
    Command,
    CommandKind,
    InstallCheckpoint,
    LogEntry,
    Nack,
    NewView,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Snapshot,
    Transfer,
)
from tests.corenet import CoreNet, settings

WIRE_ROUND_MAX = 2**64 - 1


def command(n: int) -> Command:
    return Command(
        client_id="A",
        request_no=n,
        kind=CommandKind.transfer,
        transfers=(Transfer(sender="A", receiver="B", amount=1),),
    )


def decided_cluster() -> tuple[CoreNet, str, str]:
    """Five replicas that decided and executed slot(s) with one transfer A->B 3."""
    net = CoreNet()
    net.run_until(lambda: net.leader() is not None)
    leader = net.leader()
    assert leader is not None
    net.submit(leader, "A", [("A", "B", 3)])
    net.run(20)
    follower = next(n for n in net.ids if n != leader)
    return net, leader, follower


def test_a_forged_accept_of_another_value_for_a_decided_slot_is_refused() -> None:
    net, leader, follower = decided_cluster()
    core = net.cores[follower]
    slot = core.status().executed_slot
    before = core.balances()
    higher = Ballot(core.status().promised.round + 1, core.s.index_of(leader))
    core.step(
        Accept(
            ballot=higher,
            slot=slot,
            batch=(command(99),),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        leader,
    )
    ready = core.take_ready()
    assert any("decided with another value" in a for a in ready.alarms)
    assert not any(isinstance(m, Accepted) for _, m in ready.send)
    assert core.log_view()[-1].batch != (command(99),) and core.balances() == before


def test_a_ballot_that_could_not_be_outbid_is_refused_and_the_cluster_goes_on() -> None:
    net, leader, follower = decided_cluster()
    core = net.cores[follower]
    promised = core.status().promised
    at_the_end = Ballot(WIRE_ROUND_MAX, core.s.index_of(leader))
    for message in (
        Prepare(ballot=at_the_end),
        Nack(ballot=promised, promised=at_the_end),
        NewView(
            ballot=Ballot(ballot_round_max + 1, core.s.index_of(leader)),
            entries=(),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
    ):
        core.step(message, leader)
        ready = core.take_ready()
        assert any("beyond" in a for a in ready.alarms), message
        assert ready.persist == [] and ready.send == []
    assert core.status().promised == promised
    net.crash(leader)  # and a new election still works: no round was used up
    net.run_until(lambda: net.leader() not in (None, leader))


def test_a_forged_ballot_as_far_ahead_as_allowed_leaves_the_cluster_able_to_outbid_it() -> None:
    """What the fuzzer found: a Prepare at the last round a peer accepted was
    promised, and no candidate could go above it (peers refused the next
    round), so every replica stayed a candidate. A round further than
    ballot_round_jump_max above the promise is refused; a candidate never
    goes further, so the others still elect a leader, and the victim follows
    the next one."""
    net, leader, victim = decided_cluster()
    poser = next(n for n in net.ids if n not in (leader, victim))
    core = net.cores[victim]
    reachable = core.status().promised.round + ballot_round_jump_max
    core.step(Prepare(ballot=Ballot(reachable + 1, core.s.index_of(poser))), poser)
    ready = core.take_ready()
    assert any("above the round promised here" in a for a in ready.alarms)
    assert ready.persist == [] and ready.send == []
    far = Ballot(reachable, core.s.index_of(poser))
    core.step(Prepare(ballot=far), poser)
    net.flush(victim)
    assert core.status().promised == far  # as far ahead as a peer may be: promised
    for other in net.ids:
        if other not in (victim, poser):  # and every other replica has seen it
            net.cores[other].step(PreVote(ballot=far), poser)
            net.flush(other)
    net.run_until(lambda: all(net.cores[n].status().promised > far for n in net.ids), 4000)
    new_leader = net.leader()
    assert new_leader is not None
    net.submit(new_leader, "A", [("A", "C", 1)])
    net.run(50)
    assert all(net.cores[n].balances()["C"] == 11 for n in net.ids)
    assert all(net.cores[n].balances()["B"] == 13 for n in net.ids)


def test_a_promise_or_proposal_of_a_slot_far_ahead_is_ignored_and_fills_no_memory() -> None:
    """What the fuzzer found: a candidate fills every slot up to the highest
    one promised, its own log's included, so one Promise (or a stored Accept)
    naming a slot near 2**63 made a replica allocate 24 GB and be killed.
    Ignored, not refused: an honest peer may be that far ahead of a replica
    that lags, which catches up first."""
    core = Core(settings("n1", n=3), random.Random(1))
    while core.status().role.value != "candidate":
        core.tick()
    ballot = core.candidate_ballot
    core.step(PreVoteReply(ballot=ballot, granted=True), "n2")  # now asking for promises
    core.take_ready()
    far = slots_ahead_max + 1
    for promise in (
        Promise(
            ballot=ballot,
            checkpoint_slot=0,
            commit_slot=0,
            entries=(LogEntry(slot=far, ballot=Ballot(1, 2), batch=(command(1),)),),
        ),
        Promise(ballot=ballot, checkpoint_slot=far, commit_slot=far, entries=()),
    ):
        core.step(promise, "n2")  # with its own, a majority of three: it would lead
        ready = core.take_ready()
        assert ready.persist == [] and ready.send == [] and not ready.alarms, promise
        assert core.status().role.value == "candidate" and core.last_slot() < far
    near = Promise(
        ballot=ballot,
        checkpoint_slot=0,
        commit_slot=0,
        entries=(LogEntry(slot=3, ballot=Ballot(1, 2), batch=(command(1),)),),
    )
    core.step(near, "n2")
    assert core.status().role.value == "leader" and core.last_slot() == 3
    core = Core(settings("n1"), random.Random(1))
    core.take_ready()
    # Nor may a leader's proposals reach that far: stored, they would be the
    # slots this replica's own promise names when it next runs for leader.
    for proposal in (
        Accept(
            ballot=Ballot(2, 2),
            slot=far,
            batch=(),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        NewView(
            ballot=Ballot(2, 2),
            entries=(LogEntry(slot=far, ballot=Ballot(2, 2), batch=()),),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        AcceptMany(
            ballot=Ballot(2, 2),
            entries=(
                LogEntry(slot=1, ballot=Ballot(2, 2), batch=()),
                LogEntry(slot=far, ballot=Ballot(2, 2), batch=()),
            ),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
    ):
        core.step(proposal, "n2")
        ready = core.take_ready()
        assert ready.persist == [] and ready.send == [] and core.last_slot() < far, proposal


def test_a_backlog_out_of_order_or_naming_another_ballot_is_refused_whole() -> None:
    """An AcceptMany is refused with a reason, none of its entries stored, when
    its slots do not ascend, an entry is of another ballot than the message,
    or it comes from another node than its ballot's; so is an AcceptedMany
    with a digest of the wrong length or a slot 0."""
    core = Core(settings("n2"), random.Random(1))
    core.take_ready()
    ballot = Ballot(1, 1)

    def many(*entries: LogEntry) -> AcceptMany:
        return AcceptMany(
            ballot=ballot, entries=entries, commit_slot=0, commit_chain=bytes(16), purge_slot=0
        )

    def entry(slot: int, of: Ballot = ballot) -> LogEntry:
        return LogEntry(slot=slot, ballot=of, batch=(command(slot),))

    for message, sender, why in (
        (many(entry(2), entry(1)), "n1", "out of order"),
        (many(entry(1), entry(1)), "n1", "out of order"),
        (many(entry(1), entry(2, Ballot(0, 1))), "n1", "not 1.1"),
        (many(entry(1), entry(2)), "n3", "of another node"),
    ):
        core.step(message, sender)
        ready = core.take_ready()
        assert any(why in a for a in ready.alarms), (message, ready.alarms)
        assert ready.persist == [] and ready.send == [] and core.last_slot() == 0
    core.step(many(entry(1), entry(2)), "n1")
    ready = core.take_ready()
    assert not ready.alarms and core.last_slot() == 2
    assert [type(m) for _, m in ready.send] == [AcceptedMany]
    leader = Core(settings("n1", n=3), random.Random(1))
    for votes, why in (
        (((1, bytes(15)),), "has 15 bytes"),
        (((0, bytes(16)),), "slots count from 1"),
    ):
        leader.step(AcceptedMany(ballot=ballot, votes=votes), "n2")
        assert any(why in a for a in leader.take_ready().alarms), votes


def test_a_second_value_for_a_slot_under_the_same_ballot_is_refused() -> None:
    """A leader proposes a slot once per ballot: a second, different batch
    under the same ballot is forged (the fuzzer sent them in the leader's
    name), and the first value stays."""
    core = Core(settings("n2"), random.Random(1))
    core.take_ready()
    first = Accept(
        ballot=Ballot(1, 1),
        slot=1,
        batch=(command(1),),
        commit_slot=0,
        commit_chain=bytes(16),
        purge_slot=0,
    )
    core.step(first, "n1")
    assert any(isinstance(m, Accepted) for _, m in core.take_ready().send)
    core.step(attrs.evolve(first, batch=(command(2),)), "n1")
    ready = core.take_ready()
    assert any("proposed twice under ballot" in a for a in ready.alarms)
    # The answer names the value held, the first: the leader counts it for no other.
    first_digest = LogEntry(slot=1, ballot=Ballot(1, 1), batch=(command(1),)).digest
    assert ready.persist == []
    assert [m.digest for _, m in ready.send if isinstance(m, Accepted)] == [first_digest]
    assert core.log_view()[-1].batch == (command(1),)


def test_a_proposal_under_another_nodes_ballot_is_refused() -> None:
    core = Core(settings("n2"), random.Random(1))
    core.take_ready()
    core.step(
        Accept(
            ballot=Ballot(3, 3),
            slot=1,
            batch=(),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        "n1",
    )
    ready = core.take_ready()
    assert any("of another node" in a for a in ready.alarms) and ready.persist == []


def test_checkpoints_and_catch_up_replies_nobody_asked_for_are_ignored() -> None:
    net, leader, follower = decided_cluster()
    core = net.cores[follower]
    before, status = core.balances(), core.status()
    honest = Ledger(core.s.accounts, core.s.initial_balance)
    minted = Snapshot(  # money out of nowhere, with a digest to match
        slot=status.executed_slot + 10,
        balances=tuple((a, 1000 if a == "J" else 10) for a in core.s.accounts),
        clients=(),
        digest=b"",
        chain=bytes(16),
    )
    minted = attrs.evolve(minted, digest=state_digest(minted, core.s.initial_balance))
    forged_entry = LogEntry(slot=status.commit_slot + 1, ballot=Ballot(1, 1), batch=(command(5),))
    install = InstallCheckpoint(
        snapshot=honest.snapshot(status.executed_slot + 10, chain=bytes(16)), nonce=7
    )
    reply = CatchupReply(
        entries=(forged_entry,), commit_slot=status.commit_slot + 1, chain=bytes(16), nonce=7
    )
    for message in (install, reply):  # not asked
        core.step(message, leader)
        assert core.take_ready().snapshots == []
    # Asked, but by another request (its nonce is not theirs): still ignored.
    core.catchup_source, core.catchup_nonce = leader, 8
    for message in (install, reply):
        core.step(message, leader)
        ready = core.take_ready()
        assert ready.snapshots == [] and ready.alarms == []
    assert core.balances() == before and core.status().commit_slot == status.commit_slot
    # The answer to this request, with entries that do not chain onto ours: refused.
    core.step(attrs.evolve(reply, nonce=8), leader)
    ready = core.take_ready()
    assert ready.persist == [] and core.status().commit_slot == status.commit_slot
    assert any("does not chain onto our decided log" in a for a in ready.alarms)
    # With its nonce, a checkpoint must still hold the cluster's money: this one
    # is refused (before, Ledger.install asserted it, and the process died).
    core.step(InstallCheckpoint(snapshot=minted, nonce=8), leader)
    ready = core.take_ready()
    assert ready.alarms == [
        f"checkpoint {minted.slot} from {leader} refused: its balances sum to 1090, not 100"
    ]
    assert ready.snapshots == [] and core.balances() == before


def test_entries_out_of_order_or_of_another_ballot_are_refused() -> None:
    core = Core(settings("n2"), random.Random(1))
    core.take_ready()
    b = Ballot(2, 1)
    entry = LogEntry(slot=2, ballot=b, batch=())
    bad = [
        NewView(
            ballot=b,
            entries=(entry, LogEntry(slot=1, ballot=b, batch=())),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        NewView(
            ballot=b,
            entries=(LogEntry(slot=1, ballot=Ballot(1, 1), batch=()),),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        Accept(ballot=b, slot=0, batch=(), commit_slot=0, commit_chain=bytes(16), purge_slot=0),
        Accept(ballot=b, slot=1, batch=(), commit_slot=1, commit_chain=bytes(16), purge_slot=2),
    ]
    for message in bad:
        core.step(message, "n1")
        ready = core.take_ready()
        assert ready.alarms and ready.persist == [] and ready.send == [], message
