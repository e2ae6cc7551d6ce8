"""Mutual TLS in the runtime: replicas, clients and operators, over in-memory streams.

Each attack of the trust boundary issue that TLS answers is a test here: a
plaintext connection, a certificate of another CA, a client posing as
another client, as a node or as an operator; none changes anything, and a
real client is served throughout.
"""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import wire
from ledgerpaxos import tls
from ledgerpaxos.client import authenticated, control, open_client
from ledgerpaxos.config import Config, make_local_config
from ledgerpaxos.core.messages import (
    Ballot,
    ClientReply,
    ClientRequest,
    Command,
    CommandKind,
    ControlOp,
    ControlReply,
    ControlRequest,
    Heartbeat,
    Transfer,
)
from ledgerpaxos.replicas import wait_for_leader
from ledgerpaxos.runtime import Replica
from ledgerpaxos.storage.identity import Start
from ledgerpaxos.testing.network import MemoryNetwork
from tools import certs


def tls_config(tmp_path: Path, name: str = "tls") -> Config:
    config = make_local_config(
        3, 7001, tmp_path / "data", fsync=False, tls={"enabled": True, "dir": str(tmp_path / name)}
    )
    certs.ensure_certificates(tls.Files(config.tls_dir), certs.identities_of(config))
    return config


@asynccontextmanager
async def tls_cluster(config: Config) -> AsyncIterator[MemoryNetwork]:
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        for i, node_id in enumerate(config.node_ids):
            replica = Replica(
                config, node_id, network=network, rng=random.Random(i), start=Start.format
            )
            await nursery.start(replica.run)
        await wait_for_leader(config, timeout_s=10, network=network)
        yield network
        nursery.cancel_scope.cancel()


async def balances(config: Config, network: MemoryNetwork) -> dict[str, int]:
    """Every balance, read through the log as the auditor (the operator's name)."""
    async with open_client(
        config, "admin", network=network, identity=tls.operator("admin")
    ) as client:
        found = await client.balances()
    assert set(found) == set(config.accounts)
    return found


def transfer(client_id: str, sender: str, request_no: int = 1) -> ClientRequest:
    return ClientRequest(
        command=Command(
            client_id=client_id,
            request_no=request_no,
            kind=CommandKind.transfer,
            transfers=(Transfer(sender=sender, receiver="J", amount=5),),
        )
    )


async def speak(
    network: MemoryNetwork,
    config: Config,
    identity: tls.Identity | None,
    message: object,
    *,
    sender: int = 0,
    files: tls.Files | None = None,
) -> bytes:
    """Connect to n1 as `identity` (None: plaintext), send one frame, return
    what comes back before the connection ends or goes quiet."""
    stream: trio.abc.Stream = await network.connect("n1")
    if identity is not None:
        context = tls.client_context(files or tls.Files(config.tls_dir), identity)
        stream = await authenticated(stream, context, tls.node("n1"))
    frame = wire.encode_frame(message, cluster_id=config.cluster_id, sender=sender)
    received = b""
    async with stream:
        await stream.send_all(frame)
        with trio.move_on_after(2):
            try:
                while data := await stream.receive_some(65536):
                    received += data
            except trio.BrokenResourceError:
                pass
    return received


async def test_clients_and_operators_work_over_tls(tmp_path: Path, autojump_clock: object) -> None:
    config = tls_config(tmp_path)
    async with tls_cluster(config) as network:
        async with open_client(config, "A", network=network) as client:
            assert (await client.transfer("A", "B", 3)).ok
        for _ in range(50):  # n1 may learn of the commit a heartbeat later
            reply = await control(config, "n1", ControlOp.print_db, network=network)
            assert reply.ok
            if json.loads(reply.body)["balances"]["A"] == 7:
                break
            await trio.sleep(0.05)
        assert json.loads(reply.body)["balances"]["A"] == 7


async def test_a_plaintext_connection_is_closed_and_changes_nothing(
    tmp_path: Path, autojump_clock: object
) -> None:
    config = tls_config(tmp_path)
    async with tls_cluster(config) as network:
        before = await balances(config, network)
        for message in (transfer("A", "A"), ControlRequest(op=ControlOp.reset)):
            assert await speak(network, config, None, message) == b""
        assert await balances(config, network) == before


async def test_another_cas_certificate_gets_no_connection(
    tmp_path: Path, autojump_clock: object
) -> None:
    config = tls_config(tmp_path)
    theirs = tls_config(tmp_path, "theirs")
    async with tls_cluster(config) as network:
        with pytest.raises(ConnectionError, match="TLS handshake"):
            await speak(
                network,
                config,
                tls.operator("admin"),
                ControlRequest(op=ControlOp.reset),
                files=tls.Files(theirs.tls_dir),
            )
        reply = await control(config, "n1", ControlOp.print_db, network=network)
        assert json.loads(reply.body)["balances"]["A"] == 10


async def test_control_from_a_client_certificate_is_refused(
    tmp_path: Path, autojump_clock: object
) -> None:
    config = tls_config(tmp_path)
    async with tls_cluster(config) as network:
        context = tls.client_context(tls.Files(config.tls_dir), tls.client("A"))
        stream = await authenticated(await network.connect("n1"), context, tls.node("n1"))
        async with stream:
            request = ControlRequest(op=ControlOp.set_alive, argument=0)
            await stream.send_all(wire.encode_frame(request, cluster_id=1, sender=0))
            decoder = wire.FrameDecoder(cluster_id=1)
            replies: list[object] = []
            while not replies:
                replies = [m for _, m in decoder.feed(await stream.receive_some(65536))]
        (reply,) = replies
        assert isinstance(reply, ControlReply) and not reply.ok
        assert json.loads(reply.body)["reason"] == "client A is not an operator"
        reply = await control(config, "n1", ControlOp.ping, network=network)
        assert json.loads(reply.body)["alive"] is True


async def test_a_certificate_speaks_only_for_its_own_identity(
    tmp_path: Path, autojump_clock: object
) -> None:
    config = tls_config(tmp_path)
    async with tls_cluster(config) as network:
        before = await balances(config, network)
        heartbeat = Heartbeat(
            ballot=Ballot(99, 2), commit_slot=0, commit_chain=bytes(16), purge_slot=0
        )
        attempts = [
            (tls.client("A"), transfer("B", "B"), 0),  # client A as client B
            (tls.client("A"), heartbeat, 2),  # a client as node n2
            (tls.node("n3"), heartbeat, 2),  # node n3 as node n2
            (tls.node("n2"), transfer("n2", "A"), 0),  # a node as a client
        ]
        for identity, message, sender in attempts:
            received = await speak(network, config, identity, message, sender=sender)
            assert not any(
                isinstance(m, ClientReply)
                for _, m in wire.FrameDecoder(cluster_id=1).feed(received)
            ), identity
        assert await balances(config, network) == before
        status = json.loads(
            (await control(config, "n1", ControlOp.print_view, network=network)).body
        )
        assert status["promised"] != "99.2"


def test_tls_off_is_only_for_loopback(tmp_path: Path) -> None:
    from ledgerpaxos.config import ConfigError, config_from_dict

    data = {
        "cluster_id": 1,
        "accounts": ["A"],
        "initial_balance": 1,
        "tls": {"enabled": False},
        "nodes": {"n1": {"host": "10.0.0.1", "port": 7001}},
    }
    with pytest.raises(ConfigError, match=r"tls\.enabled: false is only for experiments"):
        config_from_dict(data)
    data["nodes"] = {"n1": {"host": "127.0.0.5", "port": 7001}}
    assert not config_from_dict(data).tls_enabled
    del data["tls"]
    assert config_from_dict(data).tls_enabled  # on unless turned off
    assert ssl.HAS_TLSv1_3
