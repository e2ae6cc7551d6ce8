"""One simulated replica process: the real core and the real storage on a SimDisk.

It does what the trio runtime does (runtime/replica.py), in virtual time:
messages and ticks go into an inbox; the host steps them into the core and
hands the core's Ready to the same executor the runtime uses
(host/executor.py), with the store on the simulated disk and the virtual
network plugged in. The executor's make_durable() (fsync, snapshots,
compaction) runs after a virtual disk latency; whatever arrives meanwhile
waits in the inbox and is stepped as one group before the next Ready (group
commit), just as the runtime drains its inbox. A checkpoint of the core's own
(Ready.snapshot_later) is written after a latency of its own, while Readies
go on, and reported to the core once no other I/O is under way.

A crash throws the process away (core, store, inbox, waiting clients) and
crashes the disk; a restart recovers with ReplicaStore.open on that disk.
A write refused by a full disk does what the runtime does: the process drops
its core, store and inbox but the disk keeps its page cache, and it starts
over from that disk once writes succeed (status DISK_FULL meanwhile).
"""

from __future__ import annotations

import copy
import random
import traceback
from collections import deque
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from ledgerpaxos import constants
from ledgerpaxos.core import Core, CoreSettings, Ready, Role
from ledgerpaxos.core.ledger import SnapshotView, state_digest
from ledgerpaxos.core.messages import (
    Ballot,
    ClientReply,
    ClientRequest,
    InstallCheckpoint,
    PeerMessage,
    Snapshot,
)
from ledgerpaxos.host import ReadyExecutor, UnpersistedSend, Waiters
from ledgerpaxos.host.executor import DurableAudit
from ledgerpaxos.sim import coverage
from ledgerpaxos.sim.checkers import Violation
from ledgerpaxos.sim.disk import SimDisk, SimulatedCrash
from ledgerpaxos.sim.events import ms
from ledgerpaxos.sim.trace import describe
from ledgerpaxos.storage import ReplicaStore, StorageCorruption, StorageError, identity
from ledgerpaxos.storage.identity import IdentityError, Start

if TYPE_CHECKING:
    from ledgerpaxos.sim.harness import Simulation

UP = "up"
DOWN = "down"
PAUSED = "paused"
DISK_FULL = "disk full"

_TICK = object()  # an inbox item: one core tick

_IO_FAILURES = (SimulatedCrash, StorageError, UnpersistedSend)

# The simulated WALs are small: a threshold this low makes both paths of
# ReplicaStore.compact() (skip, rewrite) common, and crashes land in both.
sim_wal_compact_size_min = 2048  # bytes


def _where(error: BaseException) -> str:
    """The exception and the innermost line that raised it."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return repr(error)
    frame = frames[-1]
    path = frame.filename.split("ledgerpaxos/")[-1]
    return f"{error!r} in {frame.name} ({path}:{frame.lineno})"


class _Unaudited(DurableAudit):
    """Lets every message out: the persist-before-speak check is disabled."""

    def check_send(self, to: str, message: object) -> None:
        pass


class ReplicaHost:
    def __init__(
        self,
        sim: Simulation,
        settings: CoreSettings,
        core_class: type[Core],
        executor_class: type[ReadyExecutor[str]] = ReadyExecutor,
    ) -> None:
        self.sim = sim
        self.node = settings.node_id
        self.settings = settings
        self.core_class = core_class
        self.executor_class = executor_class
        self.directory = f"/data/{self.node}"
        self.disk = SimDisk()
        self.disk.makedirs(self.directory)
        self.older_disk: SimDisk | None = None  # an earlier copy, for a rollback
        self.status = DOWN
        self.core: Core | None = None
        self.store: ReplicaStore | None = None
        self.executor: ReadyExecutor[str] | None = None  # waiters: client names
        self.inbox: deque[tuple[object, str | None, object]] = deque()
        self.io_busy = False
        self.deferred_io: Ready | None = None  # an fsync that finished while paused
        self.snapshot_durable: Snapshot | None = None  # written, the core not told yet
        self.generation = 0  # bumped by a crash: late I/O completions are ignored
        self.incarnation = 0
        self.led_ballot: Ballot | None = None
        # Checkpoints installed into the Ready being gathered: (how many of its
        # executions came before, slot). The checker must see them in that order.
        self.installs: list[tuple[int, int]] = []
        self.installs_of_ready: list[tuple[int, int]] = []  # of the Ready observed now

    # ================================================================ lifetime

    @property
    def rejoining(self) -> bool:
        """Up, and not voting yet: it lost its disk and has not rejoined."""
        return self.core is not None and self.core.basic_status().role is Role.rejoining

    def lose_disk(self) -> None:
        """The machine comes back with an empty disk (replaced, wiped)."""
        assert self.status == DOWN
        self.disk = SimDisk()
        self.disk.makedirs(self.directory)
        if self.sim.trace is not None:
            self.sim.trace.add(self.sim.queue.now, f"{self.node} DISK LOST: an empty one instead")

    def roll_back_disk(self) -> bool:
        """Put back the disk as it was at an earlier start; False: none kept."""
        assert self.status == DOWN
        if self.older_disk is None:
            return False
        self.disk, self.older_disk = self.older_disk, None
        if self.sim.trace is not None:
            self.sim.trace.add(self.sim.queue.now, f"{self.node} DISK ROLLED BACK to an older copy")
        return True

    def flip_bit(self, rng: random.Random) -> None:
        """Bit rot while the replica is down: one bit of a WAL segment past its
        header (the newest segment most often) or, a third of the time, of a
        snapshot file."""
        assert self.status == DOWN
        kind = "snapshot-" if rng.random() < 1 / 3 else "wal-"
        segments = sorted(
            name
            for name in self.disk.listdir(self.directory)
            if name.startswith(kind) and not name.endswith((".tmp", ".damaged"))
        )
        sizes = {name: len(self.disk.read(f"{self.directory}/{name}")) for name in segments}
        candidates = [name for name in segments if sizes[name] > 64]
        if not candidates:
            return
        name = candidates[-1] if rng.random() < 0.7 else rng.choice(candidates)
        offset = rng.randrange(48, sizes[name])
        self.disk.flip_bit(f"{self.directory}/{name}", offset, rng.randrange(8))
        self.sim.marks.hit(coverage.BIT_FLIPPED)
        if self.sim.trace is not None:
            self.sim.trace.add(self.sim.queue.now, f"{self.node} BIT FLIP in {name} at {offset}")

    def start(self, *, recover: bool = False) -> None:
        """Start (or restart) the process: recover from the disk, build a core.
        The first start formats the disk; `recover`: it was lost (--recover)."""
        assert self.status == DOWN
        sim = self.sim
        self.incarnation += 1
        self.disk.disarm()
        if (
            sim.plan.faults.rollback_probability
            and self.older_disk is None
            and self.incarnation > 1
        ):
            # What a later rollback puts back: the disk as this restart finds it.
            self.older_disk = copy.deepcopy(self.disk)
        try:
            if recover:
                start = Start.recover
            elif self.incarnation == 1 and identity.load(self.disk, self.directory) is None:
                start = Start.format  # the first start of a new cluster
            else:
                start = Start.existing
            mine = identity.prepare(
                self.directory,
                cluster_id=1,
                node_id=self.node,
                start=start,
                rng=random.Random(
                    f"ledgerpaxos-sim/{sim.seed}/identity/{self.node}/{self.incarnation}"
                ),
                fs=self.disk,
            )
            store, recovered = ReplicaStore.open(
                self.directory,
                codec=sim.codec,
                fs=self.disk,
                compact_size_min=sim_wal_compact_size_min,
                salvage=True,
            )
        except (StorageCorruption, IdentityError) as error:
            sim.checks.fail("recovery", f"{self.node} refused to start: {error}")
            return  # the check is off: it stays down, and liveness notices
        # The executor's audit takes what recovery read as durable: it must be
        # (a restart after a full disk reads a page cache that was never synced).
        wal_not_durable = [
            path
            for path in self.disk.not_durable(self.directory)
            if path.rsplit("/", 1)[-1].startswith("wal-")
        ]
        if wal_not_durable:
            sim.checks.fail(
                "persist-before-speak",
                f"{self.node} recovered from WAL bytes that are not durable: {wal_not_durable}",
            )
        rejoining = mine.rejoining
        if recovered.damaged is not None and not rejoining:
            # As the runtime does: it may have lost promises with the damaged records.
            store.mark_rejoining()
            rejoining = True
            sim.marks.hit(coverage.WAL_SALVAGED)
        rng = random.Random(f"ledgerpaxos-sim/{sim.seed}/core/{self.node}/{self.incarnation}")
        try:
            core = self.core_class(
                self.settings,
                rng,
                snapshot=recovered.snapshot,
                promised=recovered.promised,
                entries=recovered.entries,
                commit_slot=recovered.commit_slot,
                rejoining=rejoining,
            )
        except Exception as error:  # reported with the seed, never swallowed
            raise Violation("core-invariant", f"{self.node} restoring: {_where(error)}") from error
        self.store, self.core = store, core
        self.installs = []
        self.executor = self.executor_class(
            store,
            self,
            Waiters(
                keys_max=constants.pending_commands_max,
                per_waiter_max=constants.client_waits_per_connection_max,
            ),
            recovered=recovered,
            observe=self._observe,
        )
        if not sim.checks.enabled("persist-before-speak"):
            self.executor.audit = _Unaudited(recovered)
        self.status = UP
        self.led_ballot = None
        executed_from = recovered.snapshot.slot if recovered.snapshot is not None else 0
        sim.safety.process_started(self.node, executed_from)
        if recovered.torn_tail_cut:
            sim.marks.hit(coverage.TORN_TAIL_CUT)
        if recovered.snapshot is not None:
            sim.marks.hit(coverage.SNAPSHOT_RESTORED)
        if sim.trace is not None:
            sim.trace.add(
                sim.queue.now,
                f"{self.node} start #{self.incarnation}: snapshot {executed_from}, "
                f"promised {recovered.promised}, {len(recovered.entries)} entries, "
                f"commit {recovered.commit_slot}, torn tail cut {recovered.torn_tail_cut}",
            )
        self._carry_out()  # what recovery executed

    def crash(self, reason: str) -> None:
        """The process dies; the machine loses what was not durable."""
        if self.status == DOWN:
            return
        sim = self.sim
        mid_io = self.io_busy
        self._drop_process()  # the store abandoned, like a killed process's descriptors
        sim.crashes += 1
        plan = sim.plan.faults
        report = self.disk.crash(
            sim.disk_rng,
            torn_probability=plan.torn_probability,
            writeback_probability=plan.writeback_probability,
        )
        if mid_io or reason == "crash inside I/O":
            sim.marks.hit(coverage.CRASH_MID_IO)
        if sim.trace is not None:
            sim.trace.add(
                sim.queue.now,
                f"{self.node} CRASH ({reason}{', mid group commit' if mid_io else ''}): "
                f"lost {report.lost_bytes} bytes, torn {list(report.torn_files)}, "
                f"{report.lost_entries} directory entries undone",
            )

    def _drop_process(self) -> None:
        """What a process holds in memory is gone (a crash, a full disk's
        pause); late I/O completions of it are ignored (the generation)."""
        self.status = DOWN
        self.generation += 1
        self.core = None
        self.store = None
        self.executor = None  # and whoever waited on it
        self.inbox.clear()
        self.io_busy = False
        self.deferred_io = None
        self.snapshot_durable = None

    def _pause_for_full_disk(self, error: StorageError) -> None:
        """As the runtime's Replica._pause_for_full_disk: nothing it was
        writing was revealed; it drops what it holds in memory and waits."""
        sim = self.sim
        sim.marks.hit(coverage.DISK_FULL_PAUSED)
        if sim.trace is not None:
            sim.trace.add(sim.queue.now, f"{self.node} PAUSED, disk full: {error}")
        store = self.store
        self._drop_process()
        self.status = DISK_FULL
        if store is not None:
            store.close()  # the process lives on: its lock must go
        sim.queue.after(ms(constants.disk_full_retry_ms), self._retry_space, self.generation)

    def _retry_space(self, generation: int) -> None:
        if generation == self.generation:
            self.retry_space()

    def retry_space(self) -> None:
        """Paused by a full disk: start over from it if it takes writes again."""
        if self.status != DISK_FULL:
            return
        if self.disk.full:
            self.sim.queue.after(
                ms(constants.disk_full_retry_ms), self._retry_space, self.generation
            )
            return
        self.status = DOWN
        self.start()
        if self.status == UP:
            self.sim.marks.hit(coverage.DISK_FULL_RESUMED)

    def pause(self) -> None:
        if self.status == UP:
            self.status = PAUSED

    def resume(self) -> None:
        if self.status != PAUSED:
            return
        self.status = UP
        if self.deferred_io is not None:
            ready, self.deferred_io = self.deferred_io, None
            self._finish_io(self.generation, ready)
        else:
            self._drain()

    # ================================================================ inputs

    def tick(self) -> None:
        if self.status != UP:
            return  # a paused process misses its timer; a dead one has none
        if self.io_busy:
            self._enqueue(_TICK, None, None)
            return
        self._step(_TICK, None, None)
        self._carry_out()

    def deliver(self, sender: str, message: object, *, from_client: bool) -> None:
        if self.status in (DOWN, DISK_FULL):
            return
        kind = "client" if from_client else "peer"
        if self.status == PAUSED or self.io_busy:
            self._enqueue(kind, sender, message)
            return
        self._step(kind, sender, message)
        self._carry_out()

    def _enqueue(self, kind: object, sender: str | None, message: object) -> None:
        if len(self.inbox) >= constants.inbox_messages_max:
            return  # the bounded channel is full: like a message lost
        self.inbox.append((kind, sender, message))

    def _drain(self) -> None:
        if self.status == UP and not self.io_busy and self.snapshot_durable is not None:
            self._snapshot_written()
            if self.io_busy:
                return
        while self.status == UP and not self.io_busy and self.inbox:
            for _ in range(min(len(self.inbox), constants.inbox_drain_max)):
                self._step(*self.inbox.popleft())
            self._carry_out()

    # ================================================================ stepping

    def _step(self, kind: object, sender: str | None, message: object) -> None:
        core = self.core
        assert core is not None
        sim = self.sim
        if kind is _TICK:
            self._tick_core(core)
            return
        try:
            if kind == "client":
                assert isinstance(message, ClientRequest) and sender is not None
                key = message.command.key
                assert self.executor is not None
                self.executor.waiters.wait(key, sender)
                if core.stored_outcome(key) is not None:
                    sim.marks.hit(coverage.DUPLICATE_FROM_TABLE)
                if sim.trace is not None:
                    sim.trace.add(sim.queue.now, f"{self.node} <- {sender} {describe(message)}")
                core.step(message, None)
                return
            if sim.trace is not None:
                sim.trace.add(sim.queue.now, f"{self.node} <- {sender} {describe(message)}")
            # What earlier steps of this Ready committed, executed first (as
            # step() would): the install below is told by what this step executes.
            core.execute_committed()
            before = core.basic_status()
            installing = core.installing  # a PartialInstall is added to in place
            executed_before = len(core.ready.executed)
            core.step(message, sender)
            after = core.basic_status()
            if before.is_preparing and after.role is Role.follower:
                sim.marks.hit(coverage.BALLOT_PREEMPTED)
            if (
                isinstance(message, InstallCheckpoint)
                and after.executed_slot > before.executed_slot
            ):
                sim.marks.hit(coverage.CHECKPOINT_INSTALL)
                if message.parts > 1:
                    sim.marks.hit(coverage.INSTALL_IN_PARTS)
                if installing is not None and installing.resumed:
                    sim.marks.hit(coverage.INSTALL_RESUMED)
                sim.installs += 1
                # After what this Ready executed before it (sim/harness.py).
                self.installs.append((executed_before, message.snapshot.slot))
        except Exception as error:  # reported with the seed, never swallowed
            what = "tick" if kind is _TICK else describe(message)
            raise Violation(
                "core-invariant", f"{self.node} handling {what}: {_where(error)}"
            ) from error

    def _tick_core(self, core: Core) -> None:
        """One tick; one the core said was not due must do nothing a host
        would carry out (a host may sleep through it: Core.ticks_until_due)."""
        try:
            due = core.ticks_until_due()
            before = _outputs(core)
            core.tick()
            after = _outputs(core)
        except Exception as error:  # reported with the seed, never swallowed
            raise Violation(
                "core-invariant", f"{self.node} handling tick: {_where(error)}"
            ) from error
        if due is not None and due <= 1:
            return
        if after != before:
            changed = ", ".join(
                f"{k} {before[k]} -> {v}" for k, v in after.items() if v != before[k]
            )
            self.sim.checks.fail(
                "tick-due",
                f"{self.node}: the tick to {core.now} changed {changed}, though the core "
                f"said {'none was due' if due is None else f'the next due was {due} ticks away'}",
            )
        else:
            self.sim.marks.hit(coverage.TICK_NOT_DUE)

    # ================================================================ carrying out a Ready

    def _carry_out(self) -> None:
        core, executor = self.core, self.executor
        assert core is not None and executor is not None
        try:
            ready = core.take_ready()
        except Exception as error:  # reported with the seed, never swallowed
            raise Violation("core-invariant", f"{self.node} take_ready: {_where(error)}") from error
        self.installs_of_ready, self.installs = self.installs, []
        if ready.snapshot_later is not None:
            later = ready.snapshot_later
            self.sim.queue.after(self.sim.disk_latency(), self._write_later, self.generation, later)
        try:
            spoken = not executor.begin(ready)
            if spoken:
                executor.finish(ready)  # nothing to wait for: speak at once
        except _IO_FAILURES as error:
            self._io_failed(error)
            return
        if spoken:
            self._execute_committed()
            return
        self.io_busy = True
        self.sim.queue.after(self.sim.disk_latency(), self._finish_io, self.generation, ready)

    def _write_later(self, generation: int, view: SnapshotView) -> None:
        """Ready.snapshot_later, built and written while the process goes on."""
        if generation != self.generation:
            return  # the process that asked for it is gone
        if self.status == PAUSED:  # a stopped process's threads stop too
            self.sim.queue.after(self.sim.disk_latency(), self._write_later, generation, view)
            return
        executor = self.executor
        assert executor is not None and self.snapshot_durable is None
        try:
            snapshot = executor.write_snapshot_later(view)
        except _IO_FAILURES as error:
            self._io_failed(error)
            return
        # What the view built is the state at its checkpoint, every row of it.
        digest = state_digest(snapshot, self.settings.initial_balance)
        self.sim.safety.checkpoint(self.node, snapshot.slot, digest)
        self.snapshot_durable = snapshot
        if not self.io_busy:
            self._drain()

    def _snapshot_written(self) -> None:
        snapshot, self.snapshot_durable = self.snapshot_durable, None
        core, executor = self.core, self.executor
        assert snapshot is not None and core is not None and executor is not None
        executor.snapshot_written(snapshot)
        try:
            core.snapshot_written(snapshot)
        except Exception as error:  # reported with the seed, never swallowed
            raise Violation(
                "core-invariant", f"{self.node} snapshot written: {_where(error)}"
            ) from error
        self._carry_out()

    def _observe(self, ready: Ready) -> None:
        """The executor shows us each Ready first, before any I/O."""
        core = self.core
        assert core is not None
        status = core.basic_status()
        self.sim.observe(self, ready, status)
        if ready.rejoined:
            self.sim.marks.hit(coverage.REJOINED)
        if status.is_leader and status.ballot != self.led_ballot:
            self.led_ballot = status.ballot
            self.sim.leader_elected(self.node, status.ballot)

    def _finish_io(self, generation: int, ready: Ready) -> None:
        if generation != self.generation:
            return  # the process that asked for it is gone
        if self.status == PAUSED:
            self.deferred_io = ready
            return
        store, executor = self.store, self.executor
        assert store is not None and executor is not None
        compactions = store.compactions
        try:
            executor.make_durable(ready)
            if store.compactions > compactions:
                self.sim.marks.hit(coverage.WAL_COMPACTED)
            executor.finish(ready)
        except _IO_FAILURES as error:
            self._io_failed(error)
            return
        self.io_busy = False
        self._execute_committed()
        self._drain()

    def _execute_committed(self) -> None:
        """What the runtime does once a Ready is carried out: a follower
        executes the slots it learned are committed (Core.execute_committed),
        and what that produced is carried out."""
        core = self.core
        if core is None or self.status != UP or not core.execution_due():
            return
        try:
            core.execute_committed()
        except Exception as error:  # reported with the seed, never swallowed
            raise Violation(
                "core-invariant", f"{self.node} executing committed slots: {_where(error)}"
            ) from error
        self._carry_out()

    def _io_failed(self, error: BaseException) -> None:
        """The process crashed inside the executor's I/O, stopped on an I/O
        error (the design's rule: an fsync or write error stops the replica),
        or spoke before it persisted."""
        if isinstance(error, UnpersistedSend):
            raise Violation("persist-before-speak", f"{self.node} sent {error}") from error
        # (with that check off the executor has no audit: see start())
        if isinstance(error, SimulatedCrash):
            self.crash("crash inside I/O")
            return
        if isinstance(error, StorageError) and error.disk_full:
            self._pause_for_full_disk(error)
            return
        self.sim.marks.hit(coverage.IO_ERROR_STOP)
        if self.sim.trace is not None:
            self.sim.trace.add(self.sim.queue.now, f"{self.node} stops: {error}")
        self.crash("I/O error")

    # ================================================================ the executor's transport

    def send(self, messages: Sequence[tuple[str, PeerMessage | ClientRequest]]) -> None:
        for to, message in messages:
            self.sim.send(self.node, to, message)

    def reply(self, waiters: Collection[str], reply: ClientReply) -> None:
        for client in waiters:
            self.sim.send(self.node, client, reply)

    # ================================================================ queries

    @property
    def is_up(self) -> bool:
        return self.status == UP


def _outputs(core: Core) -> dict[str, object]:
    """What a tick may change that a host would see: the role, and how much
    the Ready holds of each thing to carry out or report."""
    ready = core.ready
    return {
        "role": core.role.value,
        "Ready.snapshot_later": ready.snapshot_later is not None,
        "Ready.compact": ready.compact is not None,
        "Ready.rejoined": ready.rejoined,
        **{f"len(Ready.{name})": len(getattr(ready, name)) for name in _READY_LISTS},
    }


_READY_LISTS = (
    "send_early",
    "persist",
    "persist_lazy",
    "snapshots",
    "send",
    "replies",
    "executed",
    "checkpoints",
    "events",
    "alarms",
)
