"""What every host of the core shares: the one executor of the Ready contract.

    executor.py  ReadyExecutor: a Ready carried out in the order of core/ready.py,
                 persist before you speak checked on every message (DurableAudit)
    waiters.py   Waiters: who waits on which request, bounded

A host (ledgerpaxos/runtime: trio and TCP; ledgerpaxos/sim: virtual time;
ledgerpaxos/testing: the tests' in-process cluster) plugs in its Storage and
Transport and decides only when the slow part, make_durable(), runs.

May import: ledgerpaxos.core, ledgerpaxos.storage (for Recovered and its
fold), the standard library. Never trio, sockets or a clock.
"""

from ledgerpaxos.host.executor import (
    DurableAudit,
    ReadyExecutor,
    Storage,
    Transport,
    UnpersistedSend,
)
from ledgerpaxos.host.waiters import Waiters

__all__ = [
    "DurableAudit",
    "ReadyExecutor",
    "Storage",
    "Transport",
    "UnpersistedSend",
    "Waiters",
]
