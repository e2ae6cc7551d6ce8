"""The ledgerpaxos-replica console script: exit statuses and one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledgerpaxos.config import make_local_config, write_config
from ledgerpaxos.core.messages import Ballot, PromiseRecord
from ledgerpaxos.runtime.network import REUSE_PORT_VARIABLE
from ledgerpaxos.storage import ReplicaStore, identity
from ledgerpaxos.storage.filesystem import OS_FILE_SYSTEM
from ledgerpaxos.storage.identity import Start
from tests.conftest import REPO, ReservePorts

pytestmark = pytest.mark.processes


def replica(*args: str) -> subprocess.Popen[str]:
    # The ports are reserved for it by the test (tools/cluster/ports.py).
    env = {**os.environ, "PYTHONPATH": str(REPO), REUSE_PORT_VARIABLE: "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ledgerpaxos.runtime.main", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    return process.returncode, stderr


def write_local_config(tmp_path: Path, ports: tuple[int, ...]) -> Path:
    path = tmp_path / "cluster.toml"
    write_config(make_local_config(3, ports, tmp_path / "data"), path)
    return path


def test_an_unknown_node_id_is_a_user_error(tmp_path: Path, reserve_ports: ReservePorts) -> None:
    path = write_local_config(tmp_path, reserve_ports(3))
    status, stderr = finish(replica("--id", "n9", "--config", str(path)))
    assert status == 2
    assert stderr.count("\n") == 1 and "no node 'n9'" in stderr


def test_a_broken_config_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("cluster_id = [\n")
    status, stderr = finish(replica("--id", "n1", "--config", str(path)))
    assert status == 2
    assert stderr.count("\n") == 1 and "TOML syntax error" in stderr


def test_an_address_in_use_is_a_user_error(tmp_path: Path, reserve_ports: ReservePorts) -> None:
    with socket.socket() as taken:  # someone else's: no SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        base = taken.getsockname()[1]
        path = write_local_config(tmp_path, (base, *reserve_ports(2)))
        status, stderr = finish(replica("--id", "n1", "--config", str(path), "--format"))
    assert status == 2
    last = stderr.strip().splitlines()[-1]
    assert f"n1 cannot listen on 127.0.0.1:{base}" in last and "Traceback" not in stderr


def test_a_wal_broken_in_the_middle_is_salvaged_and_the_replica_rejoins(
    tmp_path: Path, reserve_ports: ReservePorts
) -> None:
    ports = reserve_ports(3)
    path = write_local_config(tmp_path, ports)
    data = tmp_path / "data" / "n1"
    identity.prepare(data, cluster_id=1, node_id="n1", start=Start.format, fsync=False)
    store, _ = ReplicaStore.open(data, fsync=False)
    store.append([PromiseRecord(ballot=Ballot(round, 1)) for round in range(1, 6)])
    store.sync()
    store.close()
    (wal,) = data.glob("wal-*")
    damaged = bytearray(wal.read_bytes())
    damaged[len(damaged) // 3] ^= 0xFF  # a broken record with good ones after it
    wal.write_bytes(bytes(damaged))
    process = replica("--id", "n1", "--config", str(path))
    try:
        deadline = time.monotonic() + 20
        while True:  # it starts, and listens
            try:
                socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        status, stderr = finish(process)
    finally:
        process.kill()
    assert status == 0 and "Traceback" not in stderr
    assert f"WAL damaged in {wal} at byte offset" in stderr  # file and offset
    assert "rejoining: the WAL was damaged" in stderr
    assert (data / (wal.name + ".damaged")).exists()  # kept for a look
    assert identity.load(OS_FILE_SYSTEM, str(data)).rejoining  # type: ignore[union-attr]
    # The records before the damage were kept: the promises of rounds 1 and 2 at least.
    store, recovered = ReplicaStore.open(data, fsync=False)
    store.close()
    assert recovered.promised >= Ballot(1, 1) and recovered.damaged is None


def test_a_directory_that_is_not_formatted_or_not_ours_is_a_user_error(
    tmp_path: Path, reserve_ports: ReservePorts
) -> None:
    path = write_local_config(tmp_path, reserve_ports(3))
    status, stderr = finish(replica("--id", "n1", "--config", str(path)))
    assert status == 2 and stderr.count("\n") == 1
    assert "holds no replica state" in stderr and "--format" in stderr and "--recover" in stderr
    assert not (tmp_path / "data" / "n1").exists()
    # --format refuses a directory that holds state.
    data = tmp_path / "data" / "n1"
    identity.prepare(data, cluster_id=1, node_id="n1", start=Start.format, fsync=False)
    status, stderr = finish(replica("--id", "n1", "--config", str(path), "--format"))
    assert status == 2 and "--format refused" in stderr and "already holds" in stderr
    # Another node's directory (a config naming the wrong data_dir).
    data.rename(tmp_path / "data" / "n2")
    status, stderr = finish(replica("--id", "n2", "--config", str(path)))
    assert status == 2 and "belongs to node n1" in stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_replica_cleanly(
    tmp_path: Path, signum: int, reserve_ports: ReservePorts
) -> None:
    ports = reserve_ports(3)
    path = write_local_config(tmp_path, ports)
    process = replica("--id", "n2", "--config", str(path), "--format")
    try:
        deadline = time.monotonic() + 20
        while True:  # until it listens
            try:
                socket.create_connection(("127.0.0.1", ports[1]), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        process.send_signal(signum)
        status, stderr = finish(process)
    finally:
        process.kill()
    assert status == 0, stderr
    assert "stopping" in stderr and "Traceback" not in stderr
    assert " n2 INFO " in stderr  # "2026-11-26 14:09:06.123 n2 INFO ..."
