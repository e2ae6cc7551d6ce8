"""The core's small parts: majorities, timers, and dispatch by role."""

from __future__ import annotations

import random

import attrs
import pytest

from ledgerpaxos.core import Core, Role, execution
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    Ballot,
    ClientRequest,
    Command,
    CommandKind,
    Heartbeat,
    HeartbeatAck,
    PreVote,
    PreVoteReply,
    Promise,
    Transfer,
)
from ledgerpaxos.core.quorum import Quorum
from ledgerpaxos.core.timers import Deadline, Stamp
from tests.corenet import CoreNet, settings


@pytest.mark.parametrize(("replicas", "majority"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_a_majority_is_more_than_half(replicas: int, majority: int) -> None:
    quorum = Quorum(replicas)
    assert quorum.majority == majority
    assert quorum.reached([f"n{i}" for i in range(majority)])
    assert not quorum.reached([f"n{i}" for i in range(majority - 1)])


def test_the_value_a_majority_holds_is_the_majority_th_highest() -> None:
    quorum = Quorum(5)
    assert quorum.held_by_majority([40, 10]) is None  # two of five reported
    assert quorum.held_by_majority([40, 10, 30]) == 10
    assert quorum.held_by_majority([40, 10, 30, 20, 50]) == 30


def test_a_deadline_is_pending_until_its_tick_and_never_unarmed() -> None:
    deadline = Deadline()
    assert not deadline.armed and not deadline.passed(10**9) and not deadline.pending(0)
    deadline.arm(now=5, ticks=3)
    assert [deadline.passed(t) for t in (7, 8, 9)] == [False, True, True]
    assert [deadline.pending(t) for t in (7, 8)] == [True, False]
    deadline.disarm()
    assert not deadline.passed(100)


def test_a_stamp_is_within_a_window_only_once_marked() -> None:
    stamp = Stamp()
    assert not stamp.within(0, 10**9)
    stamp.mark(10)
    assert stamp.within(15, 5) and not stamp.within(16, 5)


def _promise(ballot: Ballot) -> Promise:
    return Promise(ballot=ballot, checkpoint_slot=0, commit_slot=0, entries=())


@pytest.mark.parametrize(
    "message",
    [
        Accepted(ballot=Ballot(1, 1), slot=1, digest=bytes(16)),
        HeartbeatAck(
            ballot=Ballot(1, 1), executed_slot=0, checkpoint_slot=0, checkpoint_digest=b""
        ),
        _promise(Ballot(1, 2)),
        PreVoteReply(ballot=Ballot(1, 2), granted=True),
    ],
    ids=type,
)
def test_a_follower_drops_what_only_a_leader_or_candidate_acts_on(message: object) -> None:
    core = Core(settings("n2"), random.Random(1))
    core.take_ready()
    before = core.status()
    core.step(message, "n1")
    ready = core.take_ready()
    assert ready == type(ready)()  # nothing to persist, send or reply
    assert core.status() == before


def test_a_leader_refuses_every_pre_vote_and_drops_late_promises() -> None:
    net = CoreNet()
    net.run_until(lambda: net.leader() is not None)
    leader = net.leader()
    assert leader is not None
    core = net.cores[leader]
    core.take_ready()
    before = attrs.evolve(core.status())
    late = _promise(core.status().ballot)
    core.step(late, next(n for n in net.ids if n != leader))
    assert core.take_ready().send == [] and core.status() == before
    candidate = "n1" if leader != "n1" else "n2"
    ballot = Ballot(before.ballot.round + 5, int(candidate[1:]))
    core.step(PreVote(ballot=ballot), candidate)
    ((_, reply),) = core.take_ready().send
    assert reply == PreVoteReply(ballot=ballot, granted=False)
    assert core.status().role == Role.leader


def test_a_candidate_that_stepped_down_ignores_the_promises_of_its_round() -> None:
    core = Core(settings("n2"), random.Random(1))
    while core.status().role != Role.candidate:
        core.tick()
    (ballot,) = {m.ballot for _, m in core.take_ready().send if isinstance(m, PreVote)}
    for voter in ("n1", "n3"):
        core.step(PreVoteReply(ballot=ballot, granted=True), voter)
    prepared = core.status()
    assert prepared.phase is not None and prepared.phase.name == "prepare"
    round_ballot = prepared.promised  # the ballot it now asks promises for
    core.take_ready()
    newer = Ballot(round_ballot.round + 1, 5)
    core.step(Heartbeat(ballot=newer, commit_slot=0, commit_chain=bytes(16), purge_slot=0), "n5")
    assert core.status().role == Role.follower
    core.take_ready()
    for voter in ("n1", "n3", "n4"):
        core.step(_promise(round_ballot), voter)  # late: it follows n5 now
    status = core.status()
    assert (status.role, status.leader, status.promised) == (Role.follower, "n5", newer)


def test_the_leaders_queue_is_bounded_in_commands_and_in_transfers() -> None:
    net = CoreNet(pending_transfers_max=10)
    net.run_until(lambda: net.leader() is not None)
    leader = net.leader()
    assert leader is not None
    core = net.cores[leader]
    core.take_ready()
    for n in range(1, 6):  # 3 transfers each, stepped before a Ready cuts them into slots
        command = Command(
            client_id="A",
            request_no=n,
            kind=CommandKind.transfer,
            transfers=(Transfer(sender="A", receiver="B", amount=1),) * 3,
        )
        core.step(ClientRequest(command=command), None)
    assert len(core.pending) == 3 and core.pending_transfers == 9
    events = core.take_ready().events
    assert events.count("leader queue full, dropped ('A', 4)") == 1
    assert "leader queue full, dropped ('A', 5)" in events


def test_a_follower_votes_before_it_executes_what_the_accept_commits() -> None:
    """The Accept of slot 2 commits slot 1: the Ready that carries the vote for
    2 executes nothing, execute_committed() (the host's, after that Ready) does,
    and until then a tick is due."""
    core = Core(settings("n2"), random.Random(2))
    ballot = Ballot(1, 1)
    batch = (
        Command(
            client_id="A",
            request_no=1,
            kind=CommandKind.transfer,
            transfers=(Transfer(sender="A", receiver="B", amount=1),),
        ),
    )

    def accept(slot: int, commit_slot: int, chain: bytes) -> Accept:
        return Accept(
            ballot=ballot,
            slot=slot,
            batch=batch if slot == 1 else (),
            commit_slot=commit_slot,
            commit_chain=chain,
            purge_slot=0,
        )

    genesis = execution.chain_at(core, 0)
    assert genesis is not None
    core.step(accept(1, 0, genesis), "n1")
    core.take_ready()
    chain = execution.chain_at(core, 1)
    assert chain is not None
    core.step(accept(2, 1, chain), "n1")
    assert core.commit_slot == 1 and core.executed_slot == 0 and core.execution_due()
    assert core.ticks_until_due() == 1
    ready = core.take_ready()
    assert [m.slot for _, m in ready.send if isinstance(m, Accepted)] == [2]
    assert ready.executed == []
    core.execute_committed()
    assert core.executed_slot == 1 and not core.execution_due()
    assert [e.slot for e in core.take_ready().executed] == [1]
