"""Replica processes for the benchmark: launched fresh, measured, always stopped.

    with LaunchedCluster(replicas=5, accounts=1000) as cluster:   # temp dir, free ports
        cluster.start()                     # tools/cluster/launcher.py, one per node
        ...                                 # cluster.config, cluster.config_path, cluster.pids
    # every process stopped: SIGTERM, then SIGKILL after a grace period

Each replica runs with fsync on, a fresh data directory under a temporary
directory (removed afterwards) and its log in `<tmp>/logs/<id>.log`. The
launcher's parent-death signal means even a `kill -9` of the benchmark leaves
no replica behind; `stop()` (also run on Ctrl-C and on errors) covers the rest.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from ledgerpaxos import tls
from ledgerpaxos.config import Config, make_local_config, write_config
from tools.certs import ensure_certificates
from tools.cluster.launcher import Launcher
from tools.cluster.ports import PortReservation

REPO = Path(__file__).resolve().parent.parent.parent

stop_grace_s = 5.0


def account_names(count: int) -> list[str]:
    """The benchmark's accounts: a0000, a0001, ..."""
    width = max(4, len(str(count - 1)))
    return [f"a{i:0{width}d}" for i in range(count)]


def initial_balance_for(accounts: int) -> int:
    """Large enough that random transfers of 1-100 are almost never refused."""
    return 10**15 // max(1, accounts)  # 10^8 each at 10M accounts; the sum fits an i64


TRACER = Path(__file__).resolve().parent / "trace"  # its sitecustomize.py stamps the calls


class LaunchedCluster:
    """N replica processes on 127.0.0.1 with fresh data, fsync on."""

    def __init__(
        self,
        *,
        replicas: int,
        accounts: int,
        overrides: dict[str, Any] | None = None,
        keep_dir: bool = False,
        clients: int = 0,
        tls_on: bool = True,
        trace_dir: Path | None = None,
    ) -> None:
        """`clients`: how many load clients will connect (each gets the
        certificate of the account it is named after); `tls_on`: False for a
        plaintext run (loopback only); `trace_dir`: the replicas stamp their
        reads, writes and fsyncs there (tools/bench/trace, tools/bench/hops.py)."""
        self.directory = Path(tempfile.mkdtemp(prefix="ledgerpaxos-bench-"))
        self.keep_dir = keep_dir
        self.ports = PortReservation(replicas)
        try:
            self.config: Config = make_local_config(
                replicas,
                self.ports.ports,
                self.directory / "data",
                **{
                    # numbered (core/accounts.py): a0000, a0001, ... as account_names() says
                    "accounts": {"prefix": "a", "count": accounts, "digits": 4},
                    "initial_balance": initial_balance_for(accounts),
                    "fsync": True,
                    "tls": {"enabled": tls_on, "dir": str(self.directory / "tls")},
                    **(overrides or {}),
                },
            )
        except BaseException:
            self.ports.close()
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.config_path = self.directory / "cluster.toml"
        write_config(self.config, self.config_path)
        if self.config.tls_enabled:
            identities = [tls.node(n) for n in self.config.node_ids]
            identities += [tls.client(a) for a in self.config.accounts[:clients]]
            identities.append(tls.operator(tls.default_operator))
            ensure_certificates(tls.Files(self.config.tls_dir), identities)
        self.logs = self.directory / "logs"
        self.logs.mkdir()
        self.launcher = Launcher(
            self.config,
            self.config_path,
            logs_dir=self.logs,
            cwd=self.directory,
            log_level="WARNING",
            started_by="ledgerpaxos-bench",
            reserved=self.ports,
            env={"PYTHONPATH": str(TRACER), "LEDGERPAXOS_TRACE_DIR": str(trace_dir)}
            if trace_dir is not None
            else None,
        )

    def __enter__(self) -> LaunchedCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        self.ports.close()
        if not self.keep_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def pids(self) -> dict[str, int]:
        return self.launcher.pids

    def start(self) -> None:
        for node_id in self.config.node_ids:
            self.launcher.start(node_id)

    def exited(self) -> dict[str, int]:
        """Replicas that have ended, with their exit status."""
        return self.launcher.exited()

    def log_tail(self, node_id: str, lines: int = 8) -> str:
        return self.launcher.log_tail(node_id, lines)

    def stop(self) -> None:
        """SIGTERM every replica, SIGKILL what is left after the grace period."""
        self.launcher.stop_all(stop_grace_s)
