"""Write-ahead log, snapshots and recovery for one replica (plain synchronous file I/O).

    store.py       ReplicaStore: one data directory (lock, WAL, snapshots)
    wal.py         WriteAheadLog: append, fsync, roll, compact, recover
    wal_format.py  the bytes of WAL segments and records, the checksum chain
    snapshot.py    snapshot files: temporary file, fsync, rename
    recovered.py   Recovered and WalFold: what the records add up to
    files.py, filesystem.py   the file operations, on the OS or the simulator's disk

The Ready executor (ledgerpaxos/host) is ReplicaStore's only user. May import:
ledgerpaxos.core.messages, ledgerpaxos.constants, wire (the default codec),
the standard library; never trio.
"""

from ledgerpaxos.storage.errors import StorageCorruption, StorageError
from ledgerpaxos.storage.recovered import Recovered, WalFold, fold_records
from ledgerpaxos.storage.snapshot import load_newest_snapshot, write_snapshot
from ledgerpaxos.storage.store import ReplicaStore
from ledgerpaxos.storage.wal import RecoveredLog, WriteAheadLog

__all__ = [
    "Recovered",
    "RecoveredLog",
    "ReplicaStore",
    "StorageCorruption",
    "StorageError",
    "WalFold",
    "WriteAheadLog",
    "fold_records",
    "load_newest_snapshot",
    "write_snapshot",
]
