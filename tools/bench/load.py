"""The benchmark's load: C clients, each with one request in flight, in one process.

`tools.bench` starts one or more load processes (`run_load_process`) and gives
each a share of the client ids. Each connects its clients and says "ready"
through its pipe; the parent then sends every process the same window on the
system-wide monotonic clock (`time.monotonic()`, the same in every process on
Linux) and later collects a `LoadResult` from each through the pipe.

Each client has its own TCP connection to the leader and speaks the client
protocol of `ledgerpaxos.client` (one ClientRequest frame out, one ClientReply
frame back, encoded by `wire`), but the clients of a process share one
`selectors` loop of non-blocking sockets instead of a trio task each. The load
shares the machine's cores with the replicas it measures, so it should cost
them as little as possible: about a fifth of the CPU per request of the trio
client library (docs/performance.md). A request carries T transfers between random
distinct accounts, amounts 1-100, taken from a pool generated before the window
opens: each client's id is the name of an account, the one it may debit (the
ledger's default rule), so every transfer is from it to a random other one. Requests are sent from the start of the window until its end; what is
still in flight then is waited for a little (`drain_s`) and counted only if it
completes by the end of the window. A request without a reply after the
cluster's client timeout is sent again on the same connection (the ledger
answers a duplicate from its client table); a connection that breaks or
carries garbage ends its client with an error in the result.

Every acknowledged request is also remembered for the end check: the money
its accepted transfers moved (`LoadResult.net_flow`), and the transfers of
requests whose outcome never came (`unknown`: applied or not, nobody knows).
"""

from __future__ import annotations

import itertools
import multiprocessing.connection
import random
import selectors
import signal
import socket
import ssl
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

import wire
from ledgerpaxos import constants, tls
from ledgerpaxos.config import Config, load_config
from ledgerpaxos.core.ledger import session_number
from ledgerpaxos.core.messages import ClientReply, ClientRequest, Command, CommandKind, Transfer

drain_s = 5.0  # after the window, how long in-flight requests may still take
pool_size_min = 256  # transfers in each client's random pool
register_timeout_s = 30.0  # for a client's session registration before the window
connect_timeout_s = 5.0


@attrs.frozen(kw_only=True)
class LoadSpec:
    config_path: str
    leader: str
    client_ids: tuple[str, ...]
    transfers_per_request: int
    accounts: Sequence[str]  # an AccountNames: ten million of them stay two numbers
    seed: int


@attrs.frozen(kw_only=True)
class LoadResult:
    done_at: bytes  # array("d"): time.monotonic() when each request completed
    latency_s: bytes  # array("d"): its latency, same order
    transfers_refused: int  # transfers the ledger refused (insufficient funds)
    errors: tuple[str, ...]  # clients that failed, and why
    # What the acknowledged transfers moved, per account (credits minus debits).
    net_flow: tuple[tuple[str, int], ...] = ()
    # Transfers of requests sent and never answered: they may or may not have applied.
    unknown: tuple[Transfer, ...] = ()


def transfer_pool(
    sender: str, accounts: Sequence[str], size: int, rng: random.Random
) -> tuple[Transfer, ...]:
    """Random transfers from `sender` (the account the client may debit) to
    the others; the pool is doubled so that any slice of up to `size`
    transfers can start anywhere in the first half. Receivers are drawn by
    position: no list of all accounts is made (there may be millions)."""
    if not any(a != sender for a in itertools.islice(accounts, 2)):
        raise ValueError("the benchmark needs at least 2 accounts")
    count = len(accounts)
    pool = []
    for _ in range(size):
        receiver = sender
        while receiver == sender:
            receiver = accounts[rng.randrange(count)]
        pool.append(Transfer(sender=sender, receiver=receiver, amount=rng.randint(1, 100)))
    return tuple(pool + pool)


def touched_accounts(pools: Sequence[tuple[Transfer, ...]]) -> frozenset[str]:
    """Every account the transfers of `pools` may change."""
    return frozenset(a for pool in pools for t in pool for a in (t.sender, t.receiver))


class _LoadClient:
    """One client: its connection, its request in flight and what is left to send."""

    def __init__(
        self,
        client_id: str,
        sock: socket.socket,
        config: Config,
        seed: int,
        pool: tuple[Transfer, ...],
    ) -> None:
        self.client_id = client_id
        self.pool = pool  # its transfers: from the account it owns (its own name)
        self.accepted_at = array("q", bytes(8 * (len(pool) // 2)))
        self.sock = sock
        self.decoder = wire.FrameDecoder(cluster_id=config.cluster_id)
        self.cluster_id = config.cluster_id
        self.pick = random.Random(seed).randrange
        # Request numbers strictly increase per client; starting from the clock
        # (as the client library does) keeps them fresh across runs on one cluster.
        self.request_no = time.time_ns() // 1000
        self.frame = b""  # the request in flight
        self.start = 0  # its transfers: the pool from this index
        self.answered = True  # no request in flight yet
        self.sent_at = 0.0  # when it was first sent
        self.resend_at = 0.0
        self.unsent = b""  # bytes of frames the socket did not take yet
        self.wants_write = False
        self.session = 0  # from the register's reply (ledger.session_number)

    def register(self, retry_s: float) -> None:
        """Register this client's session (core/ledger.py) before the window:
        send, and wait for the reply, re-sending every `retry_s`."""
        self.request_no += 1
        command = Command(
            client_id=self.client_id, request_no=self.request_no, kind=CommandKind.register
        )
        frame = wire.encode_frame(
            ClientRequest(command=command), cluster_id=self.cluster_id, sender=0
        )
        deadline = time.monotonic() + register_timeout_s
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline:
                self.sock.setblocking(True)
                self.sock.sendall(frame)
                self.sock.setblocking(False)
                resend_at = time.monotonic() + retry_s
                while time.monotonic() < min(resend_at, deadline):
                    if not selector.select(timeout=0.05):
                        continue
                    try:
                        data = _receive(self.sock)
                    except (BlockingIOError, ssl.SSLWantReadError):
                        continue
                    if not data:
                        raise ConnectionError("the leader closed the connection")
                    for _, reply in self.decoder.feed(data):
                        if isinstance(reply, ClientReply) and reply.request_no == self.request_no:
                            outcome = reply.outcome
                            self.session = session_number(outcome.slot, outcome.index)
                            return
        finally:
            selector.close()
        raise TimeoutError(f"no reply within {register_timeout_s:.0f} s")

    def new_request(
        self, start: int, transfers: tuple[Transfer, ...], now: float, retry_s: float
    ) -> None:
        self.start = start
        self.answered = False
        self.request_no += 1
        command = Command(
            client_id=self.client_id,
            request_no=self.request_no,
            kind=CommandKind.transfer,
            session=self.session,
            transfers=transfers,
        )
        self.frame = wire.encode_frame(
            ClientRequest(command=command), cluster_id=self.cluster_id, sender=0
        )
        self.sent_at = time.monotonic()  # latency runs from the send, not from the encoding
        self.resend_at = now + retry_s
        self.send(self.frame)

    def send(self, data: bytes) -> None:
        """Send now what the socket takes; the rest waits for it to be writable."""
        if not self.unsent:
            data = data[self._send_some(data) :]
        self.unsent += data

    def flush(self) -> None:
        if self.unsent:
            self.unsent = self.unsent[self._send_some(self.unsent) :]

    def _send_some(self, data: bytes) -> int:
        try:
            return self.sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0  # TLS: nothing taken; the same bytes go again when writable


def _connect(config: Config, leader: str, client_id: str) -> socket.socket:
    """A connection to the leader; with TLS (the config's default) as client
    `client_id`, the handshake done before the window opens."""
    node = config.node(leader)
    sock = socket.create_connection((node.host, node.port), timeout=connect_timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if config.tls_enabled:
        context = tls.client_context(tls.Files(config.tls_dir), tls.client(client_id))
        secure = context.wrap_socket(sock)  # the handshake, within connect_timeout_s
        if tls.identity_of(secure.getpeercert()) != tls.node(leader):
            secure.close()
            raise ConnectionError(f"the certificate at {leader}'s address is not {leader}'s")
        sock = secure
    sock.setblocking(False)
    return sock


def _receive(sock: socket.socket) -> bytes:
    """What arrived; b"" when the other end closed. TLS may hold decrypted
    bytes beyond one record, which the selector cannot see: take them all."""
    data = sock.recv(constants.receive_size_max)
    if isinstance(sock, ssl.SSLSocket):
        while data and sock.pending():
            data += sock.recv(sock.pending())
    return data


def run_load(
    spec: LoadSpec,
    get_window: Callable[[frozenset[str]], tuple[float, float]],
    progress: Any = None,
    slot: int = 0,
) -> LoadResult:
    """Connect the clients of `spec` and register their sessions, then
    `get_window(accounts the load may touch)` -> (start_at, end_at) and drive
    them through that window; `progress[slot]` counts transfers."""
    config = load_config(spec.config_path)
    rng = random.Random(spec.seed)
    size = max(pool_size_min, 4 * spec.transfers_per_request)
    per_request = spec.transfers_per_request
    retry_s = config.timers.client_timeout_ms / 1000
    done_at = array("d")
    latency = array("d")
    refused = 0
    # Requests answered with every transfer accepted, by the pool index they
    # start at (client.accepted_at: one increment per reply on the hot path;
    # the money they moved is added up once at the end), and the flow of
    # partly refused ones.
    partial_flow: dict[str, int] = {}
    errors: list[str] = []
    selector = selectors.DefaultSelector()
    clients: list[_LoadClient] = []
    try:
        for i, client_id in enumerate(spec.client_ids):
            try:
                sock = _connect(config, spec.leader, client_id)
            except OSError as error:
                errors.append(f"{client_id}: cannot connect to {spec.leader}: {error}")
                continue
            pool = transfer_pool(client_id, spec.accounts, size, rng)
            client = _LoadClient(client_id, sock, config, spec.seed * 100_003 + i, pool)
            try:
                client.register(retry_s)
            except (OSError, wire.FrameError, TimeoutError) as error:
                errors.append(f"{client_id}: cannot register its session: {error}")
                sock.close()
                continue
            clients.append(client)
            selector.register(sock, selectors.EVENT_READ, client)

        def next_request(client: _LoadClient, now: float) -> None:
            start = client.pick(size)
            try:
                client.new_request(start, client.pool[start : start + per_request], now, retry_s)
            except OSError as error:
                end(client, f"{type(error).__name__}: {error}")

        def end(client: _LoadClient, why: str) -> None:
            errors.append(f"{client.client_id}: {why}")
            selector.unregister(client.sock)
            client.sock.close()
            live.discard(client)

        start_at, end_at = get_window(touched_accounts([c.pool for c in clients]))
        time.sleep(max(0.0, start_at - time.monotonic()))
        live = set(clients)
        now = time.monotonic()
        for client in clients:
            next_request(client, now)
        stop_at = end_at + drain_s
        while live and now < stop_at:
            for key, events in selector.select(timeout=0.05):
                client = key.data
                try:
                    if events & selectors.EVENT_WRITE:
                        client.flush()
                    if not events & selectors.EVENT_READ:
                        continue
                    data = _receive(client.sock)
                    received_at = time.monotonic()  # ... to the reply's arrival, before decoding it
                    if not data:
                        end(client, "the leader closed the connection")
                        continue
                    replies = [m for _, m in client.decoder.feed(data)]
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                except (OSError, wire.FrameError) as error:
                    end(client, f"{type(error).__name__}: {error}")
                    continue
                now = time.monotonic()
                for reply in replies:
                    if client not in live:
                        break
                    if not isinstance(reply, ClientReply) or reply.request_no != client.request_no:
                        continue  # an answer to a re-sent request, already counted
                    done_at.append(received_at)
                    latency.append(received_at - client.sent_at)
                    client.answered = True
                    if reply.outcome.ok:
                        client.accepted_at[client.start] += 1
                    else:
                        refused += sum(1 for r in reply.outcome.results if not r.ok)
                        sent = client.pool[client.start : client.start + per_request]
                        _add_flow(partial_flow, sent, reply.outcome.results)
                    if progress is not None:
                        progress[slot] += per_request
                    if now < end_at:
                        next_request(client, now)
                    else:
                        live.discard(client)
            now = time.monotonic()
            for client in list(live):
                try:
                    if now >= client.resend_at:  # lost, or the leader is busy: ask again
                        client.resend_at = now + retry_s
                        client.send(client.frame)
                    wants_write = bool(client.unsent)
                    if wants_write != client.wants_write:
                        client.wants_write = wants_write
                        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if wants_write else 0)
                        selector.modify(client.sock, mask, client)
                except OSError as error:
                    end(client, f"{type(error).__name__}: {error}")
        for client in live:
            errors.append(
                f"{client.client_id}: no reply to request {client.request_no} "
                f"within {drain_s:.0f} s after the window"
            )
    finally:
        for client in clients:
            client.sock.close()
        selector.close()
    flow = partial_flow
    for client in clients:
        for start, count in enumerate(client.accepted_at):
            if count:
                for t in client.pool[start : start + per_request]:
                    _move(flow, t, count)
    unknown = [
        t
        for client in clients
        if not client.answered
        for t in client.pool[client.start : client.start + per_request]
    ]
    return LoadResult(
        done_at=done_at.tobytes(),
        latency_s=latency.tobytes(),
        transfers_refused=refused,
        errors=tuple(errors),
        net_flow=tuple(sorted(flow.items())),
        unknown=tuple(unknown),
    )


def _add_flow(flow: dict[str, int], transfers: Sequence[Transfer], results: Sequence[Any]) -> None:
    for transfer, result in zip(transfers, results, strict=True):
        if result.ok:
            _move(flow, transfer, 1)


def _move(flow: dict[str, int], transfer: Transfer, times: int) -> None:
    """What `times` applications of `transfer` moved, added to `flow`."""
    flow[transfer.sender] = flow.get(transfer.sender, 0) - times * transfer.amount
    flow[transfer.receiver] = flow.get(transfer.receiver, 0) + times * transfer.amount


def acknowledged_mismatches(
    before: Mapping[str, int],
    after: Mapping[str, int],
    net_flow: Mapping[str, int],
    unknown: Sequence[Transfer],
) -> list[str]:
    """Where the replicas' balances differ from what the acknowledged transfers give.

    Each account must hold its balance before the load plus what the
    acknowledged transfers moved; a transfer whose outcome never came may
    have moved its amount or not, so it widens its two accounts' bounds.
    Returns one line per account that is off (empty: everything adds up):
    a lost acknowledged transfer, one applied twice, money made or lost."""
    low: dict[str, int] = {}
    high: dict[str, int] = {}
    for t in unknown:
        low[t.sender] = low.get(t.sender, 0) - t.amount
        high[t.receiver] = high.get(t.receiver, 0) + t.amount
    off = []
    for account in sorted(set(before) | set(after) | set(net_flow)):
        expected = before.get(account, 0) + net_flow.get(account, 0)
        got = after.get(account)
        if got is None:
            off.append(f"{account}: missing, the acknowledged transfers give {expected}")
            continue
        lo, hi = expected + low.get(account, 0), expected + high.get(account, 0)
        if not lo <= got <= hi:
            span = f"{expected}" if lo == hi else f"{lo}..{hi} (unanswered requests)"
            off.append(f"{account}: {got}, the acknowledged transfers give {span}")
    return off


def run_load_process(
    spec: LoadSpec, progress: Any, slot: int, pipe: multiprocessing.connection.Connection
) -> None:
    """The body of one load process (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us

    def get_window(touched: frozenset[str]) -> tuple[float, float]:
        pipe.send(("ready", touched))
        window: tuple[float, float] = pipe.recv()
        return window

    try:
        result = run_load(spec, get_window, progress, slot)
    except BaseException as error:
        pipe.send(f"{type(error).__name__}: {error}")
        raise
    pipe.send(result)
    pipe.close()
