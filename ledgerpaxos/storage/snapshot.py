"""Snapshot files: the ledger state after a slot, written atomically and checksummed.

File `snapshot-<slot:020d>.snap` in the replica's data directory. Integers are
little-endian; checksums are 64-bit BLAKE2b (files.checksum64).

Header, 40 bytes, then `parts` part records:

     0  u32  magic            "LPSN"
     4  u32  version          6 (earlier versions are refused)
     8  u64  slot             equals the snapshot's slot and the number in the name
    16  u64  parts            how many part records follow (at least one)
    24  u64  reserved         0
    32  u64  header_checksum  of bytes 0..32

A part record: u32 body length, u64 checksum of the part's index (u64) and its
body, then the body: wire.encode_snapshot of a Snapshot holding the whole
checkpoint's slot, digest and chain and the next at most
`constants.snapshot_part_rows_max` rows (balances, then opened accounts, then
sessions, in the snapshot's order; a session weighs one row more for every four
results it holds). The file ends right after the last part.
So a snapshot of any size is written and read a part at a time: neither the
whole file nor a whole second copy of the rows is ever in memory at once, and
the writer (a worker thread beside the replica's loop) holds the GIL only for
a part's worth of work at a time. A part cannot pass for another: its index is
in its checksum.

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
from collections.abc import Iterator, Sequence
from typing import Protocol

import attrs

import wire
from ledgerpaxos import constants
from ledgerpaxos.core.install import session_units
from ledgerpaxos.core.messages import ClientEntry, Snapshot
from ledgerpaxos.storage import files
from ledgerpaxos.storage.errors import StorageCorruption
from ledgerpaxos.storage.filesystem import OS_FILE_SYSTEM, FileSystem

logger = logging.getLogger("ledgerpaxos.storage")

SNAPSHOT_HEADER = struct.Struct("<IIQQQQ")
assert SNAPSHOT_HEADER.size == 40
PART_HEADER = struct.Struct("<IQ")
_parts_max = 1 << 32  # a header claiming more is refused before any is read

snapshot_magic = int.from_bytes(b"LPSN", "little")
# 2: chain digest; 3: outcomes' (slot, index); 4: opened accounts, sessions;
# 5: session numbers; 6: in parts
snapshot_version = 6
_person_header = b"lpax-snap-hdr"
_person_part = b"lpax-snap-part"

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


def snapshot_parts(snapshot: Snapshot, rows_max: int) -> Iterator[Snapshot]:
    """`snapshot` as consecutive slices of at most `rows_max` rows, each a
    Snapshot with the whole one's slot, digest and chain; at least one. A
    session weighs more rows the more results it holds (core/install.session_units),
    so a part stays a few hundred KiB whatever its sessions hold."""
    return _parts(snapshot, rows_max, _session_slices(snapshot.clients, rows_max))


def _parts(
    snapshot: Snapshot, rows_max: int, session_slices: list[tuple[int, int]]
) -> Iterator[Snapshot]:
    assert rows_max >= 1
    empty = attrs.evolve(snapshot, balances=(), opened=(), clients=())
    balances, opened = snapshot.balances, snapshot.opened
    for start in range(0, len(balances), rows_max):
        yield attrs.evolve(empty, balances=balances[start : start + rows_max])
    for start in range(0, len(opened), rows_max):
        yield attrs.evolve(empty, opened=opened[start : start + rows_max])
    for start, end in session_slices:
        yield attrs.evolve(empty, clients=snapshot.clients[start:end])
    if not (balances or opened or snapshot.clients):
        yield empty


def _session_slices(clients: Sequence[ClientEntry], rows_max: int) -> list[tuple[int, int]]:
    """Where to cut the sessions (at most client_sessions_max of them)."""
    slices: list[tuple[int, int]] = []
    start, units = 0, 0
    for i, entry in enumerate(clients):
        weight = session_units(entry)
        if i > start and units + weight > rows_max:
            slices.append((start, i))
            start, units = i, 0
        units += weight
    if start < len(clients):
        slices.append((start, len(clients)))
    return slices


def _part_checksum(index: int, body: bytes) -> int:
    return files.checksum64(index.to_bytes(8, "little") + body, person=_person_part)


def encode_snapshot_file(
    snapshot: Snapshot,
    *,
    codec: SnapshotCodec = wire,
    rows_max: int = constants.snapshot_part_rows_max,
) -> Iterator[bytes]:
    """The file's bytes, header first, a part at a time; each part verified
    before it is given: decoding what was encoded gives the part back."""
    session_slices = _session_slices(snapshot.clients, rows_max)
    parts = -(-len(snapshot.balances) // rows_max) + -(-len(snapshot.opened) // rows_max)
    parts = max(1, parts + len(session_slices))
    head = SNAPSHOT_HEADER.pack(snapshot_magic, snapshot_version, snapshot.slot, parts, 0, 0)
    header_checksum = files.checksum64(head[:32], person=_person_header)
    yield head[:32] + header_checksum.to_bytes(8, "little")
    written = 0
    for index, part in enumerate(_parts(snapshot, rows_max, session_slices)):
        body = codec.encode_snapshot(part)
        assert codec.decode_snapshot(body) == part, (
            f"snapshot {snapshot.slot} part {index} changed in an encode/decode round trip"
        )
        yield PART_HEADER.pack(len(body), _part_checksum(index, body)) + body
        written += 1
    assert written == parts, (written, parts)


def read_snapshot_file(fs: FileSystem, path: str, *, codec: SnapshotCodec = wire) -> Snapshot:
    """The snapshot in the file at `path`, read a part at a time, or
    StorageCorruption saying what is wrong and where."""
    head = files.read_file(fs, path, SNAPSHOT_HEADER.size)
    if len(head) < SNAPSHOT_HEADER.size:
        raise StorageCorruption(path, 0, f"snapshot header incomplete ({len(head)} bytes)")
    magic, version, slot, parts, _, header_checksum = SNAPSHOT_HEADER.unpack(head)
    if magic != snapshot_magic:
        raise StorageCorruption(path, 0, "not a snapshot file (bad magic)")
    if header_checksum != files.checksum64(head[:32], person=_person_header):
        raise StorageCorruption(path, 0, "snapshot header checksum mismatch")
    if version != snapshot_version:
        raise StorageCorruption(path, 4, f"unsupported snapshot version {version}")
    if not 1 <= parts <= _parts_max:
        raise StorageCorruption(path, 16, f"{parts} parts: a snapshot has 1 to {_parts_max}")
    balances: list[tuple[str, int]] = []
    opened: list[tuple[str, str, int]] = []
    clients: list[ClientEntry] = []
    first: Snapshot | None = None
    offset = SNAPSHOT_HEADER.size
    for index in range(parts):
        record = files.read_file(fs, path, PART_HEADER.size, offset=offset)
        if len(record) < PART_HEADER.size:
            raise StorageCorruption(path, offset, f"part {index} of {parts} missing or cut short")
        length, checksum = PART_HEADER.unpack(record)
        if length > constants.message_size_max:
            raise StorageCorruption(path, offset, f"part {index}: length {length} is too large")
        body = files.read_file(fs, path, length, offset=offset + PART_HEADER.size)
        if len(body) < length:
            raise StorageCorruption(path, offset, f"part {index} of {parts} cut short")
        if checksum != _part_checksum(index, body):
            raise StorageCorruption(path, offset, f"part {index} checksum mismatch")
        try:
            part = codec.decode_snapshot(body)
        except codec.FrameError as error:
            raise StorageCorruption(
                path, offset, f"part {index} verifies but does not decode: {error}"
            ) from error
        if first is None:
            first = part
        elif (part.slot, part.digest, part.chain) != (first.slot, first.digest, first.chain):
            raise StorageCorruption(path, offset, f"part {index} is of another snapshot")
        balances.extend(part.balances)
        opened.extend(part.opened)
        clients.extend(part.clients)
        offset += PART_HEADER.size + length
    if files.read_file(fs, path, 1, offset=offset):
        raise StorageCorruption(path, offset, "bytes after the last part")
    assert first is not None
    if first.slot != slot:
        raise StorageCorruption(path, 8, f"header says slot {slot}, body says {first.slot}")
    return Snapshot(
        slot=slot,
        balances=tuple(balances),
        opened=tuple(opened),
        clients=tuple(clients),
        digest=first.digest,
        chain=first.chain,
    )


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
            snapshot = read_snapshot_file(fs, path, codec=codec)
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
