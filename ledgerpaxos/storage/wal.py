"""The write-ahead log: append-only segment files with a checksum chain.

Files `wal-<sequence:020d>.log` in the replica's data directory, sequence numbers
counting up from 1. Integers are little-endian; checksums are 64-bit BLAKE2b with
a different personalisation for each kind (see files.checksum64).

The format of segments and records, and the checksum chain: wal_format.py.

New segments (a roll or a compaction) are written to `<name>.tmp`, fsynced,
renamed and the directory fsynced before any record goes into them: a segment
file with its final name always has a valid header. Before rolling, the old
segment is fsynced, so only the last segment can end in a torn write.

Recovery reads the segments from the newest base on; every record is checked
(magic, header checksum, length, body checksum, chain) and decoded. A record that
fails in the last segment, with no valid record anywhere after it, is a torn
write from a crash: the file is truncated there, fsynced, and a warning logged.
Anything else that fails is StorageCorruption naming the file and byte offset,
or, opened with `salvage` (the replica does), is repaired: the records that
verify before it are kept in a new base segment, the damaged segment and those
after it are renamed `*.damaged` for an operator to look at, and `damaged`
says what was found where; the replica then rejoins (core/rejoin.py), as it
may have lost promises and acceptances with the records after the damage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

import attrs

import wire
from ledgerpaxos import constants
from ledgerpaxos.core.messages import WalRecord
from ledgerpaxos.storage import files
from ledgerpaxos.storage import wal_format as fmt
from ledgerpaxos.storage.errors import StorageCorruption, StorageError
from ledgerpaxos.storage.filesystem import OS_FILE_SYSTEM, FileSystem, WritableFile

logger = logging.getLogger("ledgerpaxos.storage")

P = ParamSpec("P")
T = TypeVar("T")


@attrs.frozen(kw_only=True)
class RecoveredLog:
    """What recovery found: the records in order and how it got them."""

    records: tuple[WalRecord, ...]
    segments_read: tuple[str, ...]  # paths, oldest first
    torn_tail_cut: bool
    torn_tail_path: str | None = None  # the file that was truncated
    torn_tail_offset: int | None = None  # its new length
    torn_bytes_cut: int = 0
    stale_segments_removed: tuple[str, ...] = ()  # left by an interrupted compaction
    damaged: str | None = None  # salvage: the corruption found, and what was kept


# ---------------------------------------------------------------- the log


class WriteAheadLog:
    """The WAL of one replica: open() recovers it, then append() and sync() it.

    Not thread-safe; the runtime's storage-writer step is its only user. After
    any StorageError the log refuses further use: the replica must stop.
    """

    def __init__(
        self,
        directory: str,
        *,
        fsync: bool,
        codec: fmt.RecordCodec,
        segment_size_max: int,
        fs: FileSystem = OS_FILE_SYSTEM,
    ) -> None:
        """Use WriteAheadLog.open(); this only sets up an unopened log."""
        assert segment_size_max > fmt.SEGMENT_HEADER.size
        self.directory = directory
        self.fsync_enabled = fsync
        self.fsync_count = 0  # every fsync of a file or directory this log did
        self._codec = codec
        self._segment_size_max = segment_size_max
        self._fs = fs
        self._segments: list[tuple[int, str, int]] = []  # (sequence, path, size), last is current
        self._file: WritableFile | None = None
        self._tip = 0
        self._unsynced_bytes = 0
        self._failed = False

    # ------------------------------------------------------------ open / recover

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = True,
        codec: fmt.RecordCodec = wire,
        segment_size_max: int = constants.wal_segment_size_max,
        fs: FileSystem = OS_FILE_SYSTEM,
        salvage: bool = False,
    ) -> tuple[WriteAheadLog, RecoveredLog]:
        """Recover the log in `directory` (which must exist) and position for
        appending; `salvage`: repair a corruption instead of raising it."""
        log = cls(
            os.fspath(directory),
            fsync=fsync,
            codec=codec,
            segment_size_max=segment_size_max,
            fs=fs,
        )
        recovered = log._recover(salvage=salvage)
        return log, recovered

    def _recover(self, *, salvage: bool = False) -> RecoveredLog:
        segments, temporaries = fmt.list_directory(self._fs, self.directory)
        for path in temporaries:
            logger.info("removing %s, a WAL segment whose creation was interrupted", path)
            files.remove_file(self._fs, path)
        if not segments:
            self._start_segment(1, base=True, prev_checksum=0, bodies=[])
            return RecoveredLog(records=(), segments_read=(), torn_tail_cut=False)

        records: list[WalRecord] = []
        damage: StorageCorruption | None = None

        def damaged(error: StorageCorruption) -> StorageCorruption:
            if not salvage:
                raise error
            return error

        headers: dict[int, fmt.SegmentHeader] = {}
        broken_headers: dict[int, StorageCorruption] = {}
        for i, (sequence, path) in enumerate(segments):
            try:
                headers[i] = fmt.parse_segment_header(path, fmt.read_head(self._fs, path), sequence)
            except StorageCorruption as error:
                broken_headers[i] = damaged(error)
        bases = [i for i, header in headers.items() if header.base]
        if not bases:
            problem = "no base segment: the start of the log is missing"
            first_broken = broken_headers[min(broken_headers)] if broken_headers else None
            missing = first_broken or StorageCorruption(segments[0][1], 0, problem)
            return self._salvaged(segments, records, damaged(missing))
        first = bases[-1]
        # A broken header before the newest base is a stale segment's (removed
        # below); after it, the segments from there on are not read.
        stop = min((i for i in broken_headers if i > first), default=len(segments))
        if stop < len(segments):
            damage = broken_headers[stop]

        # Read and verify segment by segment (one in memory at a time).
        sizes: list[int] = []
        tip = 0
        torn: fmt.SegmentContent | None = None
        for i in range(first, stop):
            sequence, path = segments[i]
            header = headers[i]
            if i > first:
                if sequence != segments[i - 1][0] + 1:
                    problem = f"segment {segments[i - 1][0] + 1} is missing before this one"
                    damage = damaged(StorageCorruption(path, 0, problem))
                    break
                if header.prev_checksum != tip:
                    problem = "broken chain: segment does not follow its predecessor"
                    damage = damaged(StorageCorruption(path, 16, problem))
                    break
            data = files.read_file(self._fs, path)
            # The store's directory lock keeps other writers out; check anyway.
            assert fmt.parse_segment_header(path, data, sequence) == header
            content = fmt.read_records(
                path,
                data,
                header,
                is_last=i == len(segments) - 1,
                codec=self._codec,
                salvage=salvage,
            )
            records.extend(content.records)
            sizes.append(len(data))
            tip = content.tip
            if content.broken is not None:
                damage = content.broken
                break
            if content.torn_offset is not None:
                torn = content
        if damage is not None:
            return self._salvaged(segments, records, damage)

        # Everything verified: only now change files.
        last_path = segments[-1][1]
        torn_bytes = 0
        if torn is not None:
            assert torn.torn_offset is not None
            torn_bytes = sizes[-1] - torn.torn_offset
            logger.warning(
                "WAL %s ends in a torn write at byte offset %d (%s): cutting %d bytes off",
                last_path,
                torn.torn_offset,
                torn.torn_problem,
                torn_bytes,
            )
            self._truncate(last_path, torn.torn_offset)
            sizes[-1] = torn.torn_offset
        stale = [path for _, path in segments[:first]]
        for path in stale:
            logger.warning("removing %s, left behind by an interrupted compaction", path)
            files.remove_file(self._fs, path)
        if stale:
            self._fsync_directory()

        self._segments = [
            (sequence, path, size)
            for (sequence, path), size in zip(segments[first:], sizes, strict=True)
        ]
        self._file = self._open_for_append(last_path)
        if self.fsync_enabled:
            # What was read may be only in the page cache (the process died,
            # the machine did not; or a full disk paused it): the replica
            # builds on it as durable, so make it so.
            self._guarded(files.fsync_file, self._file, last_path)
            self.fsync_count += 1
        self._tip = tip
        return RecoveredLog(
            records=tuple(records),
            segments_read=tuple(path for _, path in segments[first:]),
            torn_tail_cut=torn is not None,
            torn_tail_path=last_path if torn is not None else None,
            torn_tail_offset=sizes[-1] if torn is not None else None,
            torn_bytes_cut=torn_bytes,
            stale_segments_removed=tuple(stale),
        )

    def _salvaged(
        self,
        segments: Sequence[tuple[int, str]],
        records: Sequence[WalRecord],
        damage: StorageCorruption,
    ) -> RecoveredLog:
        """Keep `records` (they verified) in a new base segment after every
        existing one, so recovery starts there even if what follows is cut
        short; then move the damaged segment and the later ones aside and drop
        the earlier ones (their records are in the new segment)."""
        found = f"{damage.path} at byte offset {damage.offset}: {damage.problem}"
        logger.error(
            "WAL damaged in %s; keeping the %d records before it (a new base segment), "
            "moving the damaged segments aside as *.damaged",
            found,
            len(records),
        )
        bodies = fmt.encode_bodies(self._codec, records)
        self._start_segment(segments[-1][0] + 1, base=True, prev_checksum=0, bodies=bodies)
        for _, path in segments:
            if path >= damage.path:  # segment names sort by sequence
                try:
                    self._fs.rename(path, path + ".damaged")
                except OSError as error:
                    self._failed = True
                    raise StorageError(path, "rename", error) from error
            else:
                files.remove_file(self._fs, path)
        self._fsync_directory()
        kept = len(records)
        return RecoveredLog(
            records=tuple(records),
            segments_read=tuple(path for _, path in segments),
            torn_tail_cut=False,
            damaged=f"{found}; kept the {kept} records before it",
        )

    # ------------------------------------------------------------ writing

    def append(self, records: Sequence[WalRecord]) -> None:
        """Write `records` with one write() call; durable only after sync()."""
        self._check_usable()
        if not records:
            return
        bodies = fmt.encode_bodies(self._codec, records)
        batch_size = sum(fmt.RECORD_HEADER.size + len(body) for body in bodies)
        sequence, path, size = self._segments[-1]
        if size > fmt.SEGMENT_HEADER.size and size + batch_size > self._segment_size_max:
            self._roll()
            sequence, path, size = self._segments[-1]
        data, tip = fmt.encode_chained(bodies, self._tip)
        assert len(data) == batch_size
        assert self._file is not None
        self._guarded(files.write_all, self._file, data, path)
        self._segments[-1] = (sequence, path, size + len(data))
        self._tip = tip
        self._unsynced_bytes += len(data)

    def sync(self) -> None:
        """Make everything appended since the last sync durable with one fsync
        (group commit). Without fsync (tests, experiments) there is nothing to
        flush: append() already handed the bytes to the file system."""
        self._check_usable()
        if self._unsynced_bytes == 0:
            return
        if self.fsync_enabled:
            assert self._file is not None
            self._guarded(files.fsync_file, self._file, self._segments[-1][1])
            self.fsync_count += 1
        self._unsynced_bytes = 0

    def compact(self, seed_records: Sequence[WalRecord]) -> None:
        """Replace the whole log by a new base segment holding `seed_records`.

        The new segment is durable (fsync, rename, directory fsync) before any
        older segment is deleted; a crash in between leaves both, and recovery
        keeps the new one. Anything appended before and not in the seeds is gone.
        """
        self._check_usable()
        bodies = fmt.encode_bodies(self._codec, seed_records)
        old = [path for _, path, _ in self._segments]
        sequence = self._segments[-1][0] + 1
        self._close_file()
        self._segments = []
        self._start_segment(sequence, base=True, prev_checksum=0, bodies=bodies)
        for path in old:
            self._guarded(files.remove_file, self._fs, path)
        self._fsync_directory()

    def close(self) -> None:
        """Close the current segment; call sync() first to keep what is pending."""
        self._close_file()
        self._failed = True  # closed: no further use

    # ------------------------------------------------------------ status

    @property
    def size_bytes(self) -> int:
        return sum(size for _, _, size in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    # ------------------------------------------------------------ internals

    def _roll(self) -> None:
        """Finish the current segment (fsync) and start its successor."""
        sequence, path, _ = self._segments[-1]
        if self.fsync_enabled and self._unsynced_bytes:
            assert self._file is not None
            self._guarded(files.fsync_file, self._file, path)
            self.fsync_count += 1
        self._unsynced_bytes = 0
        self._close_file()
        self._start_segment(sequence + 1, base=False, prev_checksum=self._tip, bodies=[])

    def _start_segment(
        self, sequence: int, *, base: bool, prev_checksum: int, bodies: Sequence[bytes]
    ) -> None:
        """Create segment `sequence` durably with `bodies` in it and make it current."""
        assert self._file is None
        path = os.path.join(self.directory, fmt.segment_file_name(sequence))
        assert not self._fs.exists(path), path
        header, tip = fmt.segment_header(sequence, base=base, prev_checksum=prev_checksum)
        records, tip = fmt.encode_chained(bodies, tip)
        data = header + records
        self.fsync_count += self._guarded(
            files.write_file_durably, self._fs, path, data, fsync=self.fsync_enabled
        )
        self._segments.append((sequence, path, len(data)))
        self._file = self._open_for_append(path)
        self._tip = tip
        self._unsynced_bytes = 0

    def _open_for_append(self, path: str) -> WritableFile:
        try:
            return self._fs.open_append(path)
        except OSError as error:
            self._failed = True
            raise StorageError(path, "open for append", error) from error

    def _truncate(self, path: str, length: int) -> None:
        try:
            file = self._fs.open_write(path)
        except OSError as error:
            raise StorageError(path, "open for truncation", error) from error
        try:
            try:
                file.truncate(length)
            except OSError as error:
                raise StorageError(path, "truncate", error) from error
            if self.fsync_enabled:
                files.fsync_file(file, path)
                self.fsync_count += 1
        finally:
            files.close_file(file, path)

    def _fsync_directory(self) -> None:
        if self.fsync_enabled:
            self._guarded(files.fsync_directory, self._fs, self.directory)
            self.fsync_count += 1

    def _close_file(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            files.close_file(file, self.directory)

    def _check_usable(self) -> None:
        if self._failed:
            raise StorageError(self.directory, "use after a failure or close")

    def _guarded(self, operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a file operation; on StorageError the log is unusable from then on."""
        try:
            return operation(*args, **kwargs)
        except StorageError:
            self._failed = True
            raise
