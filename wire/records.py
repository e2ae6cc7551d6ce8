"""Bodies of WAL records and snapshots.

Storage wraps these in its own length, checksum and chain framing; this module
only maps a record or snapshot to bytes and back. Decoding raises FrameError
only (storage decides whether that means a torn tail or corruption); encoding
raises ValueError for a value the format cannot carry.
"""

from __future__ import annotations

import enum

from construct import Error, Struct, Switch, this

from ledgerpaxos.core.messages import (
    AcceptRecord,
    CommitRecord,
    PromiseRecord,
    Snapshot,
    WalRecord,
)

from . import packed
from .fields import U8, AttrsAdapter, BallotField, Slot, StrictEnum
from .strict import build_value, parse_exact
from .values import LogEntryField, SnapshotField


class RecordType(enum.IntEnum):
    """The first byte of a WAL record body. Never renumber: append."""

    promise = 1
    accept = 2
    commit = 3


assert (packed.record_type_promise, packed.record_type_accept, packed.record_type_commit) == (
    RecordType.promise,
    RecordType.accept,
    RecordType.commit,
), "the record packer numbers record types as RecordType does"

_RECORD_FIELDS = {
    RecordType.promise: AttrsAdapter(PromiseRecord, Struct("ballot" / BallotField)),
    RecordType.accept: AttrsAdapter(AcceptRecord, Struct("entry" / LogEntryField)),
    RecordType.commit: AttrsAdapter(CommitRecord, Struct("commit_slot" / Slot)),
}
_RECORD_TYPE_BY_CLASS = {field.value_class: type_ for type_, field in _RECORD_FIELDS.items()}

RecordStruct = Struct(
    "type" / StrictEnum(U8, RecordType),
    "record" / Switch(this.type, _RECORD_FIELDS, default=Error),
)


def encode_record(record: WalRecord) -> bytes:
    """A record type byte, then the record's body. ValueError if it does not fit.

    Packed by `packed.RECORD_PACKER`, which writes the bytes of `RecordStruct`."""
    if type(record) not in _RECORD_TYPE_BY_CLASS:
        raise ValueError(f"not a WAL record: {record!r}")
    return packed.RECORD_PACKER.encode(record)


def decode_record(data: bytes | bytearray | memoryview) -> WalRecord:
    """The record in exactly `data`; FrameError if malformed."""
    record: WalRecord = packed.RECORD_PACKER.decode(data)
    return record


def encode_record_reference(record: WalRecord) -> bytes:
    """`encode_record` by the construct declaration (the reference, for tests)."""
    record_type = _RECORD_TYPE_BY_CLASS.get(type(record))
    if record_type is None:
        raise ValueError(f"not a WAL record: {record!r}")
    return build_value(RecordStruct, {"type": record_type, "record": record}, "WAL record")


def decode_record_reference(data: bytes | bytearray | memoryview) -> WalRecord:
    """`decode_record` by the construct declaration (the reference, for tests)."""
    record: WalRecord = parse_exact(RecordStruct, data, "WAL record").record
    return record


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """The body of a snapshot file. ValueError if it does not fit.

    Packed by `packed.SNAPSHOT_PACKER`, which writes the bytes of `SnapshotField`."""
    return packed.SNAPSHOT_PACKER.encode(snapshot)


def decode_snapshot(data: bytes | bytearray | memoryview) -> Snapshot:
    """The snapshot in exactly `data`; FrameError if malformed."""
    snapshot: Snapshot = packed.SNAPSHOT_PACKER.decode(data)
    return snapshot


def encode_snapshot_reference(snapshot: Snapshot) -> bytes:
    """`encode_snapshot` by the construct declaration (the reference, for tests)."""
    return build_value(SnapshotField, snapshot, "snapshot")


def decode_snapshot_reference(data: bytes | bytearray | memoryview) -> Snapshot:
    """`decode_snapshot` by the construct declaration (the reference, for tests)."""
    snapshot: Snapshot = parse_exact(SnapshotField, data, "snapshot")
    return snapshot
