"""An in-memory file system with the crash behaviour of a real disk.

It implements storage's `FileSystem` (storage/filesystem.py), so the real WAL,
snapshot and recovery code runs on it unchanged. What it models:

- File contents live in a page cache; `fsync` of a file makes its current
  content durable. Creations, renames and removals become durable only when
  their directory is fsynced (the strict POSIX reading).
- `crash()` throws the page cache away: each directory goes back to its
  durable entries, each file to its durable content. Of the writes since the
  last fsync, a few may have reached the disk anyway (writeback) and the first
  one that did not may be torn: a prefix of it survives, possibly followed by
  garbage where the sector was half written.
- `arm_crash(n)`: the n-th mutating operation from now raises `SimulatedCrash`
  (a write still lands in the page cache first), so the simulator can stop a
  replica in the middle of a group commit, a snapshot or a compaction.
- `arm_io_error(n)`: the n-th mutating operation fails with EIO instead.
- `fill(rng)`: the disk is full until `unfill()`: every write fails with
  ENOSPC after a random prefix of it landed (as a file system that runs out
  in the middle of a write leaves it).

Directory listings are sorted, so nothing depends on dict or hash order.
"""

from __future__ import annotations

import errno
import os
import random

import attrs


class SimulatedCrash(BaseException):
    """The simulator stopped the replica process in the middle of an I/O call.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` in
    the code under test can swallow it."""


@attrs.define(eq=False)
class _Inode:
    data: bytearray = attrs.field(factory=bytearray)  # what reads see (page cache)
    durable: bytes = b""  # what survives a crash
    unsynced_writes: list[int] = attrs.field(factory=list)  # appended lengths since fsync
    rewritten: bool = False  # changed other than by appends since the last fsync


@attrs.frozen
class CrashReport:
    """What a crash did to the files, for the trace and the coverage marks."""

    lost_bytes: int  # written but not durable, gone
    torn_files: tuple[str, ...]  # files whose last write survived only in part
    lost_entries: int  # directory entries (creations, renames, removals) undone


class SimFile:
    """An open file of a SimDisk: writes go to the end of the file."""

    def __init__(self, disk: SimDisk, inode: _Inode, path: str) -> None:
        self._disk = disk
        self._inode = inode
        self._path = path
        self._generation = disk.generation
        self._closed = False

    def _check(self) -> None:
        if self._closed or self._generation != self._disk.generation:
            raise OSError(
                errno.EBADF, "file handle of a closed file or a crashed process", self._path
            )

    def write(self, data: bytes) -> None:
        self._check()
        if not data:
            return
        full = self._disk._full_rng
        if full is not None:
            landed = data[: full.randrange(len(data))]
            self._inode.data += landed
            if landed:
                self._inode.unsynced_writes.append(len(landed))
            raise OSError(errno.ENOSPC, "simulated full disk", self._path)
        self._inode.data += data
        self._inode.unsynced_writes.append(len(data))
        self._disk.bytes_written += len(data)
        self._disk.operation("write", self._path)

    def fsync(self) -> None:
        self._check()
        self._disk.operation("fsync", self._path)
        inode = self._inode
        inode.durable = bytes(inode.data)
        inode.unsynced_writes.clear()
        inode.rewritten = False
        self._disk.fsyncs += 1

    def truncate(self, length: int) -> None:
        self._check()
        self._disk.operation("truncate", self._path)
        inode = self._inode
        if length < len(inode.data):
            del inode.data[length:]
        else:
            inode.data += bytes(length - len(inode.data))
        inode.rewritten = True

    def close(self) -> None:
        self._closed = True


class _SimLock:
    def __init__(self, disk: SimDisk, path: str) -> None:
        self._disk = disk
        self._path = path
        self._generation = disk.generation

    def release(self) -> None:
        if self._generation == self._disk.generation:
            self._disk.locks.discard(self._path)


class SimDisk:
    """One replica's disk. Not shared between replicas."""

    def __init__(self) -> None:
        self._dirs: dict[str, dict[str, _Inode]] = {"/": {}}
        self._durable_dirs: dict[str, dict[str, _Inode]] = {"/": {}}
        self.locks: set[str] = set()
        self.generation = 0  # bumped by a crash: older handles are dead
        self._crash_countdown: int | None = None
        self._error_countdown: int | None = None
        self._full_rng: random.Random | None = None  # set while the disk is full
        self.bytes_written = 0
        self.fsyncs = 0

    # ------------------------------------------------------------ fault arming

    def arm_crash(self, operations: int) -> None:
        """Crash at the `operations`-th mutating operation from now."""
        assert operations >= 1
        self._crash_countdown = operations

    def arm_io_error(self, operations: int) -> None:
        """Fail the `operations`-th mutating operation from now with EIO."""
        assert operations >= 1
        self._error_countdown = operations

    def fill(self, rng: random.Random) -> None:
        """No space left from now on, until unfill()."""
        self._full_rng = rng

    def unfill(self) -> None:
        self._full_rng = None

    @property
    def full(self) -> bool:
        return self._full_rng is not None

    def disarm(self) -> None:
        self._crash_countdown = None
        self._error_countdown = None

    @property
    def armed(self) -> bool:
        return self._crash_countdown is not None or self._error_countdown is not None

    def operation(self, kind: str, path: str) -> None:
        """Count one mutating operation; raise if a fault is armed for it."""
        if self._error_countdown is not None:
            self._error_countdown -= 1
            if self._error_countdown == 0:
                self._error_countdown = None
                raise OSError(errno.EIO, f"simulated I/O error during {kind}", path)
        if self._crash_countdown is not None:
            self._crash_countdown -= 1
            if self._crash_countdown == 0:
                self._crash_countdown = None
                raise SimulatedCrash(f"{kind} {path}")

    # ------------------------------------------------------------ the crash

    def crash(
        self, rng: random.Random, *, torn_probability: float, writeback_probability: float
    ) -> CrashReport:
        """The machine lost power: keep only what was durable (and what the
        kernel happened to write back), maybe tearing the first lost write."""
        self.generation += 1
        self.locks.clear()
        self.disarm()
        lost_entries = 0
        for directory in sorted(self._dirs):
            current = self._dirs[directory]
            durable = self._durable_dirs.get(directory, {})
            names = set(current) | set(durable)
            lost_entries += sum(1 for n in sorted(names) if current.get(n) is not durable.get(n))
        lost_bytes = 0
        torn: list[str] = []
        seen: set[int] = set()
        self._dirs = {}
        for directory in sorted(self._durable_dirs):
            entries = self._durable_dirs[directory]
            self._dirs[directory] = dict(entries)
            for name in sorted(entries):
                inode = entries[name]
                if id(inode) in seen:
                    continue
                seen.add(id(inode))
                kept, lost, was_torn = self._surviving_content(
                    inode, rng, torn_probability, writeback_probability
                )
                lost_bytes += lost
                if was_torn:
                    torn.append(os.path.join(directory, name))
                inode.data = bytearray(kept)
                inode.durable = kept
                inode.unsynced_writes = []
                inode.rewritten = False
        return CrashReport(lost_bytes=lost_bytes, torn_files=tuple(torn), lost_entries=lost_entries)

    @staticmethod
    def _surviving_content(
        inode: _Inode, rng: random.Random, torn_probability: float, writeback_probability: float
    ) -> tuple[bytes, int, bool]:
        if inode.rewritten or not inode.unsynced_writes:
            return inode.durable, len(inode.data) - len(inode.durable), False
        data = bytes(inode.data)
        kept = len(inode.durable)
        assert data[:kept] == inode.durable
        for length in inode.unsynced_writes:
            if rng.random() < writeback_probability:
                kept += length
                continue
            if length > 1 and rng.random() < torn_probability:
                cut = rng.randint(1, length - 1)
                survived = data[: kept + cut]
                if rng.random() < 0.3:  # the half-written sector holds garbage
                    garbage = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
                    survived = (
                        survived[: max(len(inode.durable), len(survived) - len(garbage))] + garbage
                    )
                return survived, len(data) - kept, True
            break
        return data[:kept], len(data) - kept, False

    # ------------------------------------------------------------ FileSystem

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        path = os.path.normpath(path)
        directory, name = os.path.split(path)
        return directory or "/", name

    def _directory(self, directory: str) -> dict[str, _Inode]:
        entries = self._dirs.get(os.path.normpath(directory))
        if entries is None:
            raise FileNotFoundError(errno.ENOENT, "no such directory", directory)
        return entries

    def _inode(self, path: str) -> _Inode:
        directory, name = self._split(path)
        inode = self._directory(directory).get(name)
        if inode is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return inode

    def makedirs(self, path: str) -> None:
        path = os.path.normpath(path)
        parts = [p for p in path.split("/") if p]
        current = "/"
        for part in parts:
            current = os.path.join(current, part)
            # Directories are made durable at once: the simulator creates them
            # before the first start, never while a replica runs.
            self._dirs.setdefault(current, {})
            self._durable_dirs.setdefault(current, {})

    def listdir(self, path: str) -> list[str]:
        names = sorted(self._directory(path))
        subdirectories = sorted(
            os.path.basename(d)
            for d in self._dirs
            if d != "/" and os.path.dirname(d) == os.path.normpath(path)
        )
        return sorted(names + subdirectories)

    def exists(self, path: str) -> bool:
        if os.path.normpath(path) in self._dirs:
            return True
        directory, name = self._split(path)
        return name in self._dirs.get(directory, {})

    def is_directory(self, path: str) -> bool:
        return os.path.normpath(path) in self._dirs

    def read(self, path: str, size: int = -1, *, offset: int = 0) -> bytes:
        data = self._inode(path).data
        return bytes(data[offset:] if size < 0 else data[offset : offset + size])

    def flip_bit(self, path: str, offset: int, bit: int) -> None:
        """Bit rot: one bit of a file changes, in memory and on the platter."""
        inode = self._inode(path)
        assert 0 <= offset < len(inode.data) and len(inode.durable) == len(inode.data)
        inode.data[offset] ^= 1 << bit
        durable = bytearray(inode.durable)
        durable[offset] ^= 1 << bit
        inode.durable = bytes(durable)

    def create(self, path: str) -> SimFile:
        directory, name = self._split(path)
        entries = self._directory(directory)
        self.operation("create", path)
        inode = entries.get(name)
        if inode is None:
            inode = _Inode()
            entries[name] = inode
        elif inode.data:
            inode.data = bytearray()
            inode.unsynced_writes = []
            inode.rewritten = True
        return SimFile(self, inode, path)

    def open_append(self, path: str) -> SimFile:
        return SimFile(self, self._inode(path), path)

    def open_write(self, path: str) -> SimFile:
        return SimFile(self, self._inode(path), path)

    def rename(self, source: str, target: str) -> None:
        inode = self._inode(source)
        target_directory, target_name = self._split(target)
        entries = self._directory(target_directory)
        self.operation("rename", source)
        source_directory, source_name = self._split(source)
        del self._directory(source_directory)[source_name]
        entries[target_name] = inode

    def remove(self, path: str) -> None:
        self._inode(path)
        self.operation("remove", path)
        directory, name = self._split(path)
        del self._directory(directory)[name]

    def remove_tree(self, path: str) -> None:
        path = os.path.normpath(path)
        self.operation("remove", path)
        for directory in [d for d in sorted(self._dirs) if d == path or d.startswith(path + "/")]:
            del self._dirs[directory]

    def fsync_directory(self, path: str) -> None:
        path = os.path.normpath(path)
        entries = self._directory(path)
        self.operation("fsync directory", path)
        self._durable_dirs[path] = dict(entries)
        for directory in [
            d for d in sorted(self._durable_dirs) if os.path.dirname(d) == path and d != path
        ]:
            if directory not in self._dirs:
                del self._durable_dirs[directory]
        self.fsyncs += 1

    def lock(self, path: str) -> _SimLock:
        if path in self.locks:
            raise BlockingIOError(errno.EWOULDBLOCK, "locked", path)
        directory, name = self._split(path)
        entries = self._directory(directory)
        if name not in entries:
            entries[name] = _Inode()
        self.locks.add(path)
        return _SimLock(self, path)

    # ------------------------------------------------------------ inspection

    def not_durable(self, directory: str) -> list[str]:
        """Files in `directory` whose content a crash would change."""
        return [
            f"{directory}/{name}"
            for name, inode in sorted(self._directory(directory).items())
            if inode.unsynced_writes or inode.rewritten or bytes(inode.data) != inode.durable
        ]

    def files(self) -> dict[str, int]:
        """Path -> size of every file in the page cache (for traces and tests)."""
        return {
            os.path.join(d, n): len(inode.data)
            for d in sorted(self._dirs)
            for n, inode in sorted(self._dirs[d].items())
        }
