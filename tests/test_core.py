"""The pure protocol core, driven by a deterministic in-test network (no I/O, no clock)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ledgerpaxos.core import Core, Ledger, Ready
from ledgerpaxos.core import ledger as ledger_rules
from ledgerpaxos.core.messages import (
    Accept,
    AcceptRecord,
    Ballot,
    ClientRequest,
    Command,
    CommandKind,
    Heartbeat,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    PromiseRecord,
    Transfer,
)
from tests.corenet import CLIENT, CoreNet, settings

ELECTION_TICKS_MAX = 80


def elected(net: CoreNet) -> str:
    net.run_until(lambda: net.leader() is not None)
    leader = net.leader()
    assert leader is not None
    return leader


def test_a_leader_is_elected_and_all_follow_it() -> None:
    net = CoreNet()
    leader = elected(net)
    net.run(10)
    for node in net.ids:
        assert net.cores[node].leader == leader
    assert net.cores[leader].promised == net.cores[leader].ballot


def test_transfer_commits_and_executes_on_every_replica() -> None:
    net = CoreNet()
    leader = elected(net)
    command = net.submit(leader, "A", [("A", "B", 3)])
    net.run(20)
    reply = net.reply_for(leader, command)
    assert reply is not None and reply.outcome.ok
    for node in net.ids:
        assert net.cores[node].balances()["A"] == 7
        assert net.cores[node].balances()["B"] == 13
    net.check_agreement()


def test_follower_forwards_to_leader_and_replies_itself() -> None:
    net = CoreNet()
    leader = elected(net)
    follower = next(n for n in net.ids if n != leader)
    command = net.submit(follower, "C", [("C", "D", 1)])
    net.run(20)
    reply = net.reply_for(follower, command)
    assert reply is not None and reply.outcome.ok and reply.leader == leader


def test_accept_is_persisted_in_the_same_ready_that_sends_accepted() -> None:
    core = Core(settings("n2"), random.Random(1))
    accept = Accept(
        ballot=Ballot(1, 1), slot=1, batch=(), commit_slot=0, commit_chain=bytes(16), purge_slot=0
    )
    core.step(accept, "n1")
    ready = core.take_ready()
    assert PromiseRecord(ballot=Ballot(1, 1)) in ready.persist
    assert any(isinstance(r, AcceptRecord) and r.entry.slot == 1 for r in ready.persist)
    assert [type(m).__name__ for _, m in ready.send] == ["Accepted"]


def test_promise_persists_the_ballot_and_carries_accepted_entries() -> None:
    core = Core(settings("n2"), random.Random(1))
    core.step(
        Accept(
            ballot=Ballot(1, 1),
            slot=1,
            batch=(),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        "n1",
    )
    core.take_ready()
    core.step(Prepare(ballot=Ballot(2, 3)), "n3")
    ready = core.take_ready()
    assert ready.persist == [PromiseRecord(ballot=Ballot(2, 3))]
    ((to, promise),) = ready.send
    assert to == "n3" and isinstance(promise, Promise)
    assert [e.slot for e in promise.entries] == [1]


def test_lower_ballot_is_refused_with_a_nack() -> None:
    core = Core(settings("n2"), random.Random(1))
    core.step(Prepare(ballot=Ballot(5, 3)), "n3")
    core.take_ready()
    core.step(
        Heartbeat(ballot=Ballot(4, 1), commit_slot=0, commit_chain=bytes(16), purge_slot=0), "n1"
    )
    ((to, nack),) = core.take_ready().send
    assert to == "n1" and nack == Nack(ballot=Ballot(4, 1), promised=Ballot(5, 3))


def test_pre_vote_is_refused_while_the_leader_is_heard() -> None:
    core = Core(settings("n2"), random.Random(1))
    core.step(
        Heartbeat(ballot=Ballot(1, 1), commit_slot=0, commit_chain=bytes(16), purge_slot=0), "n1"
    )
    core.take_ready()
    core.step(PreVote(ballot=Ballot(2, 3)), "n3")
    ((_, reply),) = core.take_ready().send
    assert reply == PreVoteReply(ballot=Ballot(2, 3), granted=False)
    for _ in range(core.s.election_timeout_ticks_min):
        core.tick()
    core.take_ready()
    core.step(PreVote(ballot=Ballot(2, 3)), "n3")
    replies = [m for _, m in core.take_ready().send if isinstance(m, PreVoteReply)]
    assert replies == [PreVoteReply(ballot=Ballot(2, 3), granted=True)]


def test_commits_with_three_of_five_and_not_with_two() -> None:
    net = CoreNet()
    leader = elected(net)
    others = [n for n in net.ids if n != leader]
    net.crash(others[0])
    net.crash(others[1])
    net.register(leader, "B")
    c1 = net.submit(leader, "A", [("A", "B", 1)])
    net.run(20)
    assert net.reply_for(leader, c1) is not None
    net.crash(others[2])
    c2 = net.submit(leader, "B", [("B", "C", 1)])
    net.run(300)
    assert all(net.reply_for(n, c2) is None for n in net.alive)
    net.alive.add(others[2])  # a third replica comes back
    net.run_until(lambda: any(net.reply_for(n, c2) is not None for n in net.alive), 2000)
    net.check_agreement()


def test_killed_leader_is_replaced_and_nothing_committed_is_lost() -> None:
    net = CoreNet()
    leader = elected(net)
    commands = [net.submit(leader, c, [(c, "J", 1)]) for c in "ABCD"]
    net.run(20)
    assert all(net.reply_for(leader, c) for c in commands)
    net.crash(leader)
    ticks = net.run_until(lambda: net.leader() not in (None, leader), 1000)
    assert ticks <= 3 * ELECTION_TICKS_MAX
    new = net.leader()
    net.run(10)
    assert net.cores[new].balances()["J"] == 14
    after = net.submit(new, "E", [("E", "J", 1)])
    net.run(20)
    assert net.reply_for(new, after) is not None
    assert net.cores[new].balances()["J"] == 15
    net.check_agreement()


def test_uncommitted_value_accepted_by_a_majority_survives_a_leader_change() -> None:
    net = CoreNet()
    leader = elected(net)
    net.register(leader, "A")
    net.submit(leader, "A", [("A", "B", 5)])
    # Let the Accepts reach followers but not the Accepted replies the leader.
    net.cores[leader].take_ready()  # already flushed by submit; nothing more
    sends = list(net.queue)
    net.queue.clear()
    for to, sender, message in sends:
        if isinstance(message, Accept):
            net.cores[to].step(message, sender)
            net.cores[to].take_ready()  # its Accepted is lost
    net.crash(leader)
    net.run_until(lambda: net.leader() not in (None, leader), 1000)
    net.run(30)
    for node in net.alive:
        assert net.cores[node].balances()["A"] == 5
    net.check_agreement()


def test_same_request_twice_also_across_a_leader_change_applies_once() -> None:
    net = CoreNet()
    leader = elected(net)
    command = net.submit(leader, "A", [("A", "B", 2)])
    net.run(20)
    net.request(leader, command)
    net.run(20)
    net.crash(leader)
    new = elected(net)
    net.request(new, command)
    net.run(20)
    assert net.reply_for(new, command) is not None
    for node in net.alive:
        assert net.cores[node].balances()["A"] == 8


def registered(ledger: Ledger, *clients: str) -> Ledger:
    for client in clients:
        ledger.execute(Command(client_id=client, request_no=0, kind=CommandKind.register))
    return ledger


def test_duplicate_in_two_slots_executes_once() -> None:
    ledger = registered(Ledger("AB", 10), "A")
    command = Command(
        client_id="A",
        request_no=7,
        kind=CommandKind.transfer,
        transfers=(Transfer(sender="A", receiver="B", amount=4),),
    )
    first = ledger.execute(command)
    assert first is not None and first.ok
    assert ledger.execute(command) is None
    assert ledger.all_balances() == {"A": 6, "B": 14}
    assert ledger.stored_outcome("A", 7) == first


@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
        max_size=50,
    )
)
def test_ballots_order_as_their_round_then_node(pairs: list[tuple[int, int, int, int]]) -> None:
    for r1, n1, r2, n2 in pairs:
        a, b = Ballot(r1, n1), Ballot(r2, n2)
        assert (a < b, a <= b, a > b, a >= b, a == b) == (
            (r1, n1) < (r2, n2),
            (r1, n1) <= (r2, n2),
            (r1, n1) > (r2, n2),
            (r1, n1) >= (r2, n2),
            (r1, n1) == (r2, n2),
        )


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(
                st.just("transfer"),
                st.integers(0, 7),
                st.integers(0, 7),
                st.integers(-1, 12),
                st.sampled_from(["c1", "c2", "c3"]),
            ),
            st.tuples(st.just("read"), st.sampled_from(["c1", "c2", "c3"])),
            st.tuples(st.just("register"), st.sampled_from(["c1", "c2", "c3"])),
            st.tuples(
                st.just("open"),
                st.sampled_from(["A", "X", "Y", "c 1"]),
                st.sampled_from(["X", "Y", "c1"]),
            ),
            st.just(("digest",)),
            st.just(("install",)),
        ),
        max_size=40,
    )
)
def test_the_ledger_digest_kept_between_checkpoints_is_the_full_digest(steps: list[tuple]) -> None:
    """Ledger.digest() rehashes only what changed since its last call; it must
    always equal state_digest() computed from every row of a snapshot."""
    accounts = "ABCDEF"
    names = [*accounts, "X", "Y"]  # X and Y exist once opened
    ledger = Ledger(accounts, 10, sessions_max=2)  # three clients: registrations evict
    for request_no, step in enumerate(steps, start=1):
        if step[0] == "transfer":
            _, s, r, amount, client = step
            ledger.execute(
                Command(
                    client_id=client,
                    request_no=request_no,
                    kind=CommandKind.transfer,
                    transfers=(Transfer(sender=names[s], receiver=names[r], amount=amount),),
                )
            )
        elif step[0] in ("read", "register"):
            kind = CommandKind.read if step[0] == "read" else CommandKind.register
            ledger.execute(Command(client_id=step[1], request_no=request_no, kind=kind))
        elif step[0] == "open":
            _, name, client = step
            ledger.execute(
                Command(
                    client_id=client,
                    request_no=request_no,
                    kind=CommandKind.open,
                    accounts=(name,),
                )
            )
        elif step[0] == "install":
            other = Ledger(accounts, 10, sessions_max=2)
            other.install(ledger.snapshot(request_no, chain=bytes(16)))
            ledger = other
        if step[0] == "digest" or step is steps[-1]:  # changes pile up in between
            snapshot = ledger.snapshot(request_no, chain=bytes(16))  # (request_no: any slot)
            assert snapshot.digest == ledger_rules.state_digest(snapshot, 10)
            assert ledger.digest() == snapshot.digest


@pytest.mark.parametrize(
    ("transfer", "reason"),
    [
        (("A", "B", 0), ledger_rules.REASON_AMOUNT),
        (("A", "B", -3), ledger_rules.REASON_AMOUNT),
        (("Z", "B", 1), ledger_rules.REASON_UNKNOWN_SENDER),
        (("A", "Z", 1), ledger_rules.REASON_UNKNOWN_RECEIVER),
        (("A", "A", 1), ledger_rules.REASON_SAME_ACCOUNT),
        (("A", "B", 11), ledger_rules.REASON_INSUFFICIENT),
    ],
)
def test_each_ledger_rule_rejects_with_its_reason(
    transfer: tuple[str, str, int], reason: str
) -> None:
    net = CoreNet(n=3)
    leader = elected(net)
    command = net.submit(leader, "A", [transfer])
    net.run(20)
    reply = net.reply_for(leader, command)
    assert reply is not None
    assert not reply.outcome.ok and reply.outcome.reason == reason
    assert net.cores[leader].balances()["A"] == 10


def test_read_goes_through_the_log_and_sees_earlier_writes() -> None:
    net = CoreNet(n=3)
    leader = elected(net)
    net.submit(leader, "A", [("A", "B", 4)])
    read = net.submit(leader, "B", kind=CommandKind.read)
    net.run(20)
    reply = net.reply_for(leader, read)
    assert reply is not None and dict(reply.outcome.balances)["B"] == 14


def test_dead_replica_catches_up_by_installing_a_checkpoint() -> None:
    net = CoreNet()
    leader = elected(net)
    lagger = next(n for n in net.ids if n != leader)
    net.crash(lagger)
    for i in range(25):
        net.submit(leader, "A", [("A", "B", 1)], request_no=1000 + i)
        net.run(3)
    net.run(20)
    assert net.cores[leader].executed_slot >= 25
    assert net.cores[leader].purge_slot >= 20
    net.alive.add(lagger)
    net.run_until(lambda: net.cores[lagger].executed_slot == net.cores[leader].executed_slot, 1000)
    assert net.cores[lagger].balances() == net.cores[leader].balances()
    assert net.cores[lagger].checkpoint_slot >= 20
    assert net.storages[lagger].snapshot is not None and net.storages[lagger].snapshot.slot >= 20
    assert not net.alarms


def test_cut_off_replica_does_not_depose_a_healthy_leader() -> None:
    net = CoreNet()
    leader = elected(net)
    ballot = net.cores[leader].ballot
    loner = next(n for n in net.ids if n != leader)
    net.crash(loner)  # cut off: it still ticks, and its messages go nowhere
    for _ in range(600):
        net.cores[loner].tick()
        net.cores[loner].take_ready()
        net.run(1)
    net.alive.add(loner)
    net.run(400)
    assert net.leader() == leader and net.cores[leader].ballot == ballot
    assert net.cores[loner].leader == leader


def test_all_crash_and_restart_from_disk_keeps_every_committed_transfer() -> None:
    net = CoreNet()
    leader = elected(net)
    for i in range(14):
        net.submit(leader, "A", [("A", "C", 1)], request_no=100 + i)
        net.run(2)
    net.run(20)
    before = net.cores[leader].balances()
    assert before["A"] == 0 and before["C"] == 20  # four were refused: no overdraft
    for node in net.ids:
        net.crash(node)
    for node in net.ids:
        net.restart(node)
    net.run_until(lambda: net.leader() is not None, 2000)
    net.run(30)
    for node in net.ids:
        assert net.cores[node].balances() == before
    net.check_agreement()


def test_leader_isolated_from_majority_steps_down() -> None:
    net = CoreNet()
    leader = elected(net)
    net.crash(leader)
    for _ in range(3 * ELECTION_TICKS_MAX):
        net.cores[leader].tick()
        net.cores[leader].take_ready()
    assert net.cores[leader].role.value != "leader"


@pytest.mark.parametrize(("loss", "duplication"), [(0.0, 0.0), (0.1, 0.1), (0.25, 0.3)])
def test_many_seeds_with_random_crashes_agree(loss: float, duplication: float) -> None:
    executed_total = 0
    for seed in range(12):
        net = CoreNet(seed=seed, loss=loss, duplication=duplication)
        rng = random.Random(seed)
        for step in range(150):
            leader = net.leader()
            if leader is not None:
                client = rng.choice("ABCDEFGHIJ")
                net.submit(leader, client, [(client, rng.choice("ABCDEFGHIJ"), rng.randint(1, 4))])
            if step % 25 == 7:
                victim = rng.choice(net.ids)
                if victim in net.alive and len(net.alive) > 3:
                    net.crash(victim)
                else:
                    dead = sorted(set(net.ids) - net.alive)
                    if dead:
                        net.restart(dead[0])
            net.run(5)
        for node in set(net.ids) - net.alive:
            net.restart(node)
        net.run(600)
        net.check_agreement()
        tops = {net.cores[n].executed_slot for n in net.ids}
        assert len(tops) == 1, (seed, tops)
        balances = [net.cores[n].balances() for n in net.ids]
        assert all(b == balances[0] for b in balances)
        assert sum(balances[0].values()) == 100
        assert not net.alarms
        executed_total += tops.pop()
    assert executed_total >= 12 * 40  # the runs did real work


def test_while_a_slot_is_in_flight_requests_wait_for_a_fuller_batch() -> None:
    """Nothing in flight: a request goes out at once. A slot in flight: the
    queue waits for half a slot (here 4 of 8 commands), or for the decision."""
    net = CoreNet(batch_commands_max=8)
    leader = elected(net)
    core = net.cores[leader]
    net.register(leader, "c1", "c2", "c3", "c4", "c5", "c6")
    first_slot = core.next_slot
    net.submit(leader, "c1", [("A", "B", 1)])
    assert core.next_slot == first_slot + 1 and core.votes  # proposed at once, in flight
    for client in ("c2", "c3", "c4"):
        net.submit(leader, client, [("A", "B", 1)])
    assert core.next_slot == first_slot + 1 and len(core.pending) == 3  # waiting
    net.submit(leader, "c5", [("A", "B", 1)])
    assert core.next_slot == first_slot + 2 and not core.pending  # half a slot: pipelined
    net.submit(leader, "c6", [("A", "B", 1)])
    assert len(core.pending) == 1
    net.run(5)  # the slots in flight are decided; c6 follows in a slot of its own
    batches = {slot: [c.client_id for c in batch] for slot, batch in net.executed[leader]}
    assert batches[first_slot] == ["c1"]
    assert batches[first_slot + 1] == ["c2", "c3", "c4", "c5"]
    assert batches[first_slot + 2] == ["c6"]
    assert not core.pending and core.pending_transfers == 0
    net.check_agreement()


def test_only_some_checkpoints_become_snapshot_files_and_purges_wait_for_them() -> None:
    """Every checkpoint gets a digest; a snapshot file only every
    snapshot_interval slots, and the log is purged no further than the newest file."""
    net = CoreNet(snapshot_interval=30)
    leader = elected(net)
    follower = next(n for n in net.ids if n != leader)
    taken: list[int] = []
    written: list[int] = []

    def watch(ready: Ready) -> None:
        taken.extend(s.slot for s in ready.checkpoints)
        if ready.snapshot_later is not None:
            written.append(ready.snapshot_later.slot)

    net.watchers[follower].append(watch)
    for _ in range(25):  # one slot each, after the slot that registers "c"
        net.submit(leader, "c", [("A", "B", 1)])
        net.run(3)
    net.run(20)
    core = net.cores[follower]
    assert core.executed_slot >= 25 and core.checkpoint_slot == 20
    assert taken == [10, 20] and written == []
    assert core.snapshot_slot == core.purge_slot == 0
    assert min(core.log) == 1  # nothing purged: no snapshot file holds it yet
    for _ in range(25, 40):
        net.submit(leader, "c", [("A", "B", 1)])
        net.run(3)
    net.run(20)
    assert taken[:3] == [10, 20, 30] and written[:1] == [30]
    assert core.snapshot_slot >= 30 and core.purge_slot == 30
    assert all(slot > 30 for slot in core.log)
    assert (
        net.storages[follower].snapshot is not None and net.storages[follower].snapshot.slot == 30
    )
    net.check_agreement()


def test_a_snapshot_written_in_the_background_holds_up_nothing_and_purges_only_once_durable() -> (
    None
):
    """Ready.snapshot_later: the replica goes on while the host writes it; the
    log is purged up to it only once the host says it is durable, and a
    process that ends before that loses nothing it needs."""
    # Every follower is sent every slot at once, so that this one executes
    # slot by slot and meets the checkpoint at 10 first (core/fanout.py).
    net = CoreNet(snapshot_interval=10, accepts_to_quorum=False)
    leader = elected(net)
    follower = next(n for n in net.ids if n != leader)
    held = net.write_snapshot
    net.write_snapshot = lambda node: None if node == follower else held(node)  # type: ignore[method-assign]
    for _ in range(30):
        net.submit(leader, "c", [("A", "B", 1)])
        net.run(3)
    net.run(20)
    core = net.cores[follower]
    assert core.executed_slot >= 30 and core.checkpoint_slot >= 30  # it went on
    assert net.snapshots_due[follower].slot == core.snapshot_writing == 10  # one at a time
    assert core.snapshot_slot == core.purge_slot == 0 and min(core.log) == 1
    assert net.storages[follower].snapshot is None
    net.crash(follower)  # the write never happens: the WAL still holds every slot
    net.restart(follower)
    assert net.cores[follower].executed_slot >= 30
    net.write_snapshot = held  # type: ignore[method-assign]
    for _ in range(10):
        net.submit(leader, "c", [("A", "B", 1)])
        net.run(3)
    net.run(30)
    core = net.cores[follower]
    stored = net.storages[follower].snapshot
    assert stored is not None and core.snapshot_slot == stored.slot >= 30
    assert 0 < core.purge_slot <= core.snapshot_slot and core.snapshot_writing in (0, 40)
    net.check_agreement()


def test_many_transfers_make_a_snapshot_file_before_snapshot_interval() -> None:
    net = CoreNet(snapshot_interval=1000, snapshot_transfers_min=25)
    leader = elected(net)
    for _ in range(12):
        net.submit(leader, "c", [("A", "B", 1), ("B", "C", 1), ("C", "A", 1)])
        net.run(3)
    net.run(20)
    # 3 transfers a slot: the checkpoint at slot 10 has 27 >= 25 behind it (slot 1 registers).
    assert all(net.cores[n].snapshot_slot == 10 for n in net.ids)
    assert all(
        net.storages[n].snapshot is not None and net.storages[n].snapshot.slot == 10
        for n in net.ids
    )


def test_a_restart_replays_the_wal_past_checkpoints_that_were_never_written() -> None:
    net = CoreNet(snapshot_interval=30)
    leader = elected(net)
    follower = next(n for n in net.ids if n != leader)
    for _ in range(45):
        net.submit(leader, "c", [("A", "B", 1), ("B", "C", 2)])
        net.run(3)
    net.run(20)
    disk = net.storages[follower]
    before = net.cores[follower]
    assert before.checkpoint_slot == 40 and before.snapshot_slot == 30
    assert disk.snapshot is not None and disk.snapshot.slot == 30
    net.crash(follower)
    net.restart(follower)
    core = net.cores[follower]
    assert core.executed_slot == before.executed_slot
    assert core.balances() == before.balances()
    assert core.checkpoint_slot == 40 and core.snapshot_slot == 30  # 40 taken again, in memory
    assert core.checkpoint_digests[40] == before.checkpoint_digests[40]
    net.run(20)
    net.check_agreement()
    assert not net.alarms


def test_a_restart_from_an_uncompacted_wal_skips_what_the_snapshot_covers() -> None:
    """A store may leave the WAL alone at a purge (below compact_size_min):
    recovery then hands the core old entries the newest snapshot covers."""
    net = CoreNet()
    leader = elected(net)
    follower = next(n for n in net.ids if n != leader)
    net.storages[follower].compacts = False
    for i in range(25):
        net.submit(leader, f"c{i}", [("A", "B", 1), ("B", "C", 1)])
        net.run(5)
    net.run(20)
    disk = net.storages[follower]
    assert disk.snapshot is not None and disk.snapshot.slot >= 20
    assert min(disk.entries) <= disk.snapshot.slot  # old entries still in the WAL
    before = net.cores[follower].balances()
    net.crash(follower)
    net.restart(follower)
    core = net.cores[follower]
    assert all(slot > disk.snapshot.slot for slot in core.log)
    assert core.executed_slot == core.commit_slot >= disk.snapshot.slot
    assert core.balances() == before
    net.run(20)
    net.check_agreement()


def test_a_retry_meeting_its_first_copy_in_a_recovered_slot_applies_once() -> None:
    """The first copy is accepted by followers but not committed when the
    leader dies; the client's retry reaches the new leader the moment it is
    elected, while the slot it recovered from the promises is still open:
    one slot holds the command, it applies once, and the retry is answered."""
    net = CoreNet()
    leader = elected(net)
    command = net.submit(leader, "A", [("A", "B", 3)])
    sends, net.queue = list(net.queue), []
    for to, sender, message in sends:
        if isinstance(message, Accept):
            net.cores[to].step(message, sender)
            net.cores[to].take_ready()  # accepted, but its Accepted is lost
    net.crash(leader)
    retried_at: list[str] = []

    def retry_when_elected(node: str) -> Callable[[Ready], None]:
        def watch(ready: Ready) -> None:
            if not retried_at and any(e.startswith("leader for ballot") for e in ready.events):
                retried_at.append(node)
                net.executors[node].waiters.wait(command.key, CLIENT)
                net.cores[node].step(ClientRequest(command=command), None)

        return watch

    for node in net.alive:
        net.watchers[node].append(retry_when_elected(node))
    new = elected(net)
    net.run(30)
    assert retried_at == [new]
    slots = {slot for node in net.alive for slot, batch in net.executed[node] if command in batch}
    assert len(slots) == 1, f"{command.key} in slots {sorted(slots)}"
    for node in net.alive:
        assert net.cores[node].balances()["A"] == 7
    reply = net.reply_for(new, command)
    assert reply is not None and reply.outcome.ok
