"""Write-ahead log, snapshots and recovery for one replica (plain synchronous file I/O).

The Ready executor (ledgerpaxos/host) is ReplicaStore's only user; nothing
here imports trio. See wal.py and snapshot.py for the on-disk formats.
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
