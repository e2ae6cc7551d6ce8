"""Replica processes for the benchmark: launched fresh, measured, always stopped.

    with LaunchedCluster(replicas=5, accounts=1000) as cluster:   # temp dir, free ports
        cluster.start()                     # python -m ledgerpaxos.runtime.main per node
        ...                                 # cluster.config, cluster.config_path, cluster.pids
    # every process stopped: SIGTERM, then SIGKILL after a grace period

Each replica runs with fsync on, a fresh data directory under a temporary
directory (removed afterwards) and its log in `<tmp>/logs/<id>.log`. On Linux
each child asks the kernel for SIGKILL when the thread that started it dies
(prctl PR_SET_PDEATHSIG), so even a `kill -9` of the benchmark leaves no
replica behind; `stop()` (also run on Ctrl-C and on errors) covers the rest.

`cpu_seconds(pid)` reads user + system time from /proc/<pid>/stat.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from ledgerpaxos.config import Config, make_local_config, write_config
from tools.ports import free_base_port

REPO = Path(__file__).resolve().parent.parent

stop_grace_s = 5.0
_PR_SET_PDEATHSIG = 1
_clock_ticks = os.sysconf("SC_CLK_TCK")


def account_names(count: int) -> list[str]:
    """The benchmark's accounts: a0000, a0001, ..."""
    width = max(4, len(str(count - 1)))
    return [f"a{i:0{width}d}" for i in range(count)]


def initial_balance_for(accounts: int) -> int:
    """Large enough that random transfers of 1-100 are almost never refused."""
    return 10**12 // max(1, accounts)


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


def stop_process(process: Any, grace_s: float) -> None:
    """Join a multiprocessing child: wait `grace_s`, then SIGTERM, then SIGKILL."""
    process.join(timeout=grace_s)
    if process.is_alive():
        process.terminate()
        process.join(timeout=grace_s)
    if process.is_alive():
        process.kill()
        process.join()


def _parent_death_signal() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return preexec


class LaunchedCluster:
    """N replica processes on 127.0.0.1 with fresh data, fsync on."""

    def __init__(
        self,
        *,
        replicas: int,
        accounts: int,
        overrides: dict[str, Any] | None = None,
        keep_dir: bool = False,
    ) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="ledgerpaxos-bench-"))
        self.keep_dir = keep_dir
        try:
            self.config: Config = make_local_config(
                replicas,
                free_base_port(replicas),
                self.directory / "data",
                **{
                    "accounts": account_names(accounts),
                    "initial_balance": initial_balance_for(accounts),
                    "fsync": True,
                    **(overrides or {}),
                },
            )
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.config_path = self.directory / "cluster.toml"
        write_config(self.config, self.config_path)
        self.logs = self.directory / "logs"
        self.logs.mkdir()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> LaunchedCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        if not self.keep_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def pids(self) -> dict[str, int]:
        return {node_id: process.pid for node_id, process in self.processes.items()}

    def start(self) -> None:
        python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": python_path}
        preexec = _parent_death_signal()
        for node_id in self.config.node_ids:
            with open(self.logs / f"{node_id}.log", "ab") as log:
                self.processes[node_id] = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "ledgerpaxos.runtime.main",
                        "--id",
                        node_id,
                        "--config",
                        str(self.config_path),
                        "--log-level",
                        "WARNING",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=self.directory,
                    start_new_session=True,  # Ctrl-C reaches the benchmark, which stops them
                    preexec_fn=preexec,
                )

    def exited(self) -> dict[str, int]:
        """Replicas that have ended, with their exit status."""
        return {
            node_id: code
            for node_id, process in self.processes.items()
            if (code := process.poll()) is not None
        }

    def log_tail(self, node_id: str, lines: int = 8) -> str:
        try:
            text = (self.logs / f"{node_id}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM every replica, SIGKILL what is left after the grace period."""
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            try:
                process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in running:
            try:
                process.wait(timeout=stop_grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
