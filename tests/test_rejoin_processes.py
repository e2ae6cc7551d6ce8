"""Real replica processes whose disk is lost or damaged: they rejoin and the cluster keeps every transfer.

A replica whose data directory was deleted refuses to start without a flag
(exit status 2, the message names --recover) and rejoins with --recover; one
whose WAL has a flipped byte in the middle comes back by itself. Either way it
votes again only after a majority answered, and then its vote decides.
Marked `processes` (real time, a few seconds each).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from ledgerpaxos import replicas
from ledgerpaxos.client import open_client
from ledgerpaxos.config import Config, make_local_config, write_config
from ledgerpaxos.core.messages import ControlOp
from tests.conftest import REPO, TREASURER
from tools.cluster.launcher import Launcher, wait_until_answering
from tools.cluster.ports import PortReservation

pytestmark = pytest.mark.processes


@contextmanager
def three_replicas(
    tmp_path: Path, *, prepare: Callable[[Config], None] | None = None
) -> Iterator[Launcher]:
    """Three replica processes, fsync on; `prepare` runs before they start."""
    with PortReservation(3) as ports:
        config = make_local_config(
            3, ports.ports, tmp_path / "data", fsync=True, clients=TREASURER, initial_balance=100
        )
        if prepare is not None:
            prepare(config)
        config_path = tmp_path / "cluster.toml"
        write_config(config, config_path)
        launcher = Launcher(
            config,
            config_path,
            logs_dir=tmp_path / "logs",
            cwd=REPO,
            started_by="test",
            reserved=ports,
        )
        try:
            for node_id in config.node_ids:
                launcher.start(node_id)  # a new cluster: --format
            yield launcher
        except BaseException:
            for path in sorted((tmp_path / "logs").iterdir()):
                print(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
            raise
        finally:
            for node_id in config.node_ids:
                if launcher.running(node_id):
                    launcher.crash(node_id)


async def transfers(config: Config, count: int, receiver: str) -> None:
    async with open_client(config, "A") as client:
        with trio.fail_after(30):
            for _ in range(count):
                assert (await client.transfer("A", receiver, 1)).ok


async def holds_what_was_decided(config: Config, victim: str, leader: str) -> None:
    """Wait until `victim` executed every slot `leader` decided: a follower the
    leader does not need for a majority gets its slots only with the next
    heartbeat (core/fanout.py), so right after the transfers its WAL may hold
    none of them yet."""
    with trio.fail_after(30):
        decided = (await replicas.ask(config, leader, ControlOp.print_view, timeout_s=2))[
            "commit_slot"
        ]
        while True:
            view = await replicas.ask(config, victim, ControlOp.print_view, timeout_s=2)
            if view["executed_slot"] >= decided:
                return
            await trio.sleep(0.05)


async def rejoins_and_decides(launcher: Launcher, victim: str, other: str) -> dict[str, int]:
    """`victim` was started again: it rejoins, then with `other` gone its vote
    is needed for a transfer; every replica left holds the same balances."""
    config = launcher.config
    await wait_until_answering(launcher, [victim])
    with trio.fail_after(30):
        while True:
            view = await replicas.ask(config, victim, ControlOp.print_view, timeout_s=2)
            if view["role"] == "follower":
                break
            assert view["role"] == "rejoining" and view["rejoin"], view
            await trio.sleep(0.1)
    launcher.crash(other)  # now only the leader and the victim make a majority
    async with open_client(config, "A") as client:
        with trio.fail_after(30):
            assert (await client.transfer("A", "D", 1)).ok
            balances = await client.balances()
    with trio.fail_after(10):
        while True:
            db = await replicas.ask(config, victim, ControlOp.print_db, timeout_s=2)
            if db["balances"] == balances:
                return balances
            await trio.sleep(0.05)


@pytest.mark.trio
async def test_a_deleted_data_directory_needs_recover_and_rejoins_keeping_every_transfer(
    tmp_path: Path,
) -> None:
    with three_replicas(tmp_path) as launcher:
        config = launcher.config
        leader = await replicas.wait_for_leader(config, timeout_s=30)
        victim, other = [n for n in config.node_ids if n != leader]
        await transfers(config, 12, "B")  # across a checkpoint

        launcher.crash(victim)
        shutil.rmtree(config.data_dir_for(victim))
        command = [sys.executable, "-m", "ledgerpaxos.runtime.main", "--id", victim]
        with trio.fail_after(60):
            refused = await trio.run_process(
                [*command, "--config", str(launcher.config_path)],
                cwd=REPO,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        stderr = refused.stderr.decode()
        assert refused.returncode == 2, stderr
        assert "--recover" in stderr and "--format" in stderr
        assert not await trio.Path(config.data_dir_for(victim)).exists()  # nothing made

        await transfers(config, 5, "C")  # the other two go on
        assert launcher.start_flags(victim) == ["--recover"]
        launcher.start(victim)
        balances = await rejoins_and_decides(launcher, victim, other)
        assert (balances["A"], balances["B"], balances["C"], balances["D"]) == (82, 112, 105, 101)
        log = await trio.Path(launcher.log_path(victim)).read_text()
        assert "rejoin answered by" in log and "voting again" in log


@pytest.mark.trio
async def test_a_flipped_byte_in_the_middle_of_the_wal_is_repaired_and_the_replica_rejoins(
    tmp_path: Path,
) -> None:
    with three_replicas(tmp_path) as launcher:
        config = launcher.config
        leader = await replicas.wait_for_leader(config, timeout_s=30)
        victim, other = [n for n in config.node_ids if n != leader]
        await transfers(config, 12, "B")
        await holds_what_was_decided(config, victim, leader)  # records after the flipped one

        launcher.crash(victim)
        directory = trio.Path(config.data_dir_for(victim))
        (segment,) = [p for p in await directory.iterdir() if p.name.startswith("wal-")]
        data = bytearray(await segment.read_bytes())
        data[len(data) // 2] ^= 0x10  # a record in the middle, good ones after it
        await segment.write_bytes(bytes(data))

        await transfers(config, 5, "C")
        assert launcher.start_flags(victim) == []  # no flag: it repairs itself
        launcher.start(victim)
        balances = await rejoins_and_decides(launcher, victim, other)
        assert (balances["A"], balances["B"], balances["C"], balances["D"]) == (82, 112, 105, 101)
        log = await trio.Path(launcher.log_path(victim)).read_text()
        assert f"WAL damaged in {segment} at byte offset" in log
        assert "rejoin answered by" in log and "voting again" in log
        assert await trio.Path(f"{segment}.damaged").exists()
