"""A real replica process on a full tmpfs: it stays up, the others go on, and
it catches up once space returns (as root, where tmpfs can be mounted).

Marked `processes` (real time, a few seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from ledgerpaxos import replicas
from ledgerpaxos.client import open_client
from ledgerpaxos.core.messages import ControlOp
from tests.test_rejoin_processes import three_replicas, transfers
from tools.nemesis import cluster as nemesis_cluster
from tools.nemesis.cluster import fill, tmpfs_unavailable, unmount

pytestmark = pytest.mark.processes

tmpfs_size = "4m"  # room for the WAL, a few snapshots and the 1 MiB probe


@pytest.fixture
def mount_tmpfs() -> Iterator[Callable[[Path], None]]:
    """mount_tmpfs(directory) mounts a small tmpfs there; all are unmounted after the test."""
    why = tmpfs_unavailable()
    if why is not None:
        pytest.skip(why)
    mounted: list[Path] = []

    def mount(directory: Path) -> None:
        try:
            nemesis_cluster.mount_tmpfs(directory, tmpfs_size)
        except OSError as error:
            pytest.skip(str(error))
        mounted.append(directory)

    try:
        yield mount
    finally:
        for directory in reversed(mounted):
            unmount(directory)


@pytest.mark.trio
async def test_a_replica_on_a_full_tmpfs_stays_up_and_catches_up_once_space_returns(
    tmp_path: Path, mount_tmpfs: Callable[[Path], None]
) -> None:
    victim = "n3"
    with three_replicas(
        tmp_path, prepare=lambda config: mount_tmpfs(Path(config.data_dir_for(victim)))
    ) as launcher:
        config = launcher.config
        await replicas.wait_for_leader(config, timeout_s=30)
        await transfers(config, 5, "B")
        # A file of the test's own fills the tmpfs (the replica reads only
        # names of its own).
        filler = Path(config.data_dir_for(victim)) / "filler"
        fill(filler)

        # The others go on; the victim pauses at its first write that needs a page.
        sent = 0
        with trio.fail_after(60):
            async with open_client(config, "A") as client:
                while True:
                    assert (await client.transfer("A", "C", 1)).ok
                    sent += 1
                    view = await replicas.ask(config, victim, ControlOp.print_view, timeout_s=2)
                    if view["paused"]:
                        break
        assert view["paused"] == f"disk full: {config.data_dir_for(victim)}", view
        assert view["role"] == "paused" and not view["alive"]
        await transfers(config, 5, "D")  # still going on with two of three
        with trio.fail_after(10):
            await trio.sleep(2)  # a few failed probes
        log = await trio.Path(launcher.log_path(victim)).read_text()
        assert "still no space" in log
        assert launcher.running(victim)

        filler.unlink()
        with trio.fail_after(30):
            while True:
                view = await replicas.ask(config, victim, ControlOp.print_view, timeout_s=2)
                if not view["paused"] and view["role"] == "follower":
                    break
                await trio.sleep(0.1)
        async with open_client(config, "A") as client:
            with trio.fail_after(30):
                assert (await client.transfer("A", "E", 1)).ok
                balances = await client.balances()
        assert (balances["A"], balances["C"], balances["D"], balances["E"]) == (
            100 - 5 - sent - 5 - 1,
            100 + sent,
            105,
            101,
        )
        with trio.fail_after(20):
            while True:
                db = await replicas.ask(config, victim, ControlOp.print_db, timeout_s=2)
                if db["balances"] == balances:
                    break
                await trio.sleep(0.1)
        log = await trio.Path(launcher.log_path(victim)).read_text()
        assert "resumed:" in log
