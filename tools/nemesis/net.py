"""Network partitions between loopback addresses, made with nftables.

Each replica of the nemesis has its own address (127.0.0.11-15) and dials its
peers from it (runtime/network.py), so a rule on (source, destination) cuts
exactly one direction of one link. The rules live in a table of their own,
`inet ledgerpaxos_nemesis`, in a chain on the output hook (loopback traffic
passes it once); healing flushes the chain, and close() deletes the table,
also after a failure (and a table left by an earlier run that was killed is
deleted first). Clients connect from 127.0.0.1 and are never cut off.

Needs root and the `nft` command; `unavailable()` says why not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable

table = "ledgerpaxos_nemesis"


class NetError(Exception):
    """nft refused a rule set (the message is nft's)."""


def unavailable() -> str | None:
    """Why partitions cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network partitions need root (nftables rules)"
    if shutil.which("nft") is None:
        return "network partitions need nftables: apt-get install nftables"
    done = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"nft does not work here: {done.stderr.strip()}"
    return None


class Partitioner:
    """Cuts and heals one-way links between addresses."""

    def __init__(self) -> None:
        self._remove_table()
        self._run(
            f"add table inet {table}\n"
            f"add chain inet {table} output "
            "{ type filter hook output priority 0; policy accept; }\n"
        )
        self.cut_links: set[tuple[str, str]] = set()

    def cut(self, links: Iterable[tuple[str, str]]) -> None:
        """Drop every packet from a to b, for each (a, b)."""
        new = [link for link in links if link not in self.cut_links]
        if not new:
            return
        self._run(
            "".join(
                f"add rule inet {table} output ip saddr {a} ip daddr {b} drop\n" for a, b in new
            )
        )
        self.cut_links.update(new)

    def heal(self) -> None:
        if self.cut_links:
            self._run(f"flush chain inet {table} output\n")
            self.cut_links.clear()

    def close(self) -> None:
        self.cut_links.clear()
        self._remove_table()

    @staticmethod
    def _remove_table() -> None:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)

    @staticmethod
    def _run(script: str) -> None:
        done = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
        if done.returncode != 0:
            raise NetError(f"nft refused:\n{script}{done.stderr.strip()}")
