"""The protocol as a pure state machine: messages and ticks in, a Ready out."""

from ledgerpaxos.core.ledger import Ledger
from ledgerpaxos.core.ready import Executed, Ready
from ledgerpaxos.core.replica import Core
from ledgerpaxos.core.settings import CoreSettings
from ledgerpaxos.core.status import Phase, Role, SlotView, Status

__all__ = [
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
