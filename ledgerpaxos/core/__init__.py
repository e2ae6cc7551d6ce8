"""The protocol as a pure state machine: messages and ticks in, a Ready out."""

from ledgerpaxos.core.ledger import Ledger
from ledgerpaxos.core.ready import Executed, Ready
from ledgerpaxos.core.replica import Core, Role
from ledgerpaxos.core.settings import CoreSettings

__all__ = ["Core", "CoreSettings", "Executed", "Ledger", "Ready", "Role"]
