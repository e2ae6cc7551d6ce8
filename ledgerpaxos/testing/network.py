"""MemoryNetwork: a whole cluster inside one trio run, for tests.

It satisfies runtime.network.Network with in-memory streams (trio.testing),
so the tests run real runtimes under the autojump clock, and it can cut a
node off and heal it again.
"""

from __future__ import annotations

import errno

import attrs
import trio
import trio.testing

from ledgerpaxos.runtime.network import StreamHandler


@attrs.define(eq=False)
class _Link:
    """One connection: two stream ends that break together."""

    nodes: frozenset[str]  # the nodes at its ends (a client end names none)
    ends: list[_MemoryStream] = attrs.field(factory=list)
    broken: bool = False

    def break_(self) -> None:
        self.broken = True
        for end in self.ends:
            end.inner.receive_stream.close()
        for end in self.ends:
            try:
                end.inner.send_stream.close()
            except trio.BrokenResourceError:
                pass  # the other end is closed already


class _MemoryStream(trio.abc.Stream):
    """One end of a memory connection; raises BrokenResourceError once cut."""

    def __init__(self, inner: trio.StapledStream, link: _Link, remote: str) -> None:
        self.inner = inner
        self.link = link
        self.remote = remote

    def _check(self) -> None:
        if self.link.broken:
            raise trio.BrokenResourceError(f"connection to {self.remote} was cut")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check()
        try:
            await self.inner.send_all(data)
        except trio.ClosedResourceError:
            self._check()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        self._check()
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check()
        try:
            data = await self.inner.receive_some(max_bytes)
        except trio.ClosedResourceError:
            self._check()
            raise
        self._check()
        return bytes(data)

    async def aclose(self) -> None:
        await self.inner.aclose()


@attrs.define(eq=False)
class _Listener:
    handler: StreamHandler
    nursery: trio.Nursery


class MemoryNetwork:
    """An in-process network of trio memory streams.

    `cut(node)` breaks the node's existing connections and refuses new ones to
    or from it until `heal(node)`; stopping a node's `serve` breaks its
    connections too (like a crashed process resetting its TCP connections).
    """

    def __init__(self) -> None:
        self._listeners: dict[str, _Listener] = {}
        self._links: set[_Link] = set()
        self._cut: set[str] = set()

    async def serve(
        self,
        node_id: str,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if node_id in self._listeners:
            raise OSError(errno.EADDRINUSE, f"{node_id} is already listening")
        try:
            async with trio.open_nursery() as nursery:
                self._listeners[node_id] = _Listener(handler, nursery)
                task_status.started(0)
                await trio.sleep_forever()
        finally:
            del self._listeners[node_id]
            self._break_links_of(node_id)

    async def connect(self, node_id: str, *, source: str | None = None) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        listener = self._listeners.get(node_id)
        if listener is None or node_id in self._cut or source in self._cut:
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {node_id} refused")
        client_end, server_end = trio.testing.memory_stream_pair()
        link = _Link(nodes=frozenset(n for n in (node_id, source) if n is not None))
        link.ends = [
            _MemoryStream(client_end, link, f"memory:{node_id}"),
            _MemoryStream(server_end, link, f"memory:{source or 'client'}"),
        ]
        self._links.add(link)
        listener.nursery.start_soon(self._run_handler, listener.handler, link)
        return link.ends[0]

    async def _run_handler(self, handler: StreamHandler, link: _Link) -> None:
        try:
            await handler(link.ends[1])
        finally:
            self._links.discard(link)

    def cut(self, node_id: str) -> None:
        """Cut `node_id` off: break its connections, refuse new ones to or from it."""
        self._cut.add(node_id)
        self._break_links_of(node_id)

    def heal(self, node_id: str) -> None:
        self._cut.discard(node_id)

    def _break_links_of(self, node_id: str) -> None:
        for link in [link for link in self._links if node_id in link.nodes]:
            link.break_()
            self._links.discard(link)
