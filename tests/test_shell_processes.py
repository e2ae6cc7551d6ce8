"""`ledgerpaxos-shell --launch` with real replica processes (marked `processes`).

Each test writes a config with free ports into tmp_path and runs the shell as a
subprocess with cwd=tmp_path, so data/ and logs/ land there. Real time: about
half a minute for the file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledgerpaxos.config import make_local_config, write_config
from ledgerpaxos.runtime.network import REUSE_PORT_VARIABLE
from tests.conftest import REPO
from tools.cluster.ports import PortReservation

pytestmark = pytest.mark.processes

TESTDATA = REPO / "testdata"
ACCOUNTS = "ABCDEFGHIJ"
SHELL_TIMEOUT_S = 90


def row(text: str) -> dict[str, int]:
    return dict(zip(ACCOUNTS, (int(x) for x in text.split()), strict=True))


# Ports reserved by write_cluster_config, held until the test ends (the shell's
# replicas listen on them: LEDGERPAXOS_REUSE_PORT=1 in shell_env()).
_reserved: list[PortReservation] = []


@pytest.fixture(autouse=True)
def _release_reserved_ports() -> Iterator[None]:
    yield
    while _reserved:
        _reserved.pop().close()


def write_cluster_config(tmp_path: Path, *, n1_port: int | None = None, tls: bool = False) -> Path:
    _reserved.append(PortReservation(5))
    ports = _reserved[-1].ports
    if n1_port is not None:
        ports = (n1_port, *ports[1:])
    path = tmp_path / "cluster.toml"
    overrides = {"tls": {"enabled": True, "dir": str(tmp_path / "tls")}} if tls else {}
    write_config(make_local_config(5, ports, tmp_path / "data", **overrides), path)
    return path


def shell_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tools.shell", "--config", str(config), *args]


def shell_env() -> dict[str, str]:
    return {
        **os.environ,
        REUSE_PORT_VARIABLE: "1",
        "PYTHONPATH": os.pathsep.join(
            p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p
        ),
    }


def run_shell(
    tmp_path: Path, *args: str, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    config = config if config is not None else write_cluster_config(tmp_path)
    return subprocess.run(
        shell_command(config, *args),
        cwd=tmp_path,
        env=shell_env(),
        capture_output=True,
        text=True,
        timeout=SHELL_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def launched_pids(stdout: str) -> dict[str, int]:
    match = re.search(r"^cluster up: (.*?);", stdout, re.M)
    assert match, stdout
    return {node: int(pid) for node, pid in (item.split("=") for item in match.group(1).split())}


def replica_running(pid: int) -> bool:
    """True if pid is a live (not zombie) replica process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state != "Z" and b"ledgerpaxos.runtime.main" in cmdline


def assert_all_gone(pids: dict[str, int], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = {n: p for n, p in pids.items() if replica_running(p)}
        if not left:
            return
        time.sleep(0.05)
    for pid in left.values():  # don't leave them behind for the next test
        os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"replicas outlived the shell: {left}")


def json_documents(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def explain(result: subprocess.CompletedProcess[str], tmp_path: Path) -> str:
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
        for p in sorted((tmp_path / "logs").glob("*.log"))
    )
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{logs}"


def test_scripted_run_of_test_csv_ends_with_the_expected_balances_on_every_replica(
    tmp_path: Path,
) -> None:
    script = tmp_path / "test.script"
    script.write_text(
        "\n".join([f"load {TESTDATA / 'test.csv'}", *["next"] * 10, "print db --json", ""])
    )
    result = run_shell(tmp_path, "--launch", "--wait", "3", f"@{script}")
    assert result.returncode == 0, explain(result, tmp_path)
    pids = launched_pids(result.stdout)
    assert_all_gone(pids)
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(last["nodes"]) == {"n1", "n2", "n3", "n4", "n5"}
    for node, state in last["nodes"].items():
        assert state["alive"] is True, node
        assert state["balances"] == row("10 9 5 14 8 9 7 17 12 9"), node
    assert (tmp_path / "logs" / "n1.log").stat().st_size > 0
    assert (tmp_path / "data" / "n1").is_dir()


def test_a_malformed_csv_stops_the_script_with_its_line_number(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        'Set Number,Transactions,Live Nodes\n1,"(A, B, 1)","[n1, n2, n3]"\n,"(A, B, one)",\n'
    )
    script = tmp_path / "bad.script"
    script.write_text(f"print view --json\nload {bad}\nnext\nprint db --json\n")
    result = run_shell(tmp_path, "--launch", f"@{script}")
    assert result.returncode == 1, explain(result, tmp_path)
    assert "bad.csv: line 3: amount 'one' is not an integer" in result.stderr
    assert "script stopped at line 2" in result.stderr
    assert len(json_documents(result.stdout)) == 1  # print view ran, nothing after the load
    assert_all_gone(launched_pids(result.stdout))


def test_a_crashed_replica_restarts_on_its_data_and_catches_up(tmp_path: Path) -> None:
    during = [
        "transfer A B 1",
        "transfer C D 2",
        "transfer E F 2",
    ] * 4  # more than a checkpoint's worth
    script = tmp_path / "crash.script"
    script.write_text(
        "\n".join(
            [
                "transfer A B 1",
                "crash n2",
                "print db --json",
                *during,
                "restart n2",
                "print db --json",
                "",
            ]
        )
    )
    result = run_shell(tmp_path, "--launch", f"@{script}")
    assert result.returncode == 0, explain(result, tmp_path)
    pids = launched_pids(result.stdout)
    restarted = re.search(r"^n2 restarted \(pid (\d+)\), answering, caught up", result.stdout, re.M)
    assert restarted, result.stdout
    assert int(restarted.group(1)) != pids["n2"]
    after_crash, final = json_documents(result.stdout)
    assert after_crash["nodes"]["n2"]["balances"] is None
    assert "unreachable" in after_crash["nodes"]["n2"]["error"]
    want = {**row("10 " * 10), "A": 5, "B": 15, "C": 2, "D": 18, "E": 2, "F": 18}
    for node, state in final["nodes"].items():
        assert state == {"alive": True, "balances": want}, node
    assert_all_gone({**pids, "n2": int(restarted.group(1))})


def test_replicas_do_not_outlive_a_killed_shell(tmp_path: Path) -> None:
    config = write_cluster_config(tmp_path)
    shell = subprocess.Popen(
        shell_command(config, "--launch"),
        cwd=tmp_path,
        env=shell_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert shell.stdout is not None
        seen = ""
        deadline = time.monotonic() + 30
        while "cluster up:" not in seen and time.monotonic() < deadline:
            line = shell.stdout.readline()
            if not line:
                break
            seen += line
        pids = launched_pids(seen)
        assert all(replica_running(p) for p in pids.values())
    finally:
        shell.kill()  # SIGKILL: no atexit, no finally; only the kernel can clean up
        shell.wait()
    assert_all_gone(pids)


def test_launch_with_tls_creates_the_certificates_and_runs_sets_over_it(tmp_path: Path) -> None:
    config = write_cluster_config(tmp_path, tls=True)
    result = run_shell(
        tmp_path, "--launch", f"load {TESTDATA / 'test.csv'}", "next", "print db", config=config
    )
    assert result.returncode == 0, result.stderr
    assert "certificate and key files in" in result.stdout
    assert (tmp_path / "tls" / "operator-admin.pem").is_file()
    assert (tmp_path / "tls" / "node-n5.key").is_file()
    assert "total     100   100   100   100   100" in result.stdout
    logs = (tmp_path / "logs" / "n1.log").read_text()
    assert "closing the connection" not in logs  # every connection showed its certificate
    again = run_shell(tmp_path, "--launch", "print db", config=config)
    assert again.returncode == 0 and "certificate and key files" not in again.stdout


def test_launch_says_which_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:  # someone else's: no SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_cluster_config(tmp_path, n1_port=port)
        result = run_shell(tmp_path, "--launch", "print db", config=config)
    assert result.returncode == 1
    assert f"n1 cannot start: 127.0.0.1:{port} is already in use" in result.stderr
