"""The two ways storage fails, named by whose fault they are.

`StorageCorruption`: the bytes on disk are not what this replica wrote (a broken
record before the end of the WAL, a broken chain, a missing segment, no snapshot
that verifies). Fatal: the replica refuses to start and an operator repairs the
directory.

`StorageError`: the operating system refused an operation (open, write, fsync,
rename, the directory lock). Fatal too: after a failed write or fsync nothing
may be acknowledged, so the replica stops.
"""

from __future__ import annotations

REPAIR_ADVICE = (
    "restore this replica's data directory from a peer, or remove it to rejoin the cluster empty"
)


class StorageCorruption(Exception):
    """What is on disk does not verify; `path` and `offset` say where."""

    def __init__(self, path: str, offset: int, problem: str) -> None:
        self.path = path
        self.offset = offset
        self.problem = problem
        super().__init__(
            f"storage corruption in {path} at byte offset {offset}: {problem}; {REPAIR_ADVICE}"
        )


class StorageError(Exception):
    """An I/O operation failed; nothing after it may be acknowledged."""

    def __init__(self, path: str, operation: str, cause: BaseException | None = None) -> None:
        self.path = path
        self.operation = operation
        self.cause = cause
        detail = f": {cause}" if cause is not None else ""
        super().__init__(
            f"storage I/O failed ({operation}) on {path}{detail}; the replica must stop"
        )
