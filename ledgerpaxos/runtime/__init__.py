"""The trio runtime: serve_replica(), peer links, timers, the control endpoint."""

from ledgerpaxos.runtime.network import Network, TcpNetwork
from ledgerpaxos.runtime.replica import Replica, RuntimeOptions, serve_replica

__all__ = ["Network", "Replica", "RuntimeOptions", "TcpNetwork", "serve_replica"]
