"""Starts the replicas of a config as child processes, and owns them: the one
launcher of the shell's --launch, the benchmark and the process tests.

    launcher = Launcher(config, config_path)
    launcher.prepare(keep_data=False)       # wipe data/<id>/ and logs/<id>.log
    launcher.check_ports_free()             # LaunchError naming node and port
    for node_id in config.node_ids:
        launcher.start(node_id)             # logs/<id>.log
    await wait_until_answering(launcher, config.node_ids)   # (trio) every one pings back
    launcher.crash("n2")                    # SIGKILL: a real crash
    launcher.start("n2")                    # again, on the same data directory
    launcher.stop_all()                     # SIGTERM, then SIGKILL after a grace period

Every child runs `python -m ledgerpaxos.runtime.main --id <id> --config <path>` with
the same interpreter and the same `ledgerpaxos` package as its parent, in the
parent's working directory unless `cwd` says otherwise (a relative `data_dir` means
the same directory to both), in a session of its own (Ctrl-C at the shell prompt
does not reach the replicas; the parent stops them).

Replicas never outlive their parent. On Linux each child asks the kernel for SIGKILL
when its parent dies (prctl PR_SET_PDEATHSIG), which covers a `kill -9` of the
parent; `stop_all` covers every orderly exit. The kernel ties that signal to the
*thread* that started the child, so call `start` from a thread that lives as long
as the parent (the shell and the benchmark use their main thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import trio

import ledgerpaxos
from ledgerpaxos.client import ClientTimeout, control
from ledgerpaxos.config import Config
from ledgerpaxos.core.messages import ControlOp
from ledgerpaxos.runtime.network import REUSE_PORT_VARIABLE, Network, reuse_port_wanted
from ledgerpaxos.storage import identity
from tools.cluster.ports import PortReservation

log = logging.getLogger("ledgerpaxos.launcher")

startup_timeout_s = 20.0  # for every replica to answer a ping after start
ping_timeout_s = 1.0
ping_poll_s = 0.1
stop_grace_s = 3.0  # between SIGTERM and SIGKILL in stop_all
log_tail_lines = 6

_PR_SET_PDEATHSIG = 1


class LaunchError(Exception):
    """A replica could not be started or did not come up (port in use, crashed at start)."""


class Launcher:
    def __init__(
        self,
        config: Config,
        config_path: str | os.PathLike[str],
        *,
        logs_dir: str | os.PathLike[str] = "logs",
        cwd: str | os.PathLike[str] | None = None,
        log_level: str | None = None,
        started_by: str = "ledgerpaxos-shell",
        reserved: PortReservation | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`cwd`: the replicas' working directory (default: ours); `log_level`:
        their --log-level (default: theirs); `started_by` heads each log line
        that marks a start; `reserved`: the ports of the config, held for the
        replicas (they listen with --reuse-port); `env`: more environment for
        the replicas (a PYTHONPATH in it goes first on theirs)."""
        self.config = config
        self.config_path = Path(config_path).resolve()
        self.logs_dir = Path(logs_dir)
        self.cwd = cwd
        self.log_level = log_level
        self.started_by = started_by
        self.reserved = reserved
        self.env = dict(env or {})
        if reserved is not None:
            ports = tuple(config.node(n).port for n in config.node_ids)
            assert set(ports) <= set(reserved.ports), "the config's ports are not the reserved ones"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._preexec = _parent_death_signal()
        self._new_cluster: bool | None = None  # no replica had state when the first started
        self._formatted: set[str] = set()

    # ------------------------------------------------------------ before the start

    def prepare(self, *, keep_data: bool) -> None:
        """Create the log directory; unless keep_data, wipe each replica's data
        directory and log file first (only those of this config's nodes)."""
        if not keep_data:
            for node_id in self.config.node_ids:
                shutil.rmtree(self.config.data_dir_for(node_id), ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    self.log_path(node_id).unlink()
            self._new_cluster = None  # a new cluster again: formatted at the first start
            self._formatted.clear()
        self.logs_dir.mkdir(parents=True, exist_ok=True)

    def check_ports_free(self, node_ids: Iterable[str] | None = None) -> None:
        """LaunchError if a replica's address is taken (another cluster still running?).

        With the ports reserved for our replicas (by us or by whoever started
        us: LEDGERPAXOS_REUSE_PORT=1) the probe binds as the replica will, with
        SO_REUSEPORT: it shares a reservation and fails on anyone else's socket."""
        reuse = self._reuse_port
        for node_id in node_ids if node_ids is not None else self.config.node_ids:
            node = self.config.node(node_id)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the replica does
                if reuse:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                try:
                    probe.bind((node.host, node.port))
                except OSError as error:
                    if error.errno == errno.EADDRINUSE:
                        raise LaunchError(
                            f"{node_id} cannot start: {node.host}:{node.port} is already in use. "
                            "Is another cluster still running? (`pgrep -af ledgerpaxos.runtime.main` "
                            "lists replicas) Stop it, or use --config with other ports."
                        ) from None
                    raise LaunchError(
                        f"{node_id} cannot listen on {node.host}:{node.port}: {error.strerror or error}"
                    ) from None

    # ------------------------------------------------------------ processes

    def log_path(self, node_id: str) -> Path:
        return self.logs_dir / f"{node_id}.log"

    def start_flags(self, node_id: str) -> list[str]:
        """How a replica starts on its data directory: as it is; `--format`
        when no replica of the config has any state (a new cluster); or
        `--recover` when this one has none and others do (it lost its disk:
        it rejoins without voting until that is safe)."""
        if self._new_cluster is None:  # decided before the first replica starts
            self._new_cluster = not any(
                identity.holds_state(self.config.data_dir_for(n)) for n in self.config.node_ids
            )
        if identity.holds_state(self.config.data_dir_for(node_id)):
            return []
        if self._new_cluster and node_id not in self._formatted:
            self._formatted.add(node_id)
            return ["--format"]
        log.warning("%s has lost its data directory: starting it with --recover", node_id)
        return ["--recover"]

    def start(self, node_id: str) -> subprocess.Popen[bytes]:
        """Start one replica (on whatever its data directory holds, see
        start_flags), logging to logs/<id>.log."""
        self.config.node(node_id)  # ConfigError for an unknown node
        if self.running(node_id):
            raise LaunchError(f"{node_id} is already running (pid {self.processes[node_id].pid})")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        package_root = str(Path(ledgerpaxos.__file__).resolve().parent.parent)
        extra = dict(self.env)
        python_path = os.pathsep.join(
            p
            for p in [extra.pop("PYTHONPATH", ""), package_root, os.environ.get("PYTHONPATH", "")]
            if p
        )
        command = [
            sys.executable,
            "-m",
            "ledgerpaxos.runtime.main",
            "--id",
            node_id,
            "--config",
            str(self.config_path),
            *self.start_flags(node_id),
            *(["--log-level", self.log_level] if self.log_level else []),
        ]
        with open(self.log_path(node_id), "ab") as log_file:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log_file.write(
                f"--- {stamp} started by {self.started_by}: {' '.join(command)}\n".encode()
            )
            log_file.flush()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    **extra,
                    "PYTHONPATH": python_path,
                    **({REUSE_PORT_VARIABLE: "1"} if self._reuse_port else {}),
                },
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=self._preexec,
            )
        self.processes[node_id] = process
        log.info("started %s (pid %d)", node_id, process.pid)
        return process

    @property
    def _reuse_port(self) -> bool:
        return self.reserved is not None or reuse_port_wanted()

    @property
    def pids(self) -> dict[str, int]:
        return {node_id: process.pid for node_id, process in self.processes.items()}

    def exited(self) -> dict[str, int]:
        """Replicas that have ended, with their exit status."""
        return {
            node_id: code
            for node_id, process in self.processes.items()
            if (code := process.poll()) is not None
        }

    def running(self, node_id: str) -> bool:
        process = self.processes.get(node_id)
        return process is not None and process.poll() is None

    def pid(self, node_id: str) -> int | None:
        process = self.processes.get(node_id)
        return process.pid if process is not None else None

    def exit_status(self, node_id: str) -> int | None:
        """The exit status of a replica this launcher started that has ended, else None."""
        process = self.processes.get(node_id)
        return process.poll() if process is not None else None

    def crash(self, node_id: str) -> int:
        """SIGKILL the replica (no chance to flush or say goodbye); returns its pid."""
        process = self.processes.get(node_id)
        if process is None or process.poll() is not None:
            raise LaunchError(f"{node_id} is not running")
        process.kill()
        process.wait()
        return process.pid

    def stop_all(self, grace_s: float = stop_grace_s) -> None:
        """SIGTERM every replica still running, SIGKILL those left after grace_s."""
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        deadline = time.monotonic() + grace_s
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(self, node_id: str, lines: int = log_tail_lines) -> str:
        try:
            text = self.log_path(node_id).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip("\n").splitlines()[-lines:])


async def wait_until_answering(
    launcher: Launcher,
    node_ids: Iterable[str],
    *,
    timeout_s: float = startup_timeout_s,
    network: Network | None = None,
) -> None:
    """Return once every replica in node_ids answers a ping; LaunchError, naming the
    node and its log file, if one exits first or none of it happens within timeout_s."""
    config = launcher.config
    waiting = list(node_ids)
    with trio.move_on_after(timeout_s):
        while waiting:
            for node_id in list(waiting):
                _raise_if_exited(launcher, node_id)
                try:
                    await control(
                        config, node_id, ControlOp.ping, network=network, timeout_s=ping_timeout_s
                    )
                except (OSError, ClientTimeout):
                    continue
                waiting.remove(node_id)
            if waiting:
                await trio.sleep(ping_poll_s)
    for node_id in node_ids:
        _raise_if_exited(launcher, node_id)  # an answer from someone else's replica on our port
    if waiting:
        logs = ", ".join(str(launcher.log_path(n)) for n in waiting)
        raise LaunchError(f"{', '.join(waiting)} did not answer within {timeout_s:g} s; see {logs}")


def _raise_if_exited(launcher: Launcher, node_id: str) -> None:
    status = launcher.exit_status(node_id)
    if status is None:
        return
    tail = launcher.log_tail(node_id)
    raise LaunchError(
        f"{node_id} exited with status {status} while starting; the end of "
        f"{launcher.log_path(node_id)}:\n{tail}"
    )


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGKILL the child when the shell dies (Linux).

    Everything it needs is looked up here, in the parent: after fork it only makes
    one foreign call and compares two pids, nothing that could take a lock.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # the shell died before prctl took effect
            os._exit(1)

    return preexec
