"""A replica wakes only when its core has a tick due (runtime/ticks.py).

The core side, that a tick said not to be due does nothing, is checked by
the simulator at every tick ("tick-due", sim/replica.py; its planted bug
sleeps-through-election in tests/test_sim_planted.py).
"""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from ledgerpaxos import constants
from ledgerpaxos.runtime.ticks import TickClock
from tests.conftest import Cluster

TICK_S = constants.tick_ms / 1000


def test_the_clock_gives_the_ticks_real_time_has_reached() -> None:
    clock = TickClock(100.0, TICK_S)
    assert clock.schedule(5) == pytest.approx(100.0 + 5 * TICK_S)
    assert clock.owed(100.0 + 3.4 * TICK_S, through_wake=False) == 3
    assert clock.owed(100.0 + 3.9 * TICK_S, through_wake=False) == 0  # given already
    assert clock.owed(clock.wake_at(), through_wake=True) == 2
    assert clock.given == 5 and clock.dropped == 0


def test_woken_at_its_deadline_the_task_gives_that_tick_whatever_the_rounding() -> None:
    # (0.1 + 8 * 0.01 - 0.1) / 0.01 is 7.999999999999998: without the slack
    # the task would be given tick 7, sleep until tick 8's deadline, already
    # past, and spin there (under trio's autojump clock, forever).
    clock = TickClock(0.1, 0.01)
    clock.schedule(8)
    assert clock.owed(clock.wake_at(), through_wake=True) == 8


def test_a_stall_past_the_wake_tick_is_dropped_not_replayed() -> None:
    # The loop could not run for a second; the tick task wakes first.
    clock = TickClock(100.0, TICK_S)
    clock.schedule(5)
    assert clock.owed(101.0, through_wake=True) == 5  # up to the due tick, once
    assert clock.dropped == 100 - 5
    clock.schedule(5)
    assert clock.owed(101.0 + 3 * TICK_S, through_wake=False) == 3  # time counts again


def test_after_a_stall_a_frame_stepped_first_comes_before_the_due_tick() -> None:
    clock = TickClock(100.0, TICK_S)
    clock.schedule(5)
    assert clock.owed(101.0, through_wake=False) == 4  # the frame sees the tick before
    assert clock.dropped == 100 - 4
    assert clock.owed(101.0, through_wake=True) == 0  # the task, woken too: not yet
    assert clock.owed(101.0 + TICK_S, through_wake=True) == 1  # the due tick, a tick later
    assert clock.given == 5


def test_a_step_moves_the_wake_to_the_tick_then_due_sooner_or_later() -> None:
    clock = TickClock(0.0, TICK_S)
    clock.schedule(5)
    assert clock.reschedule(5) is None  # the same tick: the sleep stands
    assert clock.reschedule(2) == pytest.approx(2 * TICK_S)
    assert clock.owed(1.5 * TICK_S, through_wake=False) == 1  # a step, before the wake
    assert clock.reschedule(6) == pytest.approx(7 * TICK_S)  # from the tick given, later
    assert clock.wake_tick == 7
    assert clock.reschedule(None) == float("inf")
    assert clock.wake_tick is None


async def test_an_idle_cluster_wakes_for_heartbeats_only_and_keeps_logical_time(
    cluster: Cluster, autojump_clock: object
) -> None:
    leader = await cluster.wait_for_leader()
    await trio.sleep(1)
    replicas = cluster.replicas.values()
    woke = {r.node_id: r.tick_wakeups for r in replicas}
    now = {r.node_id: r.core.now for r in replicas}
    await trio.sleep(5)
    ticks = 5 / TICK_S  # 500: what a ticker woke for
    heartbeats = 5 * 1000 / cluster.config.timers.heartbeat_ms  # 100
    for r in replicas:
        # The leader wakes for its heartbeats; a follower that hears them on
        # time, never: each one puts its wake off by a heartbeat and a tick.
        most = heartbeats + 5 if r.node_id == leader else 5
        assert r.tick_wakeups - woke[r.node_id] <= most, r.node_id
        # Every tick still happened, lazily, before each step and each wake.
        assert ticks - 6 <= r.core.now - now[r.node_id] <= ticks, r.node_id
    assert await cluster.wait_for_leader() == leader


async def test_after_the_loop_stalls_no_replica_counts_the_stall_toward_an_election(
    cluster: Cluster, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    leader = await cluster.wait_for_leader()
    ballot = cluster.replicas[leader].core.basic_status().ballot
    caplog.set_level(logging.INFO, logger="ledgerpaxos")
    # Three seconds pass while no task runs, ten times any election timeout:
    # every replica's logical time moves on by at most a heartbeat's ticks.
    autojump_clock.jump(3.0)
    await trio.sleep(1)
    assert not [r for r in caplog.records if "election timeout" in r.getMessage()]
    for r in cluster.replicas.values():
        status = r.core.basic_status()
        assert (status.leader, status.ballot) == (leader, ballot), r.node_id
