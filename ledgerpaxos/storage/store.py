"""One replica's data directory: its lock, its WAL and its snapshots.

    data/<node>/replica.lock                      flock'ed while a process uses it
    data/<node>/identity.toml                     whose directory this is (identity.py)
    data/<node>/wal-<sequence:020d>.log           see wal.py
    data/<node>/snapshot-<slot:020d>.snap         see snapshot.py

ReplicaStore.open() recovers the newest valid snapshot and the WAL and folds
the records into what the core needs to restart (`Recovered`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Protocol

import attrs

import wire
from ledgerpaxos import constants
from ledgerpaxos.core.messages import Snapshot, WalRecord
from ledgerpaxos.storage import files, identity
from ledgerpaxos.storage import snapshot as snapshots
from ledgerpaxos.storage.errors import StorageCorruption, StorageError
from ledgerpaxos.storage.filesystem import OS_FILE_SYSTEM, DirectoryLock, FileSystem
from ledgerpaxos.storage.recovered import Recovered, fold_records
from ledgerpaxos.storage.snapshot import SnapshotCodec
from ledgerpaxos.storage.wal import RecoveredLog, WriteAheadLog
from ledgerpaxos.storage.wal_format import RecordCodec

logger = logging.getLogger("ledgerpaxos.storage")

lock_file_name = "replica.lock"


class _DirectoryLock:
    """An exclusive lock on `<directory>/replica.lock`, held until release()."""

    def __init__(self, fs: FileSystem, directory: str) -> None:
        self.path = os.path.join(directory, lock_file_name)
        try:
            self._lock: DirectoryLock | None = fs.lock(self.path)
        except BlockingIOError as error:
            raise StorageError(
                self.path,
                f"lock: the data directory {directory} is in use by another replica process",
            ) from error
        except OSError as error:
            raise StorageError(self.path, "lock", error) from error

    def release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()


class StoreCodec(RecordCodec, SnapshotCodec, Protocol):
    """Record and snapshot encoding; the `wire` module satisfies it."""


class ReplicaStore:
    """Owns one replica's data directory while the replica runs.

    Not thread-safe: the Ready executor of its replica is its only user,
    except that write_snapshot() may run in a worker thread while the rest
    goes on (it touches only snapshot files; a lock keeps two snapshot writes,
    and a snapshot write and a wipe, apart). Any StorageError leaves it
    unusable; the replica must stop.
    """

    def __init__(
        self,
        directory: str,
        *,
        fsync: bool,
        codec: StoreCodec,
        segment_size_max: int,
        compact_size_min: int = constants.wal_compact_size_min,
        fs: FileSystem = OS_FILE_SYSTEM,
    ) -> None:
        """Use ReplicaStore.open(); this only sets up an unopened store."""
        self.directory = directory
        self.fs = fs
        self.fsync_enabled = fsync
        self._codec = codec
        self._segment_size_max = segment_size_max
        self._compact_size_min = compact_size_min
        self.compactions = 0
        self._lock: _DirectoryLock | None = None
        self._wal: WriteAheadLog | None = None
        self._fsyncs_of_wiped_logs = 0
        # Held by a snapshot write, and by a wipe; a host that builds a snapshot
        # in a worker thread holds it around building too (Replica._write_snapshot).
        self.snapshot_lock = threading.RLock()

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = True,
        codec: StoreCodec = wire,
        segment_size_max: int = constants.wal_segment_size_max,
        compact_size_min: int = constants.wal_compact_size_min,
        fs: FileSystem = OS_FILE_SYSTEM,
        salvage: bool = False,
    ) -> tuple[ReplicaStore, Recovered]:
        """Lock `directory` (created if missing), recover it, be ready to append.

        `fs` is the file system to do it on: the operating system's unless a
        simulator passes its own (see storage/filesystem.py). `compact_size_min`:
        see compact(). `salvage` (the replica's way): a damaged WAL is repaired
        (wal.py; `Recovered.damaged` says so and the replica rejoins), and when
        no snapshot verifies the replica starts without one (its WAL still holds
        its promises and acceptances; what the snapshot held, it fetches)."""
        path = os.fspath(directory)
        try:
            fs.makedirs(path)
        except OSError as error:
            raise StorageError(path, "create data directory", error) from error
        store = cls(
            path,
            fsync=fsync,
            codec=codec,
            segment_size_max=segment_size_max,
            compact_size_min=compact_size_min,
            fs=fs,
        )
        store._lock = _DirectoryLock(fs, path)
        try:
            newest = snapshots.newest_snapshot_slot(path, fs)
            try:
                snapshot = snapshots.load_newest_snapshot(path, codec=codec, fs=fs)
            except StorageCorruption as error:
                if not salvage:
                    raise
                logger.error("%s: starting without a snapshot, fetching its state", error.problem)
                snapshot = None
            log = store._open_log(salvage=salvage)
        except BaseException:
            store.close()
            raise
        recovered = fold_records(log.records, snapshot, torn=log.torn_tail_cut)
        used = snapshot.slot if snapshot is not None else 0
        if newest > used and recovered.commit_slot > used:
            # The newest snapshot did not verify. The WAL's commit point was
            # written knowing the state up to it; of the slots it covered, the
            # WAL may hold only acceptances of values that were never chosen
            # (the replica caught up by installing that checkpoint). So those
            # slots count as uncommitted: the replica learns them again.
            logger.error(
                "the snapshot of slot %d did not verify: treating slots %d-%d as not committed "
                "(the WAL said %d), to learn them again",
                newest,
                used + 1,
                recovered.commit_slot,
                recovered.commit_slot,
            )
            recovered = attrs.evolve(recovered, commit_slot=used)
        return store, attrs.evolve(recovered, damaged=log.damaged)

    # ------------------------------------------------------------ writing

    def append(self, records: Sequence[WalRecord]) -> None:
        """Write records to the WAL (one write() call); durable after sync()."""
        self._current_wal().append(records)

    def sync(self) -> None:
        """One fsync for everything appended since the last sync."""
        self._current_wal().sync()

    def write_snapshot(self, snapshot: Snapshot) -> None:
        """Temporary file, fsync, rename, directory fsync; older snapshots pruned."""
        with self.snapshot_lock:
            self._current_wal()
            snapshots.write_snapshot(
                self.directory, snapshot, fsync=self.fsync_enabled, codec=self._codec, fs=self.fs
            )

    def compact(self, seed_records: Sequence[WalRecord]) -> bool:
        """Replace the WAL by one durable segment holding exactly `seed_records`,
        once the WAL has grown to `compact_size_min` bytes; returns whether it did.

        Skipping is safe: the WAL as it is, folded over the newest snapshot,
        stands for the same state as the seed (recovery drops the entries at
        or below the snapshot's slot; the seed's promise and commit point are
        the highest already in the WAL). Each write_snapshot() of the caller
        came before this call, so the snapshot that covers the dropped entries
        is durable before they are deleted."""
        wal = self._current_wal()
        if wal.size_bytes < self._compact_size_min:
            return False
        wal.compact(seed_records)
        self.compactions += 1
        return True

    def wipe(self) -> None:
        """Delete everything in the directory but the lock; go on with an empty log.
        Waits for a snapshot being written in a worker thread to be done."""
        with self.snapshot_lock:
            self._wipe()

    def _wipe(self) -> None:
        wal = self._current_wal()
        self._fsyncs_of_wiped_logs += wal.fsync_count
        wal.close()
        self._wal = None
        for name in files.list_directory(self.fs, self.directory):
            if name in (lock_file_name, identity.identity_file_name):
                # The lock is still ours: deleting it would let a second
                # process lock a new one. The identity stays: a reset starts
                # the same replica over (every replica at once), it loses no disk.
                continue
            path = os.path.join(self.directory, name)
            try:
                if self.fs.is_directory(path):
                    self.fs.remove_tree(path)
                else:
                    self.fs.remove(path)
            except OSError as error:
                raise StorageError(path, "remove", error) from error
        if self.fsync_enabled:
            files.fsync_directory(self.fs, self.directory)
        self.mark_rejoined()  # every replica starts over at once: nobody counts on us
        log = self._open_log()
        assert not log.records and not log.torn_tail_cut

    def mark_rejoined(self) -> None:
        """The rejoin after a lost disk is done: the identity file says so, so
        a restart votes at once (core/rejoin.py)."""
        self._set_rejoining(False)

    def mark_rejoining(self) -> None:
        """The replica must rejoin (its WAL was damaged): durably, so a crash
        before the rejoin is done rejoins again."""
        self._set_rejoining(True)

    def _set_rejoining(self, rejoining: bool) -> None:
        mine = identity.load(self.fs, self.directory)
        if mine is not None and mine.rejoining != rejoining:
            changed = attrs.evolve(mine, rejoining=rejoining)
            identity.write(self.fs, self.directory, changed, fsync=self.fsync_enabled)

    def close(self) -> None:
        """Close the WAL (without a sync) and release the directory lock."""
        if self._wal is not None:
            wal, self._wal = self._wal, None
            self._fsyncs_of_wiped_logs += wal.fsync_count
            wal.close()
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()

    # ------------------------------------------------------------ status

    @property
    def fsync_count(self) -> int:
        """WAL fsyncs (files and directory) since open, snapshots not included."""
        wal = self._wal.fsync_count if self._wal is not None else 0
        return self._fsyncs_of_wiped_logs + wal

    @property
    def wal_size_bytes(self) -> int:
        return self._current_wal().size_bytes

    @property
    def wal_segment_count(self) -> int:
        return self._current_wal().segment_count

    # ------------------------------------------------------------ internals

    def _open_log(self, *, salvage: bool = False) -> RecoveredLog:
        assert self._wal is None
        self._wal, log = WriteAheadLog.open(
            self.directory,
            fsync=self.fsync_enabled,
            codec=self._codec,
            segment_size_max=self._segment_size_max,
            fs=self.fs,
            salvage=salvage,
        )
        return log

    def _current_wal(self) -> WriteAheadLog:
        if self._wal is None:
            raise StorageError(self.directory, "use of a closed or failed replica store")
        return self._wal
