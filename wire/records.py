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

from .fields import U8, AttrsAdapter, BallotField, Slot, StrictEnum
from .strict import build_value, parse_exact
from .values import LogEntryField, SnapshotField


class RecordType(enum.IntEnum):
    """The first byte of a WAL record body. Never renumber: append."""

    promise = 1
    accept = 2
    commit = 3


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
    """A record type byte, then the record's body. ValueError if it does not fit."""
    record_type = _RECORD_TYPE_BY_CLASS.get(type(record))
    if record_type is None:
        raise ValueError(f"not a WAL record: {record!r}")
    return build_value(RecordStruct, {"type": record_type, "record": record}, "WAL record")


def decode_record(data: bytes | bytearray | memoryview) -> WalRecord:
    """The record in exactly `data`; FrameError if malformed."""
    record: WalRecord = parse_exact(RecordStruct, data, "WAL record").record
    return record


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """The body of a snapshot file. ValueError if it does not fit."""
    return build_value(SnapshotField, snapshot, "snapshot")


def decode_snapshot(data: bytes | bytearray | memoryview) -> Snapshot:
    """The snapshot in exactly `data`; FrameError if malformed."""
    snapshot: Snapshot = parse_exact(SnapshotField, data, "snapshot")
    return snapshot
