"""The ledgerpaxos client library (trio).

    config = ledgerpaxos.load_config("configs/cluster.toml")
    async with ledgerpaxos.open_client(config, client_id="A") as client:
        reply = await client.transfer("A", "B", 3)   # reply.ok, reply.reason
        balances = await client.balances()           # {"A": 7, ...}
        read = await client.read()                   # read.balances, read.slot, read.index
        one = await client.balances(["A"])           # {"A": 7}: some accounts only
        opened = await client.open_accounts(["A-savings"])   # owned by this client, at 0

Exactly once: every request carries (client id, request number); numbers
strictly increase per client id, also across client restarts (they start from
the wall clock in microseconds), and a re-sent request keeps its number, so the
ledger applies it at most once and answers a repeat with the stored reply.

Retries: a request goes to the believed leader first (initially the first node
of the config); after `timers.client_timeout_ms` without a reply it goes to
every replica, again every `client_timeout_ms`, until a reply comes (or the
optional `timeout` runs out: ClientTimeout). The leader named by a reply is
believed from then on. One request is in flight per Client at a time.

A balance read goes through the log like a transfer, so it is linearizable.
Every reply says where its request was executed: (slot, index), its log slot
and its place in that slot's batch, one order for all replicas.

Sessions: before its first transfer or opening a Client registers its session
through the log (core/ledger.py). The cluster keeps `client_sessions_max`
sessions; when a request finds its session evicted (many other clients
registered since this one's last request), it is refused unapplied, but an
earlier attempt of it may have been applied: the call raises SessionEvicted
(the outcome is unknown), and the next request registers anew.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import ssl
import time
from collections.abc import AsyncIterator, Iterable

import attrs
import trio

import wire
from ledgerpaxos import constants, tls
from ledgerpaxos.config import Config
from ledgerpaxos.core.ledger import session_number
from ledgerpaxos.core.messages import (
    ClientReply,
    ClientRequest,
    Command,
    CommandKind,
    ControlOp,
    ControlReply,
    ControlRequest,
    Transfer,
    TransferResult,
)
from ledgerpaxos.runtime.network import Network, TcpNetwork

__all__ = [
    "Client",
    "ClientTimeout",
    "ReadReply",
    "SessionEvicted",
    "TransferReply",
    "control",
    "open_client",
]

log = logging.getLogger("ledgerpaxos.client")


# The requests that name their client's session (the others need none).
_IN_A_SESSION = frozenset((CommandKind.transfer, CommandKind.open))


class ClientTimeout(Exception):
    """No reply came within the `timeout` the caller gave.

    The request may still be applied later; the next request gets a higher
    number, so it is never applied twice.
    """


def _transfer_reply(reply: ClientReply) -> TransferReply:
    outcome = reply.outcome
    return TransferReply(
        ok=outcome.ok,
        reason=outcome.reason,
        results=outcome.results,
        request_no=reply.request_no,
        leader=reply.leader,
        slot=outcome.slot,
        index=outcome.index,
    )


class SessionEvicted(Exception):
    """The client's session was evicted before its request was executed: the
    request was refused, but an earlier attempt of it may have been applied,
    so its outcome is unknown. The next request registers a new session."""


@attrs.frozen(kw_only=True)
class TransferReply:
    """The outcome of one transfer request (possibly carrying many transfers),
    or of one opening of accounts."""

    ok: bool  # every transfer (or opening) succeeded
    reason: str | None  # the first failure's reason, None when ok
    results: tuple[TransferResult, ...]  # one per transfer (or account), in order
    request_no: int
    leader: str | None  # the leader as the replying replica believed it
    slot: int  # where it was executed: the log slot
    index: int  # and its place in that slot's batch


@attrs.frozen(kw_only=True)
class ReadReply:
    """The balances a read saw, and where in the log it was executed."""

    balances: dict[str, int]
    request_no: int
    slot: int
    index: int


@attrs.define(eq=False)
class _Pending:
    event: trio.Event = attrs.field(factory=trio.Event)
    reply: ClientReply | None = None


@attrs.define(eq=False)
class _Connection:
    """A kept connection to one replica; cancelling `scope` closes it."""

    stream: trio.abc.Stream
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)


class Client:
    """Use `open_client`; this class holds the connections and the request state."""

    def __init__(
        self,
        config: Config,
        client_id: str,
        network: Network,
        nursery: trio.Nursery,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if not client_id or len(client_id.encode()) > constants.client_id_length_max:
            raise ValueError(
                f"client id must be 1-{constants.client_id_length_max} bytes, got {client_id!r}"
            )
        self.config = config
        self.client_id = client_id
        self.leader: str = config.node_ids[0]  # believed leader
        self._network = network
        self._context = context  # TLS: the client's certificate; None for plaintext
        self._nursery = nursery
        self._lock = trio.Lock()
        self._last_request_no = 0
        # The session registered (ledger.session_number), named in every transfer
        # and opening; None: none yet, or known evicted.
        self._session: int | None = None
        self._pending: dict[int, _Pending] = {}
        self._connections: dict[str, _Connection] = {}

    # ------------------------------------------------------------ requests

    async def transfer(
        self, sender: str, receiver: str, amount: int, *, timeout: float | None = None
    ) -> TransferReply:
        """Move `amount` from `sender` to `receiver`; a refusal is a reply with ok False."""
        return await self.transfers([(sender, receiver, amount)], timeout=timeout)

    async def transfers(
        self, transfers: Iterable[tuple[str, str, int]], *, timeout: float | None = None
    ) -> TransferReply:
        """Many transfers in one request, applied in order; `results` has one per transfer."""
        items = tuple(Transfer(sender=s, receiver=r, amount=a) for s, r, a in transfers)
        if not 1 <= len(items) <= constants.transfers_per_request_max:
            most = constants.transfers_per_request_max
            raise ValueError(f"a request carries 1-{most} transfers, got {len(items)}")
        reply = await self.request(CommandKind.transfer, items, timeout=timeout)
        return _transfer_reply(reply)

    async def open_accounts(
        self, accounts: Iterable[str], *, owner: str = "", timeout: float | None = None
    ) -> TransferReply:
        """Open `accounts` at balance 0, owned by this client (an operator may
        name another `owner`); `results` has one per account, a name already
        taken or malformed refused with a reason."""
        names = tuple(accounts)
        if not 1 <= len(names) <= constants.accounts_per_request_max:
            most = constants.accounts_per_request_max
            raise ValueError(f"an opening names 1-{most} accounts, got {len(names)}")
        reply = await self.request(CommandKind.open, accounts=names, owner=owner, timeout=timeout)
        return _transfer_reply(reply)

    async def register(self, *, timeout: float | None = None) -> None:
        """Register this client's session now (the first transfer or opening
        does it otherwise)."""
        await self.request(CommandKind.register, timeout=timeout)

    async def balances(
        self, accounts: Iterable[str] = (), *, timeout: float | None = None
    ) -> dict[str, int]:
        """The balances of `accounts`, or with none named of the accounts this
        client may debit (every account for an auditor or the operator, at most
        read_balances_max of them), read through the log (linearizable). An
        account that does not exist, or that this client may not see, is left out."""
        return (await self.read(accounts, timeout=timeout)).balances

    async def read(
        self, accounts: Iterable[str] = (), *, timeout: float | None = None
    ) -> ReadReply:
        """balances(), with where in the log the read was executed."""
        names = tuple(accounts)
        if len(names) > constants.accounts_per_request_max:
            most = constants.accounts_per_request_max
            raise ValueError(f"a read names at most {most} accounts, got {len(names)}")
        reply = await self.request(CommandKind.read, accounts=names, timeout=timeout)
        outcome = reply.outcome
        assert outcome.balances is not None, "a read always returns balances"
        return ReadReply(
            balances=dict(outcome.balances),
            request_no=reply.request_no,
            slot=outcome.slot,
            index=outcome.index,
        )

    async def request(
        self,
        kind: CommandKind,
        transfers: tuple[Transfer, ...] = (),
        *,
        accounts: tuple[str, ...] = (),
        owner: str = "",
        timeout: float | None = None,
    ) -> ClientReply:
        """Send one command with a fresh request number and wait for its reply
        (registering the session first when a transfer or opening needs one)."""
        async with self._lock:
            deadline = None if timeout is None else trio.current_time() + timeout
            if self._session is None and kind in _IN_A_SESSION:
                await self._register(deadline)
            left = None if deadline is None else max(0.0, deadline - trio.current_time())
            if kind == CommandKind.register:
                return await self._register(deadline)
            reply = await self._request(kind, transfers, accounts, owner, left)
            if reply.outcome.evicted:
                self._session = None
                raise SessionEvicted(
                    f"the session of client {self.client_id} was evicted before request "
                    f"{reply.request_no} was executed (more than client_sessions_max clients "
                    "registered since its last request): whether an earlier attempt of it was "
                    "applied is unknown; the next request registers anew"
                )
            return reply

    @property
    def session(self) -> int | None:
        """The number of this client's session (core/ledger.session_number);
        None before it registered, or once it learned it was evicted."""
        return self._session

    async def _register(self, deadline: float | None) -> ClientReply:
        """Register a session: its number is where the registration executed."""
        left = None if deadline is None else max(0.0, deadline - trio.current_time())
        reply = await self._request(CommandKind.register, (), (), "", left)
        outcome = reply.outcome
        self._session = session_number(outcome.slot, outcome.index)
        return reply

    async def _request(
        self,
        kind: CommandKind,
        transfers: tuple[Transfer, ...],
        accounts: tuple[str, ...],
        owner: str,
        timeout: float | None,
    ) -> ClientReply:
        command = Command(
            client_id=self.client_id,
            request_no=self._next_request_no(),
            kind=kind,
            session=(self._session or 0) if kind in _IN_A_SESSION else 0,
            transfers=transfers,
            accounts=accounts,
            owner=owner,
        )
        frame = self._encode(ClientRequest(command=command))
        pending = _Pending()
        self._pending[command.request_no] = pending
        try:
            with trio.fail_after(timeout) if timeout is not None else contextlib.nullcontext():
                reply = await self._send_until_answered(frame, pending)
        except trio.TooSlowError:
            raise ClientTimeout(
                f"no reply to request {command.request_no} of client {self.client_id} "
                f"within {timeout} s"
            ) from None
        finally:
            del self._pending[command.request_no]
        if reply.leader in self.config.node_ids:
            self.leader = reply.leader
        return reply

    def _next_request_no(self) -> int:
        now_us = time.time_ns() // 1000
        self._last_request_no = max(self._last_request_no + 1, now_us)
        return self._last_request_no

    async def _send_until_answered(self, frame: bytes, pending: _Pending) -> ClientReply:
        retry_s = self.config.timers.client_timeout_ms / 1000
        # The common case: the believed leader answers. One deadline covers the
        # send and the wait (a deadline costs more than the send itself).
        with trio.move_on_after(retry_s):
            if await self._send(self.leader, frame, guarded=False):
                await pending.event.wait()
        while pending.reply is None:
            async with trio.open_nursery() as nursery:
                for node_id in self.config.node_ids:
                    nursery.start_soon(self._send, node_id, frame)
            with trio.move_on_after(retry_s):
                await pending.event.wait()
        return pending.reply

    # ------------------------------------------------------------ connections

    async def connect(self) -> bool:
        """Open the connection to the believed leader now, before the first request.

        Optional (requests connect as needed); a benchmark uses it to keep
        connection set-up out of its latencies. False if the replica cannot be
        reached (requests will still retry every replica)."""
        connection = self._connections.get(self.leader) or await self._connect(self.leader)
        return connection is not None

    def _encode(self, message: ClientRequest | ControlRequest) -> bytes:
        return wire.encode_frame(message, cluster_id=self.config.cluster_id, sender=0)

    async def _send(self, node_id: str, frame: bytes, *, guarded: bool = True) -> bool:
        """Send a frame to one replica, (re)connecting as needed; False if it failed.

        `guarded`: give up after client_timeout_ms (unguarded: the caller's
        own deadline covers the send)."""
        for _ in range(2):  # a kept connection may have died since: one fresh try
            connection = self._connections.get(node_id) or await self._connect(node_id)
            if connection is None:
                return False
            try:
                if not guarded:
                    await connection.stream.send_all(frame)
                    return True
                with trio.move_on_after(self.config.timers.client_timeout_ms / 1000):
                    await connection.stream.send_all(frame)
                    return True
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            except BaseException:
                self._drop(node_id, connection)  # maybe half a frame went out: start afresh
                raise
            self._drop(node_id, connection)
        return False

    async def _connect(self, node_id: str) -> _Connection | None:
        with trio.move_on_after(self.config.timers.client_timeout_ms / 1000):
            try:
                stream = await self._network.connect(node_id)
                if self._context is not None:
                    stream = await authenticated(stream, self._context, tls.node(node_id))
            except OSError as error:
                log.debug("client %s cannot reach %s: %s", self.client_id, node_id, error)
                return None
            connection = self._connections[node_id] = _Connection(stream)
            self._nursery.start_soon(self._receive_replies, node_id, connection)
            return connection
        return None

    def _drop(self, node_id: str, connection: _Connection) -> None:
        """Forget a connection and close it (its receive task closes the stream)."""
        if self._connections.get(node_id) is connection:
            del self._connections[node_id]
        connection.scope.cancel()

    async def _receive_replies(self, node_id: str, connection: _Connection) -> None:
        decoder = wire.FrameDecoder(cluster_id=self.config.cluster_id)
        try:
            with connection.scope:
                async with connection.stream as stream:
                    while data := await stream.receive_some(constants.receive_size_max):
                        for _, message in decoder.feed(data):
                            if isinstance(message, ClientReply):
                                self._route(message)
        except wire.FrameError as error:
            log.warning("client %s: closing connection to %s: %s", self.client_id, node_id, error)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._drop(node_id, connection)

    def _route(self, reply: ClientReply) -> None:
        if reply.client_id != self.client_id:
            return
        pending = self._pending.get(reply.request_no)
        if pending is not None and pending.reply is None:
            pending.reply = reply
            pending.event.set()


@contextlib.asynccontextmanager
async def open_client(
    config: Config,
    client_id: str,
    *,
    network: Network | None = None,
    identity: tls.Identity | None = None,
    tls_dir: str | os.PathLike[str] | None = None,
) -> AsyncIterator[Client]:
    """A client for the cluster of `config`; its connections close on exit.

    With TLS (the config's default) it shows the certificate of `identity`
    (by default client `client_id`) from `tls_dir` (the config's tls.dir);
    TlsError if it is not there."""
    context = _context(config, identity or tls.client(client_id), tls_dir)
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        net = network if network is not None else TcpNetwork(config)
        client = Client(config, client_id, net, nursery, context)
        try:
            yield client
        except BaseException as raised:  # re-raised below, outside the nursery (no ExceptionGroup)
            error = raised
        finally:
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error


async def control(
    config: Config,
    node_id: str,
    op: ControlOp | str | int,
    argument: int = 0,
    *,
    network: Network | None = None,
    timeout_s: float = constants.control_timeout_ms / 1000,
    identity: tls.Identity | None = None,
    tls_dir: str | os.PathLike[str] | None = None,
) -> ControlReply:
    """Ask one replica a control question (ping, print_log, set_alive, ...).

    `op` is a ControlOp or its name. Raises ClientTimeout when no answer comes
    within `timeout_s`, ConnectionError (an OSError) when the replica cannot be
    reached or closes the connection.
    """
    control_op = ControlOp[op] if isinstance(op, str) else ControlOp(op)
    frame = wire.encode_frame(
        ControlRequest(op=control_op, argument=argument), cluster_id=config.cluster_id, sender=0
    )
    operator = identity or tls.operator(tls.default_operator)
    try:
        with trio.fail_after(timeout_s):
            stream = await connect_as(config, node_id, operator, network=network, tls_dir=tls_dir)
            async with stream:
                await stream.send_all(frame)
                decoder = wire.FrameDecoder(cluster_id=config.cluster_id)
                while data := await stream.receive_some(constants.receive_size_max):
                    for _, message in decoder.feed(data):
                        if isinstance(message, ControlReply) and message.op == control_op:
                            return message
    except trio.TooSlowError:
        raise ClientTimeout(
            f"{node_id} did not answer {control_op.name} within {timeout_s} s"
        ) from None
    except trio.BrokenResourceError as error:
        raise ConnectionError(f"connection to {node_id} broke: {error}") from None
    raise ConnectionError(f"{node_id} closed the connection without answering {control_op.name}")


async def connect_as(
    config: Config,
    node_id: str,
    identity: tls.Identity,
    *,
    network: Network | None = None,
    tls_dir: str | os.PathLike[str] | None = None,
) -> trio.abc.Stream:
    """A connection to replica `node_id` as `identity` (its certificate from
    `tls_dir`, by default the config's tls.dir), after a handshake in which the
    replica showed its node's certificate; plaintext where the config turns
    TLS off. ConnectionError (an OSError) when it cannot be made."""
    stream = await (network if network is not None else TcpNetwork(config)).connect(node_id)
    context = _context(config, identity, tls_dir)
    if context is None:
        return stream
    return await authenticated(stream, context, tls.node(node_id))


def _context(
    config: Config, identity: tls.Identity, tls_dir: str | os.PathLike[str] | None
) -> ssl.SSLContext | None:
    if not config.tls_enabled:
        return None
    files = tls.Files(pathlib.Path(tls_dir) if tls_dir is not None else config.tls_dir)
    return tls.client_context(files, identity)


async def authenticated(
    stream: trio.abc.Stream, context: ssl.SSLContext, expected: tls.Identity
) -> trio.SSLStream[trio.abc.Stream]:
    """`stream` after a TLS handshake in which the other end showed `expected`'s
    certificate; ConnectionError (an OSError) otherwise."""
    secure = trio.SSLStream(stream, context)
    try:
        await secure.do_handshake()
    except trio.BrokenResourceError as error:
        await stream.aclose()
        cause = error.__cause__ or error
        raise ConnectionError(f"TLS handshake with {expected} failed: {cause}") from None
    found = tls.identity_of(secure.getpeercert())
    if found != expected:
        await secure.aclose()
        raise ConnectionError(f"expected {expected}, the certificate names {found}")
    return secure
