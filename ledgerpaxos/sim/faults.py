"""Fault injection: crashes (also inside I/O), leader kills, partitions, pauses, full disks.

During the fault phase a new fault starts every so often (exponential
intervals at the seed's mean). A fault makes replicas faulty — crashed, paused,
cut off on one or both sides — and at most f = (n-1)/2 replicas are faulty at
once. Each fault ends after a random duration: a crashed replica restarts from
its disk, a paused one resumes, cut links come back. When the fault phase is
over every remaining fault ends at once and the network stops losing and
duplicating messages: the heal.

Message loss, duplication and reordering are not faults in this sense: they
apply to every message throughout the fault phase (network.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from ledgerpaxos.sim import coverage
from ledgerpaxos.sim.events import ms
from ledgerpaxos.sim.plan import FaultPlan
from ledgerpaxos.sim.replica import DOWN

if TYPE_CHECKING:
    from ledgerpaxos.sim.harness import Simulation

_armed_crash_wait_us = ms(300)  # an armed crash that found no I/O by then crashes plainly


@attrs.define(eq=False)
class _ActiveFault:
    kind: str
    nodes: tuple[str, ...]
    end: Callable[[], None]
    ended: bool = False


class FaultInjector:
    def __init__(self, sim: Simulation, rng: random.Random, plan: FaultPlan) -> None:
        self.sim = sim
        self.rng = rng
        self.plan = plan
        self.faulty: dict[str, str] = {}  # node -> kind of fault, while it lasts
        self.active: list[_ActiveFault] = []
        self.started = 0
        self.kinds = tuple(kind for kind, _ in plan.weights)
        self.weights = tuple(weight for _, weight in plan.weights)
        self.churning = 0  # active leader-churn faults
        # Storage faults draw from their own stream, so the others stay as they were.
        self.storage_rng = random.Random(f"ledgerpaxos-sim/{sim.seed}/faults/storage")
        self.space_rng = random.Random(f"ledgerpaxos-sim/{sim.seed}/faults/space")

    @property
    def budget(self) -> int:
        return self.sim.plan.faulty_max - len(self.faulty)

    def start(self) -> None:
        self._schedule_next()

    def _schedule_next(self) -> None:
        delay = int(self.rng.expovariate(1.0 / self.plan.mean_interval_us))
        if self.sim.queue.now + delay < self.sim.plan.fault_phase_us:
            self.sim.queue.after(delay, self._fire)

    def _fire(self) -> None:
        if self.sim.healing:
            return
        kind = self.rng.choices(self.kinds, weights=self.weights)[0]
        if self.budget > 0:
            getattr(self, f"_start_{kind}")()
        self._schedule_next()

    def _healthy(self) -> list[str]:
        return [n for n in self.sim.node_ids if n not in self.faulty]

    def _duration(self) -> int:
        return self.rng.randint(self.plan.duration_us_min, self.plan.duration_us_max)

    def _begin(
        self,
        kind: str,
        nodes: tuple[str, ...],
        end: Callable[[], None],
        *,
        duration: int | None = None,
    ) -> None:
        fault = _ActiveFault(kind=kind, nodes=nodes, end=end)
        for node in nodes:
            self.faulty[node] = kind
        assert len(self.faulty) <= self.sim.plan.faulty_max, self.faulty
        self.active.append(fault)
        self.started += 1
        self.sim.note(f"FAULT {kind} {','.join(nodes)}")
        self.sim.queue.after(self._duration() if duration is None else duration, self._end, fault)

    def _end(self, fault: _ActiveFault) -> None:
        if fault.ended:
            return
        fault.ended = True
        self.active.remove(fault)
        for node in fault.nodes:
            self.faulty.pop(node, None)
        self.sim.note(f"END {fault.kind} {','.join(fault.nodes)}")
        fault.end()

    def heal(self) -> None:
        """End every fault now (the heal phase begins)."""
        for fault in list(self.active):
            self._end(fault)

    # ------------------------------------------------------------ crashes

    def _start_crash(self, node: str | None = None, *, duration: int | None = None) -> None:
        if node is None:
            node = self.rng.choice(self._healthy())
        host = self.sim.hosts[node]
        if not host.is_up:
            return
        if duration is None and self.space_rng.random() < self.plan.disk_full_probability:
            self._fill_disk(node)
            return
        self._begin("crash", (node,), lambda: self._restart(node), duration=duration)
        plan = self.plan
        roll = self.rng.random()
        if roll < plan.io_error_probability:
            host.disk.arm_io_error(self.rng.randint(1, 4))
            self.sim.queue.after(_armed_crash_wait_us, self._crash_if_armed, node, host.generation)
        elif roll < plan.io_error_probability + plan.mid_io_probability:
            host.disk.arm_crash(self.rng.randint(1, 6))
            self.sim.queue.after(_armed_crash_wait_us, self._crash_if_armed, node, host.generation)
        else:
            host.crash("crash")

    def _crash_if_armed(self, node: str, generation: int) -> None:
        host = self.sim.hosts[node]
        if host.generation == generation and host.status != DOWN:
            host.crash("crash (no I/O came)")

    def _restart(self, node: str) -> None:
        host = self.sim.hosts[node]
        host.disk.disarm()
        if host.status != DOWN:
            host.crash("crash (no I/O came)")
        # Its disk is lost (replaced, wiped) with the seed's probability, but
        # never while another replica still rejoins: a replica that cannot
        # vote yet is faulty too, and f of them at most may be.
        rejoining = any(h.rejoining for h in self.sim.hosts.values())
        self.sim.marks.hit(coverage.CRASH_RESTART)
        plan, roll = self.plan, self.storage_rng.random()
        if not rejoining and roll < plan.disk_loss_probability:
            host.lose_disk()
            host.start(recover=True)
            self.sim.marks.hit(coverage.DISK_LOST)
            return
        roll -= plan.disk_loss_probability
        if not rejoining and roll < plan.rollback_probability and host.roll_back_disk():
            host.start(recover=True)
            self.sim.marks.hit(coverage.DISK_ROLLED_BACK)
            return
        roll -= plan.rollback_probability
        if not rejoining and roll < plan.wal_flip_probability:
            host.flip_bit(self.storage_rng)
        host.start()

    def _fill_disk(self, node: str) -> None:
        """The disk of `node` is full for a while (ENOSPC on every write): it
        pauses at its next write; once space returns it starts over from
        that disk, in the same process."""
        host = self.sim.hosts[node]
        host.disk.fill(self.space_rng)
        self._begin("disk full", (node,), lambda: self._free_space(node))

    def _free_space(self, node: str) -> None:
        host = self.sim.hosts[node]
        host.disk.unfill()
        host.retry_space()

    def _start_leader_kill(self) -> None:
        leader = self.sim.current_leader()
        if leader is None or leader in self.faulty:
            return
        self.sim.marks.hit(coverage.LEADER_KILLED)
        self._start_crash(leader)

    def _start_leader_churn(self) -> None:
        """For a while, kill every leader shortly after it is elected (often in
        the middle of its first group commits) and restart it soon: ballots
        race, new leaders inherit half-accepted slots."""
        self.churning += 1
        self._begin("leader churn", (), self._stop_churn)
        leader = self.sim.current_leader()
        if leader is not None:
            self.leader_elected(leader)

    def _stop_churn(self) -> None:
        self.churning -= 1

    def leader_elected(self, node: str) -> None:
        """While churning, a new leader dies inside one of its first group
        commits (its NewView, its first Accepts), or plainly soon after."""
        if not self.churning or self.sim.healing or node in self.faulty or self.budget <= 0:
            return
        host = self.sim.hosts[node]
        if not host.is_up:
            return
        self.sim.marks.hit(coverage.LEADER_KILLED)
        self._begin(
            "crash",
            (node,),
            lambda: self._restart(node),
            duration=self.rng.randint(ms(50), ms(500)),
        )
        host.disk.arm_crash(self.rng.randint(1, 12))
        self.sim.queue.after(
            self.rng.randint(ms(20), ms(300)), self._crash_if_armed, node, host.generation
        )

    # ------------------------------------------------------------ partitions

    def _start_partition(self) -> None:
        """Cut a group of at most `budget` replicas off from the rest, both ways."""
        healthy = self._healthy()
        size = self.rng.randint(1, min(self.budget, len(healthy)))
        leader = self.sim.current_leader()
        if leader in healthy and self.rng.random() < 0.5:
            # Cut the leader off with a few followers: it goes on leading a
            # minority while the majority elects another.
            rest = [n for n in healthy if n != leader]
            group = tuple(sorted([leader, *self.rng.sample(rest, size - 1)]))
        else:
            group = tuple(sorted(self.rng.sample(healthy, size)))
        others = [n for n in self.sim.node_ids if n not in group]
        links = [(a, b) for a in group for b in others] + [(b, a) for a in group for b in others]
        self.sim.network_cut(links)
        self._begin("partition", group, lambda: self._heal_links(links, one_way=False))

    def _start_one_way(self) -> None:
        """One replica can send but not receive (or receive but not send), to
        all its peers or only some."""
        node = self.rng.choice(self._healthy())
        peers = [n for n in self.sim.node_ids if n != node]
        if self.rng.random() < 0.5:
            peers = sorted(self.rng.sample(peers, self.rng.randint(1, len(peers))))
        if self.rng.random() < 0.5:
            links = [(node, p) for p in peers]
            kind = "one-way out"
        else:
            links = [(p, node) for p in peers]
            kind = "one-way in"
        self.sim.network_cut(links)
        self._begin(kind, (node,), lambda: self._heal_links(links, one_way=True))

    def _heal_links(self, links: list[tuple[str, str]], *, one_way: bool) -> None:
        self.sim.network_restore(links)
        self.sim.marks.hit(coverage.PARTITION_HEALED)
        if one_way:
            self.sim.marks.hit(coverage.ONE_WAY_HEALED)

    # ------------------------------------------------------------ pauses

    def _start_pause(self) -> None:
        healthy = self._healthy()
        leader = self.sim.current_leader()
        if leader in healthy and self.rng.random() < 0.5:
            node = leader  # a leader that stops and comes back still believing it leads
        else:
            node = self.rng.choice(healthy)
        host = self.sim.hosts[node]
        if not host.is_up:
            return
        host.pause()
        self.sim.marks.hit(coverage.PAUSE)
        self._begin("pause", (node,), host.resume)
