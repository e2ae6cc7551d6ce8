"""Deterministic simulation of a ledgerpaxos cluster.

The real core (ledgerpaxos/core) and the real storage code (ledgerpaxos/storage,
on an in-memory disk) run under one event queue and a virtual clock, with a
virtual network, fault injection, workload clients, safety and liveness
checkers and coverage marks. A seed decides everything; the same seed gives
the same run, also under another PYTHONHASHSEED.

    events.py    the event queue and virtual clock
    plan.py      what a seed draws before the run: fault rates, workload, timings
    network.py   delay, loss, duplication, reordering, cut links
    disk.py      the in-memory file system with crash semantics (torn writes)
    codec.py     the wire codec, memoized for the run
    replica.py   one replica process: core + store on the disk, the Ready executor
                 (ledgerpaxos/host) with the virtual network and disk latency
    clients.py   workload clients that retry
    faults.py    crashes, leader kills, partitions, pauses; at most f at once
    checkers.py  safety (throughout) and the reference replay
    coverage.py  the coverage marks
    planted.py   known bugs planted to prove the checkers bite
    harness.py   one run: Simulation, run_seed(), SimResult
    batch.py     many seeds on several processes, the summary
    trace.py     the event trace and its hash

The console entry is tools/sim.py (`ledgerpaxos-sim`).
"""

from ledgerpaxos.sim.harness import SimResult, Simulation, run_seed

__all__ = ["SimResult", "Simulation", "run_seed"]
