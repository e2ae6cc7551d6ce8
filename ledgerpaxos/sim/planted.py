"""Known bugs, planted through the harness to prove each check of the simulator bites.

None of this is in a shipped code path. Each bug is a subclass of the real
Core that overrides one of its extension points (`is_chosen`,
`values_to_adopt`, `adopt_snapshot`, `ledger_class`), or of the Ready
executor (`begin`, `send`, `finish`), and names the one property whose check
must catch it (`caught_by`). tests/test_sim_planted.py pins a seed for each
where that check catches it, and shows that with the check disabled it does
not; `ledgerpaxos-sim --planted NAME --seeds N` runs one from the console.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ledgerpaxos.core import Core, Ledger, Ready, Role
from ledgerpaxos.core.ledger import REASON_INSUFFICIENT, SnapshotView, state_digest
from ledgerpaxos.core.messages import (
    NOOP,
    Ballot,
    CatchupRequest,
    Command,
    HeartbeatAck,
    LogEntry,
    Promise,
    Snapshot,
    Transfer,
    TransferResult,
)
from ledgerpaxos.host import ReadyExecutor
from ledgerpaxos.host.executor import Outgoing


class QuorumOneShortCore(Core):
    """Decides a slot with one Accepted fewer than a majority."""

    def is_chosen(self, slot: int, voters: set[str]) -> bool:
        return len(voters) >= self.quorum.majority - 1


class SleepsThroughElectionCore(Core):
    """Says no tick is due while it follows: a host that slept on it would
    never stand for election when its leader goes silent."""

    def ticks_until_due(self) -> int | None:
        if self.role is Role.follower:
            return None
        return super().ticks_until_due()


class PromiseBeforeFsyncExecutor(ReadyExecutor[str]):
    """Sends Promises as soon as the core hands them out, before the fsync of
    the PromiseRecord (the contract's order is persist, then speak)."""

    def begin(self, ready: Ready) -> bool:
        early = [(to, m) for to, m in ready.send if isinstance(m, Promise)]
        ready.send = [(to, m) for to, m in ready.send if not isinstance(m, Promise)]
        if early:
            self.send(early)
        return super().begin(ready)


class IgnoresHighestBallotCore(Core):
    """A new leader that trusts its own log: for every open slot it re-proposes
    its own accepted value, or a no-op where it has none, and never adopts the
    highest-ballot value the promises report."""

    def values_to_adopt(self, promises: Mapping[str, Promise], start: int) -> dict[int, LogEntry]:
        noop = LogEntry(slot=0, ballot=Ballot.zero(), batch=NOOP)
        return {
            e.slot: self.log.get(e.slot) or attrs.evolve(noop, slot=e.slot)
            for p in promises.values()
            for e in p.entries
            if e.slot > start
        }


class LowestBallotWinsCore(Core):
    """A new leader that takes, per slot, the value of the *lowest* ballot among
    the promises instead of the highest (an inverted comparison).

    It matters only when two ballots left different values in one slot that is
    still open at an election and the higher one was chosen. This core's
    pre-vote, its "own decided values win" rule and prompt catch-up make that
    rare; most seeds that reach it have a follower that decided the slot
    refuse the other value with an alarm (`core-alarm`) before any replica
    executes it; seed 1453 (5 replicas) is the first the agreement check
    catches. A fault schedule aimed at dueling leaders would reach it sooner."""

    def values_to_adopt(self, promises: Mapping[str, Promise], start: int) -> dict[int, LogEntry]:
        lowest: dict[int, LogEntry] = {}
        for promise in promises.values():
            for entry in promise.entries:
                if entry.slot > start and (
                    entry.slot not in lowest or entry.ballot < lowest[entry.slot].ballot
                ):
                    lowest[entry.slot] = entry
        return lowest


class StaleClientTableCore(Core):
    """Installs a checkpoint's balances but keeps its own old client table."""

    def adopt_snapshot(self, snapshot: Snapshot, *, source: str | None) -> None:
        stale = self.ledger.clients
        super().adopt_snapshot(snapshot, source=source)
        if source is not None:
            self.ledger.clients = stale


# ---------------------------------------------------------------- the ledger


class ExecutesDuplicatesLedger(Ledger):
    """Forgets that a request was executed: a retry is applied again."""

    def is_duplicate(self, command: Command) -> bool:
        return False


class ExecutesDuplicatesCore(Core):
    ledger_class = ExecutesDuplicatesLedger


class RejectedStillAppliedLedger(Ledger):
    """Answers "insufficient funds" and moves the money anyway."""

    def _transfer(self, transfer: Transfer, client_id: str) -> TransferResult:
        result = super()._transfer(transfer, client_id)
        if result.reason == REASON_INSUFFICIENT:
            moves = ((transfer.sender, -transfer.amount), (transfer.receiver, transfer.amount))
            for account, change in moves:
                self.balances[account] = (self.balance(account) or 0) + change
                self._changed[account] = self._changed.get(account, 0) + change
        return result


class RejectedStillAppliedCore(Core):
    ledger_class = RejectedStillAppliedLedger


class DebitsShortLedger(Ledger):
    """Debits one less than it credits (an off-by-one in the amount)."""

    def _transfer(self, transfer: Transfer, client_id: str) -> TransferResult:
        result = super()._transfer(transfer, client_id)
        if result.ok and transfer.amount > 1:
            self.balances[transfer.sender] += 1
        return result


class DebitsShortCore(Core):
    ledger_class = DebitsShortLedger


class ViewWithoutClients(SnapshotView):
    def build(self) -> Snapshot:
        taken = attrs.evolve(super().build(), clients=())
        return attrs.evolve(taken, digest=state_digest(taken, self._initial_balance))


class CheckpointWithoutClientsLedger(Ledger):
    """Takes checkpoints of the balances only: the client table is left out
    (with a digest to match, so an install verifies)."""

    view_class = ViewWithoutClients


class NaiveRejoinCore(Core):
    """A replica that lost its disk votes at once (what ledgerpaxos did before
    --recover): it may break a promise it forgot, or leave out of its promises
    a value chosen with its vote."""

    def __init__(self, *args: Any, rejoining: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, rejoining=False, **kwargs)


class CheckpointWithoutClientsCore(Core):
    ledger_class = CheckpointWithoutClientsLedger


# ---------------------------------------------------------------- the host


class WrongDigestReportedExecutor(ReadyExecutor[str]):
    """Reports a checkpoint digest that is not the replica's in HeartbeatAcks
    (a host that garbles one field of a message on its way out)."""

    def send(self, messages: Outgoing) -> None:
        super().send(
            [
                (to, attrs.evolve(m, checkpoint_digest=bytes(32)))
                if isinstance(m, HeartbeatAck) and m.checkpoint_slot > 0
                else (to, m)
                for to, m in messages
            ]
        )


class NoCatchupExecutor(ReadyExecutor[str]):
    """Never sends a catch-up request: a replica that fell behind stays behind."""

    def send(self, messages: Outgoing) -> None:
        super().send([(to, m) for to, m in messages if not isinstance(m, CatchupRequest)])


class SwappedRepliesExecutor(ReadyExecutor[str]):
    """Hands each client the outcome meant for the next reply of the same
    Ready (a host that zips replies with the wrong list)."""

    def finish(self, ready: Ready) -> None:
        replies = ready.replies
        if len(replies) > 1:
            outcomes = [r.outcome for r in replies]
            ready.replies = [
                attrs.evolve(r, outcome=o)
                for r, o in zip(replies, outcomes[1:] + outcomes[:1], strict=True)
            ]
        super().finish(ready)


@attrs.frozen
class PlantedBug:
    description: str
    caught_by: str  # the property (checkers.PROPERTIES) whose check must catch it
    core_class: type[Core] = Core
    executor_class: type[ReadyExecutor[str]] = ReadyExecutor


PLANTED: dict[str, PlantedBug] = {
    "quorum-one-short": PlantedBug(
        "a slot is decided with one Accepted fewer than a majority",
        "agreement",
        core_class=QuorumOneShortCore,
    ),
    "promise-before-fsync": PlantedBug(
        "a Promise is sent before its PromiseRecord is fsynced",
        "persist-before-speak",
        executor_class=PromiseBeforeFsyncExecutor,
    ),
    "ignores-highest-ballot": PlantedBug(
        "a new leader re-proposes its own log and does not adopt the highest-ballot values",
        "agreement",
        core_class=IgnoresHighestBallotCore,
    ),
    "lowest-ballot-wins": PlantedBug(
        "a new leader adopts the lowest-ballot value of a slot, not the highest",
        "agreement",
        core_class=LowestBallotWinsCore,
    ),
    "stale-client-table": PlantedBug(
        "installing a checkpoint does not restore the client table",
        "replay",
        core_class=StaleClientTableCore,
    ),
    "executes-duplicates": PlantedBug(
        "the ledger forgets executed requests: a retry is applied again",
        "exactly-once",
        core_class=ExecutesDuplicatesCore,
    ),
    "rejected-still-applied": PlantedBug(
        "a transfer refused for insufficient funds moves the money anyway",
        "no-overdraft",
        core_class=RejectedStillAppliedCore,
    ),
    "debits-short": PlantedBug(
        "a transfer debits one less than it credits",
        "conservation",
        core_class=DebitsShortCore,
    ),
    "checkpoint-without-clients": PlantedBug(
        "checkpoints leave out the client table",
        "checkpoint",
        core_class=CheckpointWithoutClientsCore,
    ),
    "wrong-digest-reported": PlantedBug(
        "a follower reports a checkpoint digest that is not its own",
        "core-alarm",
        executor_class=WrongDigestReportedExecutor,
    ),
    "no-catch-up": PlantedBug(
        "catch-up requests are never sent",
        "liveness",
        executor_class=NoCatchupExecutor,
    ),
    "naive-rejoin": PlantedBug(
        "a replica restarted on a lost disk votes at once instead of rejoining",
        "agreement",
        core_class=NaiveRejoinCore,
    ),
    "sleeps-through-election": PlantedBug(
        "a follower says no tick is due, so a host that slept on it would never stand",
        "tick-due",
        core_class=SleepsThroughElectionCore,
    ),
    "swapped-replies": PlantedBug(
        "replies of one Ready carry each other's outcomes",
        "reply",
        executor_class=SwappedRepliesExecutor,
    ),
}
