"""The nemesis's cluster: five replica processes, each on its own loopback address.

    with NemesisCluster(directory, clients=10, tmpfs=True) as cluster:
        cluster.start()          # formats and starts n1-n5 on 127.0.0.11-15, TLS on
        cluster.kill("n3")       # kill -9
        cluster.start_node("n3") # on whatever its data directory holds (--recover if lost)
    # every process stopped, the tmpfs unmounted

fsync on, TLS on (certificates for the nodes, the clients c0..c<k-1>, the
auditor and the operator, made by tools/certs.py), each client owning the
account named after it. With `tmpfs` (root only) the last replica's data
directory is a small tmpfs, for the full-disk fault.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from types import TracebackType

from ledgerpaxos import tls
from ledgerpaxos.config import Config, make_local_config, write_config
from tools.certs import ensure_certificates, identities_of
from tools.cluster.launcher import Launcher

HOSTS = tuple(f"127.0.0.{11 + i}" for i in range(5))
AUDITOR = "audit"  # reads every balance
initial_balance = 1000
tmpfs_size = "48m"  # the WAL (compacted), a few snapshots, the 1 MiB probe: a few MiB
stop_grace_s = 5.0


def tmpfs_unavailable() -> str | None:
    """Why a tmpfs cannot be mounted here, or None."""
    if os.geteuid() != 0:
        return "a full disk needs root (it mounts a tmpfs)"
    if shutil.which("mount") is None:
        return "a full disk needs the mount command"
    return None


def mount_tmpfs(directory: Path, size: str) -> None:
    """Mount a tmpfs of `size` ("48m") on `directory` (made if missing); root
    only. OSError with mount's message when it cannot."""
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise OSError(f"cannot mount a tmpfs on {directory}: {done.stderr.strip()}")


def unmount(directory: Path) -> None:
    """Unmount lazily: a process that still has a file open there does not keep it."""
    subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(path: Path) -> None:
    """Write zeros to `path` until its file system is full, to the last byte
    a write can still place."""
    with path.open("wb", buffering=0) as filler:
        for size in (1 << 20, 4096, 64, 1):
            block = bytes(size)
            try:
                while True:
                    filler.write(block)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise


def client_ids(count: int) -> list[str]:
    return [f"c{i}" for i in range(count)]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class NemesisCluster:
    def __init__(self, directory: Path, *, clients: int, tmpfs: bool) -> None:
        self.directory = directory
        self.clients = client_ids(clients)
        ports = [_free_port(host) for host in HOSTS]
        self.config: Config = make_local_config(
            len(HOSTS),
            ports,
            directory / "data",
            hosts=HOSTS,
            accounts=self.clients,
            initial_balance=initial_balance,
            fsync=True,
            tls={"enabled": True, "dir": str(directory / "tls")},
            auditors=[tls.default_operator, AUDITOR],
            allow_reset=False,
        )
        self.config_path = directory / "cluster.toml"
        write_config(self.config, self.config_path)
        ensure_certificates(
            tls.Files(self.config.tls_dir),
            identities_of(self.config, clients=[*self.clients, AUDITOR]),
        )
        self.tmpfs_node: str | None = None
        self._mounted: Path | None = None
        if tmpfs:
            node = self.config.node_ids[-1]
            mount_point = Path(self.config.data_dir_for(node))
            mount_tmpfs(mount_point, tmpfs_size)
            self.tmpfs_node, self._mounted = node, mount_point
        self.launcher = Launcher(
            self.config,
            self.config_path,
            logs_dir=directory / "logs",
            cwd=directory,
            log_level="INFO",
            started_by="ledgerpaxos-nemesis",
        )
        self.stopped: set[str] = set()  # SIGSTOPped

    def __enter__(self) -> NemesisCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for node in list(self.stopped):
            self.resume(node)
        self.launcher.stop_all(stop_grace_s)
        if self._mounted is not None:
            unmount(self._mounted)
            self._mounted = None

    @property
    def node_ids(self) -> tuple[str, ...]:
        return self.config.node_ids

    def host_of(self, node: str) -> str:
        return self.config.node(node).host

    def start(self) -> None:
        for node in self.node_ids:
            self.launcher.start(node)

    def start_node(self, node: str) -> None:
        self.launcher.start(node)

    def running(self, node: str) -> bool:
        return self.launcher.running(node)

    def kill(self, node: str) -> None:
        if self.launcher.running(node):
            self.stopped.discard(node)
            self.launcher.crash(node)

    def pause(self, node: str) -> None:
        pid = self.launcher.pid(node)
        if pid is not None and self.launcher.running(node):
            os.kill(pid, signal.SIGSTOP)
            self.stopped.add(node)

    def resume(self, node: str) -> None:
        pid = self.launcher.pid(node)
        if pid is not None and node in self.stopped:
            self.stopped.discard(node)
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def data_dir(self, node: str) -> Path:
        return Path(self.config.data_dir_for(node))

    def exited(self) -> dict[str, int]:
        return self.launcher.exited()
