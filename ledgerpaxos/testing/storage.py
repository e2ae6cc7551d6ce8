"""MemoryStorage: the executor's Storage as plain data, for the core's tests."""

from __future__ import annotations

from collections.abc import Sequence

from ledgerpaxos.core.messages import LogEntry, Snapshot, WalRecord
from ledgerpaxos.storage.recovered import Recovered, fold_records


class MemoryStorage:
    """The WAL as a list of records and the newest snapshot; nothing is lost
    on a restart (a crash here is a process ending after its Ready).

    `compacts=False` behaves like a ReplicaStore whose WAL stays under
    compact_size_min: compaction is skipped and old entries stay."""

    def __init__(self, *, compacts: bool = True, rejoining: bool = False) -> None:
        self.records: list[WalRecord] = []
        self.snapshot: Snapshot | None = None
        self.compacts = compacts
        self.rejoining = rejoining  # as the identity file says (storage/identity.py)

    def append(self, records: Sequence[WalRecord]) -> None:
        self.records.extend(records)

    def sync(self) -> None:
        pass  # appended records are kept as they are: nothing to make durable

    def write_snapshot(self, snapshot: Snapshot) -> None:
        if self.snapshot is None or snapshot.slot > self.snapshot.slot:
            self.snapshot = snapshot

    def compact(self, seed_records: Sequence[WalRecord]) -> bool:
        if not self.compacts:
            return False
        self.records = list(seed_records)
        return True

    def mark_rejoined(self) -> None:
        self.rejoining = False

    def recovered(self) -> Recovered:
        """What a restart finds, as ReplicaStore.open() would fold it."""
        return fold_records(self.records, self.snapshot, torn=False)

    @property
    def entries(self) -> dict[int, LogEntry]:
        return self.recovered().entries
