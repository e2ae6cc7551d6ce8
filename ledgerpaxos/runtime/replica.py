"""The trio runtime of one replica: carries out what the pure core asks.

One nursery holds, started in this order:

- the poller (where epoll exists): one task that reads every accepted TCP
  connection and hands the bytes to the connection's _Inbound;
- the listener: one port for peers, clients and control. The first frame of
  an accepted connection tells its kind: header sender > 0 is a peer (its
  frames go to the core), 0 a client or control tool (requests in, replies out);
- one link task per peer: dials the peer and sends the frames of a bounded
  outbox, reconnecting with exponential backoff (peers receive on the
  connections they accept; two TCP connections per pair);
- the tick driver: a tick into the inbox every `constants.tick_ms`;
- the core loop: takes up to `inbox_drain_max` items from the bounded inbox,
  steps them all, then carries out one Ready in the order of core/ready.py:
  WAL append and one fsync (group commit), snapshots, compaction, and only
  then frames to peers and replies to clients. A connection's task steps a
  peer's message (a client request only while no slot is in flight) itself
  when the inbox is empty, and carries out the Ready at once (see
  _receive_from_peer): carrying out a Ready never yields to another task
  unless the write runs in a thread.

Storage failures end the replica with the error (nothing unpersisted is ever
acknowledged). A peer that sends garbage loses its connection, not the replica.

`RuntimeOptions` holds how the Ready is carried out (always in the order of
core/ready.py); `LEDGERPAXOS_RUNTIME` in runtime/main.py sets them.
"""

from __future__ import annotations

import logging
import os
import random
import select
from collections.abc import Collection, Sequence

import attrs
import trio

import wire
from ledgerpaxos import constants
from ledgerpaxos.config import Config
from ledgerpaxos.core import Core, CoreSettings, Ready
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    ClientReply,
    ClientRequest,
    ControlReply,
    ControlRequest,
    Heartbeat,
    HeartbeatAck,
    Message,
    Nack,
    NewView,
    PeerMessage,
    Prepare,
    PreVote,
)
from ledgerpaxos.host import ReadyExecutor, Waiters
from ledgerpaxos.runtime import control
from ledgerpaxos.runtime.network import Network, TcpNetwork, describe_remote
from ledgerpaxos.storage import Recovered, ReplicaStore


@attrs.frozen
class _Tick:
    pass


_TICK = _Tick()


@attrs.frozen
class _FromPeer:
    message: PeerMessage | ClientRequest
    sender: str


@attrs.frozen(eq=False)
class _FromClient:
    request: ClientRequest
    connection: _ClientConnection


@attrs.frozen(eq=False)
class _Control:
    request: ControlRequest
    connection: _ClientConnection


_InboxItem = _Tick | _FromPeer | _FromClient | _Control


@attrs.frozen(kw_only=True)
class RuntimeOptions:
    """How the runtime carries out a Ready.

    sync_in_thread: run the WAL write and fsync in a worker thread, so that
        connections keep being read (and frames decoded) while the disk works.
        Off by default: the core loop waits for the write either way, and
        the hand-off to a thread and back costs two cross-thread wake-ups
        per group commit, a real share of a replica's CPU on a small machine
        (figures in docs/performance.md). Inline, the event loop is stalled
        for the fsync; frames that arrive meanwhile wait in the kernel and
        are read in the next loop turn.
    thorough_checks: check every core invariant after each step, also those
        that walk the log (Core's `thorough_checks`). Off by default: only
        the O(1) ones, as the log may hold a few hundred slots. The tests' clusters
        turn it on.
    """

    sync_in_thread: bool = False
    thorough_checks: bool = False

    @staticmethod
    def parse(text: str) -> RuntimeOptions:
        """From a comma-separated list of option names; "no_" in front turns one off."""
        values: dict[str, bool] = {}
        names = {field.name for field in attrs.fields(RuntimeOptions)}
        for word in filter(None, (w.strip() for w in text.split(","))):
            name, value = (word[3:], False) if word.startswith("no_") else (word, True)
            if name not in names:
                raise ValueError(f"unknown runtime option {word!r}; known: {sorted(names)}")
            values[name] = value
        return RuntimeOptions(**values)


class _ProtocolViolation(Exception):
    """A well-formed frame that has no business on this connection."""


class _DirectWriter:
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


class _Inbound:
    """One accepted connection's incoming side: frames in, routed to the core.

    The first frame tells its kind: sender 0 is a client or control tool
    (its replies go out through a writer task started then), anything else
    a peer. `handle(data)` takes whatever the socket returned; bytes come
    from the replica's _Poller for TCP connections, and from read_stream()
    for other streams (the tests' memory network): the same routing either way.
    """

    def __init__(
        self,
        replica: Replica,
        stream: trio.abc.Stream,
        remote: str,
        connection: _ClientConnection,
        nursery: trio.Nursery,
    ) -> None:
        self.replica = replica
        self.stream = stream
        self.remote = remote
        self.connection = connection
        self.nursery = nursery
        self.decoder = wire.FrameDecoder(cluster_id=replica.config.cluster_id)
        self.kind: str | None = None  # "peer" or "client", from the first frame
        self.peer = ""  # the peer's node id, once known
        self.ended = trio.Event()

    async def handle(self, data: bytes | bytearray) -> None:
        """Route the frames in `data`; FrameError or _ProtocolViolation for garbage.

        Messages the replica stepped here (see Replica._receive_from_peer)
        have their Ready carried out before this returns."""
        replica = self.replica
        stepped = False
        try:
            for header, message in self.decoder.feed(data):
                if self.kind is None:
                    if header.sender == 0:
                        self.kind = "client"
                        self.nursery.start_soon(
                            self.connection.write_replies, self.stream, self.nursery.cancel_scope
                        )
                    else:
                        self.kind, self.peer = "peer", replica._peer_at(header.sender)
                        replica.log.debug("peer %s connected from %s", self.peer, self.remote)
                if self.kind == "peer":
                    stepped |= await replica._receive_from_peer(self.peer, header, message)
                else:
                    stepped |= await replica._receive_from_client(self.connection, header, message)
        finally:
            if stepped:
                replica._carry_out_now(replica.core.take_ready())

    async def read_stream(self) -> None:
        """Read the stream until it ends (streams the poller does not take)."""
        try:
            while data := await self.stream.receive_some(constants.receive_size_max):
                await self.handle(data)
        except (wire.FrameError, _ProtocolViolation) as error:
            self.finish(error)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            self.finish(error)
        else:
            self.finish(None)

    def finish(self, why: BaseException | None) -> None:
        """The connection ends: garbage is logged as a warning, the rest at debug."""
        if self.ended.is_set():
            return
        if isinstance(why, wire.FrameError | _ProtocolViolation):
            who = f"peer {self.peer} at {self.remote}" if self.peer else self.remote
            self.replica.log.warning("closing the connection from %s: %s", who, why)
        else:
            self.replica.log.debug(
                "connection from %s ended: %s", self.peer or self.remote, why or "closed"
            )
        self.ended.set()


class _Poller:
    """One task reads every accepted TCP connection (Linux epoll).

    A task per connection costs, per frame, a wake-up through trio's
    scheduler and two epoll_ctl calls (trio registers a socket for one wait
    at a time). Here every accepted socket stays registered, level-triggered,
    in an epoll set of our own; one task waits until that set is readable
    (trio can wait on an epoll descriptor like on a socket), then reads each
    ready socket once and hands the bytes to its _Inbound. With 64 clients
    the leader reads the requests of a whole round in one wake-up.
    A socket that still has data after one read is reported again on the next
    round, so no connection can starve the others."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.inbound: dict[int, _Inbound] = {}

    def add(self, fd: int, inbound: _Inbound) -> None:
        self.inbound[fd] = inbound
        self.epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int, inbound: _Inbound) -> None:
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
                    except (wire.FrameError, _ProtocolViolation) as error:
                        self._end(fd, inbound, error)
        finally:
            self.inbound.clear()
            self.epoll.close()

    def _end(self, fd: int, inbound: _Inbound, why: BaseException | None) -> None:
        self.remove(fd, inbound)
        inbound.finish(why)


class _ClientConnection:
    """An accepted connection of a client or control tool, and what it waits for."""

    def __init__(self, remote: str) -> None:
        self.remote = remote
        self.replies_in, self.replies_out = trio.open_memory_channel[bytes](
            constants.client_replies_queued_max
        )
        self.closed = False
        self.direct = _DirectWriter()

    def deliver(self, frame: bytes) -> None:
        """Send a frame, or queue it for the connection's writer; dropped if
        the client does not read."""
        if self.closed:
            return
        rest = self.direct.write(frame)
        if not rest:
            return
        try:
            self.replies_in.send_nowait(rest)
            self.direct.queued += 1
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client retries; a reply is never needed twice

    async def write_replies(self, stream: trio.abc.Stream, done: trio.CancelScope) -> None:
        self.direct.attach(stream)
        try:
            async for frame in self.replies_out:
                await self.direct.send(stream, frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.direct.detach()
        done.cancel()


class Replica:
    """One replica: its store, its core and the tasks around them."""

    def __init__(
        self,
        config: Config,
        node_id: str,
        *,
        network: Network | None = None,
        rng: random.Random | None = None,
        options: RuntimeOptions | None = None,
    ) -> None:
        self.config = config
        self.options = options if options is not None else RuntimeOptions()
        self.node_id = node_id
        self.index = config.index_of(node_id)
        self.settings = CoreSettings.from_config(config, node_id)
        self.network: Network = network if network is not None else TcpNetwork(config)
        self.rng = rng if rng is not None else random.Random()
        self.log = logging.getLogger(f"ledgerpaxos.runtime.{node_id}")
        self.peers = tuple(n for n in config.node_ids if n != node_id)
        self.port: int | None = None
        self._store: ReplicaStore | None = None
        self._core: Core | None = None
        self._executor: ReadyExecutor[_ClientConnection] | None = None
        self._inbox_in, self._inbox_out = trio.open_memory_channel[_InboxItem](
            constants.inbox_messages_max
        )
        self._inbox_queued = 0  # items sent to the inbox and not yet taken by the core loop
        self._writes_in_thread = self.config.fsync and self.options.sync_in_thread
        self._outboxes: dict[str, trio.MemorySendChannel[bytes]] = {}
        self._outbox_readers: dict[str, trio.MemoryReceiveChannel[bytes]] = {}
        self._outbox_full_reported: set[str] = set()
        self._links: dict[str, _DirectWriter] = {peer: _DirectWriter() for peer in self.peers}
        self._peer_index = {peer: config.index_of(peer) for peer in self.peers}
        self._poller: _Poller | None = None  # while running, where epoll exists

    @property
    def core(self) -> Core:
        assert self._core is not None, "the replica is not running"
        return self._core

    @property
    def store(self) -> ReplicaStore:
        assert self._store is not None, "the replica is not running"
        return self._store

    @property
    def executor(self) -> ReadyExecutor[_ClientConnection]:
        assert self._executor is not None, "the replica is not running"
        return self._executor

    @property
    def alive(self) -> bool:
        """False: "dead" (control set_alive 0, kill_leader): peer and client
        traffic is dropped, nothing is sent, only control is answered. The
        executor's `muted` is the one place this is kept."""
        return not self.executor.muted

    @alive.setter
    def alive(self, alive: bool) -> None:
        self.executor.muted = not alive

    @property
    def snapshots_written(self) -> int:
        """Snapshot files written since the process started (print_view)."""
        return self._executor.snapshots_written if self._executor is not None else 0

    @property
    def wal_fsyncs(self) -> int:
        """WAL fsyncs since the process started (snapshots not included)."""
        return self._store.fsync_count if self._store is not None else 0

    # ================================================================ lifetime

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        directory = self.config.data_dir_for(self.node_id)
        self._store, recovered = ReplicaStore.open(directory, fsync=self.config.fsync)
        try:
            self._core = self._restore_core(recovered)
            self._executor = ReadyExecutor(
                self._store,
                _Transport(self),
                Waiters(
                    keys_max=constants.pending_commands_max,
                    per_waiter_max=constants.client_waits_per_connection_max,
                ),
                recovered=recovered,
                observe=self._log_events,
            )
            async with trio.open_nursery() as nursery:
                if hasattr(select, "epoll"):
                    self._poller = _Poller()
                    nursery.start_soon(self._poller.run)
                self.port = await nursery.start(
                    self.network.serve, self.node_id, self._serve_connection
                )
                for peer in self.peers:
                    outbox_in, outbox_out = trio.open_memory_channel[bytes](
                        constants.peer_outbox_frames_max
                    )
                    self._outboxes[peer] = outbox_in
                    self._outbox_readers[peer] = outbox_out
                    nursery.start_soon(self._link_to_peer, peer, outbox_out)
                nursery.start_soon(self._drive_ticks)
                nursery.start_soon(self._run_core)
                self.log.info("listening on port %s", self.port)
                task_status.started(self.port)
        finally:
            self._store.close()
            self.log.info("stopped")

    def _restore_core(self, recovered: Recovered) -> Core:
        core = Core(
            self.settings,
            self.rng,
            snapshot=recovered.snapshot,
            promised=recovered.promised,
            entries=recovered.entries,
            commit_slot=recovered.commit_slot,
            thorough_checks=self.options.thorough_checks,
        )
        if recovered.torn_tail_cut:
            self.log.warning("the WAL ended in a torn record; it was cut off")
        status = core.status()
        self.log.info(
            "recovered: checkpoint %d, commit %d, executed %d, promised %s, %d log entries",
            status.checkpoint_slot,
            status.commit_slot,
            status.executed_slot,
            status.promised,
            status.log_slots,
        )
        return core

    def reset(self) -> None:
        """Control `reset`: wipe the data directory, start over with a fresh core."""
        self.core.take_ready()  # whatever the old core wanted done no longer matters
        for peer, outbox in self._outbox_readers.items():
            # Frames of the old log still queued for a peer would come back as
            # high-ballot Accepts once the peer starts over at ballot 0.
            while True:
                try:
                    outbox.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                self._links[peer].queued -= 1
        self.store.wipe()
        self._core = Core(self.settings, self.rng, thorough_checks=self.options.thorough_checks)
        self.executor.reset(Recovered.empty())
        self.alive = True
        self.log.warning("reset: data directory wiped, starting empty")

    # ================================================================ core loop

    async def _drive_ticks(self) -> None:
        while True:
            await trio.sleep(constants.tick_ms / 1000)
            if self._may_step_here():
                self._step(_TICK)  # as a connection task steps a peer's message
                self._carry_out_now(self.core.take_ready())
            else:
                await self._to_inbox(_TICK)

    async def _run_core(self) -> None:
        await self._carry_out(self.core.take_ready())  # what recovery executed
        while True:
            # receive() yields to the scheduler even when an item is waiting:
            # take waiting items directly, wait only for an empty inbox.
            try:
                items = [self._inbox_out.receive_nowait()]
            except trio.WouldBlock:
                items = [await self._inbox_out.receive()]
            while len(items) < constants.inbox_drain_max:
                try:
                    items.append(self._inbox_out.receive_nowait())
                except trio.WouldBlock:
                    break
            self._inbox_queued -= len(items)
            control_replies: list[tuple[_ClientConnection, ControlReply]] = []
            for item in items:
                if isinstance(item, _Control):
                    control_replies.append((item.connection, control.answer(self, item.request)))
                else:
                    self._step(item)
            await self._carry_out(self.core.take_ready())
            for connection, reply in control_replies:
                connection.deliver(self._encode(reply))

    def _step(self, item: _Tick | _FromPeer | _FromClient) -> None:
        if isinstance(item, _Tick):
            self.core.tick()
        elif self.executor.muted:
            return  # dead: peer and client traffic is dropped
        elif isinstance(item, _FromPeer):
            self.core.step(item.message, item.sender)
        else:
            self._wait_for_reply(item.connection, item.request)
            self.core.step(item.request, None)

    async def _carry_out(self, ready: Ready) -> None:
        """Persist, then speak (host/executor.py). Only with `sync_in_thread`
        (and fsync on) does this yield, for the write."""
        executor = self.executor
        if not self._writes_in_thread:
            executor.carry_out(ready)  # the loop waits for the disk
            return
        if executor.begin(ready):
            # keep the network going during the fsync
            await trio.to_thread.run_sync(executor.make_durable, ready)
        executor.finish(ready)

    def _carry_out_now(self, ready: Ready) -> None:
        """_carry_out with the write inline: no other task runs until it is done,
        so a reader task may carry out a Ready too (see _receive_from_peer)."""
        self.executor.carry_out(ready)

    def _log_events(self, ready: Ready) -> None:
        for event in ready.events:
            self.log.info("%s", event)
        for alarm in ready.alarms:
            self.log.error("%s", alarm)

    def _encode(self, message: Message) -> bytes:
        return wire.encode_frame(message, cluster_id=self.config.cluster_id, sender=self.index)

    def _send_to_peers(self, send: Sequence[tuple[str, PeerMessage | ClientRequest]]) -> None:
        """One frame per message, one concatenation per peer, one outbox item per peer.

        The core sends each follower its own Accept (and Heartbeat) object with
        the same contents: each distinct message is encoded once per Ready."""
        frames: dict[str, list[bytes]] = {}
        encoded: dict[object, bytes] = {}
        shared = len(send) > 1  # a lone message (a follower's Accepted) has no twin
        for to, message in send:
            key = _same_frame_key(message) if shared else None
            frame = encoded.get(key)
            if frame is None:
                try:
                    frame = encoded[key] = self._encode(message)
                except ValueError as error:
                    self.log.error("cannot send %s to %s: %s", type(message).__name__, to, error)
                    continue
            frames.setdefault(to, []).append(frame)
        for to, chunks in frames.items():
            rest = self._links[to].write(b"".join(chunks))
            if not rest:
                continue
            try:
                self._outboxes[to].send_nowait(rest)
                self._links[to].queued += 1
                self._outbox_full_reported.discard(to)
            except trio.WouldBlock:
                if to not in self._outbox_full_reported:
                    self._outbox_full_reported.add(to)
                    self.log.warning("outbox to %s is full; dropping frames until it drains", to)

    def _wait_for_reply(self, connection: _ClientConnection, request: ClientRequest) -> None:
        if not connection.closed:
            self.executor.waiters.wait(request.command.key, connection)

    # ================================================================ peer links

    async def _link_to_peer(self, peer: str, outbox: trio.MemoryReceiveChannel[bytes]) -> None:
        """Dial `peer` and send it the outbox; reconnect with exponential backoff."""
        backoff_ms = constants.peer_reconnect_backoff_ms_min
        down_reported = False
        while True:
            try:
                stream = await self.network.connect(peer, source=self.node_id)
            except OSError as error:
                if not down_reported:
                    self.log.info("cannot reach peer %s (%s); retrying", peer, error)
                    down_reported = True
            else:
                self.log.info("connected to peer %s", peer)
                connected_at = trio.current_time()
                reason = await self._send_outbox(peer, stream, outbox)
                self.log.info("lost connection to peer %s: %s", peer, reason)
                down_reported = True
                up_s = trio.current_time() - connected_at
                if up_s > constants.peer_reconnect_backoff_ms_max / 1000:
                    backoff_ms = constants.peer_reconnect_backoff_ms_min  # it was up a while
            await trio.sleep(backoff_ms / 1000)
            backoff_ms = min(backoff_ms * 2, constants.peer_reconnect_backoff_ms_max)

    async def _send_outbox(
        self, peer: str, stream: trio.abc.Stream, outbox: trio.MemoryReceiveChannel[bytes]
    ) -> str:
        """Send until the connection fails; returns why it ended."""
        reason = "closed by the peer"

        async def watch_for_close(done: trio.CancelScope) -> None:
            # Peers never send on a connection we dialed: reading only notices its end.
            nonlocal reason
            try:
                while await stream.receive_some(constants.receive_size_max):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                reason = str(error) or type(error).__name__
            done.cancel()

        link = self._links[peer]
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(watch_for_close, nursery.cancel_scope)
            link.attach(stream)
            try:
                async for data in outbox:
                    await link.send(stream, data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                reason = str(error) or type(error).__name__
            finally:
                link.detach()
            nursery.cancel_scope.cancel()
        return reason

    # ================================================================ accepted connections

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
        remote = describe_remote(stream)
        connection = _ClientConnection(remote)
        try:
            async with stream, trio.open_nursery() as nursery:
                inbound = _Inbound(self, stream, remote, connection, nursery)
                poller = self._poller
                if poller is not None and isinstance(stream, trio.SocketStream):
                    fd = stream.socket.fileno()
                    poller.add(fd, inbound)
                    try:
                        await inbound.ended.wait()
                    finally:
                        poller.remove(fd, inbound)  # before the stream closes its fd
                else:
                    await inbound.read_stream()
                nursery.cancel_scope.cancel()
        finally:
            connection.closed = True
            connection.replies_in.close()
            if self._executor is not None:
                self._executor.waiters.forget(connection)

    def _may_step_here(self) -> bool:
        """Whether a task other than the core loop may step the core and carry
        out the Ready itself: nothing waits in the inbox (order is kept) and
        carrying out never yields (no write in a thread)."""
        return self._inbox_queued == 0 and not self._writes_in_thread

    async def _to_inbox(self, item: _InboxItem) -> None:
        """Queue for the core loop; wait only when the inbox is full.

        The connection's receive_some is this task's checkpoint, so a frame
        that fits goes in without a trip through the scheduler (one per frame
        would cost more than decoding it).

        The count goes up before the item is in, so no task steps past it
        while it waits for room; a send that is cancelled or fails sent
        nothing (trio's channels guarantee it), so the count comes down."""
        self._inbox_queued += 1
        try:
            try:
                self._inbox_in.send_nowait(item)
            except trio.WouldBlock:
                await self._inbox_in.send(item)
        except BaseException:
            self._inbox_queued -= 1
            raise

    def _peer_at(self, index: int) -> str:
        if not 1 <= index <= len(self.config.nodes) or index == self.index:
            raise _ProtocolViolation(f"sender index {index} is not a peer of {self.node_id}")
        return self.config.node_ids[index - 1]

    async def _receive_from_peer(self, peer: str, header: wire.Header, message: Message) -> bool:
        """Step a peer's message here, or queue it for the core loop; returns
        whether it was stepped here (the caller then carries out the Ready).

        Stepping here spares the core loop's wake-up, a task switch per frame:
        with 5 replicas one client request brings the leader 4 Accepteds and
        each follower an Accept. It is done only when nothing waits in the
        inbox (so messages keep their order) and the core loop cannot be in
        the middle of a Ready (no write in a thread: _carry_out_now then runs
        with no other task in between). Forwarded client requests always go
        through the inbox, where the core loop gathers many into one slot and
        one fsync (a client's own request: see _receive_from_client)."""
        if header.sender != self._peer_index[peer]:
            raise _ProtocolViolation(f"sender index {header.sender} on the connection of {peer}")
        if not isinstance(message, PeerMessage | ClientRequest):
            raise _ProtocolViolation(f"a peer sent {type(message).__name__}")
        _check_leader_ballot(message, header.sender)
        item = _FromPeer(message, peer)
        if type(message) is not ClientRequest and self._may_step_here():
            self._step(item)
            return True
        await self._to_inbox(item)
        return False

    async def _receive_from_client(
        self, connection: _ClientConnection, header: wire.Header, message: Message
    ) -> bool:
        """Like _receive_from_peer. A request is stepped here only while no
        slot is in flight (one client at a time: nothing to gather it with);
        under load the core loop gathers requests into slots."""
        if header.sender != 0:
            raise _ProtocolViolation(f"sender index {header.sender} on a client connection")
        if isinstance(message, ClientRequest):
            item = _FromClient(message, connection)
            if not self.core.slots_in_flight and self._may_step_here():
                self._step(item)
                return True
            await self._to_inbox(item)
        elif isinstance(message, ControlRequest):
            await self._to_inbox(_Control(message, connection))
        else:
            raise _ProtocolViolation(f"a client sent {type(message).__name__}")
        return False


class _Transport:
    """The executor's way out: peer frames through the links, replies through
    the connections of the clients waiting on them."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica

    def send(self, messages: Sequence[tuple[str, PeerMessage | ClientRequest]]) -> None:
        self.replica._send_to_peers(messages)

    def reply(self, waiters: Collection[_ClientConnection], reply: ClientReply) -> None:
        frame = self.replica._encode(reply)
        for connection in waiters:
            connection.deliver(frame)


def _same_frame_key(message: object) -> object:
    """A key under which equal messages of one Ready share their frame.

    Accepts are compared by their batch's identity (the core builds one per
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
            message.purge_slot,
        )
    if type(message) in _SMALL_MESSAGES:
        return message
    return id(message)


_SMALL_MESSAGES = frozenset({Heartbeat, Accepted, HeartbeatAck, Nack, PreVote, Prepare})


def _check_leader_ballot(message: Message, sender: int) -> None:
    """What the core asserts of a leader's messages, checked at the trust boundary."""
    if isinstance(message, Accept | NewView | Heartbeat):
        name = type(message).__name__
        if message.ballot.node != sender:
            raise _ProtocolViolation(f"{name} for ballot {message.ballot} of another node")
        entries = message.entries if isinstance(message, NewView) else ()
        if any(e.ballot != message.ballot for e in entries):
            raise _ProtocolViolation("NewView entries of another ballot")


async def serve_replica(
    config: Config,
    node_id: str,
    *,
    network: Network | None = None,
    rng: random.Random | None = None,
    options: RuntimeOptions | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run replica `node_id` until cancelled; reports its port once listening."""
    replica = Replica(config, node_id, network=network, rng=rng, options=options)
    await replica.run(task_status=task_status)
