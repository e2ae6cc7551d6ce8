"""ledgerpaxos-bench against real replica processes: it measures, checks the
ledger, and never leaves a process behind (also on Ctrl-C). Marked `processes`.

No figure is asserted: these runs are seconds long on a shared machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_bench import JSON_KEYS

pytestmark = pytest.mark.processes


def children_of(pid: int) -> set[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def left_behind(pids: set[int], *, wait_s: float = 5.0) -> list[str]:
    """The command lines of `pids` still alive after up to `wait_s`: a child
    (the multiprocessing resource tracker, say) may take a moment to notice
    that its parent is gone; one that stays is a leak."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    left = []
    for pid in sorted(pid for pid in pids if alive(pid)):
        try:
            left.append(
                f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            )
        except OSError:
            continue
    return left


def bench_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tools.bench", *args]


def environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def test_a_launched_run_measures_checks_and_stops_everything(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    process = subprocess.Popen(
        bench_command(
            "--launch",
            "--replicas",
            "3",
            "--clients",
            "3",
            "--transfers-per-request",
            "5",
            "--duration",
            "1",
            "--accounts",
            "20",
            "--json",
            str(output),
        ),
        cwd=REPO,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        seen |= children_of(process.pid)
        time.sleep(0.05)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "transfers/s" in stdout and "hold the same state" in stdout
    figures = json.loads(output.read_text())
    assert all(key in figures for key in JSON_KEYS), sorted(figures)
    assert (figures["replicas"], figures["clients"], figures["transfers_per_request"]) == (3, 3, 5)
    assert figures["requests"] > 0 and figures["balances_agree"] and figures["sum_unchanged"]
    assert set(figures["cpu_s_per_1k_transfers"]) >= {"n1", "n2", "n3", "bench"}
    assert len(seen) >= 3  # the replicas (and the load process) ran as children
    assert not left_behind(seen)


def _sigint_as_at_a_terminal() -> None:
    """A shell without job control starts background jobs with SIGINT
    ignored, and a child inherits that: `make test &` would make this test
    time out on a benchmark that never saw its Ctrl-C. Ctrl-C at a terminal
    is what the test is about."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_every_process_it_started() -> None:
    process = subprocess.Popen(
        bench_command("--launch", "--replicas", "3", "--clients", "2", "--duration", "60"),
        cwd=REPO,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_as_at_a_terminal,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 4 and time.monotonic() < deadline:  # 3 replicas and a load process
        seen |= children_of(process.pid)
        time.sleep(0.05)
    assert len(seen) >= 4, "the run did not get going"
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not left_behind(seen)
