"""Storage: WAL framing, torn tails, corruption, compaction, snapshots, the lock."""

from __future__ import annotations

import logging
import os
import shutil
import struct
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from ledgerpaxos import constants
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
from ledgerpaxos.storage import (
    Recovered,
    ReplicaStore,
    StorageCorruption,
    StorageError,
    WriteAheadLog,
    files,
    fold_records,
    load_newest_snapshot,
    wal_format,
    write_snapshot,
)
from ledgerpaxos.storage import snapshot as snapshots
from ledgerpaxos.storage.filesystem import OS_FILE_SYSTEM
from ledgerpaxos.storage.snapshot import snapshot_file_name
from ledgerpaxos.storage.wal_format import RECORD_HEADER, SEGMENT_HEADER, segment_file_name

FIRST_SEGMENT = segment_file_name(1)


# ---------------------------------------------------------------- helpers


def entry(slot: int, ballot: Ballot, transfers: int = 1) -> LogEntry:
    command = Command(
        client_id=f"client-{slot}",
        request_no=slot,
        kind=CommandKind.transfer,
        transfers=tuple(Transfer(sender="A", receiver="B", amount=i + 1) for i in range(transfers)),
    )
    return LogEntry(slot=slot, ballot=ballot, batch=(command,))


def sample_records(count: int) -> list[WalRecord]:
    """A mix of every record kind, of different sizes."""
    records: list[WalRecord] = []
    ballot = Ballot(1, 1)
    for i in range(count):
        slot = i // 3 + 1
        if i % 3 == 0:
            ballot = Ballot(i + 1, 2)
            records.append(PromiseRecord(ballot=ballot))
        elif i % 3 == 1:
            records.append(AcceptRecord(entry=entry(slot, ballot, transfers=i % 5 + 1)))
        else:
            records.append(CommitRecord(commit_slot=slot))
    return records


def write_one_by_one(directory: Path, records: Sequence[WalRecord]) -> list[int]:
    """Append records one per write; return the segment's size before each and at the end."""
    directory.mkdir(exist_ok=True)
    log, _ = WriteAheadLog.open(directory, fsync=False)
    boundaries = [log.size_bytes]
    for record in records:
        log.append([record])
        log.sync()
        boundaries.append(log.size_bytes)
    log.close()
    return boundaries


def recover(directory: Path) -> list[WalRecord]:
    log, recovered = WriteAheadLog.open(directory, fsync=False)
    log.close()
    return list(recovered.records)


def truncate(path: Path, length: int) -> None:
    with open(path, "r+b") as file:
        file.truncate(length)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def make_snapshot(slot: int) -> Snapshot:
    return Snapshot(
        slot=slot,
        balances=(("A", 10 - slot % 10), ("B", 10 + slot % 10)),
        clients=(
            ClientEntry(
                client_id="c1",
                request_no=slot,
                outcome=Outcome(results=(TransferResult(ok=True),)),
            ),
        ),
        digest=bytes(range(32)),
        chain=bytes(range(16)),
    )


# ---------------------------------------------------------------- round trips


def test_empty_directory_gives_empty_log(tmp_path: Path) -> None:
    log, recovered = WriteAheadLog.open(tmp_path)
    assert recovered.records == ()
    assert not recovered.torn_tail_cut
    assert log.segment_count == 1
    assert log.size_bytes == SEGMENT_HEADER.size
    log.close()
    assert sorted(os.listdir(tmp_path)) == [FIRST_SEGMENT]


def test_append_sync_reopen_round_trip(tmp_path: Path) -> None:
    records = sample_records(30)
    log, _ = WriteAheadLog.open(tmp_path)
    log.append(records[:10])
    log.append(records[10:11])
    log.sync()
    log.append(records[11:])
    log.sync()
    log.close()

    log, recovered = WriteAheadLog.open(tmp_path)
    assert list(recovered.records) == records
    assert not recovered.torn_tail_cut
    more = [CommitRecord(commit_slot=99)]
    log.append(more)
    log.sync()
    log.close()
    assert recover(tmp_path) == records + more


def test_store_folds_records_into_recovered_state(tmp_path: Path) -> None:
    store, recovered = ReplicaStore.open(tmp_path / "n1")
    assert recovered == Recovered(
        snapshot=None, promised=Ballot.zero(), entries={}, commit_slot=0, torn_tail_cut=False
    )
    first = entry(1, Ballot(1, 1))
    second = entry(2, Ballot(1, 1))
    replaced = entry(1, Ballot(3, 2), transfers=2)
    store.append(
        [
            PromiseRecord(ballot=Ballot(3, 2)),
            AcceptRecord(entry=first),
            AcceptRecord(entry=second),
            CommitRecord(commit_slot=2),
            PromiseRecord(ballot=Ballot(2, 5)),  # lower than promised already: max wins
            AcceptRecord(entry=replaced),  # the last record for a slot wins
            CommitRecord(commit_slot=1),
        ]
    )
    store.sync()
    store.close()

    store, recovered = ReplicaStore.open(tmp_path / "n1")
    store.close()
    assert recovered.promised == Ballot(3, 2)
    assert recovered.entries == {1: replaced, 2: second}
    assert recovered.commit_slot == 2
    assert recovered.snapshot is None
    assert not recovered.torn_tail_cut


# ---------------------------------------------------------------- torn tails


def test_cut_at_every_record_boundary_recovers_exactly_the_prefix(tmp_path: Path) -> None:
    records = sample_records(12)
    original = tmp_path / "original"
    original.mkdir()
    boundaries = write_one_by_one(original, records)
    assert boundaries[0] == SEGMENT_HEADER.size
    for count, boundary in enumerate(boundaries):
        copy = tmp_path / f"cut-{count}"
        shutil.copytree(original, copy)
        truncate(copy / FIRST_SEGMENT, boundary)
        log, recovered = WriteAheadLog.open(copy, fsync=False)
        log.close()
        assert list(recovered.records) == records[:count]
        assert not recovered.torn_tail_cut


@pytest.mark.parametrize(
    "into_last_record",
    [1, 4, RECORD_HEADER.size - 1, RECORD_HEADER.size, RECORD_HEADER.size + 1, -1],
)
def test_torn_last_record_is_cut_off(
    tmp_path: Path, into_last_record: int, caplog: pytest.LogCaptureFixture
) -> None:
    records = sample_records(5)
    assert isinstance(records[-1], AcceptRecord)  # end on the largest kind of record
    boundaries = write_one_by_one(tmp_path, records)
    last_start, end = boundaries[-2], boundaries[-1]
    cut = end - 1 if into_last_record == -1 else last_start + into_last_record
    assert last_start < cut < end
    segment = tmp_path / FIRST_SEGMENT
    truncate(segment, cut)

    with caplog.at_level(logging.WARNING, logger="ledgerpaxos.storage"):
        log, recovered = WriteAheadLog.open(tmp_path, fsync=False)
    assert recovered.torn_tail_cut
    assert recovered.torn_tail_path == str(segment)
    assert recovered.torn_tail_offset == last_start
    assert recovered.torn_bytes_cut == cut - last_start
    assert list(recovered.records) == records[:-1]
    assert segment.stat().st_size == last_start
    messages = [r.getMessage() for r in caplog.records]
    assert any("torn" in m and f"offset {last_start}" in m for m in messages)

    # The log goes on after the cut.
    log.append([records[-1], CommitRecord(commit_slot=42)])
    log.sync()
    log.close()
    log, recovered = WriteAheadLog.open(tmp_path, fsync=False)
    log.close()
    assert list(recovered.records) == [*records, CommitRecord(commit_slot=42)]
    assert not recovered.torn_tail_cut


def test_garbage_after_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    records = sample_records(5)
    boundaries = write_one_by_one(tmp_path, records)
    segment = tmp_path / FIRST_SEGMENT
    with open(segment, "ab") as file:
        file.write(b"\0" * 4096)  # a file extended by a crash, never written
    log, recovered = WriteAheadLog.open(tmp_path, fsync=False)
    log.close()
    assert recovered.torn_tail_cut
    assert list(recovered.records) == records
    assert segment.stat().st_size == boundaries[-1]


def test_store_reports_the_torn_tail(tmp_path: Path) -> None:
    store, _ = ReplicaStore.open(tmp_path, fsync=False)
    store.append(sample_records(3))
    store.sync()
    store.close()
    segment = tmp_path / FIRST_SEGMENT
    truncate(segment, segment.stat().st_size - 3)
    store, recovered = ReplicaStore.open(tmp_path, fsync=False)
    store.close()
    records = sample_records(3)
    assert isinstance(records[2], CommitRecord)  # the torn one
    assert recovered.torn_tail_cut
    assert recovered.promised == Ballot(1, 2)
    assert list(recovered.entries.values()) == [records[1].entry]  # type: ignore[union-attr]
    assert recovered.commit_slot == 0


# ---------------------------------------------------------------- corruption


def test_corrupted_middle_record_names_file_and_offset(tmp_path: Path) -> None:
    records = sample_records(9)
    boundaries = write_one_by_one(tmp_path, records)
    segment = tmp_path / FIRST_SEGMENT
    middle = 4
    start = boundaries[middle]
    for offset_in_record, what in [(0, "magic"), (9, "header"), (RECORD_HEADER.size + 2, "body")]:
        copy = tmp_path / f"copy-{what}"
        copy.mkdir()
        shutil.copy(segment, copy / FIRST_SEGMENT)
        flip_byte(copy / FIRST_SEGMENT, start + offset_in_record)
        with pytest.raises(StorageCorruption) as caught:
            WriteAheadLog.open(copy, fsync=False)
        error = caught.value
        assert error.path == str(copy / FIRST_SEGMENT)
        assert error.offset == start
        message = str(error)
        assert str(copy / FIRST_SEGMENT) in message
        assert f"offset {start}" in message
        assert "restore" in message and "peer" in message
        # Nothing was changed on disk by a refused recovery.
        assert (copy / FIRST_SEGMENT).stat().st_size == boundaries[-1]


def test_every_single_byte_flip_is_detected(tmp_path: Path) -> None:
    """A flipped byte anywhere either cuts a torn last record or is refused;
    recovery never returns a record that was not written."""
    records = sample_records(5)
    boundaries = write_one_by_one(tmp_path / "original", records)
    original = (tmp_path / "original" / FIRST_SEGMENT).read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    for offset in range(len(original)):
        data = bytearray(original)
        data[offset] ^= 0xFF
        (work / FIRST_SEGMENT).write_bytes(bytes(data))
        if offset >= boundaries[-2]:  # in the last record: indistinguishable from a torn write
            assert recover(work) == records[:-1], offset
        else:
            with pytest.raises(StorageCorruption):
                recover(work)


def test_swapped_records_break_the_chain(tmp_path: Path) -> None:
    records = [CommitRecord(commit_slot=slot) for slot in range(1, 6)]  # all the same size
    boundaries = write_one_by_one(tmp_path, records)
    segment = tmp_path / FIRST_SEGMENT
    original = segment.read_bytes()
    for i in [1, 3]:  # two middle records; the last two
        a, b, c = boundaries[i], boundaries[i + 1], boundaries[i + 2]
        segment.write_bytes(original[:a] + original[b:c] + original[a:b] + original[c:])
        with pytest.raises(StorageCorruption, match="chain") as caught:
            recover(tmp_path)
        assert caught.value.offset == a


def test_record_that_verifies_but_does_not_decode_is_corruption(tmp_path: Path) -> None:
    log, _ = WriteAheadLog.open(tmp_path, fsync=False)
    log.close()
    segment = tmp_path / FIRST_SEGMENT
    header = segment.read_bytes()
    tip = int.from_bytes(header[24:32], "little")
    framed, _ = wal_format.encode_chained([b"\xff not a record"], tip)
    segment.write_bytes(header + framed)
    with pytest.raises(StorageCorruption, match="does not decode") as caught:
        recover(tmp_path)
    assert caught.value.offset == SEGMENT_HEADER.size


def test_corrupted_segment_header_is_refused(tmp_path: Path) -> None:
    write_one_by_one(tmp_path, sample_records(3))
    flip_byte(tmp_path / FIRST_SEGMENT, 10)
    with pytest.raises(StorageCorruption, match="segment header") as caught:
        recover(tmp_path)
    assert caught.value.offset == 0


# ---------------------------------------------------------------- segments


def test_roll_to_new_segments_and_recover_across_them(tmp_path: Path) -> None:
    records = sample_records(40)
    log, _ = WriteAheadLog.open(tmp_path, fsync=False, segment_size_max=400)
    for i in range(0, len(records), 3):
        log.append(records[i : i + 3])
        log.sync()
    assert log.segment_count > 3
    count = log.segment_count
    size = log.size_bytes
    log.close()
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) == size

    log, recovered = WriteAheadLog.open(tmp_path, fsync=False, segment_size_max=400)
    log.close()
    assert list(recovered.records) == records
    assert len(recovered.segments_read) == count


def test_torn_tail_of_the_last_segment_after_rolls(tmp_path: Path) -> None:
    records = sample_records(30)
    log, _ = WriteAheadLog.open(tmp_path, fsync=False, segment_size_max=300)
    for record in records:
        log.append([record])
    count = log.segment_count
    assert count >= 4
    log.close()
    last = tmp_path / segment_file_name(count)
    assert last.stat().st_size > SEGMENT_HEADER.size
    truncate(last, last.stat().st_size - 2)
    log, recovered = WriteAheadLog.open(tmp_path, fsync=False, segment_size_max=300)
    assert recovered.torn_tail_cut
    assert recovered.torn_tail_path == str(last)
    assert list(recovered.records) == records[:-1]
    log.append(records[-1:])
    log.close()
    assert recover(tmp_path) == records


def test_missing_middle_segment_is_refused(tmp_path: Path) -> None:
    log, _ = WriteAheadLog.open(tmp_path, fsync=False, segment_size_max=300)
    for record in sample_records(30):
        log.append([record])
    assert log.segment_count >= 4
    log.close()
    (tmp_path / segment_file_name(2)).unlink()
    with pytest.raises(StorageCorruption, match="segment 2 is missing"):
        recover(tmp_path)


def test_torn_end_of_an_earlier_segment_is_corruption(tmp_path: Path) -> None:
    log, _ = WriteAheadLog.open(tmp_path, fsync=False, segment_size_max=300)
    for record in sample_records(30):
        log.append([record])
    log.close()
    first = tmp_path / FIRST_SEGMENT
    truncate(first, first.stat().st_size - 1)
    with pytest.raises(StorageCorruption) as caught:
        recover(tmp_path)
    assert caught.value.path == str(first)


def test_segment_from_another_log_breaks_the_chain(tmp_path: Path) -> None:
    for name in ["a", "b"]:
        (tmp_path / name).mkdir()
        log, _ = WriteAheadLog.open(tmp_path / name, fsync=False, segment_size_max=300)
        records = sample_records(20) if name == "a" else sample_records(21)[1:]
        for record in records:  # different contents, so different chains
            log.append([record])
        log.close()
    shutil.copy(tmp_path / "b" / segment_file_name(2), tmp_path / "a" / segment_file_name(2))
    with pytest.raises(StorageCorruption, match="chain"):
        recover(tmp_path / "a")


# ---------------------------------------------------------------- compaction


def seed_for(promised: Ballot, entries: list[LogEntry], commit: int) -> list[WalRecord]:
    return [
        PromiseRecord(ballot=promised),
        *(AcceptRecord(entry=e) for e in entries),
        CommitRecord(commit_slot=commit),
    ]


def test_compaction_leaves_one_segment_with_the_seeded_state(tmp_path: Path) -> None:
    store, _ = ReplicaStore.open(tmp_path, fsync=True, segment_size_max=400, compact_size_min=0)
    store.append(sample_records(60))
    store.append(sample_records(60))
    store.sync()
    assert store.wal_segment_count > 1
    seed = seed_for(Ballot(7, 3), [entry(21, Ballot(7, 3)), entry(22, Ballot(6, 1))], 21)
    assert store.compact(seed)
    assert store.wal_segment_count == 1
    wal_files = [p.name for p in tmp_path.iterdir() if p.name.startswith("wal-")]
    assert len(wal_files) == 1
    store.append([CommitRecord(commit_slot=22)])
    store.sync()
    store.close()

    store, recovered = ReplicaStore.open(tmp_path)
    store.close()
    assert recovered.promised == Ballot(7, 3)
    assert recovered.entries == {21: entry(21, Ballot(7, 3)), 22: entry(22, Ballot(6, 1))}
    assert recovered.commit_slot == 22


def test_a_small_wal_is_not_compacted_and_recovers_to_the_same_state(tmp_path: Path) -> None:
    """Below compact_size_min a purge leaves the WAL alone: the old records,
    folded over the snapshot that covers them, give the seed's state."""
    records = sample_records(20)
    store, _ = ReplicaStore.open(tmp_path, compact_size_min=10**6)
    store.append(records)
    store.sync()
    size = store.wal_size_bytes
    store.write_snapshot(make_snapshot(12))
    seed = seed_for(Ballot(5, 2), [entry(13, Ballot(5, 2))], 13)
    assert not store.compact(seed)
    assert store.wal_size_bytes == size and store.compactions == 0
    store.close()

    store, recovered = ReplicaStore.open(tmp_path, compact_size_min=10**6)
    store.close()
    assert recovered.snapshot == make_snapshot(12)
    assert recovered.entries == fold_records(records, None, torn=False).entries
    assert recovered.commit_slot == fold_records(records, None, torn=False).commit_slot


def test_crash_after_new_segment_before_deleting_old_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "n1"
    directory.mkdir()
    log, _ = WriteAheadLog.open(directory, fsync=False, segment_size_max=400)
    records = sample_records(40)
    for i in range(0, len(records), 3):
        log.append(records[i : i + 3])
    log.sync()
    assert log.segment_count > 2
    before = tmp_path / "before"
    shutil.copytree(directory, before)
    seed = seed_for(Ballot(9, 1), [entry(30, Ballot(9, 1))], 29)
    log.compact(seed)
    log.close()
    # The crash: the old segments were never deleted.
    for old in before.iterdir():
        shutil.copy(old, directory / old.name)
    assert len(list(directory.iterdir())) > 2

    with caplog.at_level(logging.WARNING, logger="ledgerpaxos.storage"):
        log, recovered = WriteAheadLog.open(directory, fsync=False)
    assert list(recovered.records) == seed
    assert len(recovered.stale_segments_removed) == len(list(before.iterdir()))
    assert log.segment_count == 1
    assert len(list(directory.iterdir())) == 1
    assert any("interrupted compaction" in r.getMessage() for r in caplog.records)
    log.append([CommitRecord(commit_slot=30)])
    log.close()
    assert recover(directory) == [*seed, CommitRecord(commit_slot=30)]


def test_crash_before_the_new_segment_was_renamed(tmp_path: Path) -> None:
    records = sample_records(10)
    write_one_by_one(tmp_path, records)
    # A new segment still under its temporary name: compaction never happened.
    (tmp_path / (segment_file_name(2) + ".tmp")).write_bytes(b"half a segm")
    assert recover(tmp_path) == records
    assert sorted(os.listdir(tmp_path)) == [FIRST_SEGMENT]


# ---------------------------------------------------------------- snapshots


def test_snapshot_write_and_load(tmp_path: Path) -> None:
    assert load_newest_snapshot(tmp_path) is None
    write_snapshot(tmp_path, make_snapshot(5))
    write_snapshot(tmp_path, make_snapshot(9))
    assert load_newest_snapshot(tmp_path) == make_snapshot(9)

    store, recovered = ReplicaStore.open(tmp_path)
    assert recovered.snapshot == make_snapshot(9)
    store.write_snapshot(make_snapshot(12))
    store.close()
    store, recovered = ReplicaStore.open(tmp_path)
    store.close()
    assert recovered.snapshot == make_snapshot(12)


def test_only_the_newest_snapshots_are_kept(tmp_path: Path) -> None:
    for slot in [3, 1, 8, 20, 15]:
        write_snapshot(tmp_path, make_snapshot(slot), fsync=False)
    kept = sorted(p.name for p in tmp_path.iterdir())
    newest = sorted([3, 1, 8, 20, 15])[-constants.snapshots_kept :]
    assert kept == [snapshot_file_name(slot) for slot in newest]


@pytest.mark.parametrize("damage", ["flip-body", "flip-header", "truncate", "empty"])
def test_invalid_newest_snapshot_falls_back_to_the_previous(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_snapshot(tmp_path, make_snapshot(10))
    write_snapshot(tmp_path, make_snapshot(20))
    newest = tmp_path / snapshot_file_name(20)
    size = newest.stat().st_size
    if damage == "flip-body":
        flip_byte(newest, size - 5)
    elif damage == "flip-header":
        flip_byte(newest, 9)
    elif damage == "truncate":
        truncate(newest, size - 1)
    else:
        truncate(newest, 0)
    with caplog.at_level(logging.WARNING, logger="ledgerpaxos.storage"):
        assert load_newest_snapshot(tmp_path) == make_snapshot(10)
    assert any(str(newest) in r.getMessage() for r in caplog.records)


def test_no_valid_snapshot_at_all_is_corruption(tmp_path: Path) -> None:
    write_snapshot(tmp_path, make_snapshot(10))
    flip_byte(tmp_path / snapshot_file_name(10), 50)
    with pytest.raises(StorageCorruption, match="no snapshot verifies"):
        load_newest_snapshot(tmp_path)


def test_leftover_snapshot_temp_files_are_removed(tmp_path: Path) -> None:
    write_snapshot(tmp_path, make_snapshot(4))
    leftover = tmp_path / (snapshot_file_name(6) + ".tmp")
    leftover.write_bytes(b"interrupted")
    assert load_newest_snapshot(tmp_path) == make_snapshot(4)
    assert not leftover.exists()


# ---------------------------------------------------------------- the store


def test_lock_refuses_a_second_opener(tmp_path: Path) -> None:
    store, _ = ReplicaStore.open(tmp_path)
    with pytest.raises(StorageError, match="in use"):
        ReplicaStore.open(tmp_path)
    store.close()
    again, _ = ReplicaStore.open(tmp_path)
    again.close()


def test_wipe_leaves_an_empty_usable_store(tmp_path: Path) -> None:
    store, _ = ReplicaStore.open(tmp_path)
    store.append(sample_records(10))
    store.sync()
    store.write_snapshot(make_snapshot(3))
    (tmp_path / "stray-dir").mkdir()
    store.wipe()
    assert sorted(os.listdir(tmp_path)) == sorted([FIRST_SEGMENT, "replica.lock"])
    store.append([CommitRecord(commit_slot=1)])
    store.sync()
    with pytest.raises(StorageError, match="in use"):
        ReplicaStore.open(tmp_path)  # still locked after the wipe
    store.close()
    store, recovered = ReplicaStore.open(tmp_path)
    store.close()
    assert recovered.snapshot is None
    assert recovered.commit_slot == 1
    assert recovered.entries == {}


def test_one_fsync_per_sync_however_many_records(tmp_path: Path) -> None:
    store, _ = ReplicaStore.open(tmp_path)
    before = store.fsync_count
    store.append(sample_records(100))
    store.append(sample_records(50))
    store.sync()
    assert store.fsync_count == before + 1
    store.sync()  # nothing appended since: nothing to make durable
    assert store.fsync_count == before + 1
    store.append([CommitRecord(commit_slot=1)])
    store.sync()
    assert store.fsync_count == before + 2
    store.close()


def test_without_fsync_nothing_is_fsynced(tmp_path: Path) -> None:
    store, _ = ReplicaStore.open(tmp_path, fsync=False, compact_size_min=0)
    store.append(sample_records(10))
    store.sync()
    assert store.compact(sample_records(2))
    assert store.fsync_count == 0
    store.close()


def test_fsync_failure_stops_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = ReplicaStore.open(tmp_path)
    store.append(sample_records(3))

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="fsync"):
        store.sync()
    monkeypatch.undo()
    with pytest.raises(StorageError):
        store.sync()  # never retried: the page cache may have dropped the data
    with pytest.raises(StorageError):
        store.append([CommitRecord(commit_slot=1)])
    store.close()


# ---------------------------------------------------------------- salvage (the replica's way)


def test_a_broken_record_in_the_middle_is_salvaged_keeping_what_verifies(tmp_path: Path) -> None:
    records = sample_records(9)
    boundaries = write_one_by_one(tmp_path, records)
    middle = 4
    flip_byte(tmp_path / FIRST_SEGMENT, boundaries[middle] + RECORD_HEADER.size + 2)
    log, recovered = WriteAheadLog.open(tmp_path, fsync=False, salvage=True)
    assert list(recovered.records) == records[:middle]
    assert recovered.damaged is not None
    assert f"{tmp_path / FIRST_SEGMENT} at byte offset {boundaries[middle]}" in recovered.damaged
    assert (tmp_path / (FIRST_SEGMENT + ".damaged")).exists()  # kept for a look
    log.append(records[middle:])  # it goes on from what it kept
    log.sync()
    log.close()
    # The repair is durable and complete: an ordinary recovery finds no damage.
    log, again = WriteAheadLog.open(tmp_path, fsync=False)
    log.close()
    assert list(again.records) == records and again.damaged is None


def test_a_store_without_a_snapshot_that_verifies_starts_without_one(tmp_path: Path) -> None:
    store, _ = ReplicaStore.open(tmp_path, fsync=False)
    store.append([PromiseRecord(ballot=Ballot(3, 1))])
    store.sync()
    store.write_snapshot(make_snapshot(10))
    store.close()
    flip_byte(tmp_path / snapshot_file_name(10), 50)
    with pytest.raises(StorageCorruption, match="no snapshot verifies"):
        ReplicaStore.open(tmp_path, fsync=False)
    store, recovered = ReplicaStore.open(tmp_path, fsync=False, salvage=True)
    store.close()
    # Its WAL still holds its promise: nothing it promised is lost, the state it fetches.
    assert recovered.snapshot is None and recovered.promised == Ballot(3, 1)
    assert recovered.damaged is None


def test_a_commit_point_above_a_broken_snapshot_no_longer_counts(tmp_path: Path) -> None:
    """Slot 1 was accepted with a value never chosen; the replica caught up by
    an install of checkpoint 10 and committed 12. With that snapshot broken,
    the stale acceptance must not be taken as decided (seed 4471)."""
    store, _ = ReplicaStore.open(tmp_path, fsync=False)
    store.append([AcceptRecord(entry=entry(1, Ballot(1, 2), transfers=1))])
    store.write_snapshot(make_snapshot(10))
    store.append([CommitRecord(commit_slot=12)])
    store.sync()
    store.close()
    store, recovered = ReplicaStore.open(tmp_path, fsync=False, salvage=True)
    store.close()
    assert recovered.commit_slot == 12 and recovered.snapshot is not None
    flip_byte(tmp_path / snapshot_file_name(10), 50)
    store, recovered = ReplicaStore.open(tmp_path, fsync=False, salvage=True)
    store.close()
    assert recovered.snapshot is None and 1 in recovered.entries  # the acceptance is kept
    assert recovered.commit_slot == 0  # but nothing counts as decided


# ---------------------------------------------------------------- snapshot files in parts


def _big_snapshot(slot: int) -> Snapshot:
    return Snapshot(
        slot=slot,
        balances=tuple((f"a{i:05}", i) for i in range(10)),
        opened=(("x-1", "c1", 3), ("x-2", "c2", 0)),
        clients=tuple(
            ClientEntry(
                client_id=f"c{i}",
                request_no=i,
                outcome=Outcome(results=(TransferResult(ok=True),), slot=slot, index=i),
                session=65_536 + i,
            )
            for i in range(4)
        ),
        digest=bytes(range(32)),
        chain=bytes(16),
    )


class _ReadsInParts(snapshots.FileSystem):
    """The OS file system, but a whole-file read, or one larger than a part,
    fails: what a reader that streams never does."""

    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max
        self.reads = 0

    def read(self, path: str, size: int = -1, *, offset: int = 0) -> bytes:
        assert 0 <= size <= self.bytes_max, f"a read of {size} bytes"
        self.reads += 1
        return OS_FILE_SYSTEM.read(path, size, offset=offset)

    def __getattr__(self, name: str) -> object:
        return getattr(OS_FILE_SYSTEM, name)


def _write_in_parts(directory: Path, snapshot: Snapshot, rows_max: int) -> Path:
    path = directory / snapshot_file_name(snapshot.slot)
    pieces = snapshots.encode_snapshot_file(snapshot, rows_max=rows_max)
    files.write_file_durably(OS_FILE_SYSTEM, os.fspath(path), pieces, fsync=False)
    return path


def test_a_snapshot_file_is_written_and_read_a_part_at_a_time(tmp_path: Path) -> None:
    snapshot = _big_snapshot(40)
    _write_in_parts(tmp_path, snapshot, rows_max=3)  # 4 + 1 + 2 parts
    reader = _ReadsInParts(bytes_max=200)
    assert (
        snapshots.read_snapshot_file(reader, os.fspath(tmp_path / snapshot_file_name(40)))
        == snapshot
    )
    assert reader.reads == 1 + 7 * 2 + 1  # the header, each part's head and body, the end
    assert list(snapshots.snapshot_parts(snapshot, 3))[4].opened == snapshot.opened[:3]
    empty = attrs.evolve(snapshot, balances=(), opened=(), clients=())
    assert list(snapshots.snapshot_parts(empty, 3)) == [empty]  # one part, empty
    write_snapshot(tmp_path, snapshot, fsync=False)  # the default part size: one part
    assert load_newest_snapshot(tmp_path) == snapshot


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("flip", "part 2 checksum mismatch"),
        ("swap", "part 1 checksum mismatch"),
        ("cut", "part 6 of 7 missing or cut short"),
        ("extra", "bytes after the last part"),
    ],
)
def test_a_damaged_part_is_named_and_an_older_snapshot_is_taken(
    tmp_path: Path, damage: str, problem: str
) -> None:
    older = attrs.evolve(_big_snapshot(20), balances=(("a00001", 7),))
    _write_in_parts(tmp_path, older, rows_max=3)
    path = _write_in_parts(tmp_path, _big_snapshot(40), rows_max=3)
    data = bytearray(path.read_bytes())
    head = snapshots.SNAPSHOT_HEADER.size
    starts = [head]
    while starts[-1] < len(data):
        (length,) = struct.unpack_from("<I", data, starts[-1])
        starts.append(starts[-1] + snapshots.PART_HEADER.size + length)
    if damage == "flip":
        data[starts[2] + 20] ^= 0x10
    elif damage == "swap":  # parts 1 and 2 hold as many rows: same length, other places
        one, two = data[starts[1] : starts[2]], data[starts[2] : starts[3]]
        assert len(one) == len(two)
        data[starts[1] : starts[3]] = two + one
    elif damage == "cut":
        del data[starts[6] :]
    else:
        data += b"\0"
    path.write_bytes(bytes(data))
    with pytest.raises(StorageCorruption, match=problem) as caught:
        snapshots.read_snapshot_file(OS_FILE_SYSTEM, os.fspath(path))
    expected = {"flip": starts[2], "swap": starts[1], "cut": starts[6], "extra": len(data) - 1}
    assert caught.value.offset == expected[damage]
    assert load_newest_snapshot(tmp_path) == older  # skipped, with a warning


def test_sessions_holding_many_results_weigh_more_in_a_part(tmp_path: Path) -> None:
    many = Outcome(results=(TransferResult(ok=True),) * 40, slot=9, index=0)  # 11 rows each
    snapshot = attrs.evolve(
        _big_snapshot(50),
        balances=(),
        opened=(),
        clients=tuple(
            ClientEntry(client_id=f"c{i}", request_no=1, outcome=many, session=i) for i in range(3)
        ),
    )
    parts = list(snapshots.snapshot_parts(snapshot, 20))
    assert [len(p.clients) for p in parts] == [1, 1, 1]  # 11 + 11 > 20: one session a part
    assert [len(p.clients) for p in snapshots.snapshot_parts(snapshot, 22)] == [2, 1]
    _write_in_parts(tmp_path, snapshot, rows_max=20)
    assert load_newest_snapshot(tmp_path) == snapshot
