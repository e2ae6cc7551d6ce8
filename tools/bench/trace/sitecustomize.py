"""Stamps every read, write and fsync of a replica process, for tools/bench/hops.py.

Not imported by anything: `ledgerpaxos-bench` puts this directory first on the
PYTHONPATH of the replicas it launches when LEDGERPAXOS_BENCH_TRACE names a
directory, and Python imports `sitecustomize` at start-up. A process started
with `--id N` and LEDGERPAXOS_TRACE_DIR set then writes `<dir>/<N>.log`, one
line per call: the time (`time.monotonic_ns()`, one clock for every process
on the machine), the call (read, write, fsync0 and fsync1 for its start and
end), the file descriptor and the bytes. `os.read`, `os.write`, `os.fsync`,
`os.fdatasync`, `socket.recv` and `socket.send` are wrapped: the replica's
poller reads and direct writes use the first two, its outbound peer links
the last two (through trio). A wrapper costs about a microsecond; a measuring
aid, never on in production.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

_DIRECTORY = os.environ.get("LEDGERPAXOS_TRACE_DIR")
_FLUSH_EVERY = 4096  # events held in memory between writes


def _install(directory: str, node: str) -> None:
    os.makedirs(directory, exist_ok=True)
    out = open(os.path.join(directory, f"{node}.log"), "w", encoding="ascii")  # noqa: SIM115
    events: list[tuple[int, str, int, int]] = []
    now = time.monotonic_ns

    def flush() -> None:
        out.write("".join(f"{t} {kind} {fd} {size}\n" for t, kind, fd, size in events))
        out.flush()
        events.clear()

    def log(kind: str, fd: int, size: int) -> None:
        events.append((now(), kind, fd, size))
        if len(events) >= _FLUSH_EVERY:
            flush()

    atexit.register(flush)
    read, write = os.read, os.write

    def traced_read(fd: int, n: int) -> bytes:
        data = read(fd, n)
        log("read", fd, len(data))
        return data

    def traced_write(fd: int, data: Any) -> int:
        written = write(fd, data)
        log("write", fd, written)
        return written

    def traced_sync(sync: Callable[[Any], None]) -> Callable[[Any], None]:
        def traced(fd: Any) -> None:
            log("fsync0", fd, 0)
            sync(fd)
            log("fsync1", fd, 0)

        return traced

    recv, send = socket.socket.recv, socket.socket.send

    def traced_recv(self: socket.socket, *args: Any) -> bytes:
        data = recv(self, *args)
        log("read", self.fileno(), len(data))
        return data

    def traced_send(self: socket.socket, *args: Any) -> int:
        sent = send(self, *args)
        log("write", self.fileno(), sent)
        return sent

    os.read, os.write = traced_read, traced_write
    os.fsync = traced_sync(os.fsync)  # type: ignore[assignment]
    os.fdatasync = traced_sync(os.fdatasync)  # type: ignore[assignment]
    socket.socket.recv = traced_recv  # type: ignore[method-assign,assignment]
    socket.socket.send = traced_send  # type: ignore[method-assign,assignment]


if _DIRECTORY and "--id" in sys.argv[:-1]:
    _install(_DIRECTORY, sys.argv[sys.argv.index("--id") + 1])
