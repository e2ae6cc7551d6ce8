"""The simulator's disk: crash semantics, and the real storage code running on it."""

from __future__ import annotations

import errno
import random

import attrs
import pytest

from ledgerpaxos.core.ledger import state_digest
from ledgerpaxos.core.messages import (
    AcceptRecord,
    Ballot,
    ClientEntry,
    Command,
    CommandKind,
    CommitRecord,
    LogEntry,
    Outcome,
    PromiseRecord,
    Snapshot,
    Transfer,
    TransferResult,
    WalRecord,
)
from ledgerpaxos.sim.codec import CachingCodec
from ledgerpaxos.sim.disk import SimDisk, SimulatedCrash
from ledgerpaxos.storage import Recovered, ReplicaStore, StorageError

DIRECTORY = "/data/n1"


def crash(disk: SimDisk, *, torn: float = 0.0, writeback: float = 0.0, seed: int = 1) -> None:
    disk.crash(random.Random(seed), torn_probability=torn, writeback_probability=writeback)


def fresh_disk() -> SimDisk:
    disk = SimDisk()
    disk.makedirs(DIRECTORY)
    return disk


def records(first_slot: int, count: int) -> list[WalRecord]:
    out: list[WalRecord] = []
    for slot in range(first_slot, first_slot + count):
        command = Command(
            client_id="c1",
            request_no=slot,
            kind=CommandKind.transfer,
            transfers=(Transfer(sender="A", receiver="B", amount=1),),
        )
        out.append(AcceptRecord(entry=LogEntry(slot=slot, ballot=Ballot(1, 1), batch=(command,))))
    return out


def snapshot_at(slot: int) -> Snapshot:
    balances = (("A", 5), ("B", 15))
    clients = (
        ClientEntry(
            client_id="c1", request_no=slot, outcome=Outcome(results=(TransferResult(ok=True),))
        ),
    )
    taken = Snapshot(slot=slot, balances=balances, clients=clients, digest=b"", chain=bytes(16))
    return attrs.evolve(taken, digest=state_digest(taken, 10))


def open_store(disk: SimDisk) -> tuple[ReplicaStore, Recovered]:
    return ReplicaStore.open(DIRECTORY, codec=CachingCodec(), fs=disk, compact_size_min=0)


# ---------------------------------------------------------------- the disk alone


def test_fsynced_data_survives_and_unsynced_data_is_lost() -> None:
    disk = fresh_disk()
    file = disk.create(f"{DIRECTORY}/f")
    file.write(b"durable")
    file.fsync()
    disk.fsync_directory(DIRECTORY)
    file.write(b" and not")
    assert disk.read(f"{DIRECTORY}/f") == b"durable and not"
    crash(disk)
    assert disk.read(f"{DIRECTORY}/f") == b"durable"


def test_a_torn_write_keeps_a_prefix_of_it_its_last_bytes_maybe_garbage() -> None:
    payload = bytes(range(100))  # no two positions alike: a prefix is recognisable
    exact, garbled = 0, 0
    for seed in range(40):
        disk = fresh_disk()
        file = disk.create(f"{DIRECTORY}/f")
        file.write(b"durable")
        file.fsync()
        disk.fsync_directory(DIRECTORY)
        file.write(payload)
        crash(disk, torn=1.0, seed=seed)
        data = disk.read(f"{DIRECTORY}/f")
        assert data.startswith(b"durable"), (seed, data)  # what was fsynced stays
        torn = data[len(b"durable") :]
        assert 0 < len(torn) < len(payload), (seed, torn)
        # A half-written sector may hold up to 16 bytes of garbage at the end.
        intact = len(torn) - 16
        assert torn[: max(0, intact)] == payload[: max(0, intact)], (seed, torn)
        if torn == payload[: len(torn)]:
            exact += 1
        else:
            garbled += 1
    assert exact and garbled, (exact, garbled)  # both kinds of tear happen


def test_a_rename_without_directory_fsync_is_undone() -> None:
    disk = fresh_disk()
    file = disk.create(f"{DIRECTORY}/a.tmp")
    file.write(b"content")
    file.fsync()
    disk.rename(f"{DIRECTORY}/a.tmp", f"{DIRECTORY}/a")
    assert disk.listdir(DIRECTORY) == ["a"]
    crash(disk)
    assert disk.listdir(DIRECTORY) == []  # the creation itself was never made durable


def test_a_removal_without_directory_fsync_is_undone() -> None:
    disk = fresh_disk()
    file = disk.create(f"{DIRECTORY}/a")
    file.write(b"content")
    file.fsync()
    disk.fsync_directory(DIRECTORY)
    disk.remove(f"{DIRECTORY}/a")
    crash(disk)
    assert disk.read(f"{DIRECTORY}/a") == b"content"


def test_an_armed_crash_fires_at_the_given_operation() -> None:
    disk = fresh_disk()
    file = disk.create(f"{DIRECTORY}/f")
    disk.arm_crash(2)
    file.write(b"one")  # operation 1
    with pytest.raises(SimulatedCrash):
        file.fsync()  # operation 2: never happens
    crash(disk)
    assert disk.listdir(DIRECTORY) == []


def test_handles_of_a_crashed_process_are_dead() -> None:
    disk = fresh_disk()
    file = disk.create(f"{DIRECTORY}/f")
    crash(disk)
    with pytest.raises(OSError):
        file.write(b"late")


# ---------------------------------------------------------------- real storage on it


def test_store_round_trip_on_the_sim_disk() -> None:
    disk = fresh_disk()
    store, recovered = open_store(disk)
    store.append([PromiseRecord(ballot=Ballot(2, 1)), *records(1, 3), CommitRecord(commit_slot=2)])
    store.sync()
    store.close()
    crash(disk)
    store, recovered = open_store(disk)
    assert recovered.promised == Ballot(2, 1)
    assert sorted(recovered.entries) == [1, 2, 3]
    assert recovered.commit_slot == 2
    store.close()


def test_a_torn_wal_tail_is_cut_on_recovery() -> None:
    disk = fresh_disk()
    store, _ = open_store(disk)
    store.append(records(1, 2))
    store.sync()
    store.append(records(3, 2))  # one write, never fsynced
    crash(disk, torn=1.0, seed=4)  # a seed whose cut falls inside a record
    store, recovered = open_store(disk)
    assert recovered.torn_tail_cut
    # The torn prefix may hold record 3 whole, never record 4.
    assert sorted(recovered.entries) in ([1, 2], [1, 2, 3])
    store.append(records(4, 1))  # and the log goes on after the cut
    store.sync()
    store.close()
    crash(disk)
    _, recovered = open_store(disk)
    assert {1, 2, 4} <= set(recovered.entries)


def test_crash_at_every_operation_of_a_compaction_recovers() -> None:
    """Compaction is durable-new-then-delete-old: wherever it stops, recovery
    finds either the old log or the new one."""
    for operation in range(1, 12):
        disk = fresh_disk()
        store, _ = open_store(disk)
        store.append(records(1, 5))
        store.sync()
        store.write_snapshot(snapshot_at(3))
        disk.arm_crash(operation)
        seed = [PromiseRecord(ballot=Ballot(1, 1)), *records(4, 2), CommitRecord(commit_slot=5)]
        try:
            store.compact(seed)
        except SimulatedCrash:
            pass
        crash(disk, torn=1.0, seed=operation)
        disk.disarm()
        store, recovered = open_store(disk)
        assert set(recovered.entries) in ({1, 2, 3, 4, 5}, {4, 5})
        assert recovered.snapshot is not None and recovered.snapshot.slot == 3
        store.close()


def test_an_interrupted_snapshot_leaves_the_previous_one() -> None:
    for operation in range(1, 6):
        disk = fresh_disk()
        store, _ = open_store(disk)
        store.write_snapshot(snapshot_at(3))
        disk.arm_crash(operation)
        try:
            store.write_snapshot(snapshot_at(6))
            completed = True
        except SimulatedCrash:
            completed = False
        crash(disk)
        disk.disarm()
        store, recovered = open_store(disk)
        assert recovered.snapshot is not None
        assert recovered.snapshot.slot == (6 if completed else 3)
        store.close()


def test_an_fsync_error_stops_the_store() -> None:
    disk = fresh_disk()
    store, _ = open_store(disk)
    store.append(records(1, 1))  # operation 1: the write
    disk.arm_io_error(1)
    with pytest.raises(StorageError, match="fsync"):
        store.sync()
    with pytest.raises(StorageError):
        store.append(records(2, 1))


def test_a_full_disk_refuses_writes_after_a_prefix_landed_until_unfilled() -> None:
    disk = fresh_disk()
    file = disk.create(f"{DIRECTORY}/f")
    disk.fill(random.Random(3))
    assert disk.full
    with pytest.raises(OSError) as refused:
        file.write(bytes(range(100)))
    assert refused.value.errno == errno.ENOSPC
    landed = disk.read(f"{DIRECTORY}/f")
    assert len(landed) < 100 and landed == bytes(range(len(landed)))
    disk.unfill()
    file.write(b"more")
    assert disk.read(f"{DIRECTORY}/f").endswith(b"more")


def test_reopening_without_a_crash_makes_what_it_read_durable() -> None:
    """A process that stopped after a write and before its fsync (killed, or
    paused by a full disk) left records in the page cache only; the next
    process builds on them as durable, so opening makes them so."""
    disk = fresh_disk()
    store, _ = open_store(disk)
    store.append(records(1, 3))
    store.sync()
    store.append(records(4, 2))  # never synced
    store.close()
    assert disk.not_durable(DIRECTORY)
    store, recovered = open_store(disk)
    assert sorted(recovered.entries) == [1, 2, 3, 4, 5]
    assert not [p for p in disk.not_durable(DIRECTORY) if "/wal-" in p]
    crash(disk)
    store, recovered = open_store(disk)
    assert sorted(recovered.entries) == [1, 2, 3, 4, 5]
