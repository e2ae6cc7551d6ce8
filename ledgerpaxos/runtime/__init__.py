"""The trio host of the core: serve_replica(), peer links, timers, control.

    replica.py      Replica: the nursery of tasks around one core and its executor
    connections.py  accepted connections: routing frames in, the poller, replies out
    peers.py        PeerLink: the bounded outbox to one peer and the task dialing it
    tls_session.py  TlsSession: TLS over memory buffers, whoever moves the bytes
    network.py      the Network protocol and TcpNetwork
    control.py      answers to control requests, from Core.status()
    main.py         ledgerpaxos-replica: the process

May import: ledgerpaxos (core, host, storage, config, constants), wire, trio.
"""

from ledgerpaxos.runtime.network import Network, TcpNetwork
from ledgerpaxos.runtime.replica import Replica, RuntimeOptions, serve_replica

__all__ = ["Network", "Replica", "RuntimeOptions", "TcpNetwork", "serve_replica"]
