"""What one seed decides before the run starts: its fault rates, workload and timings.

Each seed draws its own rates, so that runs differ in kind and not only in
detail: one seed loses a quarter of all messages and never crashes, the next
duplicates half of them and kills the leader every second.
"""

from __future__ import annotations

import random

import attrs

from ledgerpaxos import constants
from ledgerpaxos.sim.events import ms

FAULT_KINDS = ("crash", "leader_kill", "leader_churn", "partition", "one_way", "pause")


@attrs.frozen(kw_only=True)
class NetworkPlan:
    loss: float  # probability a message is dropped (0-0.30)
    duplication: float  # probability a message is delivered twice (0-0.50)
    delay_us_min: int
    delay_us_max: int  # delays are uniform in [min, max]: reordering
    spike_probability: float  # a message delayed much longer
    spike_us_max: int


@attrs.frozen(kw_only=True)
class FaultPlan:
    mean_interval_us: int  # mean time between two new faults in the fault phase
    weights: tuple[tuple[str, float], ...]  # kind -> weight, in FAULT_KINDS order
    duration_us_min: int
    duration_us_max: int
    mid_io_probability: float  # a crash lands inside a group commit, snapshot or compaction
    io_error_probability: float  # instead of a crash, an fsync/write fails with EIO
    torn_probability: float  # the first lost write survives in part
    writeback_probability: float  # a write not fsynced reached the disk anyway
    # A crashed replica comes back on an empty disk (lost, replaced) and
    # starts with --recover: it rejoins (core/rejoin.py).
    disk_loss_probability: float = 0.0
    # Or its WAL or a snapshot comes back with one bit flipped (bit rot): it
    # keeps the WAL records that verify and rejoins (storage/wal.py, salvage),
    # or takes an older snapshot, or none, and fetches the state.
    wal_flip_probability: float = 0.0
    # Or its disk is an older copy put back (a backup, a volume snapshot: the
    # disk as it was at an earlier start) and it starts with --recover.
    rollback_probability: float = 0.0
    # Or, instead of crashing, the replica's disk is full for the fault's
    # duration: it pauses at its next write and resumes once space returns.
    disk_full_probability: float = 0.0


@attrs.frozen(kw_only=True)
class WorkloadPlan:
    clients: int
    client_timeout_us: int
    think_us_max: int  # pause between a reply and the next request
    read_probability: float
    invalid_probability: float  # a transfer the ledger must reject
    transfers_max: int  # per request
    amount_max: int
    reconnect_probability: float  # after a reply, re-send the same request (client restart)
    requests_max: int  # per client: a bound on the run's length when the network is fast
    open_probability: float = 0.0  # a request opens an account (sometimes one that exists)
    # Sessions the ledger keeps: fewer than the clients make registrations evict.
    sessions_max: int = constants.client_sessions_max_default


@attrs.frozen(kw_only=True)
class TimerPlan:
    """The replicas' timers, as a cluster.toml [timers] table may set them."""

    heartbeat_ms: int
    election_timeout_ms_min: int
    election_timeout_ms_max: int


@attrs.frozen(kw_only=True)
class SimPlan:
    seed: int
    replicas: int
    checkpoint_interval: int
    # A snapshot file at every this many checkpoints at least, or sooner after
    # snapshot_transfers_min transfers (CoreSettings); the others stay in memory.
    snapshot_checkpoints: int
    snapshot_transfers_min: int
    # Small slots make the leader pipeline with few clients: while slots are in
    # flight it proposes another only for half a slot of commands.
    batch_commands_max: int
    timers: TimerPlan
    disk_latency_us_min: int
    disk_latency_us_max: int
    fault_phase_us: int  # faults happen in [0, fault_phase_us); then everything heals
    liveness_bound_us: int  # after the heal, everything is answered and agreed within this
    network: NetworkPlan
    faults: FaultPlan
    workload: WorkloadPlan
    # Rows per part of a checkpoint install: small ones cut the sim's few rows
    # into many parts, so installs run across lost parts and leader changes.
    install_part_units_max: int = constants.install_part_units_max

    @property
    def faulty_max(self) -> int:
        return (self.replicas - 1) // 2

    def summary(self) -> str:
        n, f, w = self.network, self.faults, self.workload
        kinds = ",".join(f"{k}={weight:.1f}" for k, weight in f.weights if weight > 0)
        return (
            f"seed {self.seed}: {self.replicas} replicas, K={self.checkpoint_interval}, "
            f"snapshot every {self.snapshot_checkpoints} checkpoints or {self.snapshot_transfers_min} transfers, "
            f"slots of at most {self.batch_commands_max} commands, "
            f"heartbeat {self.timers.heartbeat_ms}ms, election {self.timers.election_timeout_ms_min}-"
            f"{self.timers.election_timeout_ms_max}ms, "
            f"loss {n.loss:.0%}, dup {n.duplication:.0%}, delay {n.delay_us_min / 1000:.1f}-{n.delay_us_max / 1000:.1f}ms, "
            f"faults every ~{f.mean_interval_us / 1e6:.2f}s ({kinds}), "
            f"fault phase {self.fault_phase_us / 1e6:.1f}s, {w.clients} clients, "
            f"client timeout {w.client_timeout_us / 1000:.0f}ms, "
            f"{w.sessions_max} sessions, openings {w.open_probability:.0%}, "
            f"install parts of {self.install_part_units_max} rows"
        )


def draw_plan(seed: int, replicas: int) -> SimPlan:
    """The plan of `seed`, from its own random stream."""
    assert replicas >= 1 and replicas % 2 == 1, "an odd number of replicas"
    rng = random.Random(f"ledgerpaxos-sim/{seed}/plan")

    def maybe_zero(p_zero: float, low: float, high: float) -> float:
        return 0.0 if rng.random() < p_zero else rng.uniform(low, high)

    delay_min = rng.choice((100, 300, 1000, 2000))
    network = NetworkPlan(
        loss=maybe_zero(0.15, 0.0, 0.30),
        duplication=maybe_zero(0.2, 0.0, 0.50),
        delay_us_min=delay_min,
        delay_us_max=delay_min + rng.choice((500, 2000, 10_000, 40_000)),
        spike_probability=rng.choice((0.0, 0.001, 0.01)),
        spike_us_max=ms(rng.choice((100, 300, 800))),
    )
    weights = tuple((kind, rng.choice((0.0, 0.5, 1.0, 2.0))) for kind in FAULT_KINDS)
    if all(w == 0 for _, w in weights):
        weights = tuple((kind, 1.0) for kind in FAULT_KINDS)
    faults = FaultPlan(
        mean_interval_us=ms(rng.choice((300, 600, 1000, 2000))),
        weights=weights,
        duration_us_min=ms(100),
        duration_us_max=ms(rng.choice((800, 1500, 3000))),
        mid_io_probability=rng.choice((0.3, 0.6, 0.9)),
        io_error_probability=rng.choice((0.0, 0.05, 0.15)),
        torn_probability=rng.choice((0.5, 0.8, 1.0)),
        writeback_probability=rng.choice((0.0, 0.1, 0.3)),
    )
    workload = WorkloadPlan(
        clients=rng.randint(2, 6),
        client_timeout_us=ms(rng.choice((150, 250, 400, 700, constants.client_timeout_ms_default))),
        think_us_max=ms(rng.choice((0, 20, 100, 300))),
        read_probability=rng.choice((0.0, 0.1, 0.25)),
        invalid_probability=rng.choice((0.0, 0.05, 0.15)),
        transfers_max=rng.choice((1, 2, 4)),
        amount_max=rng.choice((3, 8, 15)),
        reconnect_probability=rng.choice((0.05, 0.15, 0.3)),
        requests_max=400,
    )
    latency_min = rng.choice((50, 200, 1000))
    # Tight election windows make candidates collide (dueling ballots); the
    # defaults are among the choices. Config rule: 2 * heartbeat < minimum.
    election_min = rng.choice((100, 200, constants.election_timeout_ms_min_default))
    timers = TimerPlan(
        heartbeat_ms=rng.choice((20, constants.heartbeat_ms_default)) if election_min > 100 else 20,
        election_timeout_ms_min=election_min,
        election_timeout_ms_max=election_min + rng.choice((20, 100, election_min)),
    )
    assert 2 * timers.heartbeat_ms < timers.election_timeout_ms_min
    checkpoint_interval = rng.choice((3, 5, 10, 10, 20))
    disk_latency_us_max = latency_min * rng.choice((2, 5, 10))
    fault_phase_us = ms(rng.choice((4000, 6000, 9000)))
    # Drawn last, so the draws above give each seed the plan it had before.
    snapshot_checkpoints = rng.choice((1, 2, 4))
    snapshot_transfers_min = rng.choice((40, constants.snapshot_transfers_min))
    batch_commands_max = rng.choice((1, 1, 2, 4, constants.batch_commands_max))
    # Storage faults draw from a stream of their own: the draws above stay as they were.
    storage_rng = random.Random(f"ledgerpaxos-sim/{seed}/plan/storage")
    faults = attrs.evolve(
        faults,
        disk_loss_probability=storage_rng.choice((0.0, 0.2, 0.5)),
        wal_flip_probability=storage_rng.choice((0.0, 0.1, 0.3)),
        rollback_probability=storage_rng.choice((0.0, 0.1, 0.2)),
        disk_full_probability=storage_rng.choice((0.0, 0.15, 0.3)),
    )
    # Openings and sessions too: the draws above stay as they were.
    ledger_rng = random.Random(f"ledgerpaxos-sim/{seed}/plan/ledger")
    clients = workload.clients
    workload = attrs.evolve(
        workload,
        open_probability=ledger_rng.choice((0.0, 0.05, 0.15)),
        sessions_max=ledger_rng.choice((clients, clients, clients - 1, max(1, clients - 2))),
    )
    return SimPlan(
        seed=seed,
        replicas=replicas,
        checkpoint_interval=checkpoint_interval,
        snapshot_checkpoints=snapshot_checkpoints,
        snapshot_transfers_min=snapshot_transfers_min,
        batch_commands_max=batch_commands_max,
        timers=timers,
        disk_latency_us_min=latency_min,
        disk_latency_us_max=disk_latency_us_max,
        fault_phase_us=fault_phase_us,
        liveness_bound_us=ms(30_000),
        network=network,
        faults=faults,
        workload=workload,
        # From a stream of its own, so the draws above stay as they were.
        install_part_units_max=random.Random(f"ledgerpaxos-sim/{seed}/plan/install").choice(
            (2, 5, constants.install_part_units_max)
        ),
    )
