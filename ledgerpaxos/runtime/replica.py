"""The trio runtime of one replica: carries out what the pure core asks.

One nursery holds, started in this order:

- the poller (where epoll exists): one task that reads every accepted TCP
  connection and hands the bytes to the connection's Inbound
  (runtime/connections.py);
- the listener: one port for peers, clients and control. The first frame of
  an accepted connection tells its kind: header sender > 0 is a peer (its
  frames go to the core), 0 a client or control tool (requests in, replies out);
- one link task per peer (runtime/peers.py): dials the peer and sends the
  frames of a bounded outbox, reconnecting with exponential backoff (peers
  receive on the connections they accept; two TCP connections per pair);
- the tick driver: a tick into the inbox every `constants.tick_ms`;
- the control task: answers the control requests that only read (ping,
  print_*), off the core loop and within control_time_share_max of the time;
- the core loop: takes up to `inbox_drain_max` items from the inbox (bounded
  in items and in bytes),
  steps them all, then carries out one Ready in the order of core/ready.py:
  WAL append and one fsync (group commit), snapshots, compaction, and only
  then frames to peers and replies to clients. A connection's task steps a
  peer's message (a client request only while no slot is in flight) itself
  when the inbox is empty, and carries out the Ready at once (see
  receive_from_peer): carrying out a Ready never yields to another task
  unless the write runs in a thread.

Storage failures end the replica with the error (nothing unpersisted is ever
acknowledged), except a full disk: the replica then pauses (`paused`),
acknowledges nothing, answers control with "disk full: <directory>", and
starts over from its disk, as after a crash but in the same process, once a
probe write succeeds (_wait_for_space). A peer that sends garbage loses its
connection, not the replica.

`RuntimeOptions` holds how the Ready is carried out (always in the order of
core/ready.py); `LEDGERPAXOS_RUNTIME` in runtime/main.py sets them.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import math
import os
import random
import select
import ssl
import time
from collections.abc import Callable, Collection, Sequence

import attrs
import trio

import wire
from ledgerpaxos import constants, tls
from ledgerpaxos.config import Config
from ledgerpaxos.core import Core, CoreSettings, Ready
from ledgerpaxos.core.ledger import SnapshotView
from ledgerpaxos.core.messages import (
    ClientReply,
    ClientRequest,
    ControlOp,
    ControlReply,
    ControlRequest,
    Message,
    PeerMessage,
    Snapshot,
)
from ledgerpaxos.host import ReadyExecutor, Waiters
from ledgerpaxos.runtime import control
from ledgerpaxos.runtime.connections import (
    ClientConnection,
    ConnectionStalled,
    Inbound,
    Poller,
    ProtocolViolation,
    kind_of,
)
from ledgerpaxos.runtime.network import Network, TcpNetwork, describe_remote
from ledgerpaxos.runtime.peers import PeerLink, same_frame_key
from ledgerpaxos.runtime.ticks import TickClock
from ledgerpaxos.runtime.tls_session import TlsSession
from ledgerpaxos.storage import Recovered, ReplicaStore, StorageError, files, identity
from ledgerpaxos.storage.filesystem import OS_FILE_SYSTEM
from ledgerpaxos.storage.identity import Start


@attrs.frozen
class _Tick:
    size: int = 0  # weighs nothing in the inbox


_TICK = _Tick()


@attrs.frozen
class _FromPeer:
    message: PeerMessage | ClientRequest
    sender: str
    size: int  # bytes of its frame's body: what it weighs in the inbox


@attrs.frozen(eq=False)
class _FromClient:
    request: ClientRequest
    connection: ClientConnection
    size: int


@attrs.frozen(eq=False)
class _Control:
    request: ControlRequest
    connection: ClientConnection
    size: int = 0
    # Items sent to the inbox before it came: a read is answered once the core
    # loop has stepped them (it shows what the replica was told before it).
    after: int = 0


@attrs.frozen(eq=False)
class _SnapshotWritten:
    """A snapshot of the core's (Ready.snapshot_later) is durable, or its
    write failed."""

    snapshot: Snapshot | None  # None: it failed
    generation: int  # the core it was written for (Replica._generation)
    failure: StorageError | None = None
    size: int = 0


_InboxItem = _Tick | _FromPeer | _FromClient | _Control | _SnapshotWritten

# Control operations that change the replica: carried out by the core loop, in
# order with what it steps. The others only read, and are answered by the
# control task (Replica._answer_control), off the core loop.
_CONTROL_CHANGES = frozenset({ControlOp.set_alive, ControlOp.kill_leader, ControlOp.reset})


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


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, None where the C library has none."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


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
        start: Start = Start.existing,
    ) -> None:
        """`start`: on a formatted data directory (the default), or format it
        first: for a new cluster (Start.format) or after a lost disk
        (Start.recover; the replica then rejoins, storage/identity.py)."""
        self.config = config
        self.start = start
        self.options = options if options is not None else RuntimeOptions()
        self.node_id = node_id
        self.index = config.index_of(node_id)
        self.settings = CoreSettings.from_config(config, node_id)
        self.network: Network = network if network is not None else TcpNetwork(config)
        self.rng = rng if rng is not None else random.Random()
        self.log = logging.getLogger(f"ledgerpaxos.runtime.{node_id}")
        self.peers = tuple(n for n in config.node_ids if n != node_id)
        self.port: int | None = None
        self.directory = os.fspath(config.data_dir_for(node_id))
        # Why the replica acknowledges nothing for now ("disk full: data/n4"),
        # None while it runs normally.
        self.paused: str | None = None
        self._muted_before_pause = False
        self._nursery: trio.Nursery | None = None
        self._store: ReplicaStore | None = None
        self._core: Core | None = None
        self._executor: ReadyExecutor[ClientConnection] | None = None
        self._inbox_in, self._inbox_out = trio.open_memory_channel[_InboxItem](
            constants.inbox_messages_max
        )
        self._inbox_queued = 0  # items sent to the inbox and not yet taken by the core loop
        self._inbox_bytes = 0  # and their frames' bytes (at most inbox_bytes_max, or one item)
        self._inbox_sent = 0  # items ever sent to the inbox
        self._inbox_taken = 0  # items ever taken from it by the core loop
        self._inbox_drained = trio.Event()  # set (and replaced) whenever the core loop takes
        self._control_in, self._control_out = trio.open_memory_channel[_Control](
            constants.control_requests_queued_max
        )
        self._writes_in_thread = self.config.fsync and self.options.sync_in_thread
        # Bumped whenever the core is replaced (a reset, a pause for a full
        # disk): a snapshot written for an older core is not reported to the new one.
        self._generation = 0
        self._snapshot_writer = trio.Lock()  # one snapshot write at a time, in order
        # Mutual TLS on every connection (TlsError here if a certificate is missing).
        self._accepting: ssl.SSLContext | None = None
        dialing: ssl.SSLContext | None = None
        if config.tls_enabled:
            files = tls.Files(config.tls_dir)
            self._accepting = tls.server_context(files, tls.node(node_id))
            dialing = tls.client_context(files, tls.node(node_id))
        self._links = {
            peer: PeerLink(peer, self.network, node_id, self.log, dialing) for peer in self.peers
        }
        self._peer_index = {peer: config.index_of(peer) for peer in self.peers}
        self._inbounds: dict[Inbound, None] = {}  # open accepted connections, oldest first
        self._warned_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._poller: Poller | None = None  # while running, where epoll exists
        # Logical time of the current core (runtime/ticks.py), and the tick
        # task's sleep, which every step moves to the tick then due.
        self._clock: TickClock | None = None
        self._tick_sleep: trio.CancelScope | None = None
        self.tick_wakeups = 0  # times the tick task woke (tests, docs/performance.md)

    @property
    def core(self) -> Core:
        assert self._core is not None, "the replica is not running"
        return self._core

    @property
    def store(self) -> ReplicaStore:
        assert self._store is not None, "the replica is not running"
        return self._store

    @property
    def executor(self) -> ReadyExecutor[ClientConnection]:
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
        directory = self.directory
        mine = identity.prepare(
            directory,
            cluster_id=self.config.cluster_id,
            node_id=self.node_id,
            start=self.start,
            fsync=self.config.fsync,
        )
        if self.start is not Start.existing:
            self.log.warning(
                "formatted %s as incarnation %s%s",
                directory,
                mine.incarnation,
                " (rejoining: votes for nothing until a majority has answered)"
                if mine.rejoining
                else "",
            )
        self._open_store(rejoining=mine.rejoining)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if hasattr(select, "epoll"):
                    self._poller = Poller()
                    nursery.start_soon(self._poller.run)
                self.port = await nursery.start(
                    self.network.serve, self.node_id, self._serve_connection
                )
                for link in self._links.values():
                    nursery.start_soon(link.run)
                nursery.start_soon(self._drive_ticks)
                nursery.start_soon(self._run_core)
                nursery.start_soon(self._answer_control)
                self.log.info("listening on port %s", self.port)
                task_status.started(self.port)
        finally:
            self._nursery = None
            if self._store is not None:
                self._store.close()
            self.log.info("stopped")

    def _open_store(self, *, rejoining: bool, muted: bool = False) -> None:
        """Open the data directory; build the core and the executor from what
        it holds (at the start, and when a pause for a full disk ends)."""
        store, recovered = ReplicaStore.open(self.directory, fsync=self.config.fsync, salvage=True)
        try:
            if recovered.damaged is not None and not rejoining:
                # It may have lost promises and acceptances with the records
                # after the damage: as after a lost disk, it rejoins, and says
                # so on disk first, so a crash meanwhile rejoins again.
                self.log.error("rejoining: the WAL was damaged (%s)", recovered.damaged)
                store.mark_rejoining()
                rejoining = True
            core = self._restore_core(recovered, rejoining=rejoining)
        except BaseException:
            store.close()
            raise
        self._store, self._core = store, core
        self._new_clock()
        self._executor = ReadyExecutor(
            store,
            _Transport(self),
            Waiters(
                keys_max=constants.pending_commands_max,
                per_waiter_max=constants.client_waits_per_connection_max,
            ),
            recovered=recovered,
            observe=self._log_events,
        )
        self._executor.muted = muted

    def _restore_core(self, recovered: Recovered, *, rejoining: bool) -> Core:
        core = Core(
            self.settings,
            self.rng,
            snapshot=recovered.snapshot,
            promised=recovered.promised,
            entries=recovered.entries,
            commit_slot=recovered.commit_slot,
            rejoining=rejoining,
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
        for link in self._links.values():
            # Frames of the old log still queued for a peer would come back as
            # high-ballot Accepts once the peer starts over at ballot 0.
            link.drop_queued()
        self._generation += 1
        self.store.wipe()  # after a snapshot write in progress (ReplicaStore.wipe)
        self._core = Core(self.settings, self.rng, thorough_checks=self.options.thorough_checks)
        self._new_clock()
        self.executor.reset(Recovered.empty())
        self.alive = True
        self.log.warning("reset: data directory wiped, starting empty")

    # ================================================================ a full disk

    def _pause_if_disk_full(self, error: StorageError) -> None:
        """Pause on a full disk; any other storage failure ends the replica."""
        if not error.disk_full:
            raise error
        self._pause_for_full_disk(error)

    def _pause_for_full_disk(self, error: StorageError) -> None:
        """A write was refused for want of space. What it was writing was
        never fsynced, so nothing it would have made durable was revealed; but
        from here the replica cannot keep a promise it would make. So, as
        after a crash: the core, the store and whoever waits are dropped, and
        nothing leaves. Unlike a crash the process stays up and answers
        control, and _wait_for_space starts it over from its disk."""
        assert error.disk_full and self.paused is None
        self.paused = f"disk full: {self.directory}"
        self._generation += 1
        self.log.error(
            "%s (%s): paused, acknowledging nothing; trying again every %d ms",
            self.paused,
            error,
            constants.disk_full_retry_ms,
        )
        self._muted_before_pause = self.executor.muted
        self.executor.muted = True
        self.executor.waiters.clear()
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except StorageError as close_error:
                self.log.warning("closing the store after the write failed: %s", close_error)
        assert self._nursery is not None, "paused while not running"
        self._nursery.start_soon(self._wait_for_space)

    async def _wait_for_space(self) -> None:
        """Probe every disk_full_retry_ms; once the probe write succeeds,
        reopen the store (recovery cuts a record the failed write left torn)
        and go on with a fresh core, as a restarted process would."""
        while self.paused is not None:
            await trio.sleep(constants.disk_full_retry_ms / 1000)
            try:
                files.probe_space(OS_FILE_SYSTEM, self.directory, constants.disk_probe_bytes)
                mine = identity.load(OS_FILE_SYSTEM, self.directory)
                self._open_store(
                    rejoining=mine is not None and mine.rejoining, muted=self._muted_before_pause
                )
            except StorageError as error:
                if not error.disk_full:
                    raise
                self.say_limited(logging.WARNING, "disk full", "%s: still no space", self.paused)
                continue
            self.log.warning("resumed: %s takes writes again", self.directory)
            self.paused = None
            self.carry_out_now(self.core.take_ready())  # what recovery executed

    # ================================================================ core loop

    def _new_clock(self) -> None:
        """Logical time starts over with a new core (its `now` is 0); the tick
        task, if asleep, wakes to schedule for it."""
        self._clock = TickClock(trio.current_time(), constants.tick_ms / 1000)
        if self._tick_sleep is not None:
            self._tick_sleep.deadline = -math.inf

    async def _drive_ticks(self) -> None:
        """Wake when the core has a tick due (runtime/ticks.py), not every tick_ms."""
        while True:
            if self.paused is not None:  # no core is stepped; the pause ends with a new one
                await trio.sleep(constants.tick_ms / 1000)
                continue
            assert self._clock is not None
            due = self._ticks_until_wake()
            with trio.CancelScope(deadline=self._clock.schedule(due)) as sleep:
                self._tick_sleep = sleep
                await trio.sleep_forever()
            self._tick_sleep = None
            self.tick_wakeups += 1
            if self._may_step_here():
                self._step(_TICK)  # as a connection task steps a peer's message
                self.carry_out_now(self.core.take_ready())
            else:
                await self._to_inbox(_TICK)

    def _ticks_until_wake(self) -> int:
        """The core's next due tick, but at most a heartbeat's ticks and one
        from the last given, and fewer than an election timeout's (a config
        with a heartbeat just over a tick and a timeout just over two may
        leave no room for the one): see runtime/ticks.py."""
        settings = self.settings
        most = min(settings.heartbeat_ticks + 1, settings.election_timeout_ticks_min - 1)
        due = self.core.ticks_until_due()
        return most if due is None else min(due, most)

    def _reschedule_tick(self) -> None:
        """After a step: the tick task sleeps until the tick now due, sooner
        or later than before (a heartbeat a follower heard puts its wake off)."""
        sleep, clock = self._tick_sleep, self._clock
        if sleep is not None and clock is not None:
            wake_at = clock.reschedule(self._ticks_until_wake())
            if wake_at is not None:
                sleep.deadline = wake_at

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
            self._took(items)
            control_replies: list[tuple[ClientConnection, ControlReply]] = []
            for item in items:
                if isinstance(item, _Control):  # one that changes the replica
                    control_replies.append((item.connection, control.answer(self, item.request)))
                else:
                    self._step(item)
            await self._carry_out(self.core.take_ready())
            for connection, reply in control_replies:
                connection.deliver(self._encode(reply))

    def _took(self, items: Sequence[_InboxItem]) -> None:
        """The core loop took these from the inbox: room for what waits."""
        self._inbox_queued -= len(items)
        self._inbox_taken += len(items)
        self._inbox_bytes -= sum(item.size for item in items)
        self._inbox_drained.set()
        self._inbox_drained = trio.Event()

    async def _answer_control(self) -> None:
        """Answer the control requests that only read, one at a time, off the
        core loop: an answer (a print_log of thousands of transfers takes
        tens of milliseconds to build) never delays a Ready, and after each
        one this task rests long enough that answering takes at most
        control_time_share_max of the replica's time: a flood of them slows
        the ledger down by that share at most, and never stops heartbeats."""
        rest_per_busy = (1 - constants.control_time_share_max) / constants.control_time_share_max
        async for item in self._control_out:
            while self._inbox_taken < item.after:
                await self._inbox_drained.wait()
            began = trio.current_time()
            started = time.perf_counter()
            reply = control.answer(self, item.request)
            item.connection.deliver(self._encode(reply))
            busy = time.perf_counter() - started
            del item, reply  # a connection that ends meanwhile is not kept alive
            await trio.sleep_until(began + busy * (1 + rest_per_busy))

    def _step(self, item: _Tick | _FromPeer | _FromClient | _SnapshotWritten) -> None:
        if self.paused is not None:
            return  # the core is the one from before the pause: it is not stepped
        # The ticks real time has reached, first (runtime/ticks.py); the tick
        # task's own item is only that, with the tick it woke for.
        assert self._clock is not None
        is_tick = isinstance(item, _Tick)
        for _ in range(self._clock.owed(trio.current_time(), through_wake=is_tick)):
            self.core.tick()
        if isinstance(item, _Tick):
            return
        if isinstance(item, _SnapshotWritten):
            if item.generation != self._generation:
                return  # written for a core that is gone
            if item.failure is not None:
                self._pause_if_disk_full(item.failure)  # any other failure ends the replica
                return
            assert item.snapshot is not None
            self.executor.snapshot_written(item.snapshot)  # also while dead: our own disk
            self.core.snapshot_written(item.snapshot)
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
        if not self._writes_in_thread:
            self.carry_out_now(ready)  # the loop waits for the disk
            return
        if self.paused is not None:
            return  # what the old core asks for is dropped with it
        self._reschedule_tick()
        self._write_snapshot_later(ready)
        executor = self.executor
        try:
            if executor.begin(ready):
                # keep the network going during the fsync
                await trio.to_thread.run_sync(executor.make_durable, ready)
            executor.finish(ready)
        except StorageError as error:
            self._pause_if_disk_full(error)
        executed = self._execute_committed()
        if executed is not None:
            await self._carry_out(executed)

    def carry_out_now(self, ready: Ready) -> None:
        """_carry_out with the write inline: no other task runs until it is done,
        so a reader task may carry out a Ready too (see receive_from_peer)."""
        if self.paused is not None:
            return
        self._write_snapshot_later(ready)
        try:
            self.executor.carry_out(ready)
        except StorageError as error:
            self._pause_if_disk_full(error)
        # Only now: nothing else runs before it, and the Accepts and the reply
        # leave ticks_until_due's cost earlier (docs/performance.md).
        self._reschedule_tick()
        executed = self._execute_committed()
        if executed is not None:
            self.carry_out_now(executed)

    def _execute_committed(self) -> Ready | None:
        """Once a Ready is carried out, a follower executes what it learned
        is committed, its Accepted gone (Core.execute_committed); the Ready
        of what that produced (checkpoints, replies to its own clients), for
        the caller to carry out; None when nothing waited."""
        if self.paused is not None or not self.core.execution_due():
            return None
        self.core.execute_committed()
        return self.core.take_ready()

    def _write_snapshot_later(self, ready: Ready) -> None:
        if ready.snapshot_later is not None:
            assert self._nursery is not None, "a snapshot to write while not running"
            self._nursery.start_soon(self._write_snapshot, ready.snapshot_later, self._generation)

    async def _write_snapshot(self, view: SnapshotView, generation: int) -> None:
        """Build and write a snapshot of the core's in a worker thread while
        the loop goes on (a large state takes seconds), then tell the core loop
        through the inbox, in order with what else it steps (a failure too:
        only the core loop pauses the replica or ends it). A small one
        (constants.snapshot_in_loop_rows_max) is written by this task itself: a
        few milliseconds, less than a thread's round trip costs, and under
        trio's test clocks a thread lets virtual time run on meanwhile."""
        async with self._snapshot_writer:
            if generation != self._generation:
                return  # for a core that is gone
            executor, store = self.executor, self.store

            def build_and_write() -> Snapshot | None:
                # A reset bumps the generation, then wipes under this lock: a
                # snapshot of the state it wipes is never written after the wipe.
                with store.snapshot_lock:
                    if generation != self._generation:
                        return None
                    return executor.write_snapshot_later(view)

            snapshot, failure = None, None
            try:
                if view.rows <= constants.snapshot_in_loop_rows_max:
                    snapshot = build_and_write()
                else:
                    snapshot = await trio.to_thread.run_sync(build_and_write)
            except StorageError as error:
                failure = error
        if generation == self._generation and (snapshot is not None or failure is not None):
            await self._to_inbox(_SnapshotWritten(snapshot, generation, failure))

    def _log_events(self, ready: Ready) -> None:
        for event in ready.events:
            self.log.info("%s", event)
        for alarm in ready.alarms:
            # A faulty or hostile peer can make the same refusal by the thousand.
            self.say_limited(logging.ERROR, kind_of(str(alarm)), "%s", alarm)

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
            key = same_frame_key(message) if shared else None
            frame = encoded.get(key)
            if frame is None:
                try:
                    frame = encoded[key] = self._encode(message)
                except ValueError as error:
                    self.log.error("cannot send %s to %s: %s", type(message).__name__, to, error)
                    continue
            frames.setdefault(to, []).append(frame)
        for to, chunks in frames.items():
            self._links[to].write(b"".join(chunks))

    def _wait_for_reply(self, connection: ClientConnection, request: ClientRequest) -> None:
        if not connection.closed:
            self.executor.waiters.wait(request.command.key, connection)

    # ================================================================ accepted connections

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
        remote = describe_remote(stream)
        if self.connections_open >= constants.connections_max and not self._evict_unproven():
            self.warn_limited(
                "connections",
                "%d connections open, all of them known: closing new ones (the last from %s)",
                self.connections_open,
                remote,
            )
            await stream.aclose()
            return
        inbound: Inbound | None = None
        session = None
        if self._accepting is not None:
            session = TlsSession(self._accepting, server_side=True)
        connection = ClientConnection(remote, session)
        try:
            async with stream, trio.open_nursery() as nursery:
                inbound = Inbound(self, stream, remote, connection, nursery)
                self._inbounds[inbound] = None
                if session is not None:
                    # The handshake's records go out through the writer.
                    nursery.start_soon(connection.write_replies, stream, nursery.cancel_scope)
                nursery.start_soon(self._watch, inbound)
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
            if inbound is not None:
                self._inbounds.pop(inbound, None)
            connection.closed = True
            connection.replies_in.close()
            connection.replies_out.close()  # what it did not read is dropped now
            if self._executor is not None:
                self._executor.waiters.forget(connection)
            if connection.cut_off_because is not None:
                self._give_back_memory()

    def _give_back_memory(self) -> None:
        """After a client that did not read is cut off: up to
        client_reply_bytes_max of its replies are still referenced from the
        tracebacks of its cancelled tasks, reference cycles that only a full
        collection frees (and the replica's collector runs one rarely,
        runtime/main.py). Freed, the memory stays with the C allocator
        (glibc raises its mmap threshold to the sizes it saw, and the rest
        lies between live blocks) until malloc_trim hands it to the system."""
        began = time.perf_counter()
        found = gc.collect()
        if _malloc_trim is not None:
            _malloc_trim(0)
        self.log.info(
            "collected %d objects after a cut-off in %.1f ms",
            found,
            (time.perf_counter() - began) * 1000,
        )

    @property
    def connections_open(self) -> int:
        return len(self._inbounds)

    def _evict_unproven(self) -> bool:
        """At the connection limit, make room by closing the oldest connection
        that has not shown who it is yet (no TLS handshake; without TLS, no
        frame): idle strangers can never keep out a client with a
        certificate. False if every open connection is known."""
        for inbound in self._inbounds:
            if not inbound.proven:
                why = f"{self.connections_open} connections open (the limit), and it has not shown who it is"
                inbound.finish(ConnectionStalled(why))
                inbound.nursery.cancel_scope.cancel()
                del self._inbounds[inbound]
                return True
        return False

    async def _watch(self, inbound: Inbound) -> None:
        """Cut off whoever holds a connection without speaking: no TLS handshake
        in time, or a frame begun and not finished in time (slowloris)."""
        handshake_s = constants.tls_handshake_timeout_ms / 1000
        partial_s = constants.partial_frame_timeout_ms / 1000
        opened = trio.current_time()
        while True:
            await trio.sleep(min(handshake_s, partial_s) / 4)
            now = trio.current_time()
            session = inbound.session
            why = None
            if session is not None and not session.established and now - opened > handshake_s:
                why = f"no TLS handshake within {constants.tls_handshake_timeout_ms} ms"
            elif inbound.partial_since is not None and now - inbound.partial_since > partial_s:
                why = f"a frame not finished within {constants.partial_frame_timeout_ms} ms"
            if why is not None:
                inbound.finish(ConnectionStalled(why))
                inbound.nursery.cancel_scope.cancel()
                return

    def warn_limited(self, kind: str, message: str, *args: object) -> None:
        """A warning at most once per warnings_interval_ms for each kind (a
        flood of bad connections must not flood the log too)."""
        self.say_limited(logging.WARNING, kind, message, *args)

    def say_limited(self, level: int, kind: str, message: str, *args: object) -> None:
        """Logged at most once per warnings_interval_ms for each kind, with
        a count of those left out since."""
        now = trio.current_time()
        last = self._warned_at.get(kind)
        if last is not None and now - last < constants.warnings_interval_ms / 1000:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        suppressed = self._suppressed.pop(kind, 0)
        self._warned_at[kind] = now
        self.log.log(
            level,
            message + (f" ({suppressed} more like it not logged)" if suppressed else ""),
            *args,
        )

    def _may_step_here(self) -> bool:
        """Whether a task other than the core loop may step the core and carry
        out the Ready itself: nothing waits in the inbox (order is kept) and
        carrying out never yields (no write in a thread)."""
        return self._inbox_queued == 0 and not self._writes_in_thread

    async def _to_inbox(self, item: _InboxItem) -> None:
        """Queue for the core loop; wait only when the inbox is full (in items,
        or in bytes: an item that would take it past inbox_bytes_max waits
        until the core loop has taken what is there).

        The connection's receive_some is this task's checkpoint, so a frame
        that fits goes in without a trip through the scheduler (one per frame
        would cost more than decoding it).

        The count goes up before the item is in, so no task steps past it
        while it waits for room; a send that is cancelled or fails sent
        nothing (trio's channels guarantee it), so the counts come down."""
        self._inbox_queued += 1
        size = item.size
        weighed = 0
        try:
            while self._inbox_bytes and self._inbox_bytes + size > constants.inbox_bytes_max:
                await self._inbox_drained.wait()
            self._inbox_bytes += size
            weighed = size
            try:
                self._inbox_in.send_nowait(item)
            except trio.WouldBlock:
                await self._inbox_in.send(item)
        except BaseException:
            self._inbox_queued -= 1
            self._inbox_bytes -= weighed
            raise
        self._inbox_sent += 1

    def peer_at(self, index: int) -> str:
        if not 1 <= index <= len(self.config.nodes) or index == self.index:
            raise ProtocolViolation(f"sender index {index} is not a peer of {self.node_id}")
        return self.config.node_ids[index - 1]

    async def receive_from_peer(self, peer: str, header: wire.Header, message: Message) -> bool:
        """Step a peer's message here, or queue it for the core loop; returns
        whether it was stepped here (the caller then carries out the Ready).

        Stepping here spares the core loop's wake-up, a task switch per frame:
        with 5 replicas one client request brings the leader 4 Accepteds and
        each follower an Accept. It is done only when nothing waits in the
        inbox (so messages keep their order) and the core loop cannot be in
        the middle of a Ready (no write in a thread: carry_out_now then runs
        with no other task in between). Forwarded client requests always go
        through the inbox, where the core loop gathers many into one slot and
        one fsync (a client's own request: see receive_from_client)."""
        if header.sender != self._peer_index[peer]:
            raise ProtocolViolation(f"sender index {header.sender} on the connection of {peer}")
        if not isinstance(message, PeerMessage | ClientRequest):
            raise ProtocolViolation(f"a peer sent {type(message).__name__}")
        item = _FromPeer(message, peer, header.body_length)
        if type(message) is not ClientRequest and self._may_step_here():
            self._step(item)
            return True
        await self._to_inbox(item)
        return False

    async def receive_from_client(
        self, connection: ClientConnection, header: wire.Header, message: Message
    ) -> bool:
        """Like receive_from_peer. A request is stepped here only while no
        slot is in flight (one client at a time: nothing to gather it with);
        under load the core loop gathers requests into slots."""
        if header.sender != 0:
            raise ProtocolViolation(f"sender index {header.sender} on a client connection")
        identity = connection.identity
        if isinstance(message, ClientRequest):
            client_id = message.command.client_id
            # A client speaks for itself only (an operator for anyone).
            if (
                identity is not None
                and identity.kind is tls.Kind.client
                and identity.name != client_id
            ):
                raise ProtocolViolation(f"{identity} sends requests of client {client_id!r}")
            item = _FromClient(message, connection, header.body_length)
            if not self.core.slots_in_flight and self._may_step_here():
                self._step(item)
                return True
            await self._to_inbox(item)
        elif isinstance(message, ControlRequest):
            if identity is not None and identity.kind is not tls.Kind.operator:
                connection.deliver(
                    self._encode(control.refused(message, f"{identity} is not an operator"))
                )
                return False
            asked = _Control(message, connection, header.body_length, self._inbox_sent)
            if message.op in _CONTROL_CHANGES:
                await self._to_inbox(asked)
                return False
            try:
                self._control_in.send_nowait(asked)
            except trio.WouldBlock:
                reason = (
                    f"{constants.control_requests_queued_max} control requests are waiting "
                    "to be answered; ask again later"
                )
                connection.deliver(self._encode(control.refused(message, reason)))
        else:
            raise ProtocolViolation(f"a client sent {type(message).__name__}")
        return False


class _Transport:
    """The executor's way out: peer frames through the links, replies through
    the connections of the clients waiting on them."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica

    def send(self, messages: Sequence[tuple[str, PeerMessage | ClientRequest]]) -> None:
        self.replica._send_to_peers(messages)

    def reply(self, waiters: Collection[ClientConnection], reply: ClientReply) -> None:
        frame = self.replica._encode(reply)
        for connection in waiters:
            connection.deliver(frame)


async def serve_replica(
    config: Config,
    node_id: str,
    *,
    network: Network | None = None,
    rng: random.Random | None = None,
    options: RuntimeOptions | None = None,
    start: Start = Start.existing,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run replica `node_id` until cancelled; reports its port once listening."""
    replica = Replica(config, node_id, network=network, rng=rng, options=options, start=start)
    await replica.run(task_status=task_status)
