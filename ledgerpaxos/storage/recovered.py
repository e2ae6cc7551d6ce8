"""What WAL records add up to: the one fold of the record types.

Recovery folds a replica's WAL into `Recovered`; the simulator's audit of
what is durable and the tests' memory storage fold with the same `WalFold`.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ledgerpaxos.core.messages import (
    AcceptRecord,
    Ballot,
    CommitRecord,
    LogEntry,
    PromiseRecord,
    Snapshot,
    WalRecord,
)


@attrs.frozen(kw_only=True)
class Recovered:
    """The durable state of a replica, as found when it starts."""

    snapshot: Snapshot | None
    promised: Ballot  # highest PromiseRecord ballot; Ballot.zero() if none
    entries: dict[int, LogEntry]  # slot -> the last AcceptRecord written for it
    commit_slot: int  # highest CommitRecord; 0 if none
    torn_tail_cut: bool
    # The WAL was damaged and salvaged (wal.py): what was found where. The
    # replica may have lost promises and acceptances: it rejoins.
    damaged: str | None = None

    @staticmethod
    def empty() -> Recovered:
        """A new replica's state: nothing promised, accepted or committed."""
        return Recovered(
            snapshot=None, promised=Ballot.zero(), entries={}, commit_slot=0, torn_tail_cut=False
        )


class WalFold:
    """Records replayed in order: the highest promise, the last acceptance
    per slot, the highest commit point."""

    def __init__(self) -> None:
        self.promised = Ballot.zero()
        self.entries: dict[int, LogEntry] = {}
        self.commit_slot = 0

    def add(self, records: Iterable[WalRecord]) -> None:
        for record in records:
            if isinstance(record, PromiseRecord):
                self.promised = max(self.promised, record.ballot)
            elif isinstance(record, AcceptRecord):
                self.entries[record.entry.slot] = record.entry
            elif isinstance(record, CommitRecord):
                self.commit_slot = max(self.commit_slot, record.commit_slot)
            else:
                raise AssertionError(f"unknown WAL record {record!r}")

    def recovered(self, snapshot: Snapshot | None, *, torn: bool) -> Recovered:
        return Recovered(
            snapshot=snapshot,
            promised=self.promised,
            entries=dict(self.entries),
            commit_slot=self.commit_slot,
            torn_tail_cut=torn,
        )


def fold_records(
    records: Iterable[WalRecord], snapshot: Snapshot | None, *, torn: bool
) -> Recovered:
    """Replay WAL records in order into a Recovered."""
    fold = WalFold()
    fold.add(records)
    return fold.recovered(snapshot, torn=torn)
