"""Snapshot files: the ledger state after a slot, written atomically and checksummed.

File `snapshot-<slot:020d>.snap` in the replica's data directory. Integers are
little-endian; checksums are 64-bit BLAKE2b (files.checksum64).

Header, 40 bytes, then `body_length` bytes of body (wire.encode_snapshot):

     0  u32  magic            "LPSN"
     4  u32  version          2 (1 had no chain digest; refused)
     8  u64  slot             equals the snapshot's slot and the number in the name
    16  u64  body_length
    24  u64  body_checksum    of the body
    32  u64  header_checksum  of bytes 0..32

A snapshot is written to `<name>.tmp`, fsynced, renamed, and the directory
fsynced, so a file with its final name was complete when it got that name. Only
the newest `constants.snapshots_kept` are kept. Loading takes the newest one that
verifies; a newer one that does not is skipped with a warning. If snapshots exist
but none verifies, that is StorageCorruption: the WAL may have been compacted
past the genesis state, so starting from nothing would be wrong.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from typing import Protocol

import wire
from ledgerpaxos import constants
from ledgerpaxos.core.messages import Snapshot
from ledgerpaxos.storage import files
from ledgerpaxos.storage.errors import StorageCorruption
from ledgerpaxos.storage.filesystem import OS_FILE_SYSTEM, FileSystem

logger = logging.getLogger("ledgerpaxos.storage")

SNAPSHOT_HEADER = struct.Struct("<IIQQQQ")
assert SNAPSHOT_HEADER.size == 40

snapshot_magic = int.from_bytes(b"LPSN", "little")
snapshot_version = 5  # 2: chain digest; 3: outcomes' (slot, index); 4: opened accounts, sessions; 5: session numbers
_person_header = b"lpax-snap-hdr"
_person_body = b"lpax-snap-body"

_snapshot_name = re.compile(r"^snapshot-(\d{20})\.snap$")
_snapshot_temporary_name = re.compile(r"^snapshot-(\d{20})\.snap\.tmp$")


class SnapshotCodec(Protocol):
    """What the snapshot files need from `wire`; the module itself satisfies it."""

    @property
    def FrameError(self) -> type[Exception]: ...  # named as wire names it

    def encode_snapshot(self, snapshot: Snapshot) -> bytes: ...

    def decode_snapshot(self, data: bytes) -> Snapshot: ...


def snapshot_file_name(slot: int) -> str:
    assert slot >= 0
    return f"snapshot-{slot:020d}.snap"


def encode_snapshot_file(snapshot: Snapshot, *, codec: SnapshotCodec = wire) -> bytes:
    """Header plus body, verified before it is written: decode what was encoded."""
    body = codec.encode_snapshot(snapshot)
    decoded = codec.decode_snapshot(body)
    assert _same(decoded, snapshot), (
        f"snapshot changed in an encode/decode round trip: {snapshot.slot}"
    )
    body_checksum = files.checksum64(body, person=_person_body)
    head = SNAPSHOT_HEADER.pack(
        snapshot_magic, snapshot_version, snapshot.slot, len(body), body_checksum, 0
    )
    header_checksum = files.checksum64(head[:32], person=_person_header)
    return head[:32] + header_checksum.to_bytes(8, "little") + body


def _same(a: Snapshot, b: Snapshot) -> bool:
    """a == b, a slice of rows at a time: one comparison of millions of rows
    would hold the GIL for tens of milliseconds (this runs in a worker thread
    beside the replica's loop)."""
    step = 8192
    for rows_a, rows_b in ((a.balances, b.balances), (a.opened, b.opened), (a.clients, b.clients)):
        if len(rows_a) != len(rows_b):
            return False
        for start in range(0, len(rows_a), step):
            if rows_a[start : start + step] != rows_b[start : start + step]:
                return False
    return (a.slot, a.digest, a.chain) == (b.slot, b.digest, b.chain)


def decode_snapshot_file(path: str, data: bytes, *, codec: SnapshotCodec = wire) -> Snapshot:
    """The snapshot in `data` (read from `path`), or StorageCorruption saying what is wrong."""
    if len(data) < SNAPSHOT_HEADER.size:
        raise StorageCorruption(path, 0, f"snapshot header incomplete ({len(data)} bytes)")
    magic, version, slot, length, body_checksum, header_checksum = SNAPSHOT_HEADER.unpack_from(data)
    if magic != snapshot_magic:
        raise StorageCorruption(path, 0, "not a snapshot file (bad magic)")
    if header_checksum != files.checksum64(data[:32], person=_person_header):
        raise StorageCorruption(path, 0, "snapshot header checksum mismatch")
    if version != snapshot_version:
        raise StorageCorruption(path, 4, f"unsupported snapshot version {version}")
    if length != len(data) - SNAPSHOT_HEADER.size:
        actual = len(data) - SNAPSHOT_HEADER.size
        raise StorageCorruption(path, 16, f"snapshot body is {actual} bytes, header says {length}")
    body = data[SNAPSHOT_HEADER.size :]
    if body_checksum != files.checksum64(body, person=_person_body):
        raise StorageCorruption(path, SNAPSHOT_HEADER.size, "snapshot body checksum mismatch")
    try:
        snapshot = codec.decode_snapshot(body)
    except codec.FrameError as error:
        raise StorageCorruption(
            path, SNAPSHOT_HEADER.size, f"snapshot verifies but does not decode: {error}"
        ) from error
    if snapshot.slot != slot:
        raise StorageCorruption(path, 8, f"header says slot {slot}, body says {snapshot.slot}")
    return snapshot


def _list_snapshots(fs: FileSystem, directory: str) -> tuple[list[tuple[int, str]], list[str]]:
    """Snapshots as (slot, path), oldest first, and leftover temporary files."""
    names = files.list_directory(fs, directory)
    snapshots: list[tuple[int, str]] = []
    temporaries: list[str] = []
    for name in sorted(names):
        if match := _snapshot_name.match(name):
            snapshots.append((int(match.group(1)), os.path.join(directory, name)))
        elif _snapshot_temporary_name.match(name):
            temporaries.append(os.path.join(directory, name))
    snapshots.sort()
    return snapshots, temporaries


def write_snapshot(
    directory: str | os.PathLike[str],
    snapshot: Snapshot,
    *,
    fsync: bool = True,
    codec: SnapshotCodec = wire,
    fs: FileSystem = OS_FILE_SYSTEM,
) -> str:
    """Write `snapshot` durably, keep only the newest snapshots; returns its path."""
    directory = os.fspath(directory)
    path = os.path.join(directory, snapshot_file_name(snapshot.slot))
    files.write_file_durably(fs, path, encode_snapshot_file(snapshot, codec=codec), fsync=fsync)
    snapshots, _ = _list_snapshots(fs, directory)
    assert constants.snapshots_kept >= 1
    stale = snapshots[: -constants.snapshots_kept]
    for _, old in stale:
        # No directory fsync for the removal: a stale snapshot that comes back
        # after a crash is older than the newest and only read if that fails.
        files.remove_file(fs, old)
    return path


def newest_snapshot_slot(directory: str | os.PathLike[str], fs: FileSystem = OS_FILE_SYSTEM) -> int:
    """The slot of the newest snapshot file present, verified or not; 0 if none."""
    snapshots, _ = _list_snapshots(fs, os.fspath(directory))
    return snapshots[-1][0] if snapshots else 0


def load_newest_snapshot(
    directory: str | os.PathLike[str],
    *,
    codec: SnapshotCodec = wire,
    fs: FileSystem = OS_FILE_SYSTEM,
) -> Snapshot | None:
    """The newest snapshot that verifies; None if there is none at all."""
    directory = os.fspath(directory)
    snapshots, temporaries = _list_snapshots(fs, directory)
    for path in temporaries:
        logger.info("removing %s, a snapshot whose writing was interrupted", path)
        files.remove_file(fs, path)
    failures: list[StorageCorruption] = []
    for slot, path in reversed(snapshots):
        try:
            snapshot = decode_snapshot_file(path, files.read_file(fs, path), codec=codec)
        except StorageCorruption as corruption:
            logger.warning("skipping an invalid snapshot: %s", corruption)
            failures.append(corruption)
            continue
        if snapshot.slot != slot:
            failures.append(StorageCorruption(path, 8, f"snapshot of slot {snapshot.slot}"))
            logger.warning("skipping an invalid snapshot: %s", failures[-1])
            continue
        return snapshot
    if failures:
        newest = failures[0]
        raise StorageCorruption(
            newest.path, newest.offset, f"no snapshot verifies (newest: {newest.problem})"
        )
    return None
