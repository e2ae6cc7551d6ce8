"""The links to the other replicas: one bounded outbox per peer, drained by a dialing task.

Peers receive on the connections they accept and send on the ones they dial
(two TCP connections per pair), so a link only ever writes. A frame goes
straight to the socket when nothing is queued before it (DirectWriter);
what the socket does not take waits in the outbox, which holds at most
`constants.peer_outbox_frames_max` frames: beyond that frames are dropped
(the protocol re-sends what matters: Accepts, heartbeats, catch-up).
"""

from __future__ import annotations

import logging
import ssl

import trio

from ledgerpaxos import constants, tls
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    Heartbeat,
    HeartbeatAck,
    Nack,
    Prepare,
    PreVote,
)
from ledgerpaxos.runtime.connections import DirectWriter
from ledgerpaxos.runtime.network import Network
from ledgerpaxos.runtime.tls_session import HandshakeFailed, TlsSession


class PeerLink:
    def __init__(
        self,
        peer: str,
        network: Network,
        node_id: str,
        log: logging.Logger,
        context: ssl.SSLContext | None = None,
    ) -> None:
        """`context`: dial with TLS (the peer must show the certificate of
        node `peer`); None: plaintext (a config with tls.enabled = false)."""
        self.peer = peer
        self.network = network
        self.node_id = node_id
        self.log = log
        self.context = context
        self.session: TlsSession | None = None  # while connected with TLS
        self.direct = DirectWriter()
        self._outbox_in, self._outbox_out = trio.open_memory_channel[bytes](
            constants.peer_outbox_frames_max
        )
        self._full_reported = False

    def write(self, frames: bytes) -> None:
        """Send now what the socket takes, queue the rest; dropped when the outbox is full.

        With TLS, frames are encrypted for the connection they go out on, so
        while the link is down they are dropped, not queued (the protocol sends
        again what matters)."""
        if self.context is not None:
            if self.session is None:
                return
            frames = self.session.encrypt(frames)
        rest = self.direct.write(frames)
        if not rest:
            return
        try:
            self._outbox_in.send_nowait(rest)
            self.direct.queued += 1
            self._full_reported = False
        except trio.WouldBlock:
            if not self._full_reported:
                self._full_reported = True
                self.log.warning("outbox to %s is full; dropping frames until it drains", self.peer)

    def drop_queued(self) -> None:
        """Forget every frame still queued (control `reset`)."""
        while True:
            try:
                self._outbox_out.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            self.direct.queued -= 1

    async def run(self) -> None:
        """Dial the peer and send it the outbox; reconnect with exponential backoff."""
        backoff_ms = constants.peer_reconnect_backoff_ms_min
        down_reported = False
        while True:
            try:
                stream = await self.network.connect(self.peer, source=self.node_id)
            except OSError as error:
                if not down_reported:
                    self.log.info("cannot reach peer %s (%s); retrying", self.peer, error)
                    down_reported = True
            else:
                try:
                    await self._authenticate(stream)
                except (
                    HandshakeFailed,
                    trio.TooSlowError,
                    trio.BrokenResourceError,
                    OSError,
                ) as error:
                    self.log.warning("peer %s: %s", self.peer, error)
                    await stream.aclose()
                else:
                    self.log.info("connected to peer %s", self.peer)
                    connected_at = trio.current_time()
                    try:
                        reason = await self._send_outbox(stream)
                    finally:
                        if self.session is not None:
                            self.session = None
                            self.drop_queued()  # encrypted for a connection that is gone
                    self.log.info("lost connection to peer %s: %s", self.peer, reason)
                    down_reported = True
                    up_s = trio.current_time() - connected_at
                    if up_s > constants.peer_reconnect_backoff_ms_max / 1000:
                        backoff_ms = constants.peer_reconnect_backoff_ms_min  # it was up a while
            await trio.sleep(backoff_ms / 1000)
            backoff_ms = min(backoff_ms * 2, constants.peer_reconnect_backoff_ms_max)

    async def _authenticate(self, stream: trio.abc.Stream) -> None:
        """The TLS handshake as the client: the peer must be node `peer`."""
        if self.context is None:
            return
        session = TlsSession(self.context, server_side=False)
        session.start()
        with trio.fail_after(constants.tls_handshake_timeout_ms / 1000):
            await stream.send_all(session.outgoing())
            while not session.established:
                data = await stream.receive_some(constants.receive_size_max)
                if not data:
                    raise HandshakeFailed("closed during the TLS handshake")
                session.feed(data)
                out = session.outgoing()
                if out:
                    await stream.send_all(out)
        if session.identity != tls.node(self.peer):
            raise HandshakeFailed(f"{session.identity} answers at the address of node {self.peer}")
        self.session = session

    async def _send_outbox(self, stream: trio.abc.Stream) -> str:
        """Send until the connection fails; returns why it ended."""
        reason = "closed by the peer"

        async def watch_for_close(done: trio.CancelScope) -> None:
            # Peers never send on a connection we dialed: reading only notices its end.
            nonlocal reason
            try:
                while data := await stream.receive_some(constants.receive_size_max):
                    if self.session is not None:
                        self.session.feed(data)  # TLS's own records (session tickets)
            except (
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                OSError,
                HandshakeFailed,
            ) as error:
                reason = str(error) or type(error).__name__
            done.cancel()

        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(watch_for_close, nursery.cancel_scope)
            self.direct.attach(stream)
            try:
                async for data in self._outbox_out:
                    await self.direct.send(stream, data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                reason = str(error) or type(error).__name__
            finally:
                self.direct.detach()
            nursery.cancel_scope.cancel()
        return reason


def same_frame_key(message: object) -> object:
    """A key under which equal messages of one Ready share their frame.

    Accepts are compared by their batch's identity (a re-sent one is built per
    follower around the same batch; hashing thousands of transfers would cost
    more than encoding them). Small fixed-size messages are keys themselves
    (frozen attrs: hashable, cheap). Anything else is encoded on its own."""
    if type(message) is Accept:
        return (
            Accept,
            message.ballot,
            message.slot,
            id(message.batch),
            message.commit_slot,
            message.commit_chain,
            message.purge_slot,
        )
    if type(message) in _SMALL_MESSAGES:
        return message
    return id(message)


_SMALL_MESSAGES = frozenset({Heartbeat, Accepted, HeartbeatAck, Nack, PreVote, Prepare})
