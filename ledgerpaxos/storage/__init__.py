"""Write-ahead log, snapshots and recovery for one replica (plain synchronous file I/O).

The trio runtime calls ReplicaStore from its storage-writer step; nothing here
imports trio. See wal.py and snapshot.py for the on-disk formats.
"""

from ledgerpaxos.storage.errors import StorageCorruption, StorageError
from ledgerpaxos.storage.snapshot import load_newest_snapshot, write_snapshot
from ledgerpaxos.storage.store import Recovered, ReplicaStore
from ledgerpaxos.storage.wal import RecoveredLog, WriteAheadLog

__all__ = [
    "Recovered",
    "RecoveredLog",
    "ReplicaStore",
    "StorageCorruption",
    "StorageError",
    "WriteAheadLog",
    "load_newest_snapshot",
    "write_snapshot",
]
