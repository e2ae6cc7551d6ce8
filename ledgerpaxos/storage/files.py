"""Small file-system helpers shared by the WAL and the snapshots.

All I/O goes through a `FileSystem` (storage/filesystem.py): the operating
system by default, an in-memory disk under the simulator. Every OSError becomes
a StorageError naming the path and the operation, so that the runtime can stop
the replica with a message a person can act on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from ledgerpaxos.storage.errors import StorageError
from ledgerpaxos.storage.filesystem import FileSystem, WritableFile

checksum_size = 8  # bytes: BLAKE2b cut to 64 bits


def checksum64(data: bytes, *, person: bytes) -> int:
    """64-bit BLAKE2b of `data`; `person` keeps the kinds of checksum apart, so
    that a record header can never pass for a segment or snapshot header."""
    assert len(person) <= hashlib.blake2b.PERSON_SIZE
    digest = hashlib.blake2b(data, digest_size=checksum_size, person=person).digest()
    return int.from_bytes(digest, "little")


def write_all(file: WritableFile, data: bytes, path: str) -> None:
    """Write `data` at the file's position."""
    try:
        file.write(data)
    except OSError as error:
        raise StorageError(path, "write", error) from error


def fsync_file(file: WritableFile, path: str) -> None:
    try:
        file.fsync()
    except OSError as error:
        raise StorageError(path, "fsync", error) from error


def close_file(file: WritableFile, path: str) -> None:
    try:
        file.close()
    except OSError as error:
        raise StorageError(path, "close", error) from error


def fsync_directory(fs: FileSystem, directory: str) -> None:
    """Make renames, creations and deletions in `directory` durable."""
    try:
        fs.fsync_directory(directory)
    except OSError as error:
        raise StorageError(directory, "fsync directory", error) from error


def list_directory(fs: FileSystem, directory: str) -> list[str]:
    try:
        return fs.listdir(directory)
    except OSError as error:
        raise StorageError(directory, "list directory", error) from error


def write_file_durably(
    fs: FileSystem, path: str, data: bytes | Iterable[bytes], *, fsync: bool
) -> int:
    """Write `data` (or its pieces, in order, as they come) to `path` + ".tmp",
    fsync it, rename it to `path`, fsync the directory. Readers never see a
    half-written `path`. Returns the fsyncs done."""
    temporary = path + ".tmp"
    try:
        file = fs.create(temporary)
    except OSError as error:
        raise StorageError(temporary, "create", error) from error
    try:
        for piece in (data,) if isinstance(data, bytes) else data:
            write_all(file, piece, temporary)
        if fsync:
            fsync_file(file, temporary)
    finally:
        close_file(file, temporary)
    try:
        fs.rename(temporary, path)
    except OSError as error:
        raise StorageError(path, "rename", error) from error
    if fsync:
        fsync_directory(fs, os.path.dirname(path) or ".")
        return 2
    return 0


def remove_file(fs: FileSystem, path: str) -> None:
    try:
        fs.remove(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise StorageError(path, "remove", error) from error


def read_file(fs: FileSystem, path: str, size: int = -1, *, offset: int = 0) -> bytes:
    """The whole file, or `size` bytes of it (fewer at its end), from `offset`."""
    try:
        return fs.read(path, size, offset=offset)
    except OSError as error:
        raise StorageError(path, "read", error) from error


def probe_space(fs: FileSystem, directory: str, size: int) -> None:
    """Write and fsync `size` bytes to a scratch file in `directory`, then
    remove it: raises StorageError (disk_full, on ENOSPC) while the disk
    cannot take that much more."""
    path = os.path.join(directory, probe_name)
    try:
        file = fs.create(path)
    except OSError as error:
        raise StorageError(path, "create", error) from error
    try:
        try:
            write_all(file, bytes(size), path)
            fsync_file(file, path)
        finally:
            close_file(file, path)
    finally:
        remove_file(fs, path)


probe_name = "space-probe"  # the scratch file of probe_space()
