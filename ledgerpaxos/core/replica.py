"""One replica's protocol as a pure state machine (etcd raft's Step/Ready shape).

Feed it messages with `step(message, sender)` and logical time with `tick()`;
collect what it wants done with `take_ready()`. It never touches sockets,
files, clocks or global randomness: the runtime, the tests and the simulator
drive the very same code.

Roles: a follower accepts what the leader of the highest ballot it promised
sends; a candidate first asks for pre-votes (so a replica that was cut off
cannot depose a healthy leader), then runs Prepare/Promise; a leader numbers
slots, runs Accept/Accepted, and sends heartbeats carrying its commit point.

Vocabulary:
- `commit_slot`: every slot up to here is decided and its value is in `log`
  (or folded into the checkpoint). Persisted lazily as a CommitRecord.
- `executed_slot`: every slot up to here is applied to the ledger.
- `checkpoint_slot`: the newest checkpoint (every `checkpoint_interval`
  executed slots: a state digest compared across replicas, and the snapshot a
  lagging replica installs), held in memory.
- `snapshot_slot`: the newest checkpoint written as a snapshot file (durable
  once the Ready that asks for it is carried out). Not every checkpoint is:
  see `_checkpoint`. `purge_slot`: log entries at or below it are dropped,
  never above `snapshot_slot`, so a dropped entry's effect is always on disk.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from ledgerpaxos import constants
from ledgerpaxos.core.ledger import Ledger, state_digest
from ledgerpaxos.core.messages import (
    NOOP,
    Accept,
    Accepted,
    AcceptRecord,
    Ballot,
    Batch,
    CatchupReply,
    CatchupRequest,
    ClientReply,
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
    Snapshot,
    WalRecord,
)
from ledgerpaxos.core.ready import Executed, Ready
from ledgerpaxos.core.settings import CoreSettings
from ledgerpaxos.core.status import BasicStatus, Phase, Role, SlotView, Status


class Core:
    def __init__(
        self,
        settings: CoreSettings,
        rng: random.Random,
        *,
        snapshot: Snapshot | None = None,
        promised: Ballot | None = None,
        entries: dict[int, LogEntry] | None = None,
        commit_slot: int = 0,
        thorough_checks: bool = True,
    ) -> None:
        """A replica core, fresh or restored from what storage recovered.

        `thorough_checks`: check every invariant after each step and tick,
        including those that walk the log (tests, the simulator); False checks
        only those that cost O(1) (the runtime's hot path)."""
        self.s = settings
        self._thorough_checks = thorough_checks
        self.me = settings.node_id
        self.my_index = settings.index
        self.peers = tuple(n for n in settings.node_ids if n != self.me)
        self.rng = rng
        self._ready = Ready()

        # Acceptor state (persisted).
        self.promised = promised if promised is not None else Ballot.zero()
        self.log: dict[int, LogEntry] = {}
        # Learner / state machine.
        self.ledger = Ledger(settings.accounts, settings.initial_balance)
        # Requests this replica's own clients wait on (see _on_client_request).
        self._asked_here: OrderedDict[CommandKey, None] = OrderedDict()
        self.commit_slot = 0
        self.executed_slot = 0
        self.checkpoint_slot = 0
        self.snapshot_slot = 0
        self.purge_slot = 0
        self._transfers_since_snapshot = 0
        self.last_snapshot: Snapshot | None = None
        self.checkpoint_digests: OrderedDict[int, bytes] = OrderedDict()
        self._commit_persisted = 0
        # A checkpoint was installed since the last take_ready(): its snapshot is
        # written after this Ready's WAL records, so a CommitRecord past the stale
        # entries it replaces must wait for the next Ready.
        self._installed_this_round = False
        self._compact_wanted = False

        # Who leads, as far as this replica knows.
        self.role = Role.follower
        self.leader: str | None = None
        self.leader_ballot = Ballot.zero()
        self.highest_seen = self.promised
        self.views: list[tuple[Ballot, str]] = []
        self.known_commit = 0  # the leader's commit point, as last heard

        # Logical time.
        self.now = 0
        self.election_elapsed = 0
        self.election_timeout = self._random_election_timeout()
        self.leader_heard_at: int | None = None  # None: never, so pre-votes are granted
        self.catchup_asked_at: int | None = None

        # Candidate.
        self.phase = Phase.pre_vote
        self.candidate_ballot = Ballot.zero()
        self.pre_votes: set[str] = set()
        self.promises: dict[str, Promise] = {}

        # Leader.
        self.ballot = Ballot.zero()
        self.next_slot = 1
        self.votes: dict[int, set[str]] = {}  # undecided proposed slot -> acceptors
        self.resend_at: dict[int, int] = {}  # undecided slot -> tick before which no re-send
        self.decided: set[int] = set()  # decided slots above commit_slot
        self.pending: OrderedDict[CommandKey, Command] = OrderedDict()
        self.pending_transfers = 0  # transfers of the commands in `pending`
        self.in_flight: set[CommandKey] = set()
        self.heartbeat_elapsed = 0
        self._commit_announced = 0
        self.led_since = 0
        self.peer_heard_at: dict[str, int] = {}
        self.peer_checkpoint: dict[str, int] = {}
        self.peer_executed: dict[str, int] = {}

        if snapshot is not None:
            self._adopt_snapshot(snapshot)
        for slot, entry in sorted((entries or {}).items()):
            assert slot == entry.slot
            if slot > self.purge_slot:
                self.log[slot] = entry
        # The recovered commit point holds only as far as the log has the values.
        while self.commit_slot < commit_slot and self.commit_slot + 1 in self.log:
            self.commit_slot += 1
        self._commit_persisted = self.commit_slot
        self._execute_decided()
        self.invariants()

    # ================================================================ inputs

    def tick(self) -> None:
        """One unit of logical time (constants.tick_ms) has passed."""
        self.now += 1
        if self.role == Role.leader:
            self.heartbeat_elapsed += 1
            if self.heartbeat_elapsed >= self.s.heartbeat_ticks:
                self._resend_undecided()
                self._broadcast_heartbeat()
            elif self.commit_slot > self._commit_announced:
                # Followers learn the commit point from the next Accept; when
                # none went out since it moved, a Heartbeat tells them within a
                # tick (they execute, and reply to clients waiting on them).
                self._broadcast_heartbeat()
            self._step_down_if_isolated()
        else:
            self.election_elapsed += 1
            if self.election_elapsed >= self.election_timeout:
                self._start_pre_vote()
        self._ask_for_catchup_if_stuck()
        self._check_invariants()

    def step(self, message: object, sender: str | None) -> None:
        """Handle one message; `sender` is the peer's node id, None for a local client."""
        if sender is not None:
            assert sender in self.peers, sender
        handler = self._handlers.get(type(message))
        assert handler is not None, f"no handler for {type(message).__name__}"
        handler(self, message, sender)
        self._check_invariants()

    def take_ready(self) -> Ready:
        """Everything to persist, send and reply since the last call."""
        if self.role == Role.leader:
            self._propose_pending()
        # The commit point is knowledge, not a promise: written without an fsync
        # of its own (never on the way to a client's reply); what a crash loses
        # of it is relearned from the leader.
        if self.commit_slot > self._commit_persisted and not self._installed_this_round:
            self._ready.persist_lazy.append(CommitRecord(commit_slot=self.commit_slot))
            self._commit_persisted = self.commit_slot
        self._installed_this_round = False
        if self._ready.send_early and any(
            isinstance(r, PromiseRecord) for r in self._ready.persist
        ):
            self._ready.send.extend(self._ready.send_early)  # our promise is not durable yet
            self._ready.send_early = []
        if self._compact_wanted:
            self._ready.compact = self._wal_seed()
            self._compact_wanted = False
        ready, self._ready = self._ready, Ready()
        return ready

    # ================================================================ clients

    def _on_client_request(self, request: ClientRequest, sender: str | None) -> None:
        command = request.command
        key = (command.client_id, command.request_no)
        if self.ledger.is_duplicate(command):
            outcome = self.ledger.stored_outcome(*key)
            if outcome is not None and sender is None:
                self._reply(command, outcome)  # ignore: older requests get nothing
            return
        if sender is None:
            # Its client waits on this replica: reply when it executes. Other
            # commands (forwarded here, or only in the log) execute without a reply.
            self._asked_here[key] = None
            self._asked_here.move_to_end(key)
            if len(self._asked_here) > self.s.pending_commands_max:
                self._asked_here.popitem(last=False)
        if self.role == Role.leader:
            if key in self.in_flight or key in self.pending:
                return  # ignore: already on its way; the client hears when it executes
            if len(self.pending) >= self.s.pending_commands_max:
                self._ready.events.append(f"leader queue full, dropped {key}")
                return
            self.pending[key] = command
            self.pending_transfers += len(command.transfers)
        elif self.leader is not None and sender is None:
            self._send(self.leader, request)  # forward; our own copy replies once executed
        # else ignore: no leader known (the client retries) or a forward loop

    def _reply(self, command: Command, outcome: Outcome) -> None:
        self._ready.replies.append(
            ClientReply(
                client_id=command.client_id,
                request_no=command.request_no,
                outcome=outcome,
                leader=self.leader,
            )
        )

    # ================================================================ election

    def _random_election_timeout(self) -> int:
        return self.rng.randint(
            self.s.election_timeout_ticks_min, self.s.election_timeout_ticks_max
        )

    def _reset_election_timer(self) -> None:
        self.election_elapsed = 0
        self.election_timeout = self._random_election_timeout()

    def _heard_leader_recently(self) -> bool:
        return (
            self.leader_heard_at is not None
            and self.now - self.leader_heard_at < self.s.election_timeout_ticks_min
        )

    def _start_pre_vote(self) -> None:
        self.role = Role.candidate
        self.phase = Phase.pre_vote
        self.leader = None
        self.candidate_ballot = max(self.promised, self.highest_seen).next_for(self.my_index)
        self.pre_votes = {self.me}
        self._reset_election_timer()
        self._ready.events.append(
            f"election timeout: asking pre-votes for ballot {self.candidate_ballot}"
        )
        for peer in self.peers:
            self._send(peer, PreVote(ballot=self.candidate_ballot))
        self._check_pre_votes()

    def _on_pre_vote(self, m: PreVote, sender: str) -> None:
        self._see(m.ballot)
        granted = (
            self.role != Role.leader
            and m.ballot > self.promised
            and not self._heard_leader_recently()
        )
        self._send(sender, PreVoteReply(ballot=m.ballot, granted=granted))

    def _on_pre_vote_reply(self, m: PreVoteReply, sender: str) -> None:
        if self.role != Role.candidate or self.phase != Phase.pre_vote:
            return  # ignore: not asking
        if m.ballot != self.candidate_ballot or not m.granted:
            return  # ignore: an old round, or refused
        self.pre_votes.add(sender)
        self._check_pre_votes()

    def _check_pre_votes(self) -> None:
        if len(self.pre_votes) < self.s.majority:
            return
        self.phase = Phase.prepare
        self.candidate_ballot = max(
            self.candidate_ballot, self.highest_seen.next_for(self.my_index)
        )
        self._promise(self.candidate_ballot)
        self.promises = {self.me: self._make_promise(self.candidate_ballot)}
        for peer in self.peers:
            self._send(peer, Prepare(ballot=self.candidate_ballot))
        self._check_promises()

    def _promise(self, ballot: Ballot) -> None:
        assert ballot >= self.promised
        if ballot != self.promised:
            self.promised = ballot
            self._ready.persist.append(PromiseRecord(ballot=ballot))
        self._see(ballot)

    def _make_promise(self, ballot: Ballot) -> Promise:
        entries = tuple(e for s, e in sorted(self.log.items()) if s > self.checkpoint_slot)
        return Promise(
            ballot=ballot,
            checkpoint_slot=self.checkpoint_slot,
            commit_slot=self.commit_slot,
            entries=entries,
        )

    def _on_prepare(self, m: Prepare, sender: str) -> None:
        self._see(m.ballot)
        repeat = m.ballot == self.promised and m.ballot.node == self.s.index_of(sender)
        if m.ballot < self.promised or (m.ballot == self.promised and not repeat):
            self._send(sender, Nack(ballot=m.ballot, promised=self.promised))
            return
        if self.role != Role.follower or self.leader is not None:
            self._become_follower(leader=None, ballot=Ballot.zero())
        self._promise(m.ballot)
        self._reset_election_timer()
        self._send(sender, self._make_promise(m.ballot))

    def _on_promise(self, m: Promise, sender: str) -> None:
        if self.role != Role.candidate or self.phase != Phase.prepare:
            return  # ignore: late
        if m.ballot != self.candidate_ballot:
            return  # ignore: for an earlier round
        self.promises[sender] = m
        self._check_promises()

    def _check_promises(self) -> None:
        if len(self.promises) >= self.s.majority:
            self._become_leader()

    def _become_leader(self) -> None:
        b = self.candidate_ballot
        assert b == self.promised
        promises = self.promises
        self.role = Role.leader
        self.ballot = b
        self.leader = self.me
        self.leader_ballot = b
        self._note_view(b, self.me)
        self.led_since = self.now
        self.heartbeat_elapsed = 0
        self.peer_heard_at = dict.fromkeys(self.peers, self.now)
        self.votes = {}
        self.decided = set()
        self.pending = OrderedDict()
        self.pending_transfers = 0
        self.in_flight = set()

        # Everything at or below the highest checkpoint among the promises is
        # decided; above it, adopt per slot the value of the highest ballot.
        start = max(p.checkpoint_slot for p in promises.values())
        best: dict[int, LogEntry] = {}
        for p in promises.values():
            for e in p.entries:
                if e.slot > start and (e.slot not in best or e.ballot > best[e.slot].ballot):
                    best[e.slot] = e
        # Our own decided values win: they are what any quorum would give.
        for slot in range(start + 1, self.commit_slot + 1):
            best[slot] = self.log[slot]
        top = max([start, self.commit_slot, *best])
        entries = []
        for slot in range(start + 1, top + 1):
            batch = best[slot].batch if slot in best else NOOP
            entries.append(self._store(LogEntry(slot=slot, ballot=b, batch=batch)))
            if slot > self.commit_slot:  # our own decided slots need no votes
                self.votes[slot] = {self.me}
                self.in_flight.update((c.client_id, c.request_no) for c in batch)
        self.next_slot = top + 1
        self.known_commit = max(self.known_commit, start)
        self._ready.events.append(
            f"leader for ballot {b}: re-proposing slots {start + 1}..{top}"
            + (f", catching up to {start} first" if start > self.commit_slot else "")
        )
        for peer in self.peers:
            self._send(
                peer,
                NewView(
                    ballot=b,
                    entries=tuple(entries),
                    commit_slot=self.commit_slot,
                    purge_slot=self.purge_slot,
                ),
            )
        if start > self.commit_slot:
            # Behind the checkpoint of a promiser: fetch from it.
            source = max(promises, key=lambda n: promises[n].checkpoint_slot)
            self._ask_for_catchup(source)
        for slot in list(self.votes):
            self._check_decided(slot)

    def _become_follower(self, *, leader: str | None, ballot: Ballot) -> None:
        was_leader = self.role == Role.leader
        self.role = Role.follower
        self.leader = leader
        self.leader_ballot = ballot
        if was_leader:
            dropped = len(self.pending)
            self.pending.clear()
            self.pending_transfers = 0
            self.votes.clear()
            self.decided = {s for s in self.decided if s > self.commit_slot}
            self.in_flight.clear()
            self._ready.events.append(
                f"stepped down from ballot {self.ballot}; dropped {dropped} queued commands"
            )
        if leader is not None:
            self._note_view(ballot, leader)

    def _note_view(self, ballot: Ballot, leader: str) -> None:
        if not self.views or self.views[-1] != (ballot, leader):
            self.views.append((ballot, leader))
            del self.views[: -constants.views_remembered_max]
            self._ready.events.append(f"view {ballot}: leader {leader}")

    def _see(self, ballot: Ballot) -> None:
        self.highest_seen = max(self.highest_seen, ballot)

    def _step_down_if_isolated(self) -> None:
        window = self.s.election_timeout_ticks_max
        if self.now - self.led_since <= window:
            return
        heard = sum(1 for p in self.peers if self.now - self.peer_heard_at[p] <= window)
        if heard + 1 < self.s.majority:
            self._ready.events.append("lost contact with a majority")
            self._become_follower(leader=None, ballot=Ballot.zero())
            self._reset_election_timer()

    # ================================================================ leader: phase 2

    def _propose_pending(self) -> None:
        """Cut the queue into slots: at most batch_commands_max commands and
        batch_transfers_max transfers each (one command may exceed the latter alone).

        With no slot in flight the queue goes out at once. While slots are in
        flight another is proposed only for at least half a slot of commands
        or transfers: the rest waits, at most until a slot in flight is
        decided, and goes out as one fuller batch: a round costs the same
        frames and fsyncs on every replica whatever it carries, so fuller
        slots carry more for the same cost (docs/performance.md). Under a
        load that fills slots the pipeline still runs up to
        pipeline_slots_max deep."""
        while self.pending and len(self.votes) < self.s.pipeline_slots_max:
            if self.votes and not (
                2 * len(self.pending) >= self.s.batch_commands_max
                or 2 * self.pending_transfers >= constants.batch_transfers_max
            ):
                return  # a fuller batch once a slot in flight is decided
            batch: list[Command] = []
            transfers = 0
            while self.pending and len(batch) < self.s.batch_commands_max:
                key, command = next(iter(self.pending.items()))
                if batch and transfers + len(command.transfers) > constants.batch_transfers_max:
                    break
                del self.pending[key]
                self.pending_transfers -= len(command.transfers)
                self.in_flight.add(key)
                batch.append(command)
                transfers += len(command.transfers)
            self._propose(tuple(batch))

    def _propose(self, batch: Batch) -> None:
        assert self.role == Role.leader
        slot = self.next_slot
        self.next_slot += 1
        self._store(LogEntry(slot=slot, ballot=self.ballot, batch=batch))
        self.votes[slot] = {self.me}
        self.resend_at[slot] = self.now + 2 * self.s.heartbeat_ticks
        for peer in self.peers:
            # Early (ready.py): take_ready() moves them behind the persist when
            # this Ready also holds the promise of our ballot.
            self._ready.send_early.append(
                (
                    peer,
                    Accept(
                        ballot=self.ballot,
                        slot=slot,
                        batch=batch,
                        commit_slot=self.commit_slot,
                        purge_slot=self.purge_slot,
                    ),
                )
            )
        self._commit_announced = self.commit_slot
        self._check_decided(slot)

    def _resend_undecided(self) -> None:
        """Accepts (or their replies) may have been lost: ask again whoever has
        not answered for a slot that is still open."""
        for slot in [s for s in self.resend_at if s not in self.votes]:
            del self.resend_at[slot]
        for slot in sorted(self.votes)[: self.s.pipeline_slots_max]:
            if self.resend_at.get(slot, 0) > self.now:
                continue  # proposed a moment ago: its answers are probably on their way
            self.resend_at[slot] = self.now + 2 * self.s.heartbeat_ticks
            entry = self.log[slot]
            for peer in self.peers:
                if peer not in self.votes[slot]:
                    self._send(
                        peer,
                        Accept(
                            ballot=self.ballot,
                            slot=slot,
                            batch=entry.batch,
                            commit_slot=self.commit_slot,
                            purge_slot=self.purge_slot,
                        ),
                    )

    def _on_accepted(self, m: Accepted, sender: str) -> None:
        if self.role != Role.leader or m.ballot != self.ballot:
            return  # ignore: from an earlier view
        self.peer_heard_at[sender] = self.now
        voters = self.votes.get(m.slot)
        if voters is None:
            return  # ignore: already decided
        voters.add(sender)
        self._check_decided(m.slot)

    def _check_decided(self, slot: int) -> None:
        if len(self.votes[slot]) < self.s.majority:
            return
        del self.votes[slot]
        if slot > self.commit_slot:
            self.decided.add(slot)
            self._advance_commit()

    def _advance_commit(self) -> None:
        while self.commit_slot + 1 in self.decided:
            self.commit_slot += 1
            self.decided.discard(self.commit_slot)
        self.known_commit = max(self.known_commit, self.commit_slot)
        self._execute_decided()

    def _broadcast_heartbeat(self) -> None:
        self.heartbeat_elapsed = 0
        self._commit_announced = self.commit_slot
        for peer in self.peers:
            self._send(
                peer,
                Heartbeat(
                    ballot=self.ballot, commit_slot=self.commit_slot, purge_slot=self.purge_slot
                ),
            )

    def _on_heartbeat_ack(self, m: HeartbeatAck, sender: str) -> None:
        if self.role != Role.leader or m.ballot != self.ballot:
            return  # ignore: from an earlier view
        self.peer_heard_at[sender] = self.now
        self.peer_executed[sender] = m.executed_slot
        self.peer_checkpoint[sender] = m.checkpoint_slot
        mine = self.checkpoint_digests.get(m.checkpoint_slot)
        if mine is not None and m.checkpoint_digest != mine:
            self._ready.alarms.append(
                f"checkpoint digest mismatch at slot {m.checkpoint_slot}: "
                f"{self.me} has {mine.hex()[:16]}, {sender} has {m.checkpoint_digest.hex()[:16]}"
            )
        self._purge_to_majority_checkpoint()

    def _on_nack(self, m: Nack, sender: str) -> None:
        self._see(m.promised)
        if self.role == Role.leader and m.ballot == self.ballot and m.promised > self.ballot:
            self._ready.events.append(f"{sender} promised {m.promised}, above our {self.ballot}")
            self._become_follower(leader=None, ballot=Ballot.zero())
            self._reset_election_timer()
        elif self.role == Role.candidate and m.ballot == self.candidate_ballot:
            self._become_follower(leader=None, ballot=Ballot.zero())
            self._reset_election_timer()

    # ================================================================ follower: phase 2

    def _accept_leader(self, ballot: Ballot, sender: str) -> bool:
        """Common gate of Accept, NewView and Heartbeat. False: refused with a Nack."""
        self._see(ballot)
        if ballot < self.promised:
            self._send(sender, Nack(ballot=ballot, promised=self.promised))
            return False
        assert ballot.node == self.s.index_of(sender), "a ballot is only used by its own node"
        self._promise(ballot)
        if self.role != Role.follower or self.leader_ballot != ballot:
            self._become_follower(leader=sender, ballot=ballot)
        self.leader_heard_at = self.now
        self._reset_election_timer()
        return True

    def _on_accept(self, m: Accept, sender: str) -> None:
        if not self._accept_leader(m.ballot, sender):
            return
        self._accept_entry(LogEntry(slot=m.slot, ballot=m.ballot, batch=m.batch))
        self._send(sender, Accepted(ballot=m.ballot, slot=m.slot))
        self._learn_commit(m.commit_slot, m.purge_slot)

    def _on_new_view(self, m: NewView, sender: str) -> None:
        if not self._accept_leader(m.ballot, sender):
            return
        for entry in m.entries:
            assert entry.ballot == m.ballot
            self._accept_entry(entry)
            self._send(sender, Accepted(ballot=m.ballot, slot=entry.slot))
        self._learn_commit(m.commit_slot, m.purge_slot)

    def _on_heartbeat(self, m: Heartbeat, sender: str) -> None:
        if not self._accept_leader(m.ballot, sender):
            return
        self._learn_commit(m.commit_slot, m.purge_slot)
        self._send(
            sender,
            HeartbeatAck(
                ballot=m.ballot,
                executed_slot=self.executed_slot,
                checkpoint_slot=self.checkpoint_slot,
                checkpoint_digest=self.checkpoint_digests.get(self.checkpoint_slot, b""),
            ),
        )

    def _accept_entry(self, entry: LogEntry) -> None:
        mine = self.log.get(entry.slot)
        if entry.slot <= self.commit_slot:
            if mine is None:
                return  # purged: the checkpoint on disk holds its effect
            # Decided here already: by Paxos the same value. Still stored at the
            # new ballot, so the Accepted we answer is true on disk too.
            assert mine.batch == entry.batch, f"slot {entry.slot} decided with another value"
        if mine != entry:
            self._store(entry)

    def _store(self, entry: LogEntry) -> LogEntry:
        self.log[entry.slot] = entry
        self._ready.persist.append(AcceptRecord(entry=entry))
        return entry

    def _learn_commit(self, leader_commit: int, purge_slot: int) -> None:
        """The leader decided every slot up to `leader_commit`; our entries of
        its ballot are its values, anything else we have to fetch."""
        self.known_commit = max(self.known_commit, leader_commit)
        advanced = False
        while self.commit_slot < leader_commit:
            entry = self.log.get(self.commit_slot + 1)
            if entry is None or entry.ballot != self.leader_ballot:
                break
            self.commit_slot += 1
            advanced = True
        if advanced:
            self._execute_decided()
        self._purge_to(purge_slot)
        if self.commit_slot < self.known_commit and not advanced:
            self._ask_for_catchup_if_stuck()

    # ================================================================ catch-up

    def _ask_for_catchup_if_stuck(self) -> None:
        if self.commit_slot >= self.known_commit:
            self.catchup_asked_at = None
            return
        if (
            self.catchup_asked_at is not None
            and self.now - self.catchup_asked_at < self.s.catchup_retry_ticks
        ):
            return
        if self.role == Role.leader:
            # Ask whoever has executed the most.
            ahead = [p for p in self.peers if self.peer_executed.get(p, 0) > self.commit_slot]
            source = max(ahead, key=lambda p: self.peer_executed[p]) if ahead else None
            if source is None and self.peers:
                source = self.rng.choice(self.peers)
        else:
            source = self.leader
        if source is not None and source != self.me:
            self._ask_for_catchup(source)

    def _ask_for_catchup(self, source: str) -> None:
        self.catchup_asked_at = self.now
        self._send(source, CatchupRequest(after_slot=self.commit_slot))

    def _on_catchup_request(self, m: CatchupRequest, sender: str) -> None:
        after = m.after_slot
        if after >= self.commit_slot:
            return  # ignore: we know no more than they do
        last = min(self.commit_slot, after + self.s.catchup_slots_max)
        if after < self.checkpoint_slot and any(
            s not in self.log for s in range(after + 1, self.checkpoint_slot + 1)
        ):
            assert self.last_snapshot is not None
            self._send(sender, InstallCheckpoint(snapshot=self.last_snapshot))
            return
        entries: list[LogEntry] = []
        transfers = 0
        for slot in range(after + 1, last + 1):
            entry = self.log.get(slot)
            if entry is None or (entries and transfers > constants.batch_transfers_max):
                break
            entries.append(entry)
            transfers += sum(len(c.transfers) for c in entry.batch)
        if entries:
            self._send(sender, CatchupReply(entries=tuple(entries), commit_slot=self.commit_slot))

    def _on_catchup_reply(self, m: CatchupReply, sender: str) -> None:
        self.known_commit = max(self.known_commit, m.commit_slot)
        progressed = False
        for entry in m.entries:
            if entry.slot != self.commit_slot + 1:
                continue  # ignore: a gap or already decided here
            if self.log.get(entry.slot) != entry:
                self._store(entry)
            self.commit_slot += 1
            progressed = True
            if self.role == Role.leader:
                self.decided.discard(entry.slot)
                self.votes.pop(entry.slot, None)
        if progressed:
            if self.role == Role.leader:
                self._advance_commit()
            else:
                self._execute_decided()
            if self.commit_slot < self.known_commit:
                self._ask_for_catchup(sender)

    def _on_install_checkpoint(self, m: InstallCheckpoint, sender: str) -> None:
        snapshot = m.snapshot
        if snapshot.slot <= self.executed_slot:
            return  # ignore: we are past it
        if state_digest(snapshot.balances, snapshot.clients) != snapshot.digest:
            self._ready.alarms.append(
                f"checkpoint from {sender} at slot {snapshot.slot} fails its digest"
            )
            return
        self._ready.events.append(f"installing checkpoint {snapshot.slot} from {sender}")
        self._adopt_snapshot(snapshot)
        self._ready.snapshots.append(snapshot)
        self._installed_this_round = True
        self._compact_wanted = True
        self.known_commit = max(self.known_commit, snapshot.slot)
        self._execute_decided()
        if self.commit_slot < self.known_commit:
            self._ask_for_catchup(sender)

    def _adopt_snapshot(self, snapshot: Snapshot) -> None:
        self.ledger.install(snapshot)
        self.executed_slot = snapshot.slot
        self.commit_slot = max(self.commit_slot, snapshot.slot)
        self.checkpoint_slot = snapshot.slot
        self.snapshot_slot = snapshot.slot  # recovered from disk, or installed and written now
        self._transfers_since_snapshot = 0
        self.last_snapshot = snapshot
        self._remember_digest(snapshot.slot, snapshot.digest)
        self.purge_slot = max(self.purge_slot, snapshot.slot)
        for slot in [s for s in self.log if s <= snapshot.slot]:
            del self.log[slot]
        self.decided = {s for s in self.decided if s > self.commit_slot}
        for slot in [s for s in self.votes if s <= self.commit_slot]:
            del self.votes[slot]
        # Walk on through decided entries we may already hold.
        while self.commit_slot + 1 in self.decided:
            self.commit_slot += 1
            self.decided.discard(self.commit_slot)

    # ================================================================ execution, checkpoints

    def _execute_decided(self) -> None:
        while self.executed_slot < self.commit_slot:
            slot = self.executed_slot + 1
            entry = self.log[slot]
            outcomes: list[Outcome | None] = []
            for command in entry.batch:
                self._transfers_since_snapshot += len(command.transfers)
                outcome = self.ledger.execute(command)
                outcomes.append(outcome)
                key = (command.client_id, command.request_no)
                self.in_flight.discard(key)
                if key in self._asked_here:
                    del self._asked_here[key]
                    reply = outcome if outcome is not None else self.ledger.stored_outcome(*key)
                    if reply is not None:
                        self._reply(command, reply)
            self.executed_slot = slot
            self._ready.executed.append(
                Executed(slot=slot, batch=entry.batch, outcomes=tuple(outcomes))
            )
            if slot % self.s.checkpoint_interval == 0:
                self._checkpoint(slot)

    def _checkpoint(self, slot: int) -> None:
        """Every checkpoint gets a digest (compared across replicas) and an
        in-memory snapshot (for installs). A snapshot file costs an encoding
        and two fsyncs, so only some are written: once `snapshot_interval`
        slots or `snapshot_transfers_min` transfers have been executed since the
        last one. The WAL holds everything in between, and the log is purged
        only up to a written snapshot."""
        snapshot = self.ledger.snapshot(slot)
        self.checkpoint_slot = slot
        self.last_snapshot = snapshot
        self._remember_digest(slot, snapshot.digest)
        self._ready.checkpoints.append(snapshot)
        if (
            slot - self.snapshot_slot >= self.s.snapshot_interval
            or self._transfers_since_snapshot >= self.s.snapshot_transfers_min
        ):
            self._ready.snapshots.append(snapshot)
            self.snapshot_slot = slot
            self._transfers_since_snapshot = 0
        if self.role == Role.leader:
            self._purge_to_majority_checkpoint()

    def _purge_to_majority_checkpoint(self) -> None:
        """Leader: entries at or below a checkpoint that a majority holds may be purged."""
        held = sorted([self.checkpoint_slot, *self.peer_checkpoint.values()], reverse=True)
        if len(held) >= self.s.majority:
            self._purge_to(held[self.s.majority - 1])

    def _remember_digest(self, slot: int, digest: bytes) -> None:
        self.checkpoint_digests[slot] = digest
        while len(self.checkpoint_digests) > constants.checkpoint_digests_remembered_max:
            self.checkpoint_digests.popitem(last=False)

    def _purge_to(self, purge_slot: int) -> None:
        """Drop log entries at or below a checkpoint a majority holds, and we
        hold in a snapshot file."""
        target = min(purge_slot, self.snapshot_slot)
        if target <= self.purge_slot:
            return
        self.purge_slot = target
        for slot in [s for s in self.log if s <= target]:
            del self.log[slot]
        for slot in [s for s in self.votes if s <= target]:
            del self.votes[slot]  # executed here, so decided: no more Accepts for it
        self._compact_wanted = True

    def _wal_seed(self) -> tuple[WalRecord, ...]:
        """The records a fresh WAL segment needs to stand for the whole current state."""
        records: list[WalRecord] = [PromiseRecord(ballot=self.promised)]
        records.extend(AcceptRecord(entry=e) for _, e in sorted(self.log.items()))
        records.append(CommitRecord(commit_slot=self.commit_slot))
        return tuple(records)

    # ================================================================ helpers

    def _send(self, to: str, message: object) -> None:
        assert to != self.me
        self._ready.send.append((to, message))  # type: ignore[arg-type]

    def _check_invariants(self) -> None:
        if self._thorough_checks:
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
        return dict(self.ledger.balances)

    _handlers: ClassVar[dict[type, Callable[[Any, Any, Any], None]]] = {
        ClientRequest: _on_client_request,
        PreVote: _on_pre_vote,
        PreVoteReply: _on_pre_vote_reply,
        Prepare: _on_prepare,
        Promise: _on_promise,
        Accept: _on_accept,
        NewView: _on_new_view,
        Accepted: _on_accepted,
        Nack: _on_nack,
        Heartbeat: _on_heartbeat,
        HeartbeatAck: _on_heartbeat_ack,
        CatchupRequest: _on_catchup_request,
        CatchupReply: _on_catchup_reply,
        InstallCheckpoint: _on_install_checkpoint,
    }
