"""The virtual network: per-message delay, loss, duplication and cut links.

Every message between two endpoints (replicas, or a client and a replica) goes
through `send()`, which asks the seed's random stream whether it is lost,
duplicated and how long each copy takes. Delays are drawn independently per
copy, so messages overtake each other. A cut link drops what is sent over it
and what was still in flight on it when it is delivered.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ledgerpaxos.sim.events import EventQueue
from ledgerpaxos.sim.plan import NetworkPlan

Deliver = Callable[[str, str, object], None]  # (to, sender, message)


class NetworkStats:
    def __init__(self) -> None:
        self.sent = 0
        self.delivered = 0
        self.lost = 0
        self.duplicated = 0
        self.cut = 0  # dropped by a partition


class VirtualNetwork:
    def __init__(
        self,
        queue: EventQueue,
        rng: random.Random,
        plan: NetworkPlan,
        deliver: Deliver,
        *,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.queue = queue
        self.rng = rng
        self.deliver = deliver
        self.loss = plan.loss
        self.duplication = plan.duplication
        self.delay_us_min = plan.delay_us_min
        self.delay_us_max = plan.delay_us_max
        self.spike_probability = plan.spike_probability
        self.spike_us_max = plan.spike_us_max
        self.blocked: set[tuple[str, str]] = set()  # (sender, receiver); membership only
        self.stats = NetworkStats()
        self.on_event = on_event  # trace hook for drops

    def heal(self) -> None:
        """No more loss, duplication, spikes or cut links; delays stay."""
        self.loss = 0.0
        self.duplication = 0.0
        self.spike_probability = 0.0
        self.blocked.clear()

    def _delay(self) -> int:
        rng = self.rng
        delay = rng.randint(self.delay_us_min, self.delay_us_max)
        if self.spike_probability and rng.random() < self.spike_probability:
            delay += rng.randint(0, self.spike_us_max)
        return delay

    def send(self, sender: str, to: str, message: object) -> None:
        stats = self.stats
        stats.sent += 1
        if (sender, to) in self.blocked:
            stats.cut += 1
            return
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            stats.lost += 1
            if self.on_event is not None:
                self.on_event(f"lost {sender}->{to}")
            return
        copies = 1
        if self.duplication and rng.random() < self.duplication:
            copies = 2
            stats.duplicated += 1
        for _ in range(copies):
            self.queue.after(self._delay(), self._arrive, sender, to, message)

    def _arrive(self, sender: str, to: str, message: object) -> None:
        if (sender, to) in self.blocked:
            self.stats.cut += 1
            return
        self.stats.delivered += 1
        self.deliver(to, sender, message)
