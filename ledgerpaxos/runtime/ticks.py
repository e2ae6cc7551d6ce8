"""Logical time for a core that is not woken every tick.

The core counts time in ticks (constants.tick_ms) and says how many ticks
from now the first one that may do something is (Core.ticks_until_due). The
replica's tick task sleeps until then, but at most a heartbeat's ticks and
one, counted from the last tick given to the core: every step moves the wake
to what the core then says, sooner or later. So a leader wakes for its
heartbeats, 20 times a second instead of 100, and a follower that hears them
on time never wakes for a tick at all (the one tick more covers the part of a
tick already gone when a heartbeat is stepped). A wake-up of the loop costs a
few hundred microseconds of CPU on a small virtual machine
(docs/performance.md).

The ticks slept through still happen, lazily: before anything else is
stepped the replica gives the core every tick that real time has reached
(`owed`), so what a message arms or stamps counts from the right tick.

One difference from a ticker is kept on purpose: when the loop could not
run for a while (a stall: a long fsync, a GIL-bound thread, SIGSTOP), real
time past the tick the task was to wake at is dropped, not replayed, as a
ticker drops the ticks it could not deliver. Otherwise a replica that
stalled would, on waking, count the whole stall toward its election
timeout before reading the heartbeats waiting in its sockets, and stand for
no reason. A frame stepped first after a stall sees the tick just before
the due one, which comes a tick later; else the tick task gives it. As the task
sleeps at most a heartbeat's ticks and one past the last tick given, a stall
moves logical time on by at most that many (a ticker: by one), less than any
election timeout (the one more only where it stays below: runtime/replica.py).
"""

from __future__ import annotations

import math

_slack_ticks = 1e-7  # 1 ns at 10 ms ticks


class TickClock:
    """Which tick real time has reached, for one core (a new core: a new clock)."""

    def __init__(self, now_s: float, tick_s: float) -> None:
        self.tick_s = tick_s
        self._origin_s = now_s  # the real time of tick 0, moved on by dropped stalls
        self.given = 0  # ticks given to the core so far (its `now`)
        # The tick the tick task sleeps until (None: none is due, it sleeps on).
        self.wake_tick: int | None = None
        self.dropped = 0  # ticks of stalls dropped (for tests and logs)

    def owed(self, now_s: float, *, through_wake: bool) -> int:
        """How many ticks to give the core before stepping anything at
        `now_s`; they count as given. `through_wake`: for the tick task
        itself, which gives the tick it woke for; anything else stops just
        before it, and real time beyond is a stall, dropped."""
        # A tick's own deadline reaches it whatever the rounding (else the
        # task would sleep until the same deadline, in the past, again and
        # again): a nanosecond of slack.
        reached = int((now_s - self._origin_s) / self.tick_s + _slack_ticks)
        if self.wake_tick is not None:
            limit = self.wake_tick if through_wake else self.wake_tick - 1
            if reached > limit:
                self._origin_s += (reached - limit) * self.tick_s
                self.dropped += reached - limit
                reached = limit
        owed = max(0, reached - self.given)
        self.given += owed
        return owed

    def schedule(self, due: int | None) -> float:
        """Sleep until `due` ticks from the last one given (Core.ticks_until_due);
        the real time to wake at (inf: none due)."""
        self.wake_tick = None if due is None else self.given + due
        return self.wake_at()

    def reschedule(self, due: int | None) -> float | None:
        """After a step: sleep until `due` ticks from the last one given
        instead, sooner or later; the new time to wake at, None when the
        tick slept until stays the same."""
        tick = None if due is None else self.given + due
        if tick == self.wake_tick:
            return None
        self.wake_tick = tick
        return self.wake_at()

    def wake_at(self) -> float:
        if self.wake_tick is None:
            return math.inf
        return self._origin_s + self.wake_tick * self.tick_s
