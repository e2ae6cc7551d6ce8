"""What a peer message must be before the core acts on it: refused, never asserted.

A frame that decodes is well-typed, but its values come from the network: a
faulty or forged peer can send any of them. `refusal` says why a message may
not be acted on at all, from the message alone and what this replica
knows; `Core.step` drops such a message with an alarm (the outside hears of
it loudly: the runtime logs it, the simulator fails a run with it, as no
correct peer ever sends one). Stale messages (late, duplicated, from an
older view) are not refusals: the handlers ignore those quietly.

The core's own assertions stay for its own invariants; with this check in
front of them, no value a peer sends can trip one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledgerpaxos import constants
from ledgerpaxos.core.accounts import account_name_problem
from ledgerpaxos.core.digests import digest_bytes
from ledgerpaxos.core.ledger import digest_bytes as state_digest_bytes
from ledgerpaxos.core.messages import (
    Accept,
    AcceptedMany,
    AcceptMany,
    Ballot,
    CatchupReply,
    Heartbeat,
    InstallCheckpoint,
    LogEntry,
    Nack,
    NewView,
    Prepare,
    PreVote,
    Promise,
    RejoinReply,
    Snapshot,
)

if TYPE_CHECKING:
    from ledgerpaxos.core.replica import Core


def refusal(core: Core, message: object, sender: str) -> str | None:
    """Why `message` from peer `sender` must not be acted on, or None."""
    reachable = core.promised.round + constants.ballot_round_jump_max
    for ballot in _ballots(message):
        # Beyond this a ballot would leave no room to outbid it on the wire.
        if ballot.round > constants.ballot_round_max:
            return f"ballot round {ballot.round} is beyond {constants.ballot_round_max}"
        # Beyond this no candidate could outbid it (election.next_candidate_ballot).
        if ballot.round > reachable:
            return (
                f"ballot round {ballot.round} is beyond {reachable}, "
                f"{constants.ballot_round_jump_max} above the round promised here"
            )
        if not 0 <= ballot.node <= len(core.s.node_ids):
            return f"ballot {ballot} names node index {ballot.node}, not a node of the cluster"
    # Only a ballot's own node may propose under it.
    if isinstance(
        message, Prepare | PreVote | Accept | AcceptMany | NewView | Heartbeat
    ) and message.ballot.node != core.s.index_of(sender):
        return f"{type(message).__name__} for ballot {message.ballot} of another node"
    # Accept, AcceptMany, NewView, Heartbeat: commit_chain; Accepted: digest;
    # CatchupReply: chain; AcceptedMany: a digest per vote (below).
    for name in ("commit_chain", "chain", "digest"):
        value = getattr(message, name, None)
        if isinstance(value, bytes) and len(value) != digest_bytes:
            return f"its {name.replace('_', ' ')} has {len(value)} bytes, not {digest_bytes}"
    if isinstance(message, Accept):
        return _slot_refusal(message.slot) or _points_refusal(
            message.commit_slot, message.purge_slot
        )
    if isinstance(message, NewView | AcceptMany):
        return _entries_refusal(message.entries, ballot=message.ballot) or _points_refusal(
            message.commit_slot, message.purge_slot
        )
    if isinstance(message, AcceptedMany):
        for slot, digest in message.votes:
            if len(digest) != digest_bytes:
                return f"its digest for slot {slot} has {len(digest)} bytes, not {digest_bytes}"
            problem = _slot_refusal(slot)
            if problem is not None:
                return problem
        return None
    if isinstance(message, Heartbeat):
        return _points_refusal(message.commit_slot, message.purge_slot)
    if isinstance(message, Promise):
        return _entries_refusal(message.entries, above=message.checkpoint_slot)
    if isinstance(message, CatchupReply):
        return _entries_refusal(message.entries, consecutive=True)
    if isinstance(message, RejoinReply):
        return _entries_refusal(message.entries, above=message.checkpoint_slot)
    if isinstance(message, InstallCheckpoint):
        if not 0 <= message.part < message.parts <= constants.install_parts_max:
            return (
                f"part {message.part} of {message.parts}: parts count from 0, "
                f"at most {constants.install_parts_max}"
            )
        return snapshot_refusal(core, message.snapshot, whole=False)
    return None  # Accepted, HeartbeatAck, CatchupRequest, PreVoteReply, Nack: ballots only


def _ballots(message: object) -> list[Ballot]:
    if isinstance(message, Nack):
        return [message.ballot, message.promised]
    if isinstance(message, RejoinReply):
        return [message.promised, *(entry.ballot for entry in message.entries)]
    ballot = getattr(message, "ballot", None)
    found = [ballot] if isinstance(ballot, Ballot) else []
    for entry in getattr(message, "entries", ()):
        found.append(entry.ballot)
    return found


def too_far_ahead(core: Core, message: object) -> bool:
    """An Accept, AcceptMany, NewView or Promise naming a slot more than slots_ahead_max
    above this replica's commit point: dropped quietly (an honest leader or
    promiser may be that far ahead of a replica that lags; it catches up
    first), as acting on it would make this replica hold, and as leader fill,
    every slot up to it."""
    if isinstance(message, Accept):
        slots = [message.slot]
    elif isinstance(message, NewView | AcceptMany):
        slots = [e.slot for e in message.entries]
    elif isinstance(message, Promise):
        slots = [message.checkpoint_slot, message.commit_slot, *(e.slot for e in message.entries)]
    elif isinstance(message, RejoinReply):
        # A rejoining replica may be any distance behind (an empty disk): the
        # entries are bounded by the answerer's own checkpoint instead.
        last = max((e.slot for e in message.entries), default=0)
        return last > message.checkpoint_slot + constants.slots_ahead_max
    else:
        return False
    # The decided prefix: only entries raise it, never a number a peer names.
    return max(slots, default=0) > core.commit_slot + constants.slots_ahead_max


def _slot_refusal(slot: int) -> str | None:
    return None if slot >= 1 else f"slot {slot}: slots count from 1"


def _points_refusal(commit_slot: int, purge_slot: int) -> str | None:
    if purge_slot > commit_slot:
        return f"purge slot {purge_slot} above the commit slot {commit_slot}"
    return None


def _entries_refusal(
    entries: tuple[LogEntry, ...],
    *,
    ballot: Ballot | None = None,
    above: int = 0,
    consecutive: bool = False,
) -> str | None:
    previous = None
    for entry in entries:
        if entry.slot <= above:
            return f"entry for slot {entry.slot}, at or below {above}"
        if previous is not None and entry.slot <= previous:
            return f"entries out of order: slot {entry.slot} after {previous}"
        if consecutive and previous is not None and entry.slot != previous + 1:
            return f"entries not consecutive: slot {entry.slot} after {previous}"
        if ballot is not None and entry.ballot != ballot:
            return f"entry for slot {entry.slot} of ballot {entry.ballot}, not {ballot}"
        previous = entry.slot
    return None


def snapshot_refusal(core: Core, snapshot: Snapshot, *, whole: bool = True) -> str | None:
    """A checkpoint must hold this cluster's accounts and its money, no more,
    no less; `whole` False: `snapshot` is one part of one (core/install.py),
    whose rows are checked one by one, and the sums once all parts are in."""
    ledger = core.ledger
    if len(snapshot.chain) != digest_bytes:
        return f"its chain digest has {len(snapshot.chain)} bytes, not {digest_bytes}"
    if len(snapshot.digest) != state_digest_bytes:
        return f"its state digest has {len(snapshot.digest)} bytes, not {state_digest_bytes}"
    seen: set[str] = set()
    moved = 0
    for account, balance in snapshot.balances:
        if account not in ledger.initial:
            return f"it holds a balance of {account!r}, not an initial account of the cluster"
        if account in seen:
            return f"it holds two balances of {account!r}"
        if balance < 0:
            return f"the balance of {account!r} is below zero"
        seen.add(account)
        moved += balance - ledger.initial_balance
    for account, owner, balance in snapshot.opened:
        problem = account_name_problem(account)
        if problem is not None:
            return f"it opened {account!r}: {problem}"
        if account in ledger.initial or account in seen:
            return f"it opened {account!r} twice or over an initial account"
        if not owner:
            return f"account {account!r} has no owner"
        if balance < 0:
            return f"the balance of {account!r} is below zero"
        seen.add(account)
        moved += balance
    if whole and moved != 0:
        return f"its balances sum to {ledger.total + moved}, not {ledger.total}"
    clients = [c.client_id for c in snapshot.clients]
    if len(clients) != len(set(clients)):
        return "its sessions hold a client twice"
    if len(clients) > ledger.sessions_max:
        return (
            f"it holds {len(clients)} sessions, more than client_sessions_max {ledger.sessions_max}"
        )
    return None
