"""What a big ledger costs one replica: memory, snapshots, restart and install.

    python -m tools.bench.scale [--accounts 1000000 10000000] [--clients 10000 100000 1000000]

In one process, with the replica's own code (core/ledger.py, storage/snapshot.py):

- accounts: a ledger of N numbered accounts in which every balance has moved
  (the worst case: an untouched initial account costs nothing), measured as the
  memory it adds per account, the snapshot file per account, the time to take
  and write the snapshot, to restart from it (read, verify, decode, check the
  digest from every row, install) and to install it as a peer's checkpoint (check
  and install);
- sessions: N distinct clients registering one after the other, each with one
  transfer, on a ledger keeping client_sessions_max sessions: the memory and what
  a checkpoint (the digest of what changed: 100 new registrations) and a
  snapshot cost at 10k, 100k, 1M clients.

Figures only: nothing here fails on a timing.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from collections.abc import Sequence

from ledgerpaxos import constants
from ledgerpaxos.core.accounts import AccountNames
from ledgerpaxos.core.ledger import Ledger, session_number, state_digest
from ledgerpaxos.core.messages import Command, CommandKind, Transfer
from ledgerpaxos.storage.snapshot import load_newest_snapshot, write_snapshot


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def accounts_figures(count: int) -> dict[str, float]:
    gc.collect()
    before = rss_bytes()
    names = AccountNames.numbered("a", count)
    ledger = Ledger(names, 1_000)
    # Every balance moves (one unit from each even account to the next one),
    # set directly: executing five million transfers would measure the same state.
    ledger.balances.update((names[i], 1_000 + (1 if i % 2 else -1)) for i in range(count))
    ledger._changed.update((names[i], 1 if i % 2 else -1) for i in range(count))
    digest_started = time.perf_counter()
    ledger.digest()
    digest_s = time.perf_counter() - digest_started
    gc.collect()
    memory = rss_bytes() - before
    started = time.perf_counter()
    snapshot = ledger.snapshot(1, chain=bytes(16))
    take_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="ledgerpaxos-scale-") as directory:
        started = time.perf_counter()
        path = write_snapshot(directory, snapshot, fsync=True)
        write_s = time.perf_counter() - started
        file_bytes = os.path.getsize(path)
        del snapshot
        gc.collect()
        started = time.perf_counter()
        loaded = load_newest_snapshot(directory)
        assert loaded is not None
        read_s = time.perf_counter() - started
    started = time.perf_counter()
    assert state_digest(loaded, 1_000) == loaded.digest
    check_s = time.perf_counter() - started
    started = time.perf_counter()
    restarted = Ledger(names, 1_000)
    restarted.install(loaded)
    install_s = time.perf_counter() - started
    assert restarted.digest() == ledger.digest()
    return {
        "accounts": count,
        "memory_bytes_per_account": memory / count,
        "digest_s": digest_s,
        "snapshot_bytes_per_account": file_bytes / count,
        "snapshot_take_s": take_s,
        "snapshot_write_s": write_s,
        "restart_s": read_s + check_s + install_s,
        "install_s": check_s + install_s,
        "fits_one_frame": file_bytes < constants.message_size_max,
    }


def sessions_figures(points: Sequence[int]) -> list[dict[str, float]]:
    gc.collect()
    before = rss_bytes()
    # Each client sends one transfer it may not make (refused: not authorized), so
    # its session holds a request and its outcome while no balance moves: what
    # grows is the sessions alone.
    ledger = Ledger(("A", "B"), 10**9)
    rows = []
    done = 0
    slot = 0
    for point in sorted(points):
        while done < point:
            client = f"client-{done}"
            slot += 1
            ledger.execute(
                Command(client_id=client, request_no=1, kind=CommandKind.register), slot=slot
            )
            transfer = Transfer(sender="A", receiver="B", amount=1)
            ledger.execute(
                Command(
                    client_id=client,
                    request_no=2,
                    kind=CommandKind.transfer,
                    session=session_number(slot, 0),
                    transfers=(transfer,),
                ),
                slot=slot,
                index=1,
            )
            done += 1
            if done % 1_000 == 0:
                ledger.digest()  # the checkpoints along the way
        # One checkpoint's worth of new clients, timed: what a checkpoint costs now.
        for i in range(100):
            slot += 1
            ledger.execute(
                Command(client_id=f"late-{point}-{i}", request_no=1, kind=CommandKind.register),
                slot=slot,
            )  # (a client without an account of its own: it only registers)
        started = time.perf_counter()
        ledger.digest()
        checkpoint_s = time.perf_counter() - started
        started = time.perf_counter()
        ledger.snapshot(slot, chain=bytes(16))
        snapshot_s = time.perf_counter() - started
        gc.collect()
        rows.append(
            {
                "clients": point,
                "sessions": len(ledger.clients),
                "evictions": ledger.evictions,
                "memory_mb": (rss_bytes() - before) / 2**20,
                "checkpoint_ms": checkpoint_s * 1000,
                "snapshot_ms": snapshot_s * 1000,
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.scale", description=__doc__)
    parser.add_argument("--accounts", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--clients", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args(argv)
    for count in args.accounts:
        f = accounts_figures(count)
        print(
            f"{count:,} accounts, every balance moved: {f['memory_bytes_per_account']:.0f} bytes "
            f"of memory and {f['snapshot_bytes_per_account']:.1f} of snapshot file per account; "
            f"digest of all {f['digest_s']:.2f} s, snapshot taken in {f['snapshot_take_s']:.2f} s "
            f"and written in {f['snapshot_write_s']:.2f} s; restart {f['restart_s']:.2f} s, "
            f"install {f['install_s']:.2f} s"
            + ("" if f["fits_one_frame"] else " (more than one frame holds: not installable yet)"),
            flush=True,
        )
    if args.clients:
        print(f"sessions kept: at most {constants.client_sessions_max_default:,}")
        for row in sessions_figures(args.clients):
            print(
                f"{row['clients']:>9,} clients: {row['sessions']:,} sessions, "
                f"{row['evictions']:,} evicted, memory {row['memory_mb']:.0f} MB, a checkpoint "
                f"{row['checkpoint_ms']:.2f} ms, a snapshot {row['snapshot_ms']:.1f} ms",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
