"""The leader sends an Accept at once only to the followers a majority needs
(core/fanout.py); the others get it with the next heartbeat, or as soon as a
slot waits too long."""

from __future__ import annotations

from ledgerpaxos import constants
from ledgerpaxos.core.messages import Accept, AcceptedMany, AcceptMany
from tests.corenet import CoreNet


def _elected(net: CoreNet) -> str:
    net.run_until(lambda: net.leader() is not None)
    leader = net.leader()
    assert leader is not None
    net.run(net.cores[leader].s.heartbeat_ticks + 1)  # the NewView's slots are out
    return leader


def _holding(net: CoreNet, slot: int) -> set[str]:
    return {n for n in net.ids if slot in net.cores[n].log}


def test_a_new_slot_goes_at_once_to_a_majority_and_to_the_others_with_the_heartbeat() -> None:
    net = CoreNet(5)
    leader = _elected(net)
    net.register(leader, "c", ticks=0)
    core = net.cores[leader]
    command = net.submit(leader, "c", [("A", "B", 1)])
    slot = core.next_slot - 1
    net.deliver_all()  # no tick passes: only the first round of messages
    assert net.reply_for(leader, command) is not None  # decided by a majority
    assert _holding(net, slot) == {leader, *core.fast} and len(core.fast) == 2
    net.run_until(lambda: _holding(net, slot) == set(net.ids), core.s.heartbeat_ticks + 1)
    net.check_agreement()


def test_every_follower_gets_it_at_once_with_accept_fanout_all() -> None:
    net = CoreNet(5, accepts_to_quorum=False)
    leader = _elected(net)
    net.register(leader, "c", ticks=0)
    net.submit(leader, "c", [("A", "B", 1)])
    net.deliver_all()
    assert _holding(net, net.cores[leader].next_slot - 1) == set(net.ids)


def test_a_fast_follower_that_stops_answering_holds_a_slot_up_only_for_a_moment() -> None:
    net = CoreNet(5, heartbeat_ticks=15)  # not what brings the others in
    leader = _elected(net)
    net.register(leader, "c", ticks=0)
    core = net.cores[leader]
    gone = sorted(core.fast)[0]
    net.crash(gone)
    command = net.submit(leader, "c", [("A", "B", 1)])
    waited = net.run_until(lambda: net.reply_for(leader, command) is not None, 10)
    assert waited <= constants.accept_stall_ticks + 1
    assert gone not in core.fast and len(core.fast) == 2  # whoever answered first
    command = net.submit(leader, "c", [("A", "B", 1)])
    net.deliver_all()
    assert net.reply_for(leader, command) is not None  # at once again
    net.check_agreement()


def test_the_follower_a_request_came_through_gets_its_slot_at_once() -> None:
    net = CoreNet(5)
    leader = _elected(net)
    core = net.cores[leader]
    lazy = next(n for n in net.ids if n != leader and n not in core.fast)
    net.register(lazy, "c", ticks=0)
    command = net.submit(lazy, "c", [("A", "B", 1)])
    net.deliver_all()  # the forward, the Accept, the votes
    assert core.next_slot - 1 in net.cores[lazy].log
    net.run(1)  # the commit point, announced to the followers that hold the slot
    assert net.reply_for(lazy, command) is not None
    net.check_agreement()


def _slots(message: Accept | AcceptMany) -> list[int]:
    if isinstance(message, Accept):
        return [message.slot]
    return [entry.slot for entry in message.entries]


def test_a_backlog_never_sends_a_follower_to_catch_up() -> None:
    net = CoreNet(5)
    leader = _elected(net)
    net.register(leader, "c", ticks=0)
    core = net.cores[leader]
    lazy = next(n for n in net.ids if n != leader and n not in core.fast)
    seen: list[Accept | AcceptMany] = []

    def watch(to: str, sender: str | None, message: object) -> bool:
        if to == lazy and isinstance(message, Accept | AcceptMany):
            seen.append(message)
        return False  # none is lost

    net.drop = watch
    for _ in range(6):
        net.submit(leader, "c", [("A", "B", 1)])
        net.deliver_all()
    assert not seen  # it waits for the heartbeat
    net.run_until(lambda: net.cores[lazy].executed_slot == core.commit_slot, 20)
    assert len({slot for m in seen for slot in _slots(m)}) >= 6  # the backlog, with the heartbeat
    assert isinstance(seen[0], AcceptMany)  # in one message
    # Each names a commit point it holds once the slots before it came (links
    # keep order; this net does not, so that is all it can check).
    assert all(m.commit_slot <= _slots(m)[-1] for m in seen), [
        (_slots(m), m.commit_slot) for m in seen
    ]
    net.check_agreement()


def test_the_lazy_followers_one_vote_for_their_backlog_decides_a_slot() -> None:
    net = CoreNet(5)
    leader = _elected(net)
    net.register(leader, "c", ticks=0)
    core = net.cores[leader]
    for _ in range(5):
        net.submit(leader, "c", [("A", "B", 1)])
        net.deliver_all()  # decided by the fast followers alone
    lazy = [n for n in net.ids if n != leader and n not in core.fast]
    votes: list[AcceptedMany] = []

    def watch(to: str, sender: str | None, message: object) -> bool:
        if isinstance(message, AcceptedMany):
            votes.append(message)
        return False

    net.drop = watch
    for fast in sorted(core.fast):
        net.crash(fast)
    command = net.submit(leader, "c", [("A", "B", 1)])
    slot = core.next_slot - 1
    net.run_until(lambda: net.reply_for(leader, command) is not None, 10)
    # Decided by the leader and the two lazy followers, each of which voted
    # for its whole backlog at once.
    assert {m.votes[-1][0] for m in votes} == {slot} and len(votes) == len(lazy)
    assert all(len(m.votes) >= 6 for m in votes)
    assert core.fast == frozenset(lazy)
    net.check_agreement()
