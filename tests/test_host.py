"""The one executor of the Ready contract and the waiters map (ledgerpaxos/host)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pytest

from ledgerpaxos.core import Ready
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    AcceptedMany,
    AcceptMany,
    AcceptRecord,
    Ballot,
    ClientReply,
    ClientRequest,
    CommitRecord,
    LogEntry,
    NewView,
    Outcome,
    PeerMessage,
    Promise,
    PromiseRecord,
    Snapshot,
    WalRecord,
)
from ledgerpaxos.host import ReadyExecutor, UnpersistedSend, Waiters
from ledgerpaxos.host.executor import DurableAudit
from ledgerpaxos.storage import Recovered

B = Ballot(2, 1)


class Recorder:
    """Storage and Transport at once: every call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def append(self, records: Sequence[WalRecord]) -> None:
        self.calls.append(("append", tuple(records)))

    def sync(self) -> None:
        self.calls.append(("sync", None))

    def write_snapshot(self, snapshot: Snapshot) -> None:
        self.calls.append(("snapshot", snapshot.slot))

    def compact(self, seed_records: Sequence[WalRecord]) -> bool:
        self.calls.append(("compact", len(seed_records)))
        return True

    def send(self, messages: Sequence[tuple[str, PeerMessage | ClientRequest]]) -> None:
        self.calls.append(("send", tuple(type(m).__name__ for _, m in messages)))

    def reply(self, waiters: Collection[str], reply: ClientReply) -> None:
        self.calls.append(("reply", tuple(sorted(waiters))))


def executor(recorder: Recorder) -> ReadyExecutor[str]:
    return ReadyExecutor(
        recorder,
        recorder,
        Waiters(keys_max=16, per_waiter_max=4),
        recovered=Recovered.empty(),
    )


def snapshot(slot: int) -> Snapshot:
    return Snapshot(slot=slot, balances=(("A", 1),), clients=(), digest=b"d", chain=bytes(16))


def entry(slot: int) -> LogEntry:
    return LogEntry(slot=slot, ballot=B, batch=())


def test_a_ready_is_carried_out_in_the_contract_order() -> None:
    recorder = Recorder()
    run = executor(recorder)
    run.waiters.wait(("c", 1), "client")
    promise = PromiseRecord(ballot=B)
    ready = Ready(
        send_early=[
            (
                "n2",
                Accept(
                    ballot=Ballot(1, 1),
                    slot=1,
                    batch=(),
                    commit_slot=0,
                    commit_chain=bytes(16),
                    purge_slot=0,
                ),
            )
        ],
        persist=[promise, AcceptRecord(entry=entry(1))],
        snapshots=[snapshot(1)],
        compact=(promise,),
        send=[
            ("n2", Accepted(ballot=B, slot=1, digest=bytes(16))),
            ("n3", Promise(ballot=B, checkpoint_slot=0, commit_slot=0, entries=())),
        ],
        replies=[ClientReply(client_id="c", request_no=1, outcome=Outcome(), leader=None)],
    )
    run.audit.promised = Ballot(1, 1)  # the early Accept's ballot is promised durably
    run.carry_out(ready)
    assert [name for name, _ in recorder.calls] == [
        "send",  # early: before anything is written
        "append",
        "sync",
        "snapshot",
        "compact",
        "send",
        "reply",
    ]
    assert recorder.calls[-1] == ("reply", ("client",))
    assert len(run.waiters) == 0


def test_the_commit_point_alone_is_written_after_the_replies_and_with_a_persist_before() -> None:
    recorder = Recorder()
    run = executor(recorder)
    run.waiters.wait(("c", 1), "client")
    commit = CommitRecord(commit_slot=1)
    reply = ClientReply(client_id="c", request_no=1, outcome=Outcome(), leader=None)
    run.carry_out(Ready(persist_lazy=[commit], replies=[reply]))  # a leader's decision
    assert recorder.calls == [("reply", ("client",)), ("append", (commit,))]
    recorder.calls.clear()
    accept = AcceptRecord(entry=entry(2))
    run.carry_out(Ready(persist=[accept], persist_lazy=[commit]))  # a follower's Accept
    assert recorder.calls == [("append", (accept, commit)), ("sync", None)]


def test_speaking_before_the_fsync_is_refused() -> None:
    run = executor(Recorder())
    ready = Ready(persist=[PromiseRecord(ballot=B)])
    assert run.begin(ready)
    with pytest.raises(AssertionError, match="durable"):
        run.finish(ready)


def test_a_promise_that_is_not_on_disk_never_leaves() -> None:
    recorder = Recorder()
    run = executor(recorder)
    promise = Promise(ballot=B, checkpoint_slot=0, commit_slot=0, entries=())
    with pytest.raises(UnpersistedSend, match="Promise"):
        run.send([("n2", promise)])
    with pytest.raises(UnpersistedSend, match="Accepted"):
        run.send([("n2", Accepted(ballot=B, slot=3, digest=bytes(16)))])
    assert recorder.calls == []  # nothing of it was sent
    run.carry_out(Ready(persist=[PromiseRecord(ballot=B), AcceptRecord(entry=entry(3))]))
    run.send([("n2", promise), ("n2", Accepted(ballot=B, slot=3, digest=bytes(16)))])
    assert recorder.calls[-1] == ("send", ("Promise", "Accepted"))


def test_a_muted_replica_sends_nothing_and_forgets_its_waiters() -> None:
    recorder = Recorder()
    run = executor(recorder)
    run.muted = True
    run.waiters.wait(("c", 1), "client")
    run.carry_out(
        Ready(
            send=[("n2", Accepted(ballot=Ballot.zero(), slot=0, digest=bytes(16)))],
            replies=[ClientReply(client_id="c", request_no=1, outcome=Outcome(), leader=None)],
        )
    )
    assert recorder.calls == [] and len(run.waiters) == 0


def test_waiters_are_bounded_per_waiter_and_in_all() -> None:
    waiters: Waiters[str] = Waiters(keys_max=3, per_waiter_max=2)
    waiters.wait(("a", 1), "x")
    waiters.wait(("a", 2), "x")
    waiters.wait(("a", 3), "x")  # x's oldest wait is forgotten
    assert waiters.take(("a", 1)) == set()
    assert waiters.take(("a", 2)) == {"x"}
    waiters.wait(("b", 1), "y")
    waiters.wait(("b", 1), "z")  # two waiters on one request
    waiters.wait(("c", 1), "z")
    waiters.wait(("d", 1), "w")  # four requests: the oldest, a3, is forgotten
    assert waiters.take(("a", 3)) == set()
    assert waiters.take(("b", 1)) == {"y", "z"}
    waiters.forget("z")
    assert waiters.take(("c", 1)) == set()
    assert waiters.take(("d", 1)) == {"w"}
    assert len(waiters) == 0


# ---------------------------------------------------------------- the audit on small histories


def test_the_audit_knows_what_each_fsync_made_durable() -> None:
    audit = DurableAudit(Recovered.empty())
    b2 = Ballot(3, 1)
    with pytest.raises(UnpersistedSend, match="Accept "):
        audit.check_send(
            "n2",
            Accept(ballot=B, slot=1, batch=(), commit_slot=0, commit_chain=bytes(16), purge_slot=0),
        )
    audit.synced([PromiseRecord(ballot=B)])
    audit.check_send(
        "n2",
        Accept(ballot=B, slot=1, batch=(), commit_slot=0, commit_chain=bytes(16), purge_slot=0),
    )
    with pytest.raises(UnpersistedSend, match="Promise"):
        audit.check_send("n2", Promise(ballot=b2, checkpoint_slot=0, commit_slot=0, entries=()))
    with pytest.raises(UnpersistedSend, match="NewView"):
        audit.check_send(
            "n2",
            NewView(
                ballot=B,
                entries=(entry(1), entry(2)),
                commit_slot=0,
                commit_chain=bytes(16),
                purge_slot=0,
            ),
        )
    audit.synced([AcceptRecord(entry=entry(1)), AcceptRecord(entry=entry(2))])
    audit.check_send(
        "n2",
        NewView(
            ballot=B,
            entries=(entry(1), entry(2)),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
    )
    # An acceptance at another ballot is another promise kept: not covered.
    with pytest.raises(UnpersistedSend, match="Accepted"):
        audit.check_send("n2", Accepted(ballot=b2, slot=1, digest=bytes(16)))
    # Decided on disk (a CommitRecord, or a snapshot): any Accepted for it is true.
    audit.synced([CommitRecord(commit_slot=5)])
    audit.check_send("n2", Accepted(ballot=b2, slot=5, digest=bytes(16)))
    audit.snapshot_written(snapshot(9))
    audit.check_send("n2", Accepted(ballot=b2, slot=9, digest=bytes(16)))
    with pytest.raises(UnpersistedSend):
        audit.check_send("n2", Accepted(ballot=b2, slot=10, digest=bytes(16)))


def test_the_audit_checks_each_vote_of_an_accepted_many_and_an_accept_manys_promise() -> None:
    audit = DurableAudit(Recovered.empty())
    many = AcceptMany(
        ballot=B, entries=(entry(1), entry(2)), commit_slot=0, commit_chain=bytes(16), purge_slot=0
    )
    with pytest.raises(UnpersistedSend, match="AcceptMany"):
        audit.check_send("n2", many)  # a proposal: not before the promise of its ballot
    audit.synced([PromiseRecord(ballot=B), AcceptRecord(entry=entry(1))])
    audit.check_send("n2", many)
    votes = AcceptedMany(ballot=B, votes=((1, bytes(16)), (2, bytes(16))))
    with pytest.raises(UnpersistedSend, match=r"AcceptedMany .* slot 2 "):
        audit.check_send("n1", votes)  # slot 2's acceptance is not on disk yet
    audit.synced([AcceptRecord(entry=entry(2))])
    audit.check_send("n1", votes)


def test_the_audit_starts_from_what_recovery_found_and_stays_bounded() -> None:
    recovered = Recovered(
        snapshot=None,
        promised=B,
        entries={3: entry(3)},
        commit_slot=0,
        torn_tail_cut=False,
    )
    audit = DurableAudit(recovered)
    audit.check_send("n2", Accepted(ballot=B, slot=3, digest=bytes(16)))
    for slot in range(4, 5000):
        audit.synced([AcceptRecord(entry=entry(slot)), CommitRecord(commit_slot=slot - 1)])
    assert len(audit.accepted) < 3000  # decided slots are pruned as it goes
    audit.check_send(
        "n2", Accepted(ballot=B, slot=4999, digest=bytes(16))
    )  # the undecided one is kept
