"""Every message and record ledgerpaxos exchanges or stores, as frozen values.

These classes know nothing of bytes: `wire/` maps them to frames and WAL record
bodies. Node ids are strings ("n1"); a ballot names its leader by the node's
1-based index in the configuration's node order.
"""

from __future__ import annotations

import enum
import functools

import attrs

from ledgerpaxos.core import digests


@attrs.frozen
class Ballot:
    """A Paxos ballot; ordered by (round, node) lexicographically.

    The comparisons are written out: every message compares ballots a few
    times, and attrs' generated ordering builds two tuples per comparison."""

    round: int
    node: int  # 1-based index of the proposer; 0 only in Ballot.zero()

    def __lt__(self, other: object) -> bool:
        if other.__class__ is not Ballot:
            return NotImplemented
        return self.round < other.round or (self.round == other.round and self.node < other.node)

    def __le__(self, other: object) -> bool:
        if other.__class__ is not Ballot:
            return NotImplemented
        return self.round < other.round or (self.round == other.round and self.node <= other.node)

    def __gt__(self, other: object) -> bool:
        if other.__class__ is not Ballot:
            return NotImplemented
        return self.round > other.round or (self.round == other.round and self.node > other.node)

    def __ge__(self, other: object) -> bool:
        if other.__class__ is not Ballot:
            return NotImplemented
        return self.round > other.round or (self.round == other.round and self.node >= other.node)

    @staticmethod
    def zero() -> Ballot:
        return Ballot(0, 0)

    def next_for(self, node: int) -> Ballot:
        """The smallest ballot of `node` above this one."""
        return Ballot(self.round + 1, node)

    def __str__(self) -> str:
        return f"{self.round}.{self.node}"


# ---------------------------------------------------------------- commands


@attrs.frozen(kw_only=True)
class Transfer:
    sender: str
    receiver: str
    amount: int


class CommandKind(enum.IntEnum):
    transfer = 1  # apply `transfers` in order
    read = 2  # linearizable read of `accounts` (none named: the client's own)
    open = 3  # open `accounts`, owned by `owner` (empty: the client itself), at 0
    register = 4  # register the client's session (core/ledger.py, "Sessions")


@attrs.frozen(kw_only=True)
class Command:
    """One client request as it travels through the log.

    (client_id, request_no) identifies it; request numbers strictly increase
    per client, so the ledger applies each at most once. A transfer or an
    opening names the session its client registered (core/ledger.py): one
    from a session the ledger no longer holds is refused, never applied.
    """

    client_id: str
    request_no: int
    kind: CommandKind
    session: int = 0  # ledger.session_number of the client's register; 0: register, read
    transfers: tuple[Transfer, ...] = ()  # transfer
    accounts: tuple[str, ...] = ()  # read, open
    owner: str = ""  # open

    @property
    def key(self) -> CommandKey:
        return (self.client_id, self.request_no)


CommandKey = tuple[str, int]  # (client id, request number): a request, everywhere


# A slot's value: a batch of commands; the empty batch is the no-op.
Batch = tuple[Command, ...]
NOOP: Batch = ()


@attrs.frozen(kw_only=True)
class TransferResult:
    ok: bool
    reason: str | None = None  # set exactly when ok is False


REASON_EVICTED = "session evicted: the outcome is unknown; register anew"


@attrs.frozen(kw_only=True)
class Outcome:
    """What the ledger made of one command; kept in the client table.

    (slot, index) is where the command was executed: its log slot and its
    place in that slot's batch, the command's place in the one order every
    replica applies (a re-sent request is answered with the first one's).
    `evicted`: the command was refused, not applied, as its client has no
    session (never registered, or evicted since): its outcome is unknown."""

    results: tuple[TransferResult, ...] = ()  # one per transfer or account opened, in order
    balances: tuple[tuple[str, int], ...] | None = None  # for reads
    slot: int = 0
    index: int = 0
    evicted: bool = False

    @property
    def ok(self) -> bool:
        return not self.evicted and all(r.ok for r in self.results)

    @property
    def reason(self) -> str | None:
        if self.evicted:
            return REASON_EVICTED
        for r in self.results:
            if not r.ok:
                return r.reason
        return None


@attrs.frozen(kw_only=True)
class LogEntry:
    """An accepted value: the batch for `slot`, accepted at `ballot`."""

    slot: int
    ballot: Ballot
    batch: Batch

    @functools.cached_property
    def digest(self) -> bytes:
        """What a vote for this entry names (core/digests.py); hashed once."""
        return digests.batch_digest(self.batch)

    @functools.cached_property
    def transfers(self) -> int:
        """The transfers its batch carries: what bounds a message of entries
        (core/fanout.py, core/catchup.py); counted once."""
        return sum(len(command.transfers) for command in self.batch)


@attrs.frozen(kw_only=True)
class ClientEntry:
    """One row of the client table: a client's last executed request."""

    client_id: str
    request_no: int
    outcome: Outcome
    session: int = 0  # where its register executed (core/ledger.session_number)


@attrs.frozen(kw_only=True)
class Snapshot:
    """The ledger state after executing every slot up to and including `slot`,
    as what differs from the config's initial state (core/ledger.py)."""

    slot: int
    balances: tuple[tuple[str, int], ...]  # initial accounts whose balance changed
    # Accounts opened through the log, in that order: (name, owner, balance).
    clients: tuple[ClientEntry, ...]  # the sessions, committed longest ago first
    digest: bytes  # core/ledger.state_digest of the above
    chain: bytes  # the chain digest of the decided log up to `slot` (core/digests.py)
    opened: tuple[tuple[str, str, int], ...] = ()


@attrs.frozen(kw_only=True)
class Checkpoint:
    """A checkpoint taken: the state digest after `slot` (compared across replicas)."""

    slot: int
    digest: bytes


# ---------------------------------------------------------------- client messages


@attrs.frozen(kw_only=True)
class ClientRequest:
    command: Command


@attrs.frozen(kw_only=True)
class ClientReply:
    client_id: str
    request_no: int
    outcome: Outcome
    leader: str | None  # the leader as the replying replica believes it


# ---------------------------------------------------------------- consensus messages


@attrs.frozen(kw_only=True)
class PreVote:
    """Would you promise `ballot`? Asked before any ballot is raised, so that a
    cut-off replica cannot depose a healthy leader when it comes back."""

    ballot: Ballot


@attrs.frozen(kw_only=True)
class PreVoteReply:
    ballot: Ballot
    granted: bool


@attrs.frozen(kw_only=True)
class Prepare:
    ballot: Ballot


@attrs.frozen(kw_only=True)
class Promise:
    ballot: Ballot
    checkpoint_slot: int  # the promiser's newest checkpoint; all slots at or below are committed
    commit_slot: int  # the promiser knows the values of every slot up to here
    entries: tuple[LogEntry, ...]  # accepted entries above checkpoint_slot


@attrs.frozen(kw_only=True)
class Accept:
    ballot: Ballot
    slot: int
    batch: Batch
    commit_slot: int  # the leader's commit point (piggybacked)
    commit_chain: bytes  # the chain digest of the decided log up to commit_slot
    purge_slot: int  # checkpoint held by a majority: entries at or below may go


@attrs.frozen(kw_only=True)
class NewView:
    """The new leader's adopted values for every open slot, to be accepted at `ballot`."""

    ballot: Ballot
    entries: tuple[LogEntry, ...]  # each entry's ballot equals `ballot`
    commit_slot: int
    commit_chain: bytes
    purge_slot: int


@attrs.frozen(kw_only=True)
class Accepted:
    ballot: Ballot
    slot: int
    digest: bytes  # of the value accepted (LogEntry.digest): a vote counts only for it


@attrs.frozen(kw_only=True)
class AcceptMany:
    """Accepts of several slots at once, in slot order: a lazy follower's
    backlog (core/fanout.py). One gate, one commit point and one vote for all
    of them, where one Accept each would cost a frame, a gate and a vote each."""

    ballot: Ballot
    entries: tuple[LogEntry, ...]  # each entry's ballot equals `ballot`, slots ascending
    commit_slot: int  # never above the last entry's slot (core/fanout.py)
    commit_chain: bytes
    purge_slot: int


@attrs.frozen(kw_only=True)
class AcceptedMany:
    """The votes for the slots of an AcceptMany that the follower holds."""

    ballot: Ballot
    votes: tuple[tuple[int, bytes], ...]  # (slot, digest of the value accepted), as Accepted


@attrs.frozen(kw_only=True)
class Nack:
    """Refusal: the sender has promised `promised`, above the ballot it was sent."""

    ballot: Ballot  # the refused ballot
    promised: Ballot


@attrs.frozen(kw_only=True)
class Heartbeat:
    ballot: Ballot
    commit_slot: int
    commit_chain: bytes
    purge_slot: int


@attrs.frozen(kw_only=True)
class HeartbeatAck:
    ballot: Ballot
    executed_slot: int
    checkpoint_slot: int
    checkpoint_digest: bytes  # empty when checkpoint_slot is 0


@attrs.frozen(kw_only=True)
class CatchupRequest:
    """Send me the committed values of the slots after `after_slot`; or, if
    they are purged and `install_slot` is your checkpoint's slot, its part
    `part` (an install in parts resumes from whoever is asked next)."""

    after_slot: int
    nonce: int  # echoed by the answer: only the answer to this request counts
    install_slot: int = 0  # 0: no install under way
    part: int = 0


@attrs.frozen(kw_only=True)
class CatchupReply:
    entries: tuple[LogEntry, ...]  # committed values, consecutive slots
    commit_slot: int  # the sender's commit point
    chain: bytes  # the chain digest of the decided log up to the last entry
    nonce: int  # the request's


@attrs.frozen(kw_only=True)
class InstallCheckpoint:
    """Sent instead of entries that were purged: take this state and go on
    from it. One part of it (core/ledger.split_snapshot): `snapshot` holds the
    checkpoint's slot, digest and chain, and part `part` of `parts` of its rows."""

    snapshot: Snapshot
    nonce: int  # the request's
    part: int = 0
    parts: int = 1


@attrs.frozen(kw_only=True)
class RejoinRequest:
    """From a replica that lost its disk: what have you promised and accepted?"""

    nonce: int  # echoed: only answers given after the loss count


@attrs.frozen(kw_only=True)
class RejoinReply:
    """What the answering replica has promised and accepted (a Promise that
    promises nothing): enough, from a majority, for the asker to vote again
    without breaking a promise or an acceptance it forgot."""

    nonce: int
    promised: Ballot
    checkpoint_slot: int  # all slots at or below are decided
    commit_slot: int
    entries: tuple[LogEntry, ...]  # accepted entries above checkpoint_slot


# ---------------------------------------------------------------- control messages


class ControlOp(enum.IntEnum):
    ping = 1
    print_log = 2
    print_db = 3
    print_status = 4  # argument: slot, 0 for all
    print_view = 5
    set_alive = 6  # argument: 1 on, 0 off
    kill_leader = 7
    reset = 8


@attrs.frozen(kw_only=True)
class ControlRequest:
    op: ControlOp
    argument: int = 0


@attrs.frozen(kw_only=True)
class ControlReply:
    op: ControlOp
    ok: bool
    body: str  # a JSON document, for people and the shell; see runtime/control.py


PeerMessage = (
    PreVote
    | PreVoteReply
    | Prepare
    | Promise
    | Accept
    | NewView
    | Accepted
    | AcceptMany
    | AcceptedMany
    | Nack
    | Heartbeat
    | HeartbeatAck
    | CatchupRequest
    | CatchupReply
    | InstallCheckpoint
    | RejoinRequest
    | RejoinReply
)
Message = PeerMessage | ClientRequest | ClientReply | ControlRequest | ControlReply


# ---------------------------------------------------------------- WAL records


@attrs.frozen(kw_only=True)
class PromiseRecord:
    """The replica promised `ballot` (never to accept anything lower)."""

    ballot: Ballot


@attrs.frozen(kw_only=True)
class AcceptRecord:
    entry: LogEntry


@attrs.frozen(kw_only=True)
class CommitRecord:
    """The values of every slot up to `commit_slot` are known to be committed."""

    commit_slot: int


WalRecord = PromiseRecord | AcceptRecord | CommitRecord
