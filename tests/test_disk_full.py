"""A full disk pauses a replica; it does not break it.

The replica whose writes fail with ENOSPC acknowledges nothing, stays up,
answers control with "disk full: <directory>", and once writes succeed again it
starts over from its disk by itself and catches up; the others go on, and no
acknowledged transfer is lost. A failed fsync still stops the replica.

The full disk is made by wrapping the operating system's files (every write
under one data directory fails with ENOSPC, after writing half of what it was
given, as a file system that runs out in the middle of a write does);
tests/test_disk_full_processes.py fills a real tmpfs.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ledgerpaxos import constants
from ledgerpaxos.core.messages import ControlOp
from ledgerpaxos.storage import StorageError
from ledgerpaxos.storage.filesystem import OsFile, OsFileSystem
from tests.conftest import Cluster, open_cluster


class _Disks:
    """Which data directories are full, and what a write there does."""

    def __init__(self) -> None:
        self.full: set[str] = set()
        self.fsync_fails: set[str] = set()
        self.refused = 0

    def under(self, path: str, directories: set[str]) -> bool:
        return any(path.startswith(d + os.sep) for d in directories)


class _FullableFile(OsFile):
    def __init__(self, fd: int, path: str, disks: _Disks) -> None:
        super().__init__(fd)
        self.path = path
        self.disks = disks

    def write(self, data: bytes) -> None:
        if self.disks.under(self.path, self.disks.full):
            self.disks.refused += 1
            super().write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
        super().write(data)

    def fsync(self) -> None:
        if self.disks.under(self.path, self.disks.fsync_fails):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
        super().fsync()


@pytest.fixture
def disks(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Disks]:
    disks = _Disks()
    plain_create, plain_append = OsFileSystem.create, OsFileSystem.open_append

    def create(fs: OsFileSystem, path: str) -> OsFile:
        return _FullableFile(plain_create(fs, path).fd, path, disks)

    def open_append(fs: OsFileSystem, path: str) -> OsFile:
        return _FullableFile(plain_append(fs, path).fd, path, disks)

    monkeypatch.setattr(OsFileSystem, "create", create)
    monkeypatch.setattr(OsFileSystem, "open_append", open_append)
    yield disks


def _directory(cluster: Cluster, node_id: str) -> str:
    return os.fspath(cluster.config.data_dir_for(node_id))


async def _transfers(cluster: Cluster, count: int, receiver: str) -> None:
    async with cluster.client("A") as client:
        for _ in range(count):
            assert (await client.transfer("A", receiver, 1)).ok


async def _wait_paused(cluster: Cluster, node_id: str) -> None:
    await cluster.wait_until(
        lambda: cluster.replicas[node_id].paused is not None, what=f"{node_id} paused"
    )


async def _resumes_and_converges(cluster: Cluster, disks: _Disks, victim: str) -> dict[str, int]:
    disks.full.clear()
    replica = cluster.replicas[victim]
    await cluster.wait_until(lambda: replica.paused is None, what=f"{victim} resumed")
    await _transfers(cluster, 1, "D")  # the slots it missed are fetched now at the latest

    def converged() -> dict[str, int] | None:
        if not replica.alive:
            return None
        views = {n: r.core.balances() for n, r in cluster.replicas.items()}
        return views[victim] if all(v == views[victim] for v in views.values()) else None

    balances: dict[str, int] = await cluster.wait_until(converged, what="all five equal")
    return balances


@pytest.mark.trio
async def test_a_follower_on_a_full_disk_pauses_answers_control_and_catches_up(
    tmp_path: Path, autojump_clock: trio.abc.Clock, disks: _Disks, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_cluster(tmp_path, initial_balance=100) as cluster:
        leader = await cluster.wait_for_leader()
        victim = next(n for n in cluster.node_ids if n != leader)
        await _transfers(cluster, 5, "B")
        disks.full.add(_directory(cluster, victim))

        await _transfers(cluster, 15, "C")  # the others go on, across checkpoints
        await _wait_paused(cluster, victim)
        assert disks.refused >= 1
        reason = f"disk full: {_directory(cluster, victim)}"
        ping = await cluster.control(victim, ControlOp.ping)
        assert ping["ok"] and ping["paused"] == reason and ping["role"] == "paused"
        assert not ping["alive"]
        view = await cluster.control(victim, ControlOp.print_view)
        assert view["ok"] and view["paused"] == reason and view["leader"] is None
        db = await cluster.control(victim, ControlOp.print_db)
        assert not db["ok"] and reason in db["reason"] and "resumes by itself" in db["reason"]

        # Still paused a while later: its probe writes keep failing (it does
        # not start over only to fail at its next write).
        await trio.sleep(3 * constants.disk_full_retry_ms / 1000)
        assert cluster.replicas[victim].paused == reason
        assert f"{reason}: still no space" in caplog.text
        assert "resumed" not in caplog.text
        balances = await _resumes_and_converges(cluster, disks, victim)
        assert (balances["A"], balances["B"], balances["C"], balances["D"]) == (79, 105, 115, 101)
        assert not (Path(_directory(cluster, victim)) / "space-probe").exists()


@pytest.mark.trio
async def test_a_leader_on_a_full_disk_pauses_and_another_leads_without_losing_a_transfer(
    tmp_path: Path, autojump_clock: trio.abc.Clock, disks: _Disks
) -> None:
    async with open_cluster(tmp_path, initial_balance=100) as cluster:
        leader = await cluster.wait_for_leader()
        await _transfers(cluster, 3, "B")
        disks.full.add(_directory(cluster, leader))

        await _transfers(cluster, 10, "C")  # the client finds the new leader
        await _wait_paused(cluster, leader)
        assert await cluster.wait_for_leader(not_=leader) != leader
        balances = await _resumes_and_converges(cluster, disks, leader)
        assert (balances["A"], balances["B"], balances["C"], balances["D"]) == (86, 103, 110, 101)


@pytest.mark.trio
async def test_a_failed_fsync_still_stops_the_replica(
    tmp_path: Path, autojump_clock: trio.abc.Clock, disks: _Disks
) -> None:
    with pytest.raises(BaseExceptionGroup) as stopped:
        async with open_cluster(tmp_path, fsync=True, initial_balance=100) as cluster:
            leader = await cluster.wait_for_leader()
            victim = next(n for n in cluster.node_ids if n != leader)
            disks.fsync_fails.add(_directory(cluster, victim))
            with trio.fail_after(30):
                await _transfers(cluster, 5, "B")
                await trio.sleep(30)  # the victim's failure ends the test's nursery first
    found = stopped.value.subgroup(lambda e: isinstance(e, StorageError))
    assert found is not None, stopped.value
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    error = found
    assert isinstance(error, StorageError)
    assert error.operation == "fsync" and not error.disk_full
    assert "the replica must stop" in str(error)


def test_only_a_write_out_of_space_is_a_full_disk() -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    assert StorageError("data/n4/wal", "write", full).disk_full
    assert StorageError("data/n4/wal", "create", OSError(errno.EDQUOT, "quota")).disk_full
    assert not StorageError("data/n4/wal", "fsync", full).disk_full  # the disk lied
    assert not StorageError("data/n4", "fsync directory", full).disk_full
    assert not StorageError("data/n4/wal", "write", OSError(errno.EIO, "I/O error")).disk_full
    assert "pauses until writes succeed" in str(StorageError("p", "write", full))
