"""The protocol as a pure state machine: messages and ticks in, a Ready out.

    messages.py  frozen attrs messages, WAL records, snapshots
    replica.py   Core: step(), tick(), take_ready(), status() and the queries
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
