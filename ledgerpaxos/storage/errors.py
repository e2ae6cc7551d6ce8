"""The two ways storage fails, named by whose fault they are.

`StorageCorruption`: the bytes on disk are not what this replica wrote (a broken
record before the end of the WAL, a broken chain, a missing segment, no snapshot
that verifies). Fatal: the replica refuses to start and an operator repairs the
directory.

`StorageError`: the operating system refused an operation (open, write, fsync,
rename, the directory lock). After a failed write or fsync nothing may be
acknowledged. A full disk (`disk_full`: a write, create or rename refused
with ENOSPC or EDQUOT) is a condition that passes: the runtime pauses the
replica and resumes it once writes succeed again. Every other failure is
fatal, above all a failed fsync: the kernel may have dropped the pages it
could not write, so what the file holds is no longer known, and the replica
stops.
"""

from __future__ import annotations

import errno

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
        consequence = (
            "the replica pauses until writes succeed again"
            if self.disk_full
            else "the replica must stop"
        )
        super().__init__(f"storage I/O failed ({operation}) on {path}{detail}; {consequence}")

    @property
    def disk_full(self) -> bool:
        """Out of space or quota on anything but an fsync: once space comes
        back the same write succeeds, and nothing that was made durable before
        is in doubt."""
        return (
            isinstance(self.cause, OSError)
            and self.cause.errno in _FULL_ERRNOS
            and "fsync" not in self.operation
        )


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
