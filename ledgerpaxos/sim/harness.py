"""One simulated run: build the cluster for a seed, run it, judge it.

    result = run_seed(4242)                  # replicas=5 by default
    result.ok, result.property, result.detail, result.marks

Everything random comes from streams derived from the seed by name (plan,
network, faults, disk, clients, each core), so adding a trace or a check
never changes what a seed does. The run has two phases: faults (the seed's
rates, at most f replicas faulty at once) and heal (no faults; the liveness
checker waits until every request is answered and every replica has the same
executed slot and state digest, at most `liveness_bound_us`).
"""

from __future__ import annotations

import builtins
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Collection

import attrs

from ledgerpaxos import constants
from ledgerpaxos.core import BasicStatus, Core, CoreSettings, Executed, Ready
from ledgerpaxos.core.messages import Ballot, ClientReply
from ledgerpaxos.core.settings import ticks_for
from ledgerpaxos.host import ReadyExecutor
from ledgerpaxos.sim import coverage
from ledgerpaxos.sim.checkers import Checks, SafetyChecker, Violation, check_committed_kept
from ledgerpaxos.sim.clients import SimClient
from ledgerpaxos.sim.codec import CachingCodec
from ledgerpaxos.sim.coverage import Marks
from ledgerpaxos.sim.events import EventQueue, ms
from ledgerpaxos.sim.faults import FaultInjector
from ledgerpaxos.sim.network import VirtualNetwork
from ledgerpaxos.sim.plan import SimPlan, draw_plan
from ledgerpaxos.sim.replica import DOWN, ReplicaHost
from ledgerpaxos.sim.trace import Trace, describe

ACCOUNTS = tuple("ABCDEFGHIJ")  # as configs/cluster.toml
INITIAL_BALANCE = 10
TICK_US = ms(constants.tick_ms)
LIVENESS_POLL_US = ms(50)


@attrs.frozen(kw_only=True)
class SimResult:
    """What one seed did; small and picklable (batches run in worker processes)."""

    seed: int
    replicas: int
    planted: str | None
    ok: bool
    property: str | None  # the violated property, a key of checkers.PROPERTIES
    detail: str | None
    virtual_ms: int  # virtual time the run took
    converged_ms: int | None  # after the heal, time until liveness held
    wall_seconds: float
    marks: tuple[tuple[str, int], ...]
    slots: int  # highest slot executed
    submissions: int  # client sends, first sends and re-sends
    resends: int
    answered: int
    messages: int
    crashes: int
    faults: int
    trace_hash: str | None
    plan: str

    def replay_command(self) -> str:
        planted = f" --planted {self.planted}" if self.planted else ""
        return f"ledgerpaxos-sim --seed {self.seed} --replicas {self.replicas}{planted} --trace"

    @builtins.property  # `property` is a field of this class
    def hit(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.marks)


class Simulation:
    def __init__(
        self,
        seed: int,
        replicas: int = 5,
        *,
        core_class: type[Core] = Core,
        executor_class: type[ReadyExecutor[str]] = ReadyExecutor,
        planted: str | None = None,
        trace: Trace | None = None,
        plan: SimPlan | None = None,
        disabled: Collection[str] = (),
    ) -> None:
        """`disabled`: properties whose checks do not fail the run (tests
        show with it that a planted bug's checker is the one that catches it)."""
        self.seed = seed
        self.plan = plan if plan is not None else draw_plan(seed, replicas)
        self.planted = planted
        self.trace = trace
        self.queue = EventQueue()
        self.codec = CachingCodec()
        self.marks = Marks()
        self.checks = Checks(disabled)
        # Client c<i> may debit every account but one (so some transfers are
        # refused as not authorized, on every replica alike).
        self.client_accounts = tuple(
            (f"c{i}", tuple(a for j, a in enumerate(ACCOUNTS) if j != (i - 1) % len(ACCOUNTS)))
            for i in range(1, self.plan.workload.clients + 1)
        )
        self.safety = SafetyChecker(
            ACCOUNTS,
            INITIAL_BALANCE,
            self.checks,
            client_accounts=dict(self.client_accounts),
            sessions_max=self.plan.workload.sessions_max,
        )
        self.opened: list[str] = []  # accounts the clients opened, as their replies said
        stream = f"ledgerpaxos-sim/{seed}"
        self.disk_rng = random.Random(f"{stream}/disk")
        self.latency_rng = random.Random(f"{stream}/latency")
        self.node_ids = tuple(f"n{i}" for i in range(1, self.plan.replicas + 1))
        self.network = VirtualNetwork(
            self.queue,
            random.Random(f"{stream}/network"),
            self.plan.network,
            self._deliver,
            on_event=self.note if trace is not None else None,
        )
        self._link_cuts: dict[tuple[str, str], int] = {}
        self.hosts = {
            node: ReplicaHost(self, self._settings(node), core_class, executor_class)
            for node in self.node_ids
        }
        self.clients = {
            f"c{i}": SimClient(
                self,
                f"c{i}",
                random.Random(f"{stream}/client/{i}"),
                self.plan.workload,
                ACCOUNTS,
                self.node_ids,
            )
            for i in range(1, self.plan.workload.clients + 1)
        }
        self.faults = FaultInjector(self, random.Random(f"{stream}/faults"), self.plan.faults)
        self.healing = False
        self.converged_at: int | None = None
        self.crashes = 0
        self.installs = 0
        self.leader_changes = 0
        self._leaders: list[tuple[Ballot, str]] = []

    def _settings(self, node: str) -> CoreSettings:
        return CoreSettings(
            node_id=node,
            node_ids=self.node_ids,
            accounts=ACCOUNTS,
            initial_balance=INITIAL_BALANCE,
            checkpoint_interval=self.plan.checkpoint_interval,
            snapshot_interval=self.plan.checkpoint_interval * self.plan.snapshot_checkpoints,
            snapshot_transfers_min=self.plan.snapshot_transfers_min,
            batch_commands_max=self.plan.batch_commands_max,
            heartbeat_ticks=ticks_for(self.plan.timers.heartbeat_ms),
            election_timeout_ticks_min=ticks_for(self.plan.timers.election_timeout_ms_min),
            election_timeout_ticks_max=ticks_for(self.plan.timers.election_timeout_ms_max),
            client_accounts=self.client_accounts,
            client_sessions_max=self.plan.workload.sessions_max,
            install_part_units_max=self.plan.install_part_units_max,
        )

    # ================================================================ running

    def run(self) -> SimResult:
        started = time.perf_counter()
        violation: Violation | None = None
        with _storage_log_to(self):
            try:
                self._run()
            except Violation as error:
                violation = error
        return self._result(violation, time.perf_counter() - started)

    def _run(self) -> None:
        plan = self.plan
        if self.trace is not None:
            self.trace.add(0, plan.summary())
        phase_rng = random.Random(f"ledgerpaxos-sim/{self.seed}/tick-phase")
        for node in self.node_ids:
            self.hosts[node].start()
            self.queue.at(phase_rng.randrange(TICK_US), self._tick, node)
        for client in self.clients.values():
            client.start()
        self.faults.start()
        self.queue.at(plan.fault_phase_us, self._heal)
        deadline = plan.fault_phase_us + plan.liveness_bound_us
        self.queue.run_until(deadline, stop=lambda: self.converged_at is not None)
        converged = self.converged_at is not None
        cores = {n: h.core for n, h in self.hosts.items() if h.is_up and h.core is not None}
        sessions = self.safety.reference.ledger.clients
        if converged or len(cores) == len(self.hosts):  # else liveness says who is missing
            check_committed_kept(
                self.checks,
                {n: (c.executed_slot, c.client_request_nos()) for n, c in cores.items()},
                # Reads are not kept in the client table, nor evicted sessions,
                # nor one that a late registration replaced.
                {
                    c.client_id: c.last_stored
                    for c in self.clients.values()
                    if (entry := sessions.get(c.client_id)) is not None
                    and entry.session == c.stored_session
                },
                self.safety.max_executed,
                converged=converged,
            )
        if not converged:
            self.checks.fail("liveness", self._liveness_report())

    def _tick(self, node: str) -> None:
        self.hosts[node].tick()
        self.queue.after(TICK_US, self._tick, node)

    def _heal(self) -> None:
        self.healing = True
        self.note("HEAL")
        self.faults.heal()
        self.network.heal()
        self._link_cuts.clear()
        for node in self.node_ids:
            host = self.hosts[node]
            host.disk.disarm()
            if host.status == DOWN:
                host.start()
            host.resume()
        self.queue.after(LIVENESS_POLL_US, self._poll_liveness)

    def _poll_liveness(self) -> None:
        if self._converged():
            self.converged_at = self.queue.now
            self.note(f"CONVERGED at slot {self.safety.max_executed}")
            return
        self.queue.after(LIVENESS_POLL_US, self._poll_liveness)

    def _converged(self) -> bool:
        if not all(c.done for c in self.clients.values()):
            return False
        cores = []
        for node in self.node_ids:
            host = self.hosts[node]
            if not host.is_up or host.core is None:
                return False
            cores.append(host.core)
        slot = cores[0].executed_slot
        if slot < self.safety.max_executed or any(c.executed_slot != slot for c in cores):
            return False
        digest = cores[0].ledger.digest()
        return all(c.ledger.digest() == digest for c in cores[1:])

    def _liveness_report(self) -> str:
        parts = []
        waiting = [
            f"{c.client_id}#{c.outstanding.request_no}"
            for c in self.clients.values()
            if c.outstanding is not None
        ]
        if waiting:
            parts.append(f"unanswered {waiting}")
        states = []
        for node in self.node_ids:
            host = self.hosts[node]
            core = host.core
            if core is None:
                states.append(f"{node} {host.status}")
            else:
                status = core.status()
                states.append(
                    f"{node} {status.role.value} b={status.promised} exec={status.executed_slot} "
                    f"commit={status.commit_slot} cp={status.checkpoint_slot} "
                    f"digest={core.state_digest().hex()[:8]}"
                )
        parts.append(f"highest executed anywhere {self.safety.max_executed}")
        parts.append("; ".join(states))
        bound = self.plan.liveness_bound_us / 1e6
        return f"not converged {bound:.0f}s after the heal: " + "; ".join(parts)

    # ================================================================ the network

    def send(self, sender: str, to: str, message: object) -> None:
        if self.trace is not None:
            self.trace.add(self.queue.now, f"{sender} -> {to} {describe(message)}")
        self.network.send(sender, to, message)

    def _deliver(self, to: str, sender: str, message: object) -> None:
        client = self.clients.get(to)
        if client is not None:
            assert isinstance(message, ClientReply)
            if self.trace is not None:
                self.trace.add(self.queue.now, f"{to} <- {sender} {describe(message)}")
            client.on_reply(sender, message)
            return
        self.hosts[to].deliver(sender, message, from_client=sender in self.clients)

    def network_cut(self, links: list[tuple[str, str]]) -> None:
        for link in links:
            self._link_cuts[link] = self._link_cuts.get(link, 0) + 1
            self.network.blocked.add(link)

    def network_restore(self, links: list[tuple[str, str]]) -> None:
        for link in links:
            count = self._link_cuts.get(link, 0) - 1
            if count <= 0:
                self._link_cuts.pop(link, None)
                self.network.blocked.discard(link)
            else:
                self._link_cuts[link] = count

    def disk_latency(self) -> int:
        return self.latency_rng.randint(
            self.plan.disk_latency_us_min, self.plan.disk_latency_us_max
        )

    # ================================================================ observing replicas

    def observe(self, host: ReplicaHost, ready: Ready, status: BasicStatus) -> None:
        """Check a Ready the moment the core hands it out (before any I/O)."""
        node = host.node
        core = host.core
        assert core is not None
        trace = self.trace
        if trace is not None:
            for event in ready.events:
                trace.add(self.queue.now, f"{node} event: {event}")
        for alarm in ready.alarms:
            self.checks.fail("core-alarm", f"{node}: {alarm}")
        safety = self.safety
        # A checkpoint installed between two steps of this Ready comes between
        # their executions (sim/replica.py: installs_of_ready).
        installs = deque(host.installs_of_ready)
        host.installs_of_ready = []
        for position, executed in enumerate(ready.executed):
            while installs and installs[0][0] <= position:
                safety.checkpoint_installed(node, installs.popleft()[1])
            if trace is not None:
                trace.add(
                    self.queue.now,
                    f"{node} executes slot {executed.slot} {describe_outcomes(executed)}",
                )
            safety.executed(node, executed)
            if any(o is None for o in executed.outcomes):
                self.marks.hit(coverage.DUPLICATE_IN_LOG)
        for _, slot in installs:
            safety.checkpoint_installed(node, slot)
        for taken in ready.checkpoints:
            safety.checkpoint(node, taken.slot, taken.digest)
        for snapshot in ready.snapshots:  # taken or installed
            safety.checkpoint(node, snapshot.slot, snapshot.digest)
        safety.state(node, core, status.executed_slot)

    def leader_elected(self, node: str, ballot: Ballot) -> None:
        if self._leaders:
            self.marks.hit(coverage.LEADER_CHANGE)
            self.leader_changes += 1
        self._leaders.append((ballot, node))
        self.note(f"LEADER {node} ballot {ballot}")
        self.faults.leader_elected(node)

    def current_leader(self) -> str | None:
        statuses = [
            (host.core.basic_status(), node)
            for node, host in sorted(self.hosts.items())
            if host.is_up and host.core is not None
        ]
        leaders = [(status.ballot, node) for status, node in statuses if status.is_leader]
        return max(leaders)[1] if leaders else None

    def epoch(self) -> tuple[int, int, int]:
        return (self.leader_changes, self.crashes, self.installs)

    def note(self, text: str) -> None:
        if self.trace is not None:
            self.trace.add(self.queue.now, text)

    # ================================================================ the result

    def _result(self, violation: Violation | None, wall: float) -> SimResult:
        clients = self.clients.values()
        if violation is not None:
            self.note(f"VIOLATION {violation.property}: {violation.detail}")
        return SimResult(
            seed=self.seed,
            replicas=self.plan.replicas,
            planted=self.planted,
            ok=violation is None,
            property=violation.property if violation is not None else None,
            detail=violation.detail if violation is not None else None,
            virtual_ms=self.queue.now // 1000,
            converged_ms=(
                (self.converged_at - self.plan.fault_phase_us) // 1000
                if self.converged_at is not None
                else None
            ),
            wall_seconds=wall,
            marks=self.marks.as_tuple(),
            slots=self.safety.max_executed,
            submissions=sum(c.submissions for c in clients),
            resends=sum(c.resends for c in clients),
            answered=sum(c.answered for c in clients),
            messages=self.network.stats.sent,
            crashes=self.crashes,
            faults=self.faults.started,
            trace_hash=self.trace.hexdigest() if self.trace is not None else None,
            plan=self.plan.summary(),
        )


class _StorageLogToTrace(logging.Handler):
    """Storage logs what recovery did (a torn tail cut, a stale segment
    removed); under the simulator that goes into the trace, not to stderr."""

    def __init__(self, simulation: Simulation) -> None:
        super().__init__(logging.INFO)
        self.simulation = simulation

    def emit(self, record: logging.LogRecord) -> None:
        self.simulation.note(f"storage {record.levelname.lower()}: {record.getMessage()}")


class _storage_log_to:
    def __init__(self, simulation: Simulation) -> None:
        self.logger = logging.getLogger("ledgerpaxos.storage")
        self.handler = _StorageLogToTrace(simulation)

    def __enter__(self) -> None:
        self.saved = (self.logger.propagate, self.logger.level)
        self.logger.addHandler(self.handler)
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.propagate, level = self.saved
        self.logger.setLevel(level)


def describe_outcomes(executed: Executed) -> str:
    parts = []
    for command, outcome in zip(executed.batch, executed.outcomes, strict=True):
        if outcome is None:
            state = "dup"
        elif outcome.balances is not None:
            state = "read"
        elif outcome.evicted:
            state = "evicted"
        else:
            state = "ok" if outcome.ok else "rejected"
        parts.append(f"{command.client_id}#{command.request_no}:{state}")
    return "[" + " ".join(parts) + "]" if parts else "noop"


def run_seed(
    seed: int,
    replicas: int = 5,
    *,
    planted: str | None = None,
    trace: bool = False,
    emit: Callable[[str], None] | None = None,
    disabled: Collection[str] = (),
) -> SimResult:
    """Run one seed; `planted` names a bug from sim/planted.py to plant;
    `disabled` properties are not checked."""
    from ledgerpaxos.sim.planted import PLANTED

    core_class: type[Core] = Core
    executor_class: type[ReadyExecutor[str]] = ReadyExecutor
    if planted is not None:
        bug = PLANTED[planted]
        core_class, executor_class = bug.core_class, bug.executor_class
    simulation = Simulation(
        seed,
        replicas,
        core_class=core_class,
        executor_class=executor_class,
        planted=planted,
        trace=Trace(emit=emit) if trace or emit is not None else None,
        disabled=disabled,
    )
    try:
        return simulation.run()
    except Exception as error:  # a bug of the simulator itself: loud, with its seed
        raise SimulatorError(
            f"the simulator failed on seed {seed} ({replicas} replicas): {error!r}"
        ) from error


class SimulatorError(Exception):
    """The harness broke (not the code under test): fix the simulator."""
