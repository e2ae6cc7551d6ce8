"""Figures of child processes, and stopping those of multiprocessing."""

from __future__ import annotations

import os
from typing import Any

_clock_ticks = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _clock_ticks


def _status_number(pid: int, field: bytes) -> int | None:
    """The first number of `field` in /proc/<pid>/status, None if unreadable."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wakeups(pid: int) -> int | None:
    """How often the process's main thread (a replica's trio loop) blocked and
    was woken again: its voluntary context switches (Linux /proc), None if
    unreadable. On a small machine each costs more than most steps."""
    return _status_number(pid, b"voluntary_ctxt_switches:")


def resident_bytes(pid: int) -> int | None:
    """A process's resident memory (VmRSS of Linux /proc), None if unreadable."""
    kib = _status_number(pid, b"VmRSS:")
    return None if kib is None else kib * 1024  # reported in kB


def stop_process(process: Any, grace_s: float) -> None:
    """Join a multiprocessing child: wait `grace_s`, then SIGTERM, then SIGKILL."""
    process.join(timeout=grace_s)
    if process.is_alive():
        process.terminate()
        process.join(timeout=grace_s)
    if process.is_alive():
        process.kill()
        process.join()
