"""Real replica processes on 127.0.0.1: kill -9 all of them, restart, nothing lost.

Runs in real time (a few seconds); marked `processes`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from ledgerpaxos import replicas
from ledgerpaxos.client import open_client
from ledgerpaxos.config import Config, make_local_config, write_config
from ledgerpaxos.core.messages import ControlOp
from tests.conftest import REPO, TREASURER
from tools.cluster.launcher import Launcher
from tools.cluster.ports import PortReservation

pytestmark = pytest.mark.processes


class Processes(Launcher):
    """The one launcher, with what this test needs on top."""

    def kill_all(self) -> None:
        """SIGKILL every replica still running (a crash of the whole cluster)."""
        for node_id in self.config.node_ids:
            if self.running(node_id):
                self.crash(node_id)

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.logs_dir.iterdir())
        )


@contextmanager
def replica_processes(tmp_path: Path) -> Iterator[Processes]:
    with PortReservation(5) as ports:
        config = make_local_config(5, ports.ports, tmp_path / "data", fsync=True, clients=TREASURER)
        config_path = tmp_path / "cluster.toml"
        write_config(config, config_path)
        logs = tmp_path / "logs"
        logs.mkdir()
        processes = Processes(
            config, config_path, logs_dir=logs, cwd=REPO, started_by="test", reserved=ports
        )
        try:
            yield processes
        finally:
            processes.kill_all()  # every process we started, also when the test failed


async def ask(config: Config, node_id: str, op: ControlOp) -> dict[str, Any]:
    return await replicas.ask(config, node_id, op, timeout_s=2)


async def wait_for_leader(config: Config) -> str:
    return await replicas.wait_for_leader(config, timeout_s=30)


def committed(log: dict[str, Any]) -> dict[int, list[str]]:
    return {e["slot"]: e["batch"] for e in log["entries"] if e["status"] in ("E", "C")}


@pytest.mark.trio
async def test_kill_9_of_every_replica_loses_nothing(tmp_path: Path) -> None:
    with replica_processes(tmp_path) as processes:
        config = processes.config
        for node_id in config.node_ids:
            processes.start(node_id)
        try:
            await wait_for_leader(config)
            done = [("A", "B", 3), ("B", "C", 2), ("C", "A", 1)] * 4  # across a checkpoint
            async with open_client(config, "A") as client:
                with trio.fail_after(30):
                    for t in done:
                        assert (await client.transfer(*t)).ok
                    balances = await client.balances()
            assert (balances["A"], balances["B"], balances["C"]) == (2, 14, 14)
            with trio.fail_after(10):  # followers learn the last commit from a heartbeat
                while True:
                    dbs = [
                        (await ask(config, n, ControlOp.print_db))["balances"]
                        for n in config.node_ids
                    ]
                    if all(db == balances for db in dbs):
                        break
                    await trio.sleep(0.05)
            before = {
                n: committed(await ask(config, n, ControlOp.print_log)) for n in config.node_ids
            }

            processes.kill_all()
            for node_id in config.node_ids:
                processes.start(node_id)
            await wait_for_leader(config)

            for node_id in config.node_ids:
                db = await ask(config, node_id, ControlOp.print_db)
                assert db["balances"] == balances, node_id
                view = await ask(config, node_id, ControlOp.print_view)
                after = committed(await ask(config, node_id, ControlOp.print_log))
                # every committed slot above the checkpoint it restarted from is back, unchanged
                kept = {s: b for s, b in before[node_id].items() if s > view["checkpoint_slot"]}
                assert kept and {s: after[s] for s in kept if s in after} == kept, node_id
            async with open_client(config, "A") as client:
                with trio.fail_after(30):
                    assert await client.balances() == balances
                    assert (await client.transfer("A", "B", 1)).ok
        except BaseException:
            print(processes.log_text())
            raise
