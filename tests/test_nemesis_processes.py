"""A short nemesis against the real cluster (tools/nemesis), where it can run:
root, for the nftables partitions and the tmpfs of the full disk.

It fails if a check fails, and it leaves no process, rule or mount behind.
Marked `processes` (about 45 s of real time).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tools.nemesis import net, report
from tools.nemesis.run import run_nemesis

pytestmark = pytest.mark.processes


@pytest.mark.trio
async def test_a_short_nemesis_passes_and_cleans_up(tmp_path: Path) -> None:
    why = net.unavailable()
    if why is not None:
        pytest.skip(why)
    lines: list[str] = []
    result = await run_nemesis(
        duration_s=25, clients=10, seed=3, progress=lines.append, keep=tmp_path / "logs"
    )
    data = report.summary(result)
    assert data["ok"], report.render(data)
    assert len(result.faults) >= 4, lines
    assert data["operations"]["transfers_applied"] > 1000
    assert data["operations"]["unanswered"] == 0
    assert not result.skipped_kinds
    assert _leftovers() == []
    report.write_plot(result, data, tmp_path / "n.png", title="test")
    assert (tmp_path / "n.png").stat().st_size > 10_000


def _leftovers() -> list[str]:
    """Rules, mounts and processes of a nemesis still there."""
    found = []
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    if net.table in tables:
        found.append(f"nftables table {net.table}")
    found += [
        line
        for line in Path("/proc/mounts").read_text().splitlines()
        if "ledgerpaxos-nemesis-" in line
    ]
    processes = subprocess.run(
        ["pgrep", "-af", "ledgerpaxos-nemesis-"], capture_output=True, text=True
    )
    found += processes.stdout.splitlines()
    return found
