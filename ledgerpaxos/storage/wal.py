"""The write-ahead log: append-only segment files with a checksum chain.

Files `wal-<sequence:020d>.log` in the replica's data directory, sequence numbers
counting up from 1. Integers are little-endian; checksums are 64-bit BLAKE2b with
a different personalisation for each kind (see files.checksum64).

Segment header, 32 bytes, then records back to back:

     0  u32  magic            "LPWS"
     4  u16  version          1
     6  u16  flags            bit 0: base segment (starts a new chain)
     8  u64  sequence         the number in the file name
    16  u64  prev_checksum    chain tip of the predecessor segment; 0 in a base segment
    24  u64  header_checksum  of bytes 0..24

Record: header, 32 bytes, then `body_length` bytes of body (wire.encode_record):

     0  u32  magic            "LPWR" (lets recovery find records after a broken one)
     4  u32  body_length
     8  u64  body_checksum    of the body
    16  u64  prev_checksum    the chain: the previous record's header_checksum, or the
                              segment header's for the first record of a segment
    24  u64  header_checksum  of bytes 0..24; it covers the body checksum and the chain

The chain. The "tip" of a segment is the header checksum of its last record (or of
its segment header while it has none). One chain runs through the whole log:
segment header -> record -> record -> ... -> tip -> next segment's header (its
prev_checksum) -> its records. A swapped, dropped, duplicated or foreign record or
segment breaks it. Compaction starts a new chain: a base segment (flag bit 0,
prev_checksum 0) holding the seed records; recovery starts at the newest base
segment and removes the older ones, which an interrupted compaction left behind.

New segments (a roll or a compaction) are written to `<name>.tmp`, fsynced,
renamed and the directory fsynced before any record goes into them: a segment
file with its final name always has a valid header. Before rolling, the old
segment is fsynced, so only the last segment can end in a torn write.

Recovery reads the segments from the newest base on; every record is checked
(magic, header checksum, length, body checksum, chain) and decoded. A record that
fails in the last segment, with no valid record anywhere after it, is a torn
write from a crash: the file is truncated there, fsynced, and a warning logged.
Anything else that fails is StorageCorruption naming the file and byte offset.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from collections.abc import Callable, Sequence
from typing import ParamSpec, Protocol, TypeVar

import attrs

import wire
from ledgerpaxos import constants
from ledgerpaxos.core.messages import WalRecord
from ledgerpaxos.storage import files
from ledgerpaxos.storage.errors import StorageCorruption, StorageError
from ledgerpaxos.storage.filesystem import OS_FILE_SYSTEM, FileSystem, WritableFile

logger = logging.getLogger("ledgerpaxos.storage")

P = ParamSpec("P")
T = TypeVar("T")

SEGMENT_HEADER = struct.Struct("<IHHQQQ")
RECORD_HEADER = struct.Struct("<IIQQQ")
assert SEGMENT_HEADER.size == 32 and RECORD_HEADER.size == 32

segment_magic = int.from_bytes(b"LPWS", "little")
record_magic = int.from_bytes(b"LPWR", "little")
record_magic_bytes = b"LPWR"
segment_version = 1
segment_flag_base = 0x1

# A record body carries at most one slot's batch, which travels in one frame.
record_body_size_max = constants.message_size_max

_person_segment = b"lpax-wal-seg"
_person_record_header = b"lpax-wal-rechdr"
_person_record_body = b"lpax-wal-body"

_segment_name = re.compile(r"^wal-(\d{20})\.log$")
_segment_temporary_name = re.compile(r"^wal-(\d{20})\.log\.tmp$")


def segment_file_name(sequence: int) -> str:
    assert sequence >= 1
    return f"wal-{sequence:020d}.log"


class RecordCodec(Protocol):
    """What the WAL needs from `wire`; the module itself satisfies it."""

    @property
    def FrameError(self) -> type[Exception]: ...  # named as wire names it

    def encode_record(self, record: WalRecord) -> bytes: ...

    def decode_record(self, data: bytes) -> WalRecord: ...


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


# ---------------------------------------------------------------- encoding


def _segment_header(sequence: int, *, base: bool, prev_checksum: int) -> tuple[bytes, int]:
    """The header bytes and their checksum (the chain tip of an empty segment)."""
    flags = segment_flag_base if base else 0
    assert not base or prev_checksum == 0
    head = SEGMENT_HEADER.pack(segment_magic, segment_version, flags, sequence, prev_checksum, 0)
    checksum = files.checksum64(head[:24], person=_person_segment)
    return head[:24] + checksum.to_bytes(8, "little"), checksum


def _record_header(body: bytes, prev_checksum: int) -> tuple[bytes, int]:
    assert len(body) <= record_body_size_max
    body_checksum = files.checksum64(body, person=_person_record_body)
    head = RECORD_HEADER.pack(record_magic, len(body), body_checksum, prev_checksum, 0)
    checksum = files.checksum64(head[:24], person=_person_record_header)
    return head[:24] + checksum.to_bytes(8, "little"), checksum


def _encode_chained(bodies: Sequence[bytes], tip: int) -> tuple[bytes, int]:
    """Frame `bodies` as records chained on from `tip`; returns the bytes and the new tip."""
    chunks: list[bytes] = []
    for body in bodies:
        header, tip = _record_header(body, tip)
        chunks.append(header)
        chunks.append(body)
    return b"".join(chunks), tip


def _encode_bodies(codec: RecordCodec, records: Sequence[WalRecord]) -> list[bytes]:
    """Encode each record and verify it before it is written: decode what was encoded."""
    bodies = []
    for record in records:
        body = codec.encode_record(record)
        assert len(body) <= record_body_size_max, (len(body), record_body_size_max)
        decoded = codec.decode_record(body)
        assert decoded == record, f"record changed in an encode/decode round trip: {record!r}"
        bodies.append(body)
    return bodies


# ---------------------------------------------------------------- decoding


@attrs.frozen
class _SegmentHeader:
    sequence: int
    base: bool
    prev_checksum: int
    checksum: int


@attrs.frozen
class _Record:
    offset: int
    end: int
    prev_checksum: int
    checksum: int
    body: bytes


@attrs.frozen
class _Broken:
    offset: int
    problem: str
    torn_possible: bool  # False when the header verifies but says the impossible


def _parse_segment_header(path: str, data: bytes, sequence_in_name: int) -> _SegmentHeader:
    if len(data) < SEGMENT_HEADER.size:
        raise StorageCorruption(path, 0, f"segment header incomplete ({len(data)} bytes)")
    magic, version, flags, sequence, prev_checksum, checksum = SEGMENT_HEADER.unpack_from(data)
    if magic != segment_magic:
        raise StorageCorruption(path, 0, "not a WAL segment (bad magic)")
    if checksum != files.checksum64(data[:24], person=_person_segment):
        raise StorageCorruption(path, 0, "segment header checksum mismatch")
    if version != segment_version:
        raise StorageCorruption(path, 4, f"unsupported WAL segment version {version}")
    if flags & ~segment_flag_base:
        raise StorageCorruption(path, 6, f"unknown segment flags {flags:#x}")
    if sequence != sequence_in_name:
        raise StorageCorruption(path, 8, f"segment says sequence {sequence}, its name another")
    return _SegmentHeader(sequence, bool(flags & segment_flag_base), prev_checksum, checksum)


def _parse_record(data: bytes, offset: int) -> _Record | _Broken:
    """The record at `offset` if it verifies on its own (chain not checked)."""
    remaining = len(data) - offset
    if remaining < RECORD_HEADER.size:
        return _Broken(offset, f"record header incomplete ({remaining} bytes)", True)
    magic, length, body_checksum, prev_checksum, checksum = RECORD_HEADER.unpack_from(data, offset)
    if magic != record_magic:
        return _Broken(offset, "bad record magic", True)
    if checksum != files.checksum64(data[offset : offset + 24], person=_person_record_header):
        return _Broken(offset, "record header checksum mismatch", True)
    if length > record_body_size_max:
        return _Broken(offset, f"record body length {length} exceeds the maximum", False)
    start = offset + RECORD_HEADER.size
    end = start + length
    if end > len(data):
        problem = f"record body incomplete ({len(data) - start} of {length} bytes)"
        return _Broken(offset, problem, True)
    body = data[start:end]
    if body_checksum != files.checksum64(body, person=_person_record_body):
        return _Broken(offset, "record body checksum mismatch", True)
    return _Record(offset, end, prev_checksum, checksum, body)


def _valid_record_after(data: bytes, offset: int) -> int | None:
    """Offset of the first record after `offset` that verifies on its own, if any."""
    position = data.find(record_magic_bytes, offset + 1)
    while position != -1:
        if isinstance(_parse_record(data, position), _Record):
            return position
        position = data.find(record_magic_bytes, position + 1)
    return None


@attrs.frozen
class _SegmentContent:
    records: list[WalRecord]
    tip: int
    torn_offset: int | None  # where a torn tail starts (only in the last segment)
    torn_problem: str = ""


def _read_records(
    path: str,
    data: bytes,
    header: _SegmentHeader,
    *,
    is_last: bool,
    codec: RecordCodec,
) -> _SegmentContent:
    records: list[WalRecord] = []
    tip = header.checksum
    offset = SEGMENT_HEADER.size
    while offset < len(data):
        parsed = _parse_record(data, offset)
        if isinstance(parsed, _Broken):
            if not (is_last and parsed.torn_possible):
                raise StorageCorruption(path, offset, parsed.problem)
            later = _valid_record_after(data, offset)
            if later is not None:
                raise StorageCorruption(
                    path, offset, f"{parsed.problem}, with a valid record after it at {later}"
                )
            return _SegmentContent(records, tip, offset, parsed.problem)
        if parsed.prev_checksum != tip:
            raise StorageCorruption(
                path, offset, "broken chain: record does not follow its predecessor"
            )
        try:
            record = codec.decode_record(parsed.body)
        except codec.FrameError as error:
            raise StorageCorruption(
                path, offset, f"record verifies but does not decode: {error}"
            ) from error
        records.append(record)
        tip = parsed.checksum
        offset = parsed.end
    assert offset == len(data)
    return _SegmentContent(records, tip, None)


def _read_head(fs: FileSystem, path: str) -> bytes:
    """The first bytes of a segment, enough for its header."""
    return files.read_file(fs, path, SEGMENT_HEADER.size)


def _list_directory(fs: FileSystem, directory: str) -> tuple[list[tuple[int, str]], list[str]]:
    """Segments as (sequence, path) in order, and leftover temporary files."""
    names = files.list_directory(fs, directory)
    segments: list[tuple[int, str]] = []
    temporaries: list[str] = []
    for name in sorted(names):
        if match := _segment_name.match(name):
            segments.append((int(match.group(1)), os.path.join(directory, name)))
        elif _segment_temporary_name.match(name):
            temporaries.append(os.path.join(directory, name))
    segments.sort()
    return segments, temporaries


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
        codec: RecordCodec,
        segment_size_max: int,
        fs: FileSystem = OS_FILE_SYSTEM,
    ) -> None:
        """Use WriteAheadLog.open(); this only sets up an unopened log."""
        assert segment_size_max > SEGMENT_HEADER.size
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
        codec: RecordCodec = wire,
        segment_size_max: int = constants.wal_segment_size_max,
        fs: FileSystem = OS_FILE_SYSTEM,
    ) -> tuple[WriteAheadLog, RecoveredLog]:
        """Recover the log in `directory` (which must exist) and position for appending."""
        log = cls(
            os.fspath(directory),
            fsync=fsync,
            codec=codec,
            segment_size_max=segment_size_max,
            fs=fs,
        )
        recovered = log._recover()
        return log, recovered

    def _recover(self) -> RecoveredLog:
        segments, temporaries = _list_directory(self._fs, self.directory)
        for path in temporaries:
            logger.info("removing %s, a WAL segment whose creation was interrupted", path)
            files.remove_file(self._fs, path)
        if not segments:
            self._start_segment(1, base=True, prev_checksum=0, bodies=[])
            return RecoveredLog(records=(), segments_read=(), torn_tail_cut=False)

        headers = [
            _parse_segment_header(path, _read_head(self._fs, path), sequence)
            for sequence, path in segments
        ]
        bases = [i for i, header in enumerate(headers) if header.base]
        if not bases:
            raise StorageCorruption(
                segments[0][1], 0, "no base segment: the start of the log is missing"
            )
        first = bases[-1]

        # Read and verify segment by segment (one in memory at a time).
        records: list[WalRecord] = []
        sizes: list[int] = []
        tip = 0
        torn: _SegmentContent | None = None
        for i in range(first, len(segments)):
            sequence, path = segments[i]
            header = headers[i]
            if i > first:
                if sequence != segments[i - 1][0] + 1:
                    raise StorageCorruption(
                        path, 0, f"segment {segments[i - 1][0] + 1} is missing before this one"
                    )
                if header.prev_checksum != tip:
                    raise StorageCorruption(
                        path, 16, "broken chain: segment does not follow its predecessor"
                    )
            data = files.read_file(self._fs, path)
            # The store's directory lock keeps other writers out; check anyway.
            assert _parse_segment_header(path, data, sequence) == header
            content = _read_records(
                path, data, header, is_last=i == len(segments) - 1, codec=self._codec
            )
            records.extend(content.records)
            sizes.append(len(data))
            tip = content.tip
            if content.torn_offset is not None:
                torn = content

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

    # ------------------------------------------------------------ writing

    def append(self, records: Sequence[WalRecord]) -> None:
        """Write `records` with one write() call; durable only after sync()."""
        self._check_usable()
        if not records:
            return
        bodies = _encode_bodies(self._codec, records)
        batch_size = sum(RECORD_HEADER.size + len(body) for body in bodies)
        sequence, path, size = self._segments[-1]
        if size > SEGMENT_HEADER.size and size + batch_size > self._segment_size_max:
            self._roll()
            sequence, path, size = self._segments[-1]
        data, tip = _encode_chained(bodies, self._tip)
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
        bodies = _encode_bodies(self._codec, seed_records)
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
        path = os.path.join(self.directory, segment_file_name(sequence))
        assert not self._fs.exists(path), path
        header, tip = _segment_header(sequence, base=base, prev_checksum=prev_checksum)
        records, tip = _encode_chained(bodies, tip)
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
