"""How replicas and clients reach each other: the Network protocol and real TCP.

A network does two things:

- `serve(node_id, handler, task_status=...)` listens for `node_id` and runs
  `handler(stream)` for every accepted connection, in the serving task's own
  nursery (so stopping the replica stops its connections); it reports the port
  it listens on through `task_status.started(port)`;
- `connect(node_id, source=...)` opens a stream to `node_id`, or raises OSError
  (like a refused TCP connection). `source` is the dialing node, None for a client.

The tests' double, MemoryNetwork, is in ledgerpaxos/testing/network.py.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from ledgerpaxos.config import Config

StreamHandler = Callable[[trio.abc.Stream], Awaitable[None]]


class ListenError(Exception):
    """A replica cannot listen on its configured address (in use, not local, ...)."""


class Network(Protocol):
    async def serve(
        self,
        node_id: str,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None: ...

    async def connect(self, node_id: str, *, source: str | None = None) -> trio.abc.Stream: ...


def describe_remote(stream: trio.abc.Stream) -> str:
    """The other end of a stream, for log lines: "127.0.0.1:50312" or "memory:n2"."""
    if isinstance(stream, trio.SocketStream):
        try:
            address = stream.socket.getpeername()
        except OSError:
            return "unknown address"
        return f"{address[0]}:{address[1]}"
    return str(getattr(stream, "remote", "unknown address"))


# ---------------------------------------------------------------- TCP


REUSE_PORT_VARIABLE = "LEDGERPAXOS_REUSE_PORT"


def reuse_port_wanted() -> bool:
    """LEDGERPAXOS_REUSE_PORT=1: the program that starts this replica holds its
    port reserved for it (tests and the benchmark: tools/cluster/ports.py)."""
    return os.environ.get(REUSE_PORT_VARIABLE) == "1"


class TcpNetwork:
    """Each node listens on the host and port of its config entry.

    `reuse_port`: bind with SO_REUSEPORT, to listen on a port that a launcher
    holds reserved for this replica (tools/cluster/ports.py). Off by default:
    then a port in use is an error, never shared with another program."""

    def __init__(self, config: Config, *, reuse_port: bool = False) -> None:
        self.config = config
        self.reuse_port = reuse_port

    async def serve(
        self,
        node_id: str,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        node = self.config.node(node_id)
        try:
            if self.reuse_port:
                listeners = [await _listen_reusing_port(node.host, node.port)]
            else:
                listeners = await trio.open_tcp_listeners(node.port, host=node.host)
        except OSError as error:
            raise ListenError(
                f"{node_id} cannot listen on {node.host}:{node.port}: {error.strerror or error}"
            ) from error
        try:
            port = int(listeners[0].socket.getsockname()[1])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_listeners, handler, listeners, nursery)
                task_status.started(port)
        finally:
            for listener in listeners:
                await listener.aclose()

    async def connect(self, node_id: str, *, source: str | None = None) -> trio.abc.Stream:
        node = self.config.node(node_id)
        return await trio.open_tcp_stream(
            node.host, node.port, local_address=self._local_address(source)
        )

    def _local_address(self, source: str | None) -> str | None:
        """A replica dials its peers from its own configured address (when it
        is an IP address, not a wildcard): on a host with many addresses the
        peer, and a packet filter, see which node is calling (the nemesis
        cuts links between 127.0.0.11-15 by source and destination)."""
        if source is None:
            return None
        host = self.config.node(source).host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None  # a host name: let the kernel choose
        return None if address.is_unspecified else host


async def _listen_reusing_port(host: str, port: int) -> trio.SocketListener:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(trio.socket.SOMAXCONN)  # as trio.open_tcp_listeners does
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def _serve_listeners(
    handler: StreamHandler, listeners: list[trio.SocketListener], nursery: trio.Nursery
) -> None:
    await trio.serve_listeners(handler, listeners, handler_nursery=nursery)
