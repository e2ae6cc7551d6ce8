"""Values no leader proposed: a vote names its value, a commit names the decided log.

A peer holding a node's certificate can send an Accept in the leader's name
under the leader's own ballot, with another value, before the leader's own
reaches a follower (the fuzzer did, and replicas diverged). The follower
keeps the first value for the slot; these tests show that it is never
executed anywhere: the leader does not count a vote for it, the follower does
not commit it (the leader's chain digest differs) and fetches the decided
value instead, and a slot too many followers hold forged is proposed again
under a new ballot.
"""

from __future__ import annotations

from ledgerpaxos.core import election
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    Ballot,
    Command,
    CommandKind,
    LogEntry,
    Promise,
    Transfer,
)
from tests.corenet import CoreNet


def forged_command() -> Command:
    return Command(
        client_id="J",
        request_no=1,
        kind=CommandKind.transfer,
        transfers=(Transfer(sender="J", receiver="A", amount=7),),
    )


def elected(n: int = 5) -> tuple[CoreNet, str]:
    net = CoreNet(n)
    net.run_until(lambda: net.leader() is not None)
    leader = net.leader()
    assert leader is not None
    net.submit(leader, "A", [("A", "B", 1)])
    net.run(20)
    return net, leader


def forge_next_slot(net: CoreNet, leader: str, victims: list[str]) -> int:
    """An Accept for the leader's next slot, in its name and under its ballot,
    with the forger's value and the leader's true commit point and chain (a
    careful forger could copy those), delivered before the leader's own."""
    core = net.cores[leader]
    slot = core.next_slot
    forged = Accept(
        ballot=core.ballot,
        slot=slot,
        batch=(forged_command(),),
        commit_slot=core.commit_slot,
        commit_chain=core.chain,
        purge_slot=core.purge_slot,
    )
    for victim in victims:
        net.cores[victim].step(forged, leader)
        net.flush(victim)
    net.deliver_all()
    return slot


def assert_one_history(net: CoreNet) -> None:
    net.check_agreement()
    balances = {node: core.balances() for node, core in net.cores.items()}
    assert len({tuple(sorted(b.items())) for b in balances.values()}) == 1, balances
    assert all(b["J"] == 10 for b in balances.values()), "the forged transfer was executed"


def test_a_vote_that_names_another_value_is_not_counted() -> None:
    net, leader = elected(3)
    core = net.cores[leader]
    net.submit(leader, "A", [("A", "B", 2)])  # proposed, its Accepts not delivered
    slot = core.next_slot - 1
    # With the leader's own, this vote would be a majority of three.
    core.step(Accepted(ballot=core.ballot, slot=slot, digest=bytes(16)), core.peers[0])
    assert core.commit_slot < slot, "decided with a vote for another value"
    assert any("a value we did not propose" in a for a in core.take_ready().alarms)
    net.deliver_all()  # the true votes
    assert core.commit_slot == slot


def test_a_forged_accept_that_arrives_first_is_never_executed() -> None:
    net, leader = elected()
    victim = next(n for n in net.ids if n != leader)
    slot = forge_next_slot(net, leader, [victim])
    real = net.submit(leader, "A", [("A", "C", 2)])
    net.run(60)
    assert net.reply_for(leader, real) is not None
    assert any("proposed twice under ballot" in a for a in net.alarms)  # the victim
    assert any("a value we did not propose" in a for a in net.alarms)  # the leader
    assert any("their chain digest differs" in a for a in net.alarms)  # the victim again
    victim_core = net.cores[victim]
    assert victim_core.executed_slot == net.cores[leader].executed_slot >= slot
    assert victim_core.log[slot].batch == net.cores[leader].log[slot].batch  # fetched
    assert_one_history(net)


def test_a_slot_too_many_followers_hold_forged_is_proposed_again() -> None:
    net, leader = elected()
    events: list[str] = []
    for node in net.ids:
        net.watchers[node].append(lambda ready: events.extend(ready.events))
    before = net.cores[leader].ballot
    victims = [n for n in net.ids if n != leader][:3]  # leaves the leader one true vote
    forge_next_slot(net, leader, victims)
    real = net.submit(leader, "A", [("A", "C", 2)])
    net.run(100)
    assert any("cannot be decided under ballot" in e for e in events)
    assert net.leader() is not None and net.cores[net.leader()].ballot > before
    assert any(net.reply_for(node, real) is not None for node in net.ids)
    assert_one_history(net)


def test_on_a_tie_within_one_ballot_the_ballots_own_node_wins() -> None:
    """Promises that report two values for one slot under one ballot: one of
    them was forged, and only the ballot's own node proposed under it."""
    ballot = Ballot(2, 1)  # n1's
    true = LogEntry(slot=5, ballot=ballot, batch=())
    forged = LogEntry(slot=5, ballot=ballot, batch=(forged_command(),))
    nodes = ["n1", "n2", "n3"]

    def promise(entry: LogEntry) -> Promise:
        return Promise(ballot=Ballot(3, 2), checkpoint_slot=0, commit_slot=0, entries=(entry,))

    for order in (["n2", "n1", "n3"], ["n1", "n2", "n3"], ["n3", "n2", "n1"]):
        held = {"n1": true, "n2": forged, "n3": forged}
        promises = {node: promise(held[node]) for node in order}
        assert election.highest_ballot_values(promises, 0, nodes)[5] == true
    # A higher ballot still wins over the owner's entry.
    newer = LogEntry(slot=5, ballot=Ballot(3, 3), batch=(forged_command(),))
    promises = {"n1": promise(true), "n3": promise(newer)}
    assert election.highest_ballot_values(promises, 0, nodes)[5] == newer
