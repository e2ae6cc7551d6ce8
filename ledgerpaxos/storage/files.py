"""Small file-system helpers shared by the WAL and the snapshots.

Every OSError becomes a StorageError naming the path and the operation, so
that the runtime can stop the replica with a message a person can act on.
"""

from __future__ import annotations

import hashlib
import os

from ledgerpaxos.storage.errors import StorageError

checksum_size = 8  # bytes: BLAKE2b cut to 64 bits


def checksum64(data: bytes, *, person: bytes) -> int:
    """64-bit BLAKE2b of `data`; `person` keeps the kinds of checksum apart, so
    that a record header can never pass for a segment or snapshot header."""
    assert len(person) <= hashlib.blake2b.PERSON_SIZE
    digest = hashlib.blake2b(data, digest_size=checksum_size, person=person).digest()
    return int.from_bytes(digest, "little")


def write_all(fd: int, data: bytes, path: str) -> None:
    """Write `data` at the descriptor's position: one write() call unless the
    kernel returns short, which regular files do only on errors or signals."""
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            assert written > 0
            view = view[written:]
    except OSError as error:
        raise StorageError(path, "write", error) from error


def fsync_fd(fd: int, path: str) -> None:
    try:
        os.fsync(fd)
    except OSError as error:
        raise StorageError(path, "fsync", error) from error


def fsync_directory(directory: str) -> None:
    """Make renames, creations and deletions in `directory` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise StorageError(directory, "open directory", error) from error
    try:
        fsync_fd(fd, directory)
    finally:
        os.close(fd)


def write_file_durably(path: str, data: bytes, *, fsync: bool) -> int:
    """Write `data` to `path` + ".tmp", fsync it, rename it to `path`, fsync the
    directory. Readers never see a half-written `path`. Returns the fsyncs done."""
    temporary = path + ".tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as error:
        raise StorageError(temporary, "create", error) from error
    try:
        write_all(fd, data, temporary)
        if fsync:
            fsync_fd(fd, temporary)
    finally:
        os.close(fd)
    try:
        os.rename(temporary, path)
    except OSError as error:
        raise StorageError(path, "rename", error) from error
    if fsync:
        fsync_directory(os.path.dirname(path) or ".")
        return 2
    return 0


def remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise StorageError(path, "remove", error) from error


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise StorageError(path, "read", error) from error
