"""The real `wire` codec for WAL records and snapshots, memoized for the simulator.

Storage encodes every record and decodes it again to verify it before writing
(STYLE.md, rule 5). In a simulation five replicas store the same entries, and
compaction stores them again, so the same construct work repeats many times.
This codec returns exactly the bytes and values `wire` returns (it calls
`wire` on every miss); it only remembers them for the length of one run.
Values are frozen attrs classes, so they can be dictionary keys; lookups do
not depend on the order of anything, so runs stay deterministic.
"""

from __future__ import annotations

from typing import Any

import wire
from ledgerpaxos.core.messages import Snapshot, WalRecord

_entries_max = 200_000  # per cache; cleared when full, a bound on memory


class CachingCodec:
    """Satisfies storage's StoreCodec (RecordCodec + SnapshotCodec)."""

    FrameError = wire.FrameError

    def __init__(self) -> None:
        self._encoded: dict[WalRecord, bytes] = {}
        self._decoded: dict[bytes, WalRecord] = {}
        self._snapshots_encoded: dict[Snapshot, bytes] = {}
        self._snapshots_decoded: dict[bytes, Snapshot] = {}

    def encode_record(self, record: WalRecord) -> bytes:
        body = self._encoded.get(record)
        if body is None:
            body = wire.encode_record(record)
            _remember(self._encoded, record, body)
        return body

    def decode_record(self, data: bytes) -> WalRecord:
        key = bytes(data)
        record = self._decoded.get(key)
        if record is None:
            record = wire.decode_record(key)  # raises FrameError: not remembered
            _remember(self._decoded, key, record)
        return record

    def encode_snapshot(self, snapshot: Snapshot) -> bytes:
        body = self._snapshots_encoded.get(snapshot)
        if body is None:
            body = wire.encode_snapshot(snapshot)
            _remember(self._snapshots_encoded, snapshot, body)
        return body

    def decode_snapshot(self, data: bytes) -> Snapshot:
        key = bytes(data)
        snapshot = self._snapshots_decoded.get(key)
        if snapshot is None:
            snapshot = wire.decode_snapshot(key)
            _remember(self._snapshots_decoded, key, snapshot)
        return snapshot


def _remember(cache: dict[Any, Any], key: object, value: object) -> None:
    if len(cache) >= _entries_max:
        cache.clear()
    cache[key] = value
