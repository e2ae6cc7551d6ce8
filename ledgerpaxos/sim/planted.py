"""Known protocol bugs, planted through the harness to prove the checkers bite.

None of this is in a shipped code path: each bug is a subclass of the real
Core that overrides one of its extension points (`is_chosen`,
`values_to_adopt`, `adopt_snapshot`), or of the Ready executor (`begin`). The
tests in tests/test_sim_planted.py run seeds with each one until a checker
catches it, and fail if none does within a bounded number of seeds (a few
hundred for lowest-ballot-wins, which needs two ballots' values in one open slot);
`ledgerpaxos-sim --planted NAME --seeds N` does the same from the console.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ledgerpaxos.core import Core, Ready
from ledgerpaxos.core.messages import NOOP, Ballot, LogEntry, Promise, Snapshot
from ledgerpaxos.host import ReadyExecutor


class QuorumOneShortCore(Core):
    """Decides a slot with one Accepted fewer than a majority."""

    def is_chosen(self, slot: int, voters: set[str]) -> bool:
        return len(voters) >= self.quorum.majority - 1


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
    rare; it is caught mostly by a follower that had already decided the slot
    (the core asserts a decided value never changes: `core-invariant`), within
    the bound in tests/test_sim_planted.py. A fault schedule aimed at dueling
    leaders would catch it sooner."""

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


@attrs.frozen
class PlantedBug:
    description: str
    core_class: type[Core] = Core
    executor_class: type[ReadyExecutor[str]] = ReadyExecutor


PLANTED: dict[str, PlantedBug] = {
    "quorum-one-short": PlantedBug(
        "a slot is decided with one Accepted fewer than a majority",
        core_class=QuorumOneShortCore,
    ),
    "promise-before-fsync": PlantedBug(
        "a Promise is sent before its PromiseRecord is fsynced",
        executor_class=PromiseBeforeFsyncExecutor,
    ),
    "ignores-highest-ballot": PlantedBug(
        "a new leader re-proposes its own log and does not adopt the highest-ballot values",
        core_class=IgnoresHighestBallotCore,
    ),
    "lowest-ballot-wins": PlantedBug(
        "a new leader adopts the lowest-ballot value of a slot, not the highest",
        core_class=LowestBallotWinsCore,
    ),
    "stale-client-table": PlantedBug(
        "installing a checkpoint does not restore the client table",
        core_class=StaleClientTableCore,
    ),
}
