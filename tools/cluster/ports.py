"""Ports for clusters started on the fly (tests, the benchmark), free of races.

A `PortReservation` asks the kernel for free ports on 127.0.0.1 (binding port
0) and keeps them bound for as long as the cluster lives, with SO_REUSEPORT
and without listening: no other program can take them, and a replica that
listens with SO_REUSEPORT (TcpNetwork's `reuse_port`; LEDGERPAXOS_REUSE_PORT=1
for a replica process, which Launcher(reserved=...) sets) binds the same
port and listens on it. Connections go only to a socket that listens, so while a
replica is down its port refuses connections, as if it were free, and a
restart finds it still there. (Picking a port that is free now and closing it
before the replica binds it is a race with every other program on the host.)

`unreserved_ports` is for a program that binds by itself and cannot share a
port (PySyncObj, in the benchmark's optional comparison): picked and freed,
with the race that implies.
"""

from __future__ import annotations

import random
import socket
from types import TracebackType

LOOPBACK = "127.0.0.1"


class PortReservation:
    def __init__(self, count: int, host: str = LOOPBACK) -> None:
        self.host = host
        self._sockets: list[socket.socket] = []
        try:
            for _ in range(count):
                reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._sockets.append(reserved)
                reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                reserved.bind((host, 0))
        except BaseException:
            self.close()
            raise
        self.ports = tuple(int(s.getsockname()[1]) for s in self._sockets)

    def close(self) -> None:
        """Give the ports back (once the cluster's processes are gone)."""
        for reserved in self._sockets:
            reserved.close()
        self._sockets = []

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def unreserved_ports(count: int) -> int:
    """A base port with `count` consecutive ports free right now (a race: see above)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                sockets.append(probe)
                probe.bind((LOOPBACK, port))
            return base
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
    raise RuntimeError(f"found no {count} free consecutive ports on {LOOPBACK}")
