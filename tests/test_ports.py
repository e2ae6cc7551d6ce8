"""Ports reserved for replicas started on the fly: nobody else can take them,
only a replica that shares them listens on them, and while it is down they
refuse connections like a free port (tools/cluster/ports.py)."""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path

import pytest
import trio

from ledgerpaxos.config import make_local_config
from ledgerpaxos.core.messages import ControlOp
from ledgerpaxos.replicas import ask
from ledgerpaxos.runtime import Replica, TcpNetwork
from ledgerpaxos.storage.identity import Start
from tools.cluster.ports import PortReservation


def connect_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_reserved_port_is_nobody_elses_and_refuses_connections() -> None:
    with PortReservation(3) as first, PortReservation(3) as second:
        assert len(set(first.ports) | set(second.ports)) == 6
        for port in first.ports:
            with socket.socket() as other, pytest.raises(OSError) as taken:
                other.bind(("127.0.0.1", port))
            assert taken.value.errno == errno.EADDRINUSE
            assert connect_refused(port)  # held, not listened on
    with socket.socket() as after:
        after.bind(("127.0.0.1", first.ports[0]))  # closed: free again


async def test_a_replica_listens_on_its_reserved_port_again_after_a_restart(
    tmp_path: Path,
) -> None:
    with PortReservation(1) as reserved:
        (port,) = reserved.ports
        config = make_local_config(1, reserved.ports, tmp_path / "data", fsync=False)
        for start in (Start.format, Start.existing):  # start, stop, start again on the same port
            replica = Replica(
                config,
                "n1",
                network=TcpNetwork(config, reuse_port=True),
                rng=random.Random(1),
                start=start,
            )
            async with trio.open_nursery() as nursery:
                assert await nursery.start(replica.run) == port
                assert (await ask(config, "n1", ControlOp.ping))["node"] == "n1"
                nursery.cancel_scope.cancel()
            assert connect_refused(port)
