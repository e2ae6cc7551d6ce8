"""A replica that lost its disk votes for nothing until a majority told it what it may have promised.

The simulator's planted bug `naive-rejoin` shows what voting at once does
(two values decided for one slot); these tests pin the rejoin itself
(core/rejoin.py): what it waits for, what it adopts, and that it votes again.
"""

from __future__ import annotations

import random

import attrs

from ledgerpaxos.core import Core
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    Ballot,
    CatchupReply,
    InstallCheckpoint,
    LogEntry,
    Nack,
    Prepare,
    Promise,
    PromiseRecord,
    RejoinReply,
    RejoinRequest,
)
from ledgerpaxos.core.status import Role
from tests.corenet import CoreNet, settings


def decided(net: CoreNet, transfers: int) -> str:
    net.run_until(lambda: net.leader() is not None)
    leader = net.leader()
    assert leader is not None
    for _ in range(transfers):
        net.submit(leader, "A", [("A", "B", 1)])
        net.run(5)
    net.run(20)
    return leader


def votes_of(ready_sends: list[tuple[str, object]]) -> list[object]:
    return [m for _, m in ready_sends if isinstance(m, Promise | Accepted)]


def test_a_replica_on_a_lost_disk_votes_for_nothing_until_a_majority_answered() -> None:
    net = CoreNet(5)
    leader = decided(net, 3)
    victim = next(n for n in net.ids if n != leader)
    sent: list[tuple[str, object]] = []
    net.crash(victim)
    net.restart(victim, disk_lost=True)
    net.watchers[victim].append(lambda ready: sent.extend(ready.send))
    core = net.cores[victim]
    assert core.status().role is Role.rejoining
    assert "waiting" in (core.status().rejoin or "")
    net.submit(leader, "A", [("A", "C", 2)])  # proposals reach it meanwhile
    net.run(core.s.rejoin_wait_ticks - 5)
    assert votes_of(sent) == [] and core.status().role is Role.rejoining
    assert not any(isinstance(m, RejoinRequest) for _, m in sent), "asked before the wait"
    net.run(50)
    assert core.status().role is Role.follower and core.status().rejoin is None
    assert any(isinstance(m, RejoinRequest) for _, m in sent)
    assert core.status().promised >= net.cores[leader].status().promised
    assert not net.storages[victim].rejoining  # durable: a restart votes at once
    # It executed what was decided, and votes again.
    net.submit(leader, "A", [("A", "D", 1)])
    net.run(30)
    assert any(isinstance(m, Accepted) for _, m in sent)
    assert core.balances() == net.cores[leader].balances()
    net.check_agreement()


def test_without_a_majority_of_others_it_keeps_waiting_and_says_so() -> None:
    net = CoreNet(5)
    leader = decided(net, 2)
    victim, *others = [n for n in net.ids if n != leader]
    net.crash(victim)
    net.restart(victim, disk_lost=True)
    for node in others[:2]:
        net.crash(node)  # two others down: a leader and one peer answer, three are needed
    net.run(net.cores[victim].s.rejoin_wait_ticks + 200)
    status = net.cores[victim].status()
    assert status.role is Role.rejoining
    assert status.rejoin is not None and "3 needed" in status.rejoin
    net.restart(others[0])
    net.run(200)
    assert net.cores[victim].status().role is Role.follower


def test_it_takes_the_highest_promise_and_the_highest_ballot_values_of_the_answers() -> None:
    core = Core(settings("n3", 5), random.Random(3), rejoining=True)
    core.take_ready()
    for _ in range(core.s.rejoin_wait_ticks):
        core.tick()
    asked = [m for _, m in core.take_ready().send if isinstance(m, RejoinRequest)]
    assert len(asked) == 4
    nonce = asked[0].nonce
    old, newer = Ballot(2, 1), Ballot(4, 2)
    answers = {
        "n1": RejoinReply(
            nonce=nonce,
            promised=Ballot(5, 4),  # a candidacy it may have promised too
            checkpoint_slot=0,
            commit_slot=0,
            entries=(LogEntry(slot=1, ballot=old, batch=()),),
        ),
        "n2": RejoinReply(
            nonce=nonce,
            promised=newer,
            checkpoint_slot=0,
            commit_slot=0,
            entries=(LogEntry(slot=1, ballot=newer, batch=()),),
        ),
    }
    core.step(attrs.evolve(answers["n1"], nonce=nonce + 1), "n4")  # not an answer to us
    for node, answer in answers.items():
        core.step(answer, node)
    assert core.status().role is Role.rejoining  # two of the three others needed
    core.step(
        RejoinReply(nonce=nonce, promised=old, checkpoint_slot=0, commit_slot=0, entries=()),
        "n5",
    )
    ready = core.take_ready()
    assert core.status().role is Role.follower and ready.rejoined
    assert PromiseRecord(ballot=Ballot(5, 4)) in ready.persist
    assert core.log_view()[0].ballot == newer  # the highest ballot's value for slot 1
    # Its promise holds: an Accept below it is refused, a Prepare at it too.
    core.step(
        Accept(
            ballot=Ballot(5, 2),
            slot=2,
            batch=(),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        "n2",
    )
    assert [type(m) for _, m in core.take_ready().send] == [Nack]


def test_while_rejoining_prepares_and_accepts_get_no_answer() -> None:
    core = Core(settings("n3", 5), random.Random(3), rejoining=True)
    core.take_ready()
    core.step(Prepare(ballot=Ballot(9, 1)), "n1")
    core.step(
        Accept(
            ballot=Ballot(9, 1),
            slot=1,
            batch=(),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        "n1",
    )
    ready = core.take_ready()
    assert votes_of(ready.send) == [] and ready.persist == []
    assert core.status().leader == "n1"  # it follows, to fetch what is decided
    core.step(RejoinRequest(nonce=1), "n2")
    assert core.take_ready().send == []  # a rejoining replica knows no more than the asker


def test_a_replica_far_behind_rejoins_a_cluster_far_ahead() -> None:
    """An empty disk against a cluster at slot 10,000 (beyond slots_ahead_max of
    its commit point): the answers count, and it catches up afterwards."""
    core = Core(settings("n3", 3), random.Random(3), rejoining=True)
    for _ in range(core.s.rejoin_wait_ticks):
        core.tick()
    (nonce,) = {m.nonce for _, m in core.take_ready().send if isinstance(m, RejoinRequest)}
    ballot = Ballot(7, 1)
    for node in ("n1", "n2"):
        core.step(
            RejoinReply(
                nonce=nonce,
                promised=ballot,
                checkpoint_slot=10_000,
                commit_slot=10_004,
                entries=tuple(
                    LogEntry(slot=s, ballot=ballot, batch=()) for s in range(10_001, 10_006)
                ),
            ),
            node,
        )
    # It holds the promise and the acceptances, and fetches slots up to 10,000 before voting.
    assert core.status().promised == ballot and len(core.log_view()) == 5
    assert core.status().role is Role.rejoining
    assert "up to 10000" in (core.status().rejoin or "")


def test_it_votes_again_only_once_it_holds_what_the_answers_checkpointed() -> None:
    """Below an answerer's checkpoint the answers report no acceptances, so a
    value chosen there with the forgotten vote is in none of them: the
    rejoining replica fetches those slots before its promises count."""
    net = CoreNet(5)
    leader = decided(net, 25)  # past checkpoints at slots 10 and 20
    victim = next(n for n in net.ids if n != leader)
    net.crash(victim)
    net.restart(victim, disk_lost=True)
    core = net.cores[victim]
    # It fetches nothing until the answers are in, so it has slots to fetch then.
    net.drop = lambda to, sender, m: (
        to == victim
        and isinstance(m, CatchupReply | InstallCheckpoint)
        and core.status().role is Role.rejoining
        and core.rejoin_floor is None
    )
    seen: list[tuple[int, str | None, list[str], list[object]]] = []
    net.watchers[victim].append(
        lambda ready: seen.append(
            (core.status().commit_slot, core.status().rejoin, ready.events, votes_of(ready.send))
        )
    )
    net.run(core.s.rejoin_wait_ticks + 100)
    answered = next(i for i, (*_, events, _) in enumerate(seen) if "rejoin answered" in str(events))
    rejoined = next(i for i, (*_, events, _) in enumerate(seen) if "rejoined:" in str(events))
    floor = min(net.cores[n].status().checkpoint_slot for n in net.ids if n != victim)
    assert floor >= 20
    commit, rejoin, _, _ = seen[answered]
    assert commit < floor and rejoin is not None and f"up to {floor}" in rejoin
    assert seen[rejoined][0] >= floor, "voted again before holding the checkpointed slots"
    assert not any(votes for *_, votes in seen[:rejoined]), "voted while rejoining"
    assert core.status().role is Role.follower
