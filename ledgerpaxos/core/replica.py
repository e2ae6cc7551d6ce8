"""One replica's protocol as a pure state machine (etcd raft's Step/Ready shape).

Feed it messages with `step(message, sender)` and logical time with `tick()`;
collect what it wants done with `take_ready()`. It never touches sockets,
files, clocks or global randomness: the runtime, the tests and the simulator
drive the very same code.

Roles: a follower accepts what the leader of the highest ballot it promised
sends; a candidate first asks for pre-votes (so a replica that was cut off
cannot depose a healthy leader), then runs Prepare/Promise; a leader numbers
slots, runs Accept/Accepted, and sends heartbeats carrying its commit point.
`step` dispatches by role (`_STEPS`): a message a role has no use for is
dropped there, so no handler checks its own role. The handlers are functions
of the core in the modules named for their part of the protocol:

    election.py   pre-votes, Prepare/Promise, becoming leader or follower
    leading.py    the leader's phase 2: batching, votes, heartbeats
    following.py  a follower's phase 2: accepting, learning the commit point
    catchup.py    fetching decided slots or a checkpoint from a peer
    execution.py  applying decided slots, checkpoints, purging the log
    clients.py    duplicates and replies at any replica

Vocabulary:
- `commit_slot`: every slot up to here is decided and its value is in `log`
  (or folded into the checkpoint). Persisted lazily as a CommitRecord.
- `executed_slot`: every slot up to here is applied to the ledger.
- `checkpoint_slot`: the newest checkpoint (every `checkpoint_interval`
  executed slots: a state digest compared across replicas, and the snapshot a
  lagging replica installs), held in memory.
- `snapshot_slot`: the newest checkpoint written as a snapshot file, durable:
  an installed one once the Ready that asks for it is carried out, one of our
  own once the host reports it written (`snapshot_written`; `snapshot_writing`
  meanwhile). Not every checkpoint is: see `execution.checkpoint`. `purge_slot`: log entries at or below it are
  dropped, never above `snapshot_slot`, so a dropped entry's effect is always
  on disk.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ledgerpaxos.core import (
    catchup,
    digests,
    election,
    execution,
    following,
    leading,
    rejoin,
    validation,
)
from ledgerpaxos.core.install import PartialInstall
from ledgerpaxos.core.ledger import Ledger
from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    AcceptedMany,
    AcceptMany,
    AcceptRecord,
    Ballot,
    CatchupReply,
    CatchupRequest,
    ClientRequest,
    Command,
    CommandKey,
    CommitRecord,
    Heartbeat,
    HeartbeatAck,
    InstallCheckpoint,
    LogEntry,
    Nack,
    NewView,
    Outcome,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    PromiseRecord,
    RejoinReply,
    RejoinRequest,
    Snapshot,
)
from ledgerpaxos.core.quorum import Quorum
from ledgerpaxos.core.ready import Ready
from ledgerpaxos.core.settings import CoreSettings
from ledgerpaxos.core.status import BasicStatus, Phase, Role, SlotView, Status
from ledgerpaxos.core.timers import Deadline, Stamp, soonest

Handler = Callable[[Any, Any, Any], None]  # (core, message, sender)

# Messages every role handles. Accept, AcceptMany, NewView and Heartbeat carry a ballot
# that makes any replica a follower of their sender when it may not refuse it.
_ANY_ROLE: dict[type, Handler] = {
    Prepare: election.on_prepare,
    Accept: following.on_accept,
    AcceptMany: following.on_accept_many,
    NewView: following.on_new_view,
    Heartbeat: following.on_heartbeat,
    CatchupRequest: catchup.on_catchup_request,
    CatchupReply: catchup.on_catchup_reply,
    InstallCheckpoint: catchup.on_install_checkpoint,
    RejoinRequest: rejoin.on_rejoin_request,
}

# Per role, every message it acts on; any other is dropped on arrival (a late
# Promise at a leader, an Accepted at a follower).
_STEPS: dict[Role, dict[type, Handler]] = {
    Role.follower: {
        **_ANY_ROLE,
        ClientRequest: following.on_client_request,
        PreVote: election.on_pre_vote,
        Nack: election.on_nack,
    },
    Role.candidate: {
        **_ANY_ROLE,
        ClientRequest: following.on_client_request,
        PreVote: election.on_pre_vote,
        PreVoteReply: election.on_pre_vote_reply,
        Promise: election.on_promise,
        Nack: election.on_nack_as_candidate,
    },
    Role.leader: {
        **_ANY_ROLE,
        ClientRequest: leading.on_client_request,
        PreVote: election.refuse_pre_vote,
        Accepted: leading.on_accepted,
        AcceptedMany: leading.on_accepted_many,
        HeartbeatAck: leading.on_heartbeat_ack,
        Nack: leading.on_nack,
    },
    # Votes for nothing: no Prepare, PreVote or proposal is answered (core/rejoin.py).
    Role.rejoining: {
        ClientRequest: following.on_client_request,
        Accept: rejoin.on_accept,
        AcceptMany: rejoin.on_accept_many,
        NewView: rejoin.on_new_view,
        Heartbeat: rejoin.on_heartbeat,
        CatchupRequest: catchup.on_catchup_request,
        CatchupReply: catchup.on_catchup_reply,
        InstallCheckpoint: catchup.on_install_checkpoint,
        RejoinReply: rejoin.on_rejoin_reply,
    },
}

_KNOWN_MESSAGES = frozenset(t for steps in _STEPS.values() for t in steps)


class Core:
    # The state machine's class: an extension point like those below (a
    # planted bug may be a ledger that gets one rule wrong).
    ledger_class: type[Ledger] = Ledger

    def __init__(
        self,
        settings: CoreSettings,
        rng: random.Random,
        *,
        snapshot: Snapshot | None = None,
        promised: Ballot | None = None,
        entries: dict[int, LogEntry] | None = None,
        commit_slot: int = 0,
        rejoining: bool = False,
        thorough_checks: bool = True,
    ) -> None:
        """A replica core, fresh or restored from what storage recovered.

        `rejoining`: its data directory was lost (--recover) and it has not
        rejoined yet: it votes for nothing until it has (core/rejoin.py).

        `thorough_checks`: check every invariant after each step and tick,
        including those that walk the log (tests, the simulator); False checks
        only those that cost O(1) (the runtime's hot path)."""
        self.s = settings
        self.quorum = Quorum(len(settings.node_ids))
        self.thorough_checks = thorough_checks
        self.me = settings.node_id
        self.my_index = settings.index
        self.peers = tuple(n for n in settings.node_ids if n != self.me)
        self.rng = rng
        self.ready = Ready()  # what the next take_ready() hands out

        # Acceptor state (persisted).
        self.promised = promised if promised is not None else Ballot.zero()
        self.log: dict[int, LogEntry] = {}
        # Learner / state machine.
        self.ledger = self.ledger_class(
            settings.accounts,
            settings.initial_balance,
            dict(settings.client_accounts),
            settings.auditors,
            operators=settings.operators,
            sessions_max=settings.client_sessions_max,
        )
        # Requests this replica's own clients wait on (clients.admit).
        self.asked_here: OrderedDict[CommandKey, None] = OrderedDict()
        self.commit_slot = 0
        self.executed_slot = 0
        self.chain = digests.chain_start  # the decided log's chain digest at executed_slot
        self.chains: dict[int, bytes] = {}  # the same per executed slot still in the log
        self.checkpoint_slot = 0
        self.snapshot_slot = 0
        self.snapshot_writing = 0  # a snapshot of ours the host is writing (Ready.snapshot_later)
        self.purge_slot = 0
        self.transfers_since_snapshot = 0
        self.last_snapshot: Snapshot | None = None
        self.checkpoint_digests: OrderedDict[int, bytes] = OrderedDict()
        self.commit_persisted = 0
        # A checkpoint was installed since the last take_ready(): its snapshot is
        # written after this Ready's WAL records, so a CommitRecord past the stale
        # entries it replaces must wait for the next Ready.
        self.installed_this_round = False
        self.compact_wanted = False

        # Who leads, as far as this replica knows.
        self.role = Role.follower
        self.leader: str | None = None
        self.leader_ballot = Ballot.zero()
        self.highest_seen = self.promised
        self.views: list[tuple[Ballot, str]] = []
        self.known_commit = 0  # the leader's commit point, as last heard

        # Logical time (timers.py).
        self.now = 0
        self.election = Deadline()  # stand for election: no leader heard in time
        election.reset_election_timer(self)
        self.leader_heard = Stamp()  # never, so pre-votes are granted
        self.catchup_retry = Deadline()  # no new catch-up request before it
        self.catchup_source: str | None = None  # the peer asked last: only its answers count
        self.catchup_nonce = 0  # and only its answer to that request
        self.installing: PartialInstall | None = None  # a checkpoint's parts received so far
        # Our last snapshot cut into parts, made when a peer first asks for one.
        self.install_parts: tuple[Snapshot, ...] = ()

        # Rejoining after a lost disk (rejoin.py).
        self.rejoin_nonce = 0
        self.rejoin_asked = False
        self.rejoin_after = Deadline()  # ask (again) then
        self.rejoin_answers: dict[str, RejoinReply] = {}
        # Answered: the newest checkpoint among the answers, to reach before voting.
        self.rejoin_floor: int | None = None

        # Candidate.
        self.phase = Phase.pre_vote
        self.candidate_ballot = Ballot.zero()
        self.pre_votes: set[str] = set()
        self.promises: dict[str, Promise] = {}

        # Leader.
        self.ballot = Ballot.zero()
        self.next_slot = 1
        self.votes: dict[int, set[str]] = {}  # undecided proposed slot -> acceptors
        # Undecided slot -> peers that accepted another value for it under our ballot.
        self.other_values: dict[int, set[str]] = {}
        self.resend: dict[int, Deadline] = {}  # undecided slot -> no re-send before
        self.decided: set[int] = set()  # decided slots above commit_slot
        self.pending: OrderedDict[CommandKey, Command] = OrderedDict()
        self.pending_transfers = 0  # transfers of the commands in `pending`
        self.in_flight: set[CommandKey] = set()
        self.heartbeat = Deadline()
        self.commit_announced = 0
        # Who gets an Accept at once, and what the others still wait for (fanout.py).
        self.fast: frozenset[str] = frozenset()
        self.sent_through: dict[str, int] = {}
        self.proposed_at: dict[int, int] = {}
        self.forwarded: dict[CommandKey, str] = {}
        self.leading_since = Stamp()
        self.peer_heard: dict[str, Stamp] = {}
        self.peer_checkpoint: dict[str, int] = {}
        self.peer_executed: dict[str, int] = {}

        if snapshot is not None:
            self.adopt_snapshot(snapshot, source=None)
        for slot, entry in sorted((entries or {}).items()):
            assert slot == entry.slot
            if slot > self.purge_slot:
                self.log[slot] = entry
        # The recovered commit point holds only as far as the log has the values.
        while self.commit_slot < commit_slot and self.commit_slot + 1 in self.log:
            self.commit_slot += 1
        self.commit_persisted = self.commit_slot
        execution.execute_decided(self)
        if rejoining:
            rejoin.begin(self)
        self.invariants()

    # ================================================================ inputs

    def tick(self) -> None:
        """One unit of logical time (constants.tick_ms) has passed."""
        self.execute_committed()
        self.now += 1
        if self.role == Role.leader:
            leading.tick(self)
        elif self.role == Role.rejoining:
            rejoin.tick(self)
        else:
            election.tick(self)
        catchup.ask_if_stuck(self)
        self._check_invariants()

    def execution_due(self) -> bool:
        """Committed slots wait to be executed (a follower's, after the Ready
        that voted: see execute_committed)."""
        return self.executed_slot < self.commit_slot

    def execute_committed(self) -> None:
        """Execute every committed slot not executed yet. A follower learns
        the commit point from the Accept it votes on and executes after its
        vote has left: a host calls this once it has carried out the Ready
        (then takes the next Ready for what execution produced). The next
        step or tick does it too, for a host that does not."""
        if self.execution_due():
            execution.execute_decided(self)
            self._check_invariants()

    def ticks_until_due(self) -> int | None:
        """Ticks from now until the first tick that may do something (1: the
        next one); None: no tick does anything until a message comes.

        The ticks before it change nothing a host carries out (only `now`,
        and timers that are disarmed anyway), so a host may sleep through
        them (runtime/replica.py) instead of waking every tick_ms. It must
        still call tick() once for each of them before it steps anything
        else, so that what a message arms counts from the right tick. The
        simulator checks, at every tick, that one it was told is not due does
        nothing (sim/checkers.py, "tick-due")."""
        if self.execution_due():
            return 1  # the next tick executes (execute_committed)
        if self.role == Role.leader:
            due = leading.ticks_until_due(self)
        elif self.role == Role.rejoining:
            due = rejoin.ticks_until_due(self)
        else:
            due = election.ticks_until_due(self)
        return soonest(due, catchup.ticks_until_due(self))

    def snapshot_written(self, snapshot: Snapshot) -> None:
        """The host has built and written Ready.snapshot_later: it is durable."""
        assert snapshot.slot == self.snapshot_writing, (snapshot.slot, self.snapshot_writing)
        self.snapshot_writing = 0
        execution.snapshot_written(self, snapshot)
        self._check_invariants()

    def step(self, message: object, sender: str | None) -> None:
        """Handle one message; `sender` is the peer's node id, None for a local client."""
        self.execute_committed()
        if sender is not None:
            assert sender in self.peers, sender
            reason = validation.refusal(self, message, sender)
            if reason is not None:
                self.ready.alarms.append(
                    f"refused {type(message).__name__} from {sender}: {reason}"
                )
                return
            if validation.too_far_ahead(self, message):
                return  # ignore: catch up first (validation.too_far_ahead)
        assert type(message) in _KNOWN_MESSAGES, f"no handler for {type(message).__name__}"
        handler = _STEPS[self.role].get(type(message))
        if handler is not None:  # else ignore: not for this role (late, or stale)
            handler(self, message, sender)
        self._check_invariants()

    def take_ready(self) -> Ready:
        """Everything to persist, send and reply since the last call."""
        if self.role == Role.leader:
            leading.propose_pending(self)
        # The commit point is knowledge, not a promise: written without an fsync
        # of its own (never on the way to a client's reply); what a crash loses
        # of it is relearned from the leader.
        if self.commit_slot > self.commit_persisted and not self.installed_this_round:
            self.ready.persist_lazy.append(CommitRecord(commit_slot=self.commit_slot))
            self.commit_persisted = self.commit_slot
        self.installed_this_round = False
        if self.ready.send_early and any(isinstance(r, PromiseRecord) for r in self.ready.persist):
            self.ready.send.extend(self.ready.send_early)  # our promise is not durable yet
            self.ready.send_early = []
        if self.compact_wanted:
            self.ready.compact = execution.wal_seed(self)
            self.compact_wanted = False
        ready, self.ready = self.ready, Ready()
        return ready

    # ================================================================ extension points
    # The decisions the simulator's planted bugs (sim/planted.py) change, one
    # method each, so a bug is a subclass that overrides one of these.

    def is_chosen(self, slot: int, voters: set[str]) -> bool:
        """The leader's value for `slot` is chosen: a majority accepted it."""
        return self.quorum.reached(voters)

    def values_to_adopt(self, promises: Mapping[str, Promise], start: int) -> dict[int, LogEntry]:
        """A new leader's values for the slots above `start` that the promises
        report: per slot, the one of the highest ballot."""
        return election.highest_ballot_values(promises, start, self.s.node_ids)

    def adopt_snapshot(self, snapshot: Snapshot, *, source: str | None) -> None:
        """Make `snapshot` our state; `source`: the peer that sent it, None
        when it was recovered from disk."""
        execution.adopt_snapshot(self, snapshot)

    # ================================================================ effects

    def send(self, to: str, message: object) -> None:
        assert to != self.me
        self.ready.send.append((to, message))  # type: ignore[arg-type]

    def store(self, entry: LogEntry) -> LogEntry:
        """Accept `entry`: in the log now, durable before anything this Ready sends."""
        self.log[entry.slot] = entry
        self.ready.persist.append(AcceptRecord(entry=entry))
        return entry

    # ================================================================ invariants

    def _check_invariants(self) -> None:
        if self.thorough_checks:
            self.invariants()
            return
        assert (
            self.purge_slot
            <= self.snapshot_slot
            <= self.checkpoint_slot
            <= self.executed_slot
            <= self.commit_slot
        )
        assert self.role != Role.leader or self.ballot == self.promised == self.leader_ballot

    def invariants(self) -> None:
        """Every invariant, including those that walk the log and the votes."""
        assert self.executed_slot <= self.commit_slot
        assert self.checkpoint_slot <= self.executed_slot
        assert self.purge_slot <= self.snapshot_slot <= self.checkpoint_slot
        assert all(s > self.purge_slot for s in self.log)
        assert self.executed_slot == self.checkpoint_slot or all(
            s in self.log
            for s in range(max(self.checkpoint_slot, self.purge_slot) + 1, self.commit_slot + 1)
        )
        if self.role == Role.leader:
            assert self.ballot == self.promised == self.leader_ballot
            assert all(self.commit_slot < s < self.next_slot and s in self.log for s in self.votes)
            assert all(s in self.votes for s in self.other_values)
            assert all(s > self.commit_slot for s in self.decided)
            assert self.pending_transfers == sum(len(c.transfers) for c in self.pending.values())

    # ================================================================ queries (status.py)

    def basic_status(self) -> BasicStatus:
        """Role, leader, ballot and executed slot: what a host checks per step."""
        return BasicStatus(
            role=self.role,
            phase=self.phase if self.role == Role.candidate else None,
            leader=self.leader,
            ballot=self.leader_ballot,
            executed_slot=self.executed_slot,
        )

    def status(self) -> Status:
        """A copy of what the outside may know (a frozen value)."""
        return Status(
            **attrs.asdict(self.basic_status(), recurse=False),
            node=self.me,
            promised=self.promised,
            views=tuple(self.views),
            commit_slot=self.commit_slot,
            checkpoint_slot=self.checkpoint_slot,
            snapshot_slot=self.snapshot_slot,
            purge_slot=self.purge_slot,
            log_slots=len(self.log),
            slots_in_flight=len(self.votes),
            commands_queued=len(self.pending),
            rejoin=rejoin.describe(self),
        )

    @property
    def slots_in_flight(self) -> int:
        """Status.slots_in_flight without building a Status: the runtime asks
        it for every client request."""
        return len(self.votes)

    def log_view(self) -> tuple[SlotView, ...]:
        """The log in slot order, with each slot's status letter."""
        return tuple(
            SlotView(slot=slot, ballot=e.ballot, status=self.slot_status(slot), batch=e.batch)
            for slot, e in sorted(self.log.items())
        )

    def last_slot(self) -> int:
        """The highest slot in the log, 0 when it is empty."""
        return max(self.log, default=0)

    def state_digest(self) -> bytes:
        """The digest of balances and client table, as a checkpoint takes it."""
        return self.ledger.digest()

    def client_request_nos(self) -> dict[str, int]:
        """The client table: each client's last executed request number."""
        return {c: e.request_no for c, e in self.ledger.clients.items()}

    def stored_outcome(self, key: CommandKey) -> Outcome | None:
        """The outcome the client table holds for `key`, if it is the newest."""
        return self.ledger.stored_outcome(*key)

    def slot_status(self, slot: int) -> str:
        """The seed's letters: E executed, C committed, A accepted, X purged, - nothing."""
        if slot <= self.executed_slot:
            return "E" if slot in self.log else "X"
        if slot <= self.commit_slot or slot in self.decided:
            return "C"
        if slot in self.log:
            return "A"
        return "-"

    def balances(self) -> dict[str, int]:
        """Every balance: O(accounts), for tests, the simulator and small ledgers."""
        return self.ledger.all_balances()
