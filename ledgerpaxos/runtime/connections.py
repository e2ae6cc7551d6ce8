"""One replica's TCP connections: frames in, routed; frames out, without a task switch.

    Inbound           an accepted connection's incoming side, routed by its first frame
    Poller            one task reading every accepted TCP connection (epoll)
    DirectWriter      a frame straight to the socket when nothing is queued before it
    ClientConnection  a client's or control tool's connection and its bounded replies
    ProtocolViolation  a frame that has no business on its connection (it is closed)

The replica (runtime/replica.py) owns these; they call back into it for what
a frame means (Replica.receive_from_peer, receive_from_client).
"""

from __future__ import annotations

import logging
import os
import re
import select
from typing import TYPE_CHECKING

import trio

import wire
from ledgerpaxos import constants, tls
from ledgerpaxos.runtime.tls_session import HandshakeFailed, TlsSession

if TYPE_CHECKING:
    from ledgerpaxos.runtime.replica import Replica

log = logging.getLogger("ledgerpaxos.runtime")


class ProtocolViolation(Exception):
    """A well-formed frame that has no business on this connection."""


class ConnectionStalled(Exception):
    """The other end holds the connection without finishing what it began."""


# What closes a connection with a warning: garbage, a frame out of place, no
# TLS, a stall.
REFUSED = (wire.FrameError, ProtocolViolation, HandshakeFailed, ConnectionStalled)


def kind_of(text: str) -> str:
    """What a message says with its numbers left out: one kind of warning."""
    return re.sub(r"0x[0-9a-f]+|\d+", "#", text)[:60]


class DirectWriter:
    """Writes of the core loop to a TCP stream that a task of its own drains.

    A frame goes straight to the socket (one non-blocking write, no task
    switch) when nothing queued for the stream is still unsent; what the
    socket does not take, and everything behind it, waits in the queue for
    the stream's sender task, in order. Streams that are not TCP (the tests'
    memory network) always queue."""

    def __init__(self) -> None:
        self.fd: int | None = None  # the socket while the sender task owns the stream
        self.queued = 0  # frames in the queue, not yet taken by the sender task
        self.sending = False  # the sender task is in the middle of a frame

    def attach(self, stream: trio.abc.Stream) -> None:
        self.fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None

    def detach(self) -> None:
        self.fd = None
        self.sending = False

    async def send(self, stream: trio.abc.Stream, frame: bytes) -> None:
        """The sender task: send one frame it took from the queue."""
        self.queued -= 1
        self.sending = True
        await stream.send_all(frame)
        self.sending = False

    def write(self, frame: bytes) -> bytes:
        """Write what the socket takes now; returns the rest, for the queue.

        Only an empty queue is bypassed, so the rest of a partly written
        frame always fits in it: a frame is never cut short on the wire."""
        if self.fd is None or self.queued or self.sending:
            return frame
        try:
            written = os.write(self.fd, frame)
        except BlockingIOError:
            return frame
        except OSError:
            return frame  # the sender task meets the error and ends the stream
        return frame[written:]


class Inbound:
    """One accepted connection's incoming side: frames in, routed to the core.

    With TLS the handshake comes first, and the certificate says who is
    there; the first frame tells its kind: sender 0 is a client or control
    tool (its replies go out through a writer task, started then or, with
    TLS, at the accept), anything else a peer, and it must match the
    certificate. `handle(data)` takes whatever the socket returned; bytes come
    from the replica's Poller for TCP connections, and from read_stream()
    for other streams (the tests' memory network): the same routing either way.
    """

    def __init__(
        self,
        replica: Replica,
        stream: trio.abc.Stream,
        remote: str,
        connection: ClientConnection,
        nursery: trio.Nursery,
    ) -> None:
        self.replica = replica
        self.stream = stream
        self.remote = remote
        self.connection = connection
        self.nursery = nursery
        # With TLS a frame is held to the client bound until a node's
        # certificate is shown; without TLS (experiments on one machine)
        # nobody is known, and a frame may be as large as a peer's.
        self.decoder = wire.FrameDecoder(
            cluster_id=replica.config.cluster_id,
            body_size_max=constants.client_frame_bytes_max
            if connection.session is not None
            else None,
        )
        self.partial_since: float | None = None  # when a frame began arriving
        self.kind: str | None = None  # "peer" or "client", from the first frame
        self.peer = ""  # the peer's node id, once known
        self.ended = trio.Event()

    async def handle(self, data: bytes | bytearray) -> None:
        """Route the frames in `data`; FrameError or ProtocolViolation for garbage.

        Messages the replica stepped here (see Replica.receive_from_peer)
        have their Ready carried out before this returns."""
        replica = self.replica
        session = self.session
        if session is not None:
            # Once established, what TLS has of its own to send (rare after
            # the handshake) goes out ahead of the next reply (encrypt).
            data = session.feed(data) if session.established else self._handshake(session, data)
        stepped = False
        try:
            for header, message in self.decoder.feed(data):
                if self.kind is None:
                    if header.sender == 0:
                        self.kind = "client"
                        if session is None:  # with TLS it runs from the start (the handshake)
                            self.nursery.start_soon(
                                self.connection.write_replies,
                                self.stream,
                                self.nursery.cancel_scope,
                            )
                    else:
                        self.kind, self.peer = "peer", replica.peer_at(header.sender)
                        replica.log.debug("peer %s connected from %s", self.peer, self.remote)
                    if session is not None:
                        self._check_identity(session.identity)
                if self.kind == "peer":
                    stepped |= await replica.receive_from_peer(self.peer, header, message)
                else:
                    stepped |= await replica.receive_from_client(self.connection, header, message)
        finally:
            if stepped:
                replica.carry_out_now(replica.core.take_ready())
            if self.decoder.buffered == 0:
                self.partial_since = None
            elif self.partial_since is None:
                self.partial_since = trio.current_time()

    def _handshake(self, session: TlsSession, data: bytes | bytearray) -> bytes:
        """Feed the handshake; its records out; a node's certificate lifts the
        client frame bound. Returns the plaintext that followed it, if any."""
        data = session.feed(data)  # HandshakeFailed: not one of ours
        records = session.outgoing()
        if records:
            self.connection.deliver_raw(records)
        identity = session.identity
        if identity is not None and identity.kind is tls.Kind.node:
            self.decoder.body_size_max = None  # a peer: up to message_size_max
        return data

    @property
    def session(self) -> TlsSession | None:
        """The connection's TLS, unless the config turns it off."""
        return self.connection.session

    @property
    def proven(self) -> bool:
        """It has shown who it is: a TLS handshake, or (without TLS) a frame."""
        if self.session is not None:
            return self.session.established
        return self.kind is not None

    def _check_identity(self, identity: tls.Identity | None) -> None:
        """Whoever the certificate names, and only they, speak on this connection."""
        if self.kind == "peer":
            if identity != tls.node(self.peer):
                raise ProtocolViolation(f"{identity} sends as node {self.peer}")
        elif identity is None or identity.kind is tls.Kind.node:
            raise ProtocolViolation(f"{identity} sends as a client")
        self.connection.identity = identity

    async def read_stream(self) -> None:
        """Read the stream until it ends (streams the poller does not take)."""
        try:
            while data := await self.stream.receive_some(constants.receive_size_max):
                await self.handle(data)
        except (*REFUSED, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            self.finish(error)
        else:
            self.finish(None)

    def finish(self, why: BaseException | None) -> None:
        """The connection ends: garbage is logged as a warning, the rest at debug."""
        if self.ended.is_set():
            return
        if isinstance(why, REFUSED):
            who = f"peer {self.peer} at {self.remote}" if self.peer else self.remote
            # One warning per kind of refusal and second: numbers aside, a flood
            # of garbage says the same thing over and over.
            kind = kind_of(f"{type(why).__name__}: {why}")
            self.replica.warn_limited(kind, "closing the connection from %s: %s", who, why)
        else:
            self.replica.log.debug(
                "connection from %s ended: %s", self.peer or self.remote, why or "closed"
            )
        self.ended.set()


class Poller:
    """One task reads every accepted TCP connection (Linux epoll).

    A task per connection costs, per frame, a wake-up through trio's
    scheduler and two epoll_ctl calls (trio registers a socket for one wait
    at a time). Here every accepted socket stays registered, level-triggered,
    in an epoll set of our own; one task waits until that set is readable
    (trio can wait on an epoll descriptor like on a socket), then reads each
    ready socket once and hands the bytes to its Inbound. With 64 clients
    the leader reads the requests of a whole round in one wake-up.
    A socket that still has data after one read is reported again on the next
    round, so no connection can starve the others."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.inbound: dict[int, Inbound] = {}

    def add(self, fd: int, inbound: Inbound) -> None:
        self.inbound[fd] = inbound
        self.epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int, inbound: Inbound) -> None:
        if self.inbound.get(fd) is inbound:
            del self.inbound[fd]
            if not self.epoll.closed:  # at shutdown the poller may have closed it first
                self.epoll.unregister(fd)

    async def run(self) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(self.epoll.fileno())
                for fd, _ in self.epoll.poll(0):
                    inbound = self.inbound.get(fd)
                    if inbound is None:
                        continue  # ended earlier in this round
                    try:
                        data = os.read(fd, constants.receive_size_max)
                    except BlockingIOError:
                        continue
                    except OSError as error:
                        self._end(fd, inbound, error)
                        continue
                    if not data:
                        self._end(fd, inbound, None)
                        continue
                    try:
                        await inbound.handle(data)
                    except REFUSED as error:
                        self._end(fd, inbound, error)
        finally:
            self.inbound.clear()
            self.epoll.close()

    def _end(self, fd: int, inbound: Inbound, why: BaseException | None) -> None:
        self.remove(fd, inbound)
        inbound.finish(why)


class ClientConnection:
    """An accepted connection of a client or control tool, and what it waits for.

    Replies the socket does not take at once wait for the connection's writer,
    at most `client_replies_queued_max` of them and `client_reply_bytes_max`
    bytes: a client that lets more pile up does not read, and is disconnected
    (dropping a reply instead would break a TLS stream, and bytes held for a
    client that never reads are memory lost)."""

    def __init__(self, remote: str, session: TlsSession | None = None) -> None:
        self.remote = remote
        self.session = session
        self.identity: tls.Identity | None = None  # from the certificate (TLS only)
        self.replies_in, self.replies_out = trio.open_memory_channel[bytes](
            constants.client_replies_queued_max
        )
        self.queued_bytes = 0
        self.closed = False
        self.cut_off_because: str | None = None
        self.direct = DirectWriter()
        self._done: trio.CancelScope | None = None  # ends the connection, once it is served

    def deliver(self, frame: bytes) -> None:
        """Send a frame, or queue it for the connection's writer."""
        if self.closed:
            return
        if self.session is not None:
            if not self.session.established:
                return  # nothing is said to whoever has not shown who they are
            frame = self.session.encrypt(frame)
        self.deliver_raw(frame)

    def deliver_raw(self, frame: bytes) -> None:
        """Bytes as they go on the wire (TLS records, or plaintext frames)."""
        if self.closed:
            return
        rest = self.direct.write(frame)
        if not rest:
            return
        if self.queued_bytes + len(rest) > constants.client_reply_bytes_max:
            self.cut_off(f"{self.queued_bytes + len(rest)} bytes of replies it does not read")
            return
        try:
            self.replies_in.send_nowait(rest)
        except trio.WouldBlock:
            self.cut_off(f"{constants.client_replies_queued_max} replies it does not read")
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the connection is ending
        self.direct.queued += 1
        self.queued_bytes += len(rest)

    def cut_off(self, why: str) -> None:
        log.warning("disconnecting %s: %s", self.remote, why)
        self.cut_off_because = why
        self.closed = True
        self.replies_in.close()
        if self._done is not None:
            self._done.cancel()

    async def write_replies(self, stream: trio.abc.Stream, done: trio.CancelScope) -> None:
        self._done = done
        self.direct.attach(stream)
        try:
            async for frame in self.replies_out:
                await self.direct.send(stream, frame)
                self.queued_bytes -= len(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.direct.detach()
        done.cancel()
