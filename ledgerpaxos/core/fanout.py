"""Which followers a leader's Accept goes to at once, and when the others get it.

A slot is decided once a majority holds it, so the leader sends each new
Accept at once only to as many followers as that takes (`fast`): with 5
replicas, 2 of the 4. The others (lazy) get the slots they have not been
sent yet together, in slot order, in one AcceptMany: before every regular
heartbeat, and as soon as the oldest undecided slot has waited
`accept_stall_ticks` (a fast follower is slow, down or refuses). Every
follower still gets every slot, in fewer and larger rounds: one wake-up,
read, fsync, frame, leader gate and vote (AcceptedMany) for many slots
instead of one each. On a machine where the replicas share the CPUs, the work of
every slot on every follower is what limits one client's round trip and many
clients' throughput (docs/performance.md).

The fast followers are those whose votes decided the last slot: the first
to answer. When one of them stops answering, the slot waits, everyone gets
it, and whoever answers first decides it and is fast from then on. A
follower that forwarded a command in a slot gets that slot at once too: its
client waits on it.

Safety does not depend on any of this: a slot is decided by the same
majority of votes whoever was asked (core/quorum.py). `CoreSettings.
accepts_to_quorum` False sends every Accept to every follower at once.

State on the `Core` (leader only, reset with each ballot): `fast` (peers),
`sent_through` (per peer: every slot up to it was sent in this ballot),
`proposed_at` (undecided slot -> the tick it was proposed), `forwarded`
(pending command -> the peer that forwarded it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from ledgerpaxos import constants
from ledgerpaxos.core import execution
from ledgerpaxos.core.messages import Accept, AcceptMany, Batch, LogEntry

if TYPE_CHECKING:
    from ledgerpaxos.core.replica import Core


def begin(core: Core, first: Iterable[str], sent_through: int) -> None:
    """A new ballot: every peer was sent every slot up to `sent_through` (the
    NewView); the first to be fast are taken from `first` (who promised)."""
    core.sent_through = dict.fromkeys(core.peers, sent_through)
    core.proposed_at = dict.fromkeys(core.votes, core.now)  # re-proposed by the NewView
    core.forwarded = {}
    keep = core.quorum.majority - 1
    chosen = [p for p in first if p in core.sent_through][:keep]
    chosen += [p for p in core.peers if p not in chosen][: keep - len(chosen)]
    core.fast = frozenset(chosen)


def end(core: Core) -> None:
    """No longer the leader."""
    core.proposed_at = {}
    core.forwarded = {}


def proposed(core: Core, slot: int, accept: Accept) -> None:
    """Send the Accept of the new `slot` to the fast followers and to whoever
    forwarded one of its commands; the others wait (`send_backlogs`)."""
    core.proposed_at[slot] = core.now
    now = set(core.peers) if not core.s.accepts_to_quorum else set(core.fast)
    for command in accept.batch:
        forwarder = core.forwarded.pop(command.key, None)
        if forwarder is not None:
            now.add(forwarder)
    for peer in core.peers:
        if peer not in now:
            continue
        if core.sent_through[peer] == slot - 1:
            # Early (ready.py): take_ready() moves them behind the persist when
            # this Ready also holds the promise of our ballot.
            core.ready.send_early.append((peer, accept))
            core.sent_through[peer] = slot
        else:
            send_backlog(core, peer)  # in slot order, this one last


def decided(core: Core, slot: int, voters: Collection[str]) -> None:
    """The votes that decided `slot` name the fastest followers."""
    core.proposed_at.pop(slot, None)
    fast = frozenset(voters) - {core.me}
    if len(fast) == core.quorum.majority - 1:
        core.fast = fast


def stalled(core: Core) -> bool:
    """The oldest undecided slot has waited long enough for the lazy followers."""
    wait = _ticks_until_stalled(core)
    return wait is not None and wait <= 0


def ticks_until_due(core: Core) -> int | None:
    """When tick() must send the backlogs because a slot waits (leading.ticks_until_due)."""
    wait = _ticks_until_stalled(core)
    return None if wait is None else max(1, wait)


def _ticks_until_stalled(core: Core) -> int | None:
    if not core.votes or not any(_behind(core, p) for p in core.peers):
        return None
    oldest = next(iter(core.votes))  # slots enter `votes` in slot order
    return core.proposed_at.get(oldest, core.now) + constants.accept_stall_ticks - core.now


def send_backlogs(core: Core) -> None:
    for peer in core.peers:
        send_backlog(core, peer)


def current(core: Core) -> list[str]:
    """The peers that were sent every slot up to the commit point: a commit
    announcement to any other would name slots it cannot have."""
    return [p for p in core.peers if core.sent_through[p] >= core.commit_slot]


def _behind(core: Core, peer: str) -> bool:
    return core.sent_through[peer] < core.next_slot - 1


def send_backlog(core: Core, peer: str) -> None:
    """Every slot `peer` was not sent yet, in slot order: as one Accept when
    it is one slot, else in AcceptMany messages (of at most
    accept_many_slots_max slots, closed once they hold a full slot's
    transfers), so that the follower gates, votes and learns the commit point
    once for many slots. Each message announces the commit point only as far
    as its own last slot, so that the follower, which gets them one after the
    other, can always apply it to slots it already holds (a point past them
    would send it to catch-up)."""
    entries: list[LogEntry] = []
    transfers = 0
    for slot in range(core.sent_through[peer] + 1, core.next_slot):
        entry = core.log.get(slot)
        if entry is None or entry.ballot != core.ballot:
            continue  # purged meanwhile: the follower fetches it by catch-up
        entries.append(entry)
        transfers += entry.transfers
        if (
            len(entries) >= constants.accept_many_slots_max
            or transfers >= constants.batch_transfers_max
        ):
            _send_entries(core, peer, entries)
            entries, transfers = [], 0
    if entries:
        _send_entries(core, peer, entries)
    core.sent_through[peer] = core.next_slot - 1


def _send_entries(core: Core, peer: str, entries: list[LogEntry]) -> None:
    upto = min(core.commit_slot, entries[-1].slot)
    chain = execution.chain_at(core, upto)
    if chain is None:
        return  # below what this leader holds chains for: purged, as above
    if len(entries) == 1:
        core.send(peer, accept(core, entries[0].slot, entries[0].batch, upto, chain))
        return
    many = AcceptMany(
        ballot=core.ballot,
        entries=tuple(entries),
        commit_slot=upto,
        commit_chain=chain,
        purge_slot=_purge_point(core, upto),
    )
    core.send(peer, many)


def accept(core: Core, slot: int, batch: Batch, commit_slot: int, chain: bytes) -> Accept:
    """Our Accept of `slot`, announcing the commit point `commit_slot` (whose
    chain digest is `chain`) and the purge point, never above it."""
    return Accept(
        ballot=core.ballot,
        slot=slot,
        batch=batch,
        commit_slot=commit_slot,
        commit_chain=chain,
        purge_slot=_purge_point(core, commit_slot),
    )


def _purge_point(core: Core, commit_slot: int) -> int:
    """The purge point a proposal announcing `commit_slot` names: never above
    it (core/validation.py refuses that)."""
    return min(core.purge_slot, commit_slot)
