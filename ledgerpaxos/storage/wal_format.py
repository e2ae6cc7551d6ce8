"""The write-ahead log's bytes: segment and record headers, the checksum chain, parsing.

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
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence
from typing import Protocol

import attrs

from ledgerpaxos import constants
from ledgerpaxos.core.messages import WalRecord
from ledgerpaxos.storage import files
from ledgerpaxos.storage.errors import StorageCorruption
from ledgerpaxos.storage.filesystem import FileSystem

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

person_segment = b"lpax-wal-seg"
person_record_header = b"lpax-wal-rechdr"
person_record_body = b"lpax-wal-body"

segment_name = re.compile(r"^wal-(\d{20})\.log$")
segment_temporary_name = re.compile(r"^wal-(\d{20})\.log\.tmp$")


def segment_file_name(sequence: int) -> str:
    assert sequence >= 1
    return f"wal-{sequence:020d}.log"


class RecordCodec(Protocol):
    """What the WAL needs from `wire`; the module itself satisfies it."""

    @property
    def FrameError(self) -> type[Exception]: ...  # named as wire names it

    def encode_record(self, record: WalRecord) -> bytes: ...

    def decode_record(self, data: bytes) -> WalRecord: ...


# ---------------------------------------------------------------- encoding


def segment_header(sequence: int, *, base: bool, prev_checksum: int) -> tuple[bytes, int]:
    """The header bytes and their checksum (the chain tip of an empty segment)."""
    flags = segment_flag_base if base else 0
    assert not base or prev_checksum == 0
    head = SEGMENT_HEADER.pack(segment_magic, segment_version, flags, sequence, prev_checksum, 0)
    checksum = files.checksum64(head[:24], person=person_segment)
    return head[:24] + checksum.to_bytes(8, "little"), checksum


def record_header(body: bytes, prev_checksum: int) -> tuple[bytes, int]:
    assert len(body) <= record_body_size_max
    body_checksum = files.checksum64(body, person=person_record_body)
    head = RECORD_HEADER.pack(record_magic, len(body), body_checksum, prev_checksum, 0)
    checksum = files.checksum64(head[:24], person=person_record_header)
    return head[:24] + checksum.to_bytes(8, "little"), checksum


def encode_chained(bodies: Sequence[bytes], tip: int) -> tuple[bytes, int]:
    """Frame `bodies` as records chained on from `tip`; returns the bytes and the new tip."""
    chunks: list[bytes] = []
    for body in bodies:
        header, tip = record_header(body, tip)
        chunks.append(header)
        chunks.append(body)
    return b"".join(chunks), tip


def encode_bodies(codec: RecordCodec, records: Sequence[WalRecord]) -> list[bytes]:
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
class SegmentHeader:
    sequence: int
    base: bool
    prev_checksum: int
    checksum: int


@attrs.frozen
class Record:
    offset: int
    end: int
    prev_checksum: int
    checksum: int
    body: bytes


@attrs.frozen
class Broken:
    offset: int
    problem: str
    torn_possible: bool  # False when the header verifies but says the impossible


def parse_segment_header(path: str, data: bytes, sequence_in_name: int) -> SegmentHeader:
    if len(data) < SEGMENT_HEADER.size:
        raise StorageCorruption(path, 0, f"segment header incomplete ({len(data)} bytes)")
    magic, version, flags, sequence, prev_checksum, checksum = SEGMENT_HEADER.unpack_from(data)
    if magic != segment_magic:
        raise StorageCorruption(path, 0, "not a WAL segment (bad magic)")
    if checksum != files.checksum64(data[:24], person=person_segment):
        raise StorageCorruption(path, 0, "segment header checksum mismatch")
    if version != segment_version:
        raise StorageCorruption(path, 4, f"unsupported WAL segment version {version}")
    if flags & ~segment_flag_base:
        raise StorageCorruption(path, 6, f"unknown segment flags {flags:#x}")
    if sequence != sequence_in_name:
        raise StorageCorruption(path, 8, f"segment says sequence {sequence}, its name another")
    return SegmentHeader(sequence, bool(flags & segment_flag_base), prev_checksum, checksum)


def parse_record(data: bytes, offset: int) -> Record | Broken:
    """The record at `offset` if it verifies on its own (chain not checked)."""
    remaining = len(data) - offset
    if remaining < RECORD_HEADER.size:
        return Broken(offset, f"record header incomplete ({remaining} bytes)", True)
    magic, length, body_checksum, prev_checksum, checksum = RECORD_HEADER.unpack_from(data, offset)
    if magic != record_magic:
        return Broken(offset, "bad record magic", True)
    if checksum != files.checksum64(data[offset : offset + 24], person=person_record_header):
        return Broken(offset, "record header checksum mismatch", True)
    if length > record_body_size_max:
        return Broken(offset, f"record body length {length} exceeds the maximum", False)
    start = offset + RECORD_HEADER.size
    end = start + length
    if end > len(data):
        problem = f"record body incomplete ({len(data) - start} of {length} bytes)"
        return Broken(offset, problem, True)
    body = data[start:end]
    if body_checksum != files.checksum64(body, person=person_record_body):
        return Broken(offset, "record body checksum mismatch", True)
    return Record(offset, end, prev_checksum, checksum, body)


def valid_record_after(data: bytes, offset: int) -> int | None:
    """Offset of the first record after `offset` that verifies on its own, if any."""
    position = data.find(record_magic_bytes, offset + 1)
    while position != -1:
        if isinstance(parse_record(data, position), Record):
            return position
        position = data.find(record_magic_bytes, position + 1)
    return None


@attrs.frozen
class SegmentContent:
    records: list[WalRecord]
    tip: int
    torn_offset: int | None  # where a torn tail starts (only in the last segment)
    torn_problem: str = ""
    # With salvage: the records before a broken one that is not a torn tail.
    broken: StorageCorruption | None = None


def read_records(
    path: str,
    data: bytes,
    header: SegmentHeader,
    *,
    is_last: bool,
    codec: RecordCodec,
    salvage: bool = False,
) -> SegmentContent:
    """The segment's records, verified. A broken record that is not a torn
    tail raises StorageCorruption; with `salvage` it ends the content instead
    (`broken` says where and why) and the records before it are returned."""
    try:
        return _read_records(path, data, header, is_last=is_last, codec=codec)
    except _Broken as broken:
        if not salvage:
            raise broken.error from broken.__cause__
        return SegmentContent(broken.records, broken.tip, None, broken=broken.error)


class _Broken(Exception):
    def __init__(self, error: StorageCorruption, records: list[WalRecord], tip: int) -> None:
        self.error, self.records, self.tip = error, records, tip


def _read_records(
    path: str,
    data: bytes,
    header: SegmentHeader,
    *,
    is_last: bool,
    codec: RecordCodec,
) -> SegmentContent:
    records: list[WalRecord] = []
    tip = header.checksum
    offset = SEGMENT_HEADER.size

    def broken(problem: str) -> _Broken:
        return _Broken(StorageCorruption(path, offset, problem), records, tip)

    while offset < len(data):
        parsed = parse_record(data, offset)
        if isinstance(parsed, Broken):
            if not (is_last and parsed.torn_possible):
                raise broken(parsed.problem)
            later = valid_record_after(data, offset)
            if later is not None:
                raise broken(f"{parsed.problem}, with a valid record after it at {later}")
            return SegmentContent(records, tip, offset, parsed.problem)
        if parsed.prev_checksum != tip:
            raise broken("broken chain: record does not follow its predecessor")
        try:
            record = codec.decode_record(parsed.body)
        except codec.FrameError as error:
            raise broken(f"record verifies but does not decode: {error}") from error
        records.append(record)
        tip = parsed.checksum
        offset = parsed.end
    assert offset == len(data)
    return SegmentContent(records, tip, None)


def read_head(fs: FileSystem, path: str) -> bytes:
    """The first bytes of a segment, enough for its header."""
    return files.read_file(fs, path, SEGMENT_HEADER.size)


def list_directory(fs: FileSystem, directory: str) -> tuple[list[tuple[int, str]], list[str]]:
    """Segments as (sequence, path) in order, and leftover temporary files."""
    names = files.list_directory(fs, directory)
    segments: list[tuple[int, str]] = []
    temporaries: list[str] = []
    for name in sorted(names):
        if match := segment_name.match(name):
            segments.append((int(match.group(1)), os.path.join(directory, name)))
        elif segment_temporary_name.match(name):
            temporaries.append(os.path.join(directory, name))
    segments.sort()
    return segments, temporaries
