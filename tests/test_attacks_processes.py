"""The trust boundary's attacks against real replica processes with TLS (marked `processes`).

What the issue demonstrated against three live replicas, now as a peer that
holds a node's certificate (a faulty-but-authenticated peer: the most TLS
leaves an attacker): a Prepare of the last round the wire can carry, an
InstallCheckpoint minting money, an Accept of another value for a decided
slot. Every process stays up, the balances stay right, the cluster goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

import wire
from ledgerpaxos import replicas, tls
from ledgerpaxos.client import authenticated, open_client
from ledgerpaxos.config import Config, make_local_config, write_config
from ledgerpaxos.core.ledger import state_digest
from ledgerpaxos.core.messages import (
    Accept,
    Ballot,
    Command,
    CommandKind,
    ControlOp,
    InstallCheckpoint,
    Prepare,
    Snapshot,
    Transfer,
)
from ledgerpaxos.runtime.network import TcpNetwork
from tests.conftest import REPO
from tools import certs
from tools.cluster.launcher import Launcher, wait_until_answering
from tools.cluster.ports import PortReservation

pytestmark = pytest.mark.processes


@contextmanager
def tls_processes(tmp_path: Path) -> Iterator[Launcher]:
    with PortReservation(3) as ports:
        config = make_local_config(
            3,
            ports.ports,
            tmp_path / "data",
            fsync=True,
            tls={"enabled": True, "dir": str(tmp_path / "tls")},
        )
        certs.ensure_certificates(tls.Files(config.tls_dir), certs.identities_of(config))
        path = tmp_path / "cluster.toml"
        write_config(config, path)
        launcher = Launcher(
            config, path, logs_dir=tmp_path / "logs", cwd=REPO, started_by="test", reserved=ports
        )
        try:
            for node_id in config.node_ids:
                launcher.start(node_id)
            yield launcher
        finally:
            launcher.stop_all()


async def as_peer(config: Config, target: str, posing_as: str, *messages: object) -> None:
    """Frames to `target` on a peer connection with `posing_as`'s certificate."""
    context = tls.client_context(tls.Files(config.tls_dir), tls.node(posing_as))
    stream = await authenticated(
        await TcpNetwork(config).connect(target), context, tls.node(target)
    )
    async with stream:
        for message in messages:
            frame = wire.encode_frame(
                message, cluster_id=config.cluster_id, sender=config.index_of(posing_as)
            )
            await stream.send_all(frame)
        await trio.sleep(0.5)


async def test_a_peer_with_a_node_certificate_cannot_crash_freeze_or_rob_the_cluster(
    tmp_path: Path,
) -> None:
    with tls_processes(tmp_path) as launcher:
        config = launcher.config
        await wait_until_answering(launcher, config.node_ids)
        leader = await replicas.wait_for_leader(config, timeout_s=30)
        async with open_client(config, "A") as client:
            with trio.fail_after(30):
                assert (await client.transfer("A", "B", 3)).ok
        victim = next(n for n in config.node_ids if n != leader)
        view = await replicas.ask(config, victim, ControlOp.print_view)
        slot = view["executed_slot"]
        minted = tuple((a, 1000 if a == "J" else 10) for a in config.accounts)
        forged = [
            Prepare(ballot=Ballot(2**64 - 1, config.index_of(leader))),
            InstallCheckpoint(
                snapshot=Snapshot(
                    slot=slot + 100, balances=minted, clients=(), digest=state_digest(minted, ())
                )
            ),
            Accept(
                ballot=Ballot(10**6, config.index_of(leader)),
                slot=slot,
                batch=(
                    Command(
                        client_id="mallory",
                        request_no=1,
                        kind=CommandKind.transfer,
                        transfers=(Transfer(sender="A", receiver="J", amount=7),),
                    ),
                ),
                commit_slot=0,
                purge_slot=0,
            ),
        ]
        await as_peer(config, victim, leader, *forged)

        assert launcher.exited() == {}  # every process alive
        async with open_client(config, "A") as client:  # the cluster goes on
            with trio.fail_after(30):
                assert (await client.transfer("A", "C", 1)).ok
        with trio.fail_after(10):
            while True:
                dbs = [
                    (await replicas.ask(config, n, ControlOp.print_db))["balances"]
                    for n in config.node_ids
                ]
                if all(db == dbs[0] for db in dbs):
                    break
                await trio.sleep(0.1)
        assert (dbs[0]["A"], dbs[0]["B"], dbs[0]["C"], dbs[0]["J"]) == (6, 13, 11, 10)
        promised = (await replicas.ask(config, victim, ControlOp.print_view))["promised"]
        assert not promised.startswith(str(2**64 - 1))
        log = (tmp_path / "logs" / f"{victim}.log").read_text()
        assert "refused Prepare" in log and "is beyond" in log
