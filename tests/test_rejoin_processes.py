"""Real replica processes: a replica whose data directory was deleted, formatted or not.

It refuses to start without a flag (exit status 2, the message names
--recover), rejoins with --recover, and the cluster keeps every acknowledged
transfer. Marked `processes` (real time, a few seconds).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import trio

from ledgerpaxos import replicas
from ledgerpaxos.client import open_client
from ledgerpaxos.config import make_local_config, write_config
from ledgerpaxos.core.messages import ControlOp
from tests.conftest import REPO, TREASURER
from tools.cluster.launcher import Launcher, wait_until_answering
from tools.cluster.ports import PortReservation

pytestmark = pytest.mark.processes


def replica_command(config_path: Path, node_id: str, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ledgerpaxos.runtime.main",
        "--id",
        node_id,
        "--config",
        str(config_path),
        *flags,
    ]


@pytest.mark.trio
async def test_a_deleted_data_directory_needs_recover_and_rejoins_keeping_every_transfer(
    tmp_path: Path,
) -> None:
    with PortReservation(3) as ports:
        config = make_local_config(
            3, ports.ports, tmp_path / "data", fsync=True, clients=TREASURER, initial_balance=100
        )
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
            leader = await replicas.wait_for_leader(config, timeout_s=30)
            victim, other = [n for n in config.node_ids if n != leader]
            acknowledged = 0
            async with open_client(config, "A") as client:
                with trio.fail_after(30):
                    for _ in range(12):  # across a checkpoint
                        assert (await client.transfer("A", "B", 1)).ok
                        acknowledged += 1

            launcher.crash(victim)
            shutil.rmtree(config.data_dir_for(victim))
            with trio.fail_after(60):
                refused = await trio.run_process(
                    replica_command(config_path, victim),
                    cwd=REPO,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
            stderr = refused.stderr.decode()
            assert refused.returncode == 2, stderr
            assert "--recover" in stderr and "--format" in stderr
            assert not await trio.Path(config.data_dir_for(victim)).exists()  # nothing made

            async with open_client(config, "A") as client:  # the other two go on
                with trio.fail_after(30):
                    for _ in range(5):
                        assert (await client.transfer("A", "C", 1)).ok
                        acknowledged += 1

            assert launcher.start_flags(victim) == ["--recover"]
            launcher.start(victim)
            await wait_until_answering(launcher, [victim])
            with trio.fail_after(30):
                while True:
                    view = await replicas.ask(config, victim, ControlOp.print_view, timeout_s=2)
                    if view["role"] == "follower":
                        break
                    assert view["role"] == "rejoining" and view["rejoin"], view
                    await trio.sleep(0.1)
            # Now its vote is needed: with the other follower gone, only the
            # leader and the rejoined replica make a majority.
            launcher.crash(other)
            async with open_client(config, "A") as client:
                with trio.fail_after(30):
                    assert (await client.transfer("A", "D", 1)).ok
                    acknowledged += 1
                    balances = await client.balances()
            assert balances["A"] == 100 - acknowledged
            assert (balances["B"], balances["C"], balances["D"]) == (112, 105, 101)
            with trio.fail_after(10):
                while True:
                    db = await replicas.ask(config, victim, ControlOp.print_db, timeout_s=2)
                    if db["balances"] == balances:
                        break
                    await trio.sleep(0.05)
            log = (tmp_path / "logs" / f"{victim}.log").read_text()
            assert "rejoined: answers from" in log
        except BaseException:
            for path in sorted((tmp_path / "logs").iterdir()):
                print(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
            raise
        finally:
            for node_id in config.node_ids:
                if launcher.running(node_id):
                    launcher.crash(node_id)
