"""TLS on a connection whose bytes someone else moves: an SSLObject over memory buffers.

The replica reads every accepted socket in one poller task and writes frames
straight to sockets (runtime/connections.py), so it cannot hand a socket to
`ssl` or to trio's SSLStream. A `TlsSession` does the TLS part only: it is
fed the ciphertext that arrived (`feed`, which returns the plaintext, and
drives the handshake first), encrypts what is to be sent (`encrypt`), and
hands out what TLS itself must send (`outgoing`: handshake records, session
tickets, alerts). Who moves the bytes stays as it is, for every transport.
"""

from __future__ import annotations

import ssl

from ledgerpaxos import constants, tls


class HandshakeFailed(Exception):
    """The other end is not one of ours: no certificate of the cluster CA, an
    unusable one, or not TLS at all. The connection is closed."""


class TlsSession:
    def __init__(self, context: ssl.SSLContext, *, server_side: bool) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side)
        self.established = False
        self.identity: tls.Identity | None = None  # the peer's, once established

    def feed(self, data: bytes | bytearray) -> bytes:
        """Take ciphertext from the wire; return the plaintext it completes.
        HandshakeFailed if the other end cannot prove it is one of ours."""
        self._incoming.write(data)
        if not self.established and not self._handshake():
            return b""
        chunks = []
        while True:
            try:
                chunk = self._ssl.read(constants.receive_size_max)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                break  # the other end closed TLS; the transport's end follows
            except ssl.SSLError as error:
                raise HandshakeFailed(f"TLS: {error.reason or error}") from None
            if not chunk:
                break
            chunks.append(chunk)
            if not self._incoming.pending and not self._ssl.pending():
                break  # all read: spares the SSLWantReadError of one more read
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def start(self) -> None:
        """The client side speaks first: queue its hello (see `outgoing`)."""
        self._handshake()

    def _handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as error:
            raise HandshakeFailed(f"TLS handshake: {error.reason or error}") from None
        identity = tls.identity_of(self._ssl.getpeercert())
        if identity is None:
            raise HandshakeFailed("the certificate names no identity of this cluster")
        self.identity = identity
        self.established = True
        return True

    def encrypt(self, plaintext: bytes) -> bytes:
        """The ciphertext of `plaintext`, with whatever TLS had waiting before it."""
        assert self.established, "nothing is sent before the handshake"
        self._ssl.write(plaintext)
        return self._outgoing.read()

    def outgoing(self) -> bytes:
        """What TLS itself has to send now (may be empty)."""
        if not self._outgoing.pending:
            return b""  # the usual case once established: spares a read
        return self._outgoing.read()
