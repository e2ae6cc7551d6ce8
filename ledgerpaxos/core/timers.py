"""Logical time: the two kinds of clock the protocol reads, in ticks.

A `Deadline` is something that must happen by a tick (an election, a
heartbeat, a re-send, a catch-up retry); a `Stamp` is when something last
happened (the leader was heard, a peer answered, this replica began to lead).
Every comparison with `now` is one of the methods below, so each timer in
the core reads the same way.
"""

from __future__ import annotations

import attrs


@attrs.define
class Deadline:
    """Due at tick `due`; unarmed (None) it is never due."""

    due: int | None = None

    def arm(self, now: int, ticks: int) -> None:
        self.due = now + ticks

    def disarm(self) -> None:
        self.due = None

    @property
    def armed(self) -> bool:
        return self.due is not None

    def passed(self, now: int) -> bool:
        """Armed, and `now` has reached it."""
        return self.due is not None and now >= self.due

    def pending(self, now: int) -> bool:
        """Armed, and not yet reached: what it guards must still wait."""
        return self.due is not None and now < self.due

    def ticks_left(self, now: int) -> int | None:
        """Ticks from `now` until the tick at which it has passed (1 when it
        already has: the next tick sees it); None when unarmed."""
        return None if self.due is None else max(1, self.due - now)


@attrs.define
class Stamp:
    """The tick something last happened at; None: never."""

    at: int | None = None

    def mark(self, now: int) -> None:
        self.at = now

    def within(self, now: int, ticks: int) -> bool:
        """It happened at most `ticks` ticks ago."""
        return self.at is not None and now - self.at <= ticks

    def ticks_until_older(self, now: int, ticks: int) -> int | None:
        """Ticks from `now` until within(…, ticks) turns false; None when it
        already is (only a new mark changes it back)."""
        if not self.within(now, ticks):
            return None
        assert self.at is not None
        return self.at + ticks + 1 - now


def soonest(*ticks: int | None) -> int | None:
    """The nearest of several ticks_left()-like answers; None if all are None."""
    armed = [t for t in ticks if t is not None]
    return min(armed) if armed else None
