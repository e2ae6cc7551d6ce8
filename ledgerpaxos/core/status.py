"""What the outside may know of a core: one frozen value (etcd raft's Status).

Control, the shell (through control), the simulator and the benchmark read
`Core.status()` and the core's query methods; nothing outside core/ reads or
writes the core's attributes.
"""

from __future__ import annotations

import enum

import attrs

from ledgerpaxos.core.messages import Ballot, Batch


class Role(enum.Enum):
    follower = "follower"
    candidate = "candidate"
    leader = "leader"
    # Lost its disk: learns what it may have promised and accepted from a
    # majority before it votes again (core/rejoin.py).
    rejoining = "rejoining"


class Phase(enum.Enum):
    """A candidate's step: first pre-votes, then Prepare/Promise."""

    pre_vote = "pre-vote"
    prepare = "prepare"


@attrs.frozen(kw_only=True)
class BasicStatus:
    """The few fields a host reads on every step (etcd raft's BasicStatus):
    cheap enough to take before and after each message."""

    role: Role
    phase: Phase | None  # a candidate's step; None unless a candidate
    leader: str | None  # as far as this replica knows
    ballot: Ballot  # of the view this replica is in (its own when it leads)
    executed_slot: int

    @property
    def is_leader(self) -> bool:
        return self.role is Role.leader

    @property
    def is_preparing(self) -> bool:
        """Leading or about to: a leader, or a candidate past its pre-votes."""
        return self.role is Role.leader or self.phase is Phase.prepare


@attrs.frozen(kw_only=True)
class Status(BasicStatus):
    """Everything the outside may know: control and print view read it."""

    node: str
    promised: Ballot
    views: tuple[tuple[Ballot, str], ...]  # (ballot, leader), oldest first, bounded
    commit_slot: int
    checkpoint_slot: int
    snapshot_slot: int
    purge_slot: int
    log_slots: int  # entries held in the log
    slots_in_flight: int  # a leader's proposed, undecided slots
    commands_queued: int  # a leader's commands not yet in a slot
    rejoin: str | None = None  # where a rejoin after a lost disk stands; None: not rejoining


@attrs.frozen(kw_only=True)
class SlotView:
    """One log entry as control prints it."""

    slot: int
    ballot: Ballot
    status: str  # the seed's letters: E executed, C committed, A accepted, X purged, - nothing
    batch: Batch
