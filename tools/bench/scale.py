"""What a big ledger costs one replica: memory, snapshots, restart and install.

    python -m tools.bench.scale [--accounts 1000000 10000000] [--clients 10000 100000 1000000]

In one process, with the replica's own code (core/ledger.py, storage/snapshot.py):

- accounts: a ledger of N numbered accounts in which every balance has moved
  (the worst case: an untouched initial account costs nothing), measured as the
  memory it adds per account, the snapshot file per account, the time to freeze
  a view of the state (what the core loop spends), to build and write the
  snapshot from it in a worker thread, as the replica does, and the longest the
  trio loop went without running meanwhile; to restart from it (read, verify,
  decode, check the digest from every row, install) and to install it as a
  peer's checkpoint in parts (cut, the parts' largest frame, put together,
  check, install);
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

import trio

import wire
from ledgerpaxos import constants
from ledgerpaxos.core import install
from ledgerpaxos.core.accounts import AccountNames
from ledgerpaxos.core.ledger import Ledger, SnapshotView, session_number, state_digest
from ledgerpaxos.core.messages import Command, CommandKind, InstallCheckpoint, Snapshot, Transfer
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
    ledger._keys.extend(ledger.balances)
    ledger._changed.update((names[i], 1 if i % 2 else -1) for i in range(count))
    digest_started = time.perf_counter()
    ledger.digest()
    digest_s = time.perf_counter() - digest_started
    gc.collect()
    memory = rss_bytes() - before
    # As a replica process does (runtime/main.py): what start-up built is never
    # scanned again, young collections only now and then.
    gc.freeze()
    gc.set_threshold(constants.gc_young_objects_max, 50, 100)
    ledger.digest()  # (drops the weights the digest of all remembered: not a freeze's cost)
    started = time.perf_counter()
    view = ledger.freeze(1, chain=bytes(16))
    freeze_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="ledgerpaxos-scale-") as directory:
        started = time.perf_counter()
        snapshot, pause_s = trio.run(_write_beside_a_loop, view, directory)
        write_s = time.perf_counter() - started
        ledger.thaw()
        file_bytes = os.path.getsize(os.path.join(directory, os.listdir(directory)[0]))
        parts = _install_in_parts(snapshot, names)
        del snapshot, view
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
        "snapshot_freeze_s": freeze_s,
        "snapshot_write_s": write_s,
        "loop_pause_s": pause_s,
        "restart_s": read_s + check_s + install_s,
        **parts,
    }


async def _write_beside_a_loop(view: SnapshotView, directory: str) -> tuple[Snapshot, float]:
    """Build and write the snapshot in a worker thread, as the replica does,
    while a task that sleeps 1 ms at a time notes the longest it waited."""
    longest = 0.0
    written = trio.Event()

    async def beat() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not written.is_set():
            await trio.sleep(0.001)
            now = time.perf_counter()
            longest, last = max(longest, now - last - 0.001), now

    def build_and_write() -> Snapshot:
        snapshot = view.build()
        write_snapshot(directory, snapshot, fsync=True)
        return snapshot

    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat)
        snapshot = await trio.to_thread.run_sync(build_and_write)
        written.set()
    return snapshot, longest


def _install_in_parts(snapshot: Snapshot, names: AccountNames) -> dict[str, float]:
    """A peer's checkpoint as a lagging replica gets it: cut by the sender,
    sent part by part, put together, checked and installed."""
    started = time.perf_counter()
    parts = install.split(snapshot, constants.install_part_units_max)
    cut_s = time.perf_counter() - started
    largest = max(parts, key=lambda p: len(p.balances) + len(p.opened) + len(p.clients))
    frame = wire.encode_frame(
        InstallCheckpoint(snapshot=largest, nonce=1, part=0, parts=len(parts)),
        cluster_id=1,
        sender=1,
    )
    started = time.perf_counter()
    messages = [
        InstallCheckpoint(snapshot=part, nonce=1, part=i, parts=len(parts))
        for i, part in enumerate(parts)
    ]
    partial = install.PartialInstall.start(messages[0], "n2")
    for message in messages:
        partial.add(message, "n2")
    whole = partial.whole()
    assert state_digest(whole, 1_000) == whole.digest
    installed = Ledger(names, 1_000)
    installed.install(whole)
    install_s = time.perf_counter() - started
    return {
        "install_parts": len(parts),
        "install_frame_bytes": len(frame),
        "install_cut_s": cut_s,
        "install_s": install_s,
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
        ledger.freeze(slot, chain=bytes(16))  # what the core loop spends on a snapshot
        snapshot_s = time.perf_counter() - started
        ledger.thaw()
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
            f"digest of all {f['digest_s']:.2f} s; a snapshot: frozen in "
            f"{f['snapshot_freeze_s'] * 1000:.2f} ms, built and written in a worker thread in "
            f"{f['snapshot_write_s']:.2f} s, the loop's longest pause meanwhile "
            f"{f['loop_pause_s'] * 1000:.0f} ms; restart {f['restart_s']:.2f} s; install from "
            f"a peer {f['install_s']:.2f} s in {f['install_parts']:,.0f} parts of at most "
            f"{f['install_frame_bytes'] / 1024:.0f} KiB a frame (cut in {f['install_cut_s']:.2f} s)",
            flush=True,
        )
    if args.clients:
        print(f"sessions kept: at most {constants.client_sessions_max_default:,}")
        for row in sessions_figures(args.clients):
            print(
                f"{row['clients']:>9,} clients: {row['sessions']:,} sessions, "
                f"{row['evictions']:,} evicted, memory {row['memory_mb']:.0f} MB, a checkpoint "
                f"{row['checkpoint_ms']:.2f} ms, a snapshot frozen {row['snapshot_ms']:.1f} ms",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
