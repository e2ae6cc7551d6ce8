"""Majorities: every count of votes, promises and acknowledgements in the core.

Paxos is safe because any two majorities of the configuration intersect, so
all the core's counting goes through one `Quorum`: pre-votes, promises,
Accepted votes, a leader's check that it still hears a majority, and the
checkpoint a majority holds (below which the log may be purged).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import attrs


@attrs.frozen
class Quorum:
    replicas: int

    @property
    def majority(self) -> int:
        return self.replicas // 2 + 1

    def reached(self, voters: Collection[str]) -> bool:
        """These distinct nodes (this replica among them if it votes) are a majority."""
        return len(voters) >= self.majority

    def held_by_majority(self, values: Iterable[int]) -> int | None:
        """The highest value that a majority hold at least, given one value per
        replica heard from (this replica's own among them); None while fewer
        than a majority have reported."""
        held = sorted(values, reverse=True)
        if len(held) < self.majority:
            return None
        return held[self.majority - 1]
