"""The file-system operations storage needs, behind one small interface.

The WAL, the snapshots and the store do all their I/O through a `FileSystem`.
`OS_FILE_SYSTEM` (the default everywhere) is the operating system; the
simulator passes an in-memory one (ledgerpaxos/sim/disk.py) whose crashes lose
what was not fsynced and may tear the last write.

Every method raises OSError when the operation fails; storage/files.py turns
that into a StorageError naming the path and the operation. Paths are plain
strings joined with os.path.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from typing import Protocol


class WritableFile(Protocol):
    """An open file that storage writes to (a descriptor, for the OS)."""

    def write(self, data: bytes) -> None:
        """Write all of `data` at the file's position (the end, for an append file)."""
        ...

    def fsync(self) -> None: ...

    def truncate(self, length: int) -> None: ...

    def close(self) -> None: ...


class DirectoryLock(Protocol):
    def release(self) -> None: ...


class FileSystem(Protocol):
    def makedirs(self, path: str) -> None:
        """Create `path` and its parents; an existing directory is fine."""
        ...

    def listdir(self, path: str) -> list[str]: ...

    def exists(self, path: str) -> bool: ...

    def is_directory(self, path: str) -> bool: ...

    def read(self, path: str, size: int = -1, *, offset: int = 0) -> bytes:
        """The whole file, or `size` bytes of it (fewer at its end), from `offset`."""
        ...

    def create(self, path: str) -> WritableFile:
        """Open for writing, created if missing, emptied if present."""
        ...

    def open_append(self, path: str) -> WritableFile:
        """Open an existing file for appending."""
        ...

    def open_write(self, path: str) -> WritableFile:
        """Open an existing file for writing (for truncation)."""
        ...

    def rename(self, source: str, target: str) -> None: ...

    def remove(self, path: str) -> None:
        """Delete a file; FileNotFoundError if there is none."""
        ...

    def remove_tree(self, path: str) -> None: ...

    def fsync_directory(self, path: str) -> None:
        """Make creations, renames and removals in `path` durable."""
        ...

    def lock(self, path: str) -> DirectoryLock:
        """Take an exclusive lock on file `path` (created if missing) for this
        process; BlockingIOError if another holder has it."""
        ...


class OsFile:
    """A file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        # One write() call unless the kernel returns short, which regular files
        # do only on errors or signals.
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            assert written > 0
            view = view[written:]

    def fsync(self) -> None:
        os.fsync(self.fd)

    def truncate(self, length: int) -> None:
        os.ftruncate(self.fd, length)

    def close(self) -> None:
        os.close(self.fd)


class OsDirectoryLock:
    """An flock held through an open descriptor; closing it drops the lock."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class OsFileSystem:
    """The real file system (synchronous calls into the kernel)."""

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_directory(self, path: str) -> bool:
        return os.path.isdir(path) and not os.path.islink(path)

    def read(self, path: str, size: int = -1, *, offset: int = 0) -> bytes:
        with open(path, "rb") as file:
            if offset:
                file.seek(offset)
            return file.read(size)

    def create(self, path: str) -> OsFile:
        return OsFile(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))

    def open_append(self, path: str) -> OsFile:
        return OsFile(os.open(path, os.O_WRONLY | os.O_APPEND))

    def open_write(self, path: str) -> OsFile:
        return OsFile(os.open(path, os.O_WRONLY))

    def rename(self, source: str, target: str) -> None:
        os.rename(source, target)

    def remove(self, path: str) -> None:
        os.unlink(path)

    def remove_tree(self, path: str) -> None:
        shutil.rmtree(path)

    def fsync_directory(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def lock(self, path: str) -> OsDirectoryLock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        try:
            # The pid is only for people looking at the directory: on a full
            # disk the lock is taken without it.
            os.ftruncate(fd, 0)
            OsFile(fd).write(f"{os.getpid()}\n".encode())
        except OSError:
            pass
        except BaseException:
            os.close(fd)
            raise
        return OsDirectoryLock(fd)


OS_FILE_SYSTEM: FileSystem = OsFileSystem()
