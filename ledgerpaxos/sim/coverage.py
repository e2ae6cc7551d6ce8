"""Coverage marks: which interesting things a run actually made happen.

A checker that never saw a leader change proves nothing about leader changes.
Each run counts its marks; a batch reports how many runs hit each one, and a
batch of 1000 seeds that misses a REQUIRED mark fails (tools/sim.py).
"""

from __future__ import annotations

LEADER_CHANGE = "leader change"
BALLOT_PREEMPTED = "ballot preempted"
CHECKPOINT_INSTALL = "checkpoint install"
TORN_TAIL_CUT = "torn WAL tail cut on recovery"
DUPLICATE_FROM_TABLE = "duplicate answered from the client table"
PARTITION_HEALED = "partition healed"
DISK_LOST = "restart on a lost disk"
REJOINED = "rejoined after a lost or damaged disk"
WAL_SALVAGED = "damaged WAL salvaged, replica rejoining"
BIT_FLIPPED = "bit flipped in a WAL segment or a snapshot"
DISK_ROLLED_BACK = "restart on an older copy of the disk"
DISK_FULL_PAUSED = "paused by a full disk"
DISK_FULL_RESUMED = "resumed after a full disk"
ACCOUNT_OPENED = "account opened through the log"
SESSION_EVICTED = "request refused: its session was evicted"
INSTALL_IN_PARTS = "checkpoint installed in parts"
TICK_NOT_DUE = "a tick the core said was not due did nothing"

REQUIRED: tuple[str, ...] = (
    LEADER_CHANGE,
    BALLOT_PREEMPTED,
    CHECKPOINT_INSTALL,
    TORN_TAIL_CUT,
    DUPLICATE_FROM_TABLE,
    PARTITION_HEALED,
    DISK_LOST,
    REJOINED,
    DISK_FULL_RESUMED,
    ACCOUNT_OPENED,
    SESSION_EVICTED,
    INSTALL_IN_PARTS,
    TICK_NOT_DUE,
)

# Reported, not required.
CRASH_RESTART = "crash and restart"
CRASH_MID_IO = "crash inside a group commit/snapshot/compaction"
IO_ERROR_STOP = "I/O error stopped a replica"
LEADER_KILLED = "leader killed"
PAUSE = "replica paused"
ONE_WAY_HEALED = "one-way partition healed"
SNAPSHOT_RESTORED = "restart from a snapshot"
WAL_COMPACTED = "WAL compacted"
DUPLICATE_IN_LOG = "duplicate in the log executed once"
REJECTED_TRANSFER = "transfer rejected by the ledger"
RESEND_ACROSS_LEADER_CHANGE = "re-send answered across a leader change"
RESEND_ACROSS_CRASH = "re-send answered across a crash"
RESEND_ACROSS_INSTALL = "re-send answered across a checkpoint install"
INSTALL_RESUMED = "checkpoint install resumed from another replica"

INFORMATIONAL: tuple[str, ...] = (
    CRASH_RESTART,
    CRASH_MID_IO,
    IO_ERROR_STOP,
    LEADER_KILLED,
    PAUSE,
    ONE_WAY_HEALED,
    SNAPSHOT_RESTORED,
    WAL_COMPACTED,
    DUPLICATE_IN_LOG,
    REJECTED_TRANSFER,
    RESEND_ACROSS_LEADER_CHANGE,
    RESEND_ACROSS_CRASH,
    RESEND_ACROSS_INSTALL,
    INSTALL_RESUMED,
    WAL_SALVAGED,
    BIT_FLIPPED,
    DISK_ROLLED_BACK,
    DISK_FULL_PAUSED,
)

ALL: tuple[str, ...] = REQUIRED + INFORMATIONAL


class Marks:
    """How often each mark was hit in one run."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def hit(self, mark: str) -> None:
        assert mark in ALL, mark
        self.counts[mark] = self.counts.get(mark, 0) + 1

    def as_tuple(self) -> tuple[tuple[str, int], ...]:
        return tuple((mark, self.counts[mark]) for mark in ALL if mark in self.counts)
