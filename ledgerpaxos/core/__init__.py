"""The protocol as a pure state machine: messages and ticks in, a Ready out.

    messages.py  frozen attrs messages, WAL records, snapshots
    replica.py   Core: step() dispatching by role, tick(), take_ready(), status(),
                 the queries and the extension points planted bugs override
    election.py  phase 1: pre-votes, Prepare/Promise, changes of view
    leading.py   phase 2 at the leader: batching, pipelining, votes, heartbeats
    following.py phase 2 at a follower: accepting, learning the commit point
    catchup.py   fetching decided slots or a checkpoint from a peer
    execution.py applying decided slots, checkpoints, purging the log
    clients.py   duplicates and replies to clients, at any replica
    validation.py what a peer message must be before the core acts on it
    quorum.py    every majority count
    timers.py    Deadline and Stamp: every comparison with logical time
    status.py    Status, Role, Phase, SlotView: what the outside may read
    ready.py     the Ready contract: what to persist, send and reply, in order
    ledger.py    the bank: transfers, the client table, the state digest
    settings.py  CoreSettings: the numbers a core runs with, in ticks

May import: ledgerpaxos.constants, attrs, the standard library. Never trio,
sockets, files, clocks or unseeded randomness.
"""

from ledgerpaxos.core.ledger import Ledger
from ledgerpaxos.core.ready import Executed, Ready
from ledgerpaxos.core.replica import Core
from ledgerpaxos.core.settings import CoreSettings
from ledgerpaxos.core.status import BasicStatus, Phase, Role, SlotView, Status

__all__ = [
    "BasicStatus",
    "Core",
    "CoreSettings",
    "Executed",
    "Ledger",
    "Phase",
    "Ready",
    "Role",
    "SlotView",
    "Status",
]
