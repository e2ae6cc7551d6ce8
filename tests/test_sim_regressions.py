"""Seeds the simulator failed on, kept as permanent tests.

To turn a failing seed into a permanent test: while the bug is open, add it
to KNOWN_CORE_BUGS (the property, a pattern of the detail, what goes wrong) —
its seeds must keep failing that way, and the CI batch tolerates exactly those
failures; once fixed, move it to FIXED_CORE_BUGS, whose seeds must pass for
good. Where you can, also pin the bug with a short scenario that drives the
real core and storage by hand (below): a change to the core or to the
simulator's fault mix moves a bug to other seeds, a scenario stays put. The
console shows a seed's whole run: `ledgerpaxos-sim --seed N --replicas R --trace`.
"""

from __future__ import annotations

import random
import re

import attrs
import pytest

from ledgerpaxos.core import Core, Ledger
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    Ballot,
    ClientRequest,
    Command,
    CommandKind,
    Heartbeat,
    HeartbeatAck,
    InstallCheckpoint,
    LogEntry,
    PreVoteReply,
    Promise,
    Transfer,
)
from ledgerpaxos.sim.codec import CachingCodec
from ledgerpaxos.sim.disk import SimDisk, SimulatedCrash
from ledgerpaxos.sim.harness import SimResult, run_seed
from ledgerpaxos.storage import ReplicaStore
from tests.corenet import settings


@attrs.frozen
class KnownBug:
    property: str  # the violated property, a key of sim.checkers.PROPERTIES
    detail: str  # a regular expression the violation's detail matches
    seeds: tuple[int, ...]  # seeds (5 replicas) that fail with it today
    what: str

    def matches(self, result: SimResult) -> bool:
        return (
            not result.ok
            and result.property == self.property
            and re.search(self.detail, result.detail or "") is not None
        )


# Core bugs the simulator finds that are not fixed yet. The CI batch
# (test_sim.py) tolerates a failing seed only when one of these explains it.
KNOWN_CORE_BUGS: dict[str, KnownBug] = {}


@attrs.frozen
class FixedBug:
    seeds: tuple[int, ...]  # seeds (5 replicas) that failed before the fix
    failed_at: str  # the last core commit they failed on
    what: str


# Seeds that once failed and were fixed: they must pass for good.
FIXED_CORE_BUGS: dict[str, FixedBug] = {
    "resend-after-purge": FixedBug(
        seeds=(23, 26, 100, 104, 195, 236),
        failed_at="01c6bee",
        what=(
            "core-invariant: a new leader put the slots it re-proposed at or below its own "
            "commit point into `votes`; when Accepted replies for one were lost it stayed "
            "there, a checkpoint purged the slot from the log, and the next heartbeat's "
            "_resend_undecided() raised KeyError on self.log[slot]: the leader process died."
        ),
    ),
    "install-commit-before-snapshot": FixedBug(
        seeds=(3156,),
        failed_at="01c6bee",
        what=(
            "agreement: installing a checkpoint moved commit_slot to the snapshot's slot and "
            "take_ready() put a CommitRecord for it in `persist`, fsynced before the snapshot "
            "was written. A crash in between left the old snapshot, the WAL's stale, never "
            "chosen entries below that slot and the CommitRecord; on restart Core() executed "
            "the stale entries."
        ),
    ),
    "commit-beyond-a-lost-snapshot": FixedBug(
        seeds=(4471,),
        failed_at="0b3419b",
        what=(
            "agreement: a replica cut off at slot 1 accepted a value that was not chosen, "
            "caught up by installing checkpoint 70 and committed 77; a bit flip broke that "
            "snapshot and recovery started without it, with the WAL's commit point 77 and "
            "the stale acceptance of slot 1: it executed the unchosen value. A commit point "
            "above the snapshot that verifies no longer counts (tests/test_storage.py)."
        ),
    ),
    "late-registration-after-its-tombstone": FixedBug(
        seeds=(772,),
        failed_at="e0689a6",
        what=(
            "committed-kept: with one session kept for three clients, the tombstone of an "
            "evicted session was itself dropped (tombstones were bounded like sessions), and "
            "a registration re-sent late opened the session again at an old request number, "
            "so an old retry could have applied twice. Sessions are numbered by where their "
            "registration executed and every request names its own (as in TigerBeetle): "
            "no tombstones (tests/test_ledger_scale.py)."
        ),
    ),
    "read-in-flight-below-an-install": FixedBug(
        seeds=(468,),
        failed_at="1373d31 with the reordering of 07ecd69",
        what=(
            "liveness: a new leader re-proposed slots 31..41, one of them a read whose "
            "answer was lost, then caught up by installing checkpoint 40; the read stayed "
            "in `in_flight`, so every re-send of it was dropped as already on its way (a "
            "read is never answered from the client table), and its next slot was below "
            "the checkpoint. Installing drops the keys of the slots it covers and moves "
            "the next slot above it."
        ),
    ),
}
FIXED_SEEDS: tuple[int, ...] = tuple(
    sorted(seed for bug in FIXED_CORE_BUGS.values() for seed in bug.seeds)
)


def known_bug_of(result: SimResult) -> str | None:
    """The name of the known core bug that explains a failed run, if any."""
    for name, bug in KNOWN_CORE_BUGS.items():
        if bug.matches(result):
            return name
    return None


# ---------------------------------------------------------------- seeds


@pytest.mark.parametrize(
    ("name", "seed"),
    [(name, seed) for name, bug in KNOWN_CORE_BUGS.items() for seed in bug.seeds[:2]],
)
def test_known_bug_seeds_still_fail_the_same_way(name: str, seed: int) -> None:
    """While a bug is open its seeds fail, and for the reason on record; the
    day they pass, move them to FIXED_CORE_BUGS. (No case while none is open.)"""
    result = run_seed(seed)
    if result.ok:
        pytest.fail(f"seed {seed} now passes: was {name} fixed? move it to FIXED_CORE_BUGS")
    assert known_bug_of(result) == name, (seed, result.property, result.detail)


def test_a_known_bug_explains_only_failures_of_its_property_and_detail() -> None:
    """The matching that lets the CI batch tolerate an open bug's seeds, on a
    real failure (a planted bug's, so that it does not depend on an open one)."""
    failed = run_seed(3, 3, planted="quorum-one-short")  # agreement, see test_sim_planted
    assert not failed.ok and failed.property == "agreement"
    bug = KnownBug(property="agreement", detail=r"^slot \d+: ", seeds=(6,), what="planted")
    assert bug.matches(failed)
    assert not attrs.evolve(bug, property="replay").matches(failed)
    assert not attrs.evolve(bug, detail="no such detail").matches(failed)
    assert not bug.matches(run_seed(6, 3))  # a run that passes is never a known bug
    assert known_bug_of(failed) is None  # none is on record today


@pytest.mark.parametrize("seed", FIXED_SEEDS)
def test_fixed_seed_passes(seed: int) -> None:
    result = run_seed(seed)
    assert result.ok, f"{result.property}: {result.detail}; replay: {result.replay_command()}"


# ---------------------------------------------------------------- the same bugs, by hand
# Both scenarios failed on core 01c6bee (resend-after-purge: KeyError; the
# install: slots 1..5 executed) and pass since a7afe04.


def _command(request_no: int, client: str = "c1") -> Command:
    return Command(
        client_id=client,
        request_no=request_no,
        kind=CommandKind.transfer,
        transfers=(Transfer(sender="A", receiver="B", amount=1),),
    )


def _elect(
    core: Core, voters: tuple[str, ...], promises: dict[str, Promise] | None = None
) -> Ballot:
    """Time the core out and hand it pre-votes and promises from `voters`:
    empty, or what `promises` says for a voter (its ballot replaced)."""
    while core.role.value != "candidate":
        core.tick()
    ballot = core.candidate_ballot
    for voter in voters:
        core.step(PreVoteReply(ballot=ballot, granted=True), voter)
    ballot = core.candidate_ballot
    for voter in voters:
        promise = (promises or {}).get(voter)
        if promise is None:
            promise = Promise(ballot=ballot, checkpoint_slot=0, commit_slot=0, entries=())
        core.step(attrs.evolve(promise, ballot=ballot), voter)
    assert core.role.value == "leader"
    return ballot


def test_leader_resending_a_slot_that_a_checkpoint_purged() -> None:
    """n1 restarts with slots 1..12 committed (checkpoint 10) and is elected;
    it re-proposes 11 and 12. Only n2 answers for 11. Slots 13..20 commit, a
    majority reports checkpoint 20, slot 11 is purged — and the next heartbeat
    resends slot 11 from the log."""
    old = Ballot(1, 2)
    entries = {s: LogEntry(slot=s, ballot=old, batch=(_command(s),)) for s in range(1, 13)}
    core = Core(settings("n1"), random.Random(1), promised=old, entries=entries, commit_slot=12)
    assert core.checkpoint_slot == core.snapshot_writing == 10
    view = core.take_ready().snapshot_later
    assert view is not None
    core.snapshot_written(view.build())  # the host wrote the snapshot recovery took
    ballot = _elect(core, ("n2", "n3"))
    core.take_ready()
    core.step(Accepted(ballot=ballot, slot=11, digest=core.log[11].digest), "n2")
    for peer in ("n2", "n3"):
        core.step(Accepted(ballot=ballot, slot=12, digest=core.log[12].digest), peer)
    for request_no in range(13, 21):
        core.step(ClientRequest(command=_command(request_no, "c2")), None)
        core.take_ready()
        for peer in ("n2", "n3"):
            vote = Accepted(ballot=ballot, slot=request_no, digest=core.log[request_no].digest)
            core.step(vote, peer)
    assert core.commit_slot == 20 and core.checkpoint_slot == 20
    view = core.take_ready().snapshot_later
    assert view is not None and view.slot == core.snapshot_writing == 20
    core.snapshot_written(view.build())  # the host wrote it
    for peer in ("n2", "n3"):
        core.step(
            HeartbeatAck(
                ballot=ballot, executed_slot=20, checkpoint_slot=20, checkpoint_digest=b""
            ),
            peer,
        )
    assert core.purge_slot == 20
    for _ in range(core.s.heartbeat_ticks):
        core.tick()  # raised KeyError before the fix


def test_a_read_re_proposed_below_an_installed_checkpoint_is_proposed_again() -> None:
    """n1 is elected behind n2's checkpoint 2 and re-proposes slot 3, c5's read
    (its answer lost). It catches up by installing n2's newer checkpoint 5, so
    it never executes slot 3 itself. c5 sends the read again: a read is never
    a duplicate, and it must go into a slot once more, above the checkpoint
    (seed 468: the leader kept it "in flight" for good and never answered;
    and its next slot would have been 4, one the checkpoint decided)."""
    core = Core(settings("n1"), random.Random(1))
    read = Command(client_id="c5", request_no=5, kind=CommandKind.read, accounts=("A",))
    held = (LogEntry(slot=3, ballot=Ballot(1, 2), batch=(read,)),)
    behind = Promise(ballot=Ballot(1, 2), checkpoint_slot=2, commit_slot=2, entries=held)
    _elect(core, ("n2", "n3"), {"n2": behind})
    assert core.log[3].batch == (read,)
    core.take_ready()
    chosen = Ledger(core.s.accounts, core.s.initial_balance)
    install = InstallCheckpoint(
        snapshot=chosen.snapshot(5, chain=bytes(16)), nonce=core.catchup_nonce
    )
    core.step(install, "n2")
    assert core.executed_slot == 5 and 3 not in core.log
    core.take_ready()
    core.step(ClientRequest(command=read), None)
    ready = core.take_ready()
    proposed = [
        m for _, m in [*ready.send_early, *ready.send] if isinstance(m, Accept) and read in m.batch
    ]
    assert proposed and all(m.slot > 5 for m in proposed)  # above what is decided


def test_crash_between_the_wal_fsync_and_the_installed_snapshot() -> None:
    """A follower holds stale entries (accepted at an old ballot, never chosen)
    for slots 1..5, then installs a checkpoint of slot 10. Its Ready is carried
    out in the documented order and the process dies while writing the
    snapshot. After the restart it must not execute the stale entries."""
    disk = SimDisk()
    disk.makedirs("/data/n3")
    codec = CachingCodec()
    store, _ = ReplicaStore.open("/data/n3", codec=codec, fs=disk)
    core = Core(settings("n3"), random.Random(3))
    stale = Ballot(1, 1)
    for slot in range(1, 6):
        core.step(
            Accept(
                ballot=stale,
                slot=slot,
                batch=(_command(slot),),
                commit_slot=0,
                commit_chain=bytes(16),
                purge_slot=0,
            ),
            "n1",
        )
    ready = core.take_ready()
    store.append(ready.persist)
    store.sync()

    chosen = Ledger(core.s.accounts, core.s.initial_balance)  # ten no-op slots were chosen
    # n2 leads and has decided up to 10: n3 asks it (only an asked peer may install).
    core.step(
        Heartbeat(ballot=Ballot(2, 2), commit_slot=10, commit_chain=bytes(16), purge_slot=10), "n2"
    )
    install = InstallCheckpoint(
        snapshot=chosen.snapshot(10, chain=bytes(16)), nonce=core.catchup_nonce
    )
    core.step(install, "n2")
    assert core.executed_slot == 10
    ready = core.take_ready()
    store.append(ready.persist)
    store.sync()  # the CommitRecord(10) is durable now
    disk.arm_crash(1)  # ... and the process dies creating the snapshot file
    with pytest.raises(SimulatedCrash):
        for snapshot in ready.snapshots:
            store.write_snapshot(snapshot)
    disk.crash(random.Random(0), torn_probability=0.0, writeback_probability=0.0)

    store, recovered = ReplicaStore.open("/data/n3", codec=codec, fs=disk)
    restarted = Core(
        settings("n3"),
        random.Random(4),
        snapshot=recovered.snapshot,
        promised=recovered.promised,
        entries=recovered.entries,
        commit_slot=recovered.commit_slot,
    )
    executed = [e.slot for e in restarted.take_ready().executed]
    assert executed == [], f"executed never-chosen entries of ballot {stale} at slots {executed}"
