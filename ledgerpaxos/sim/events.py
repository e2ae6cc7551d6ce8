"""One event queue under a virtual clock.

Time is an integer count of microseconds since the start of the run. Events at
the same time run in the order they were scheduled: a counter breaks ties, so
the heap never compares two callbacks and a run never depends on anything
but its seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

US_PER_MS = 1000


def ms(value: float) -> int:
    """Milliseconds as the queue's microseconds."""
    return round(value * US_PER_MS)


class EventQueue:
    def __init__(self) -> None:
        self.now = 0
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._counter = 0
        self.events_run = 0

    def at(self, time: int, action: Callable[..., None], *args: Any) -> None:
        assert time >= self.now, (time, self.now)
        self._counter += 1
        heapq.heappush(self._heap, (time, self._counter, action, args))

    def after(self, delay: int, action: Callable[..., None], *args: Any) -> None:
        self.at(self.now + max(0, delay), action, *args)

    def run_until(self, time: int, stop: Callable[[], bool] | None = None) -> None:
        """Run every event due before `time` (or until `stop()` says so), then
        set the clock to `time`."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] < time:
            when, _, action, args = pop(heap)
            self.now = when
            self.events_run += 1
            action(*args)
            if stop is not None and stop():
                return
        self.now = max(self.now, time)

    def __len__(self) -> int:
        return len(self._heap)
