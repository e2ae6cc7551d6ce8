"""ledgerpaxos: a replicated banking ledger agreed on with stable-leader Multi-Paxos.

    config = ledgerpaxos.load_config("configs/cluster.toml")
    async with ledgerpaxos.open_client(config, client_id="A") as client:
        reply = await client.transfer("A", "B", 3)

The names below load on first use, so importing `ledgerpaxos.core` (pure, for
the simulator) does not pull in trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledgerpaxos.client import Client, ClientTimeout, TransferReply, open_client
    from ledgerpaxos.config import ConfigError, load_config

_EXPORTS = {
    "Client": "ledgerpaxos.client",
    "ClientTimeout": "ledgerpaxos.client",
    "TransferReply": "ledgerpaxos.client",
    "open_client": "ledgerpaxos.client",
    "ConfigError": "ledgerpaxos.config",
    "load_config": "ledgerpaxos.config",
}

__all__ = [
    "Client",
    "ClientTimeout",
    "ConfigError",
    "TransferReply",
    "load_config",
    "open_client",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ledgerpaxos' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
