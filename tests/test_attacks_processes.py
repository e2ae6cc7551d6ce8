"""The trust boundary's attacks against real replica processes with TLS (marked `processes`).

What the issue demonstrated against three live replicas, now as a peer that
holds a node's certificate (a faulty-but-authenticated peer: the most TLS
leaves an attacker): a Prepare of the last round the wire can carry, an
InstallCheckpoint minting money, an Accept of another value for a decided
slot. Every process stays up, the balances stay right, the cluster goes on.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest
import trio

import wire
from ledgerpaxos import constants, replicas, tls
from ledgerpaxos.client import Client, connect_as, open_client
from ledgerpaxos.config import Config, make_local_config, write_config
from ledgerpaxos.core.ledger import state_digest
from ledgerpaxos.core.messages import (
    Accept,
    Ballot,
    Command,
    CommandKind,
    ControlOp,
    ControlRequest,
    InstallCheckpoint,
    Prepare,
    Snapshot,
    Transfer,
)
from ledgerpaxos.runtime.network import TcpNetwork
from tests.conftest import REPO
from tools import certs
from tools.cluster.launcher import Launcher, wait_until_answering
from tools.cluster.ports import PortReservation
from tools.cluster.processes import resident_bytes

pytestmark = pytest.mark.processes


@contextmanager
def tls_processes(tmp_path: Path, *, initial_balance: int = 10) -> Iterator[Launcher]:
    with PortReservation(3) as ports:
        config = make_local_config(
            3,
            ports.ports,
            tmp_path / "data",
            fsync=True,
            tls={"enabled": True, "dir": str(tmp_path / "tls")},
            initial_balance=initial_balance,
        )
        certs.ensure_certificates(tls.Files(config.tls_dir), certs.identities_of(config))
        path = tmp_path / "cluster.toml"
        write_config(config, path)
        launcher = Launcher(
            config, path, logs_dir=tmp_path / "logs", cwd=REPO, started_by="test", reserved=ports
        )
        try:
            for node_id in config.node_ids:
                launcher.start(node_id)
            yield launcher
        finally:
            launcher.stop_all()


async def as_peer(config: Config, target: str, posing_as: str, *messages: object) -> None:
    """Frames to `target` on a peer connection with `posing_as`'s certificate."""
    async with await connect_as(config, target, tls.node(posing_as)) as stream:
        for message in messages:
            frame = wire.encode_frame(
                message, cluster_id=config.cluster_id, sender=config.index_of(posing_as)
            )
            await stream.send_all(frame)
        await trio.sleep(0.5)


async def test_a_peer_with_a_node_certificate_cannot_crash_freeze_or_rob_the_cluster(
    tmp_path: Path,
) -> None:
    with tls_processes(tmp_path) as launcher:
        config = launcher.config
        await wait_until_answering(launcher, config.node_ids)
        leader = await replicas.wait_for_leader(config, timeout_s=30)
        async with open_client(config, "A") as client:
            with trio.fail_after(30):
                assert (await client.transfer("A", "B", 3)).ok
        victim = next(n for n in config.node_ids if n != leader)
        view = await replicas.ask(config, victim, ControlOp.print_view)
        slot = view["executed_slot"]
        unsigned = Snapshot(  # money out of nowhere, with a digest to match
            slot=slot + 100,
            balances=(("J", 1000),),
            clients=(),
            digest=b"",
            chain=bytes(16),
        )
        minted = attrs.evolve(unsigned, digest=state_digest(unsigned, config.initial_balance))
        forged = [
            Prepare(ballot=Ballot(2**64 - 1, config.index_of(leader))),
            InstallCheckpoint(
                snapshot=minted,
                nonce=0,
            ),
            Accept(
                ballot=Ballot(10**6, config.index_of(leader)),
                slot=slot,
                batch=(
                    Command(
                        client_id="mallory",
                        request_no=1,
                        kind=CommandKind.transfer,
                        transfers=(Transfer(sender="A", receiver="J", amount=7),),
                    ),
                ),
                commit_slot=0,
                commit_chain=bytes(16),
                purge_slot=0,
            ),
        ]
        await as_peer(config, victim, leader, *forged)

        assert launcher.exited() == {}  # every process alive
        async with open_client(config, "A") as client:  # the cluster goes on
            with trio.fail_after(30):
                assert (await client.transfer("A", "C", 1)).ok
        with trio.fail_after(10):
            while True:
                dbs = [
                    (await replicas.ask(config, n, ControlOp.print_db))["balances"]
                    for n in config.node_ids
                ]
                if all(db == dbs[0] for db in dbs):
                    break
                await trio.sleep(0.1)
        assert (dbs[0]["A"], dbs[0]["B"], dbs[0]["C"], dbs[0]["J"]) == (6, 13, 11, 10)
        promised = (await replicas.ask(config, victim, ControlOp.print_view))["promised"]
        assert not promised.startswith(str(2**64 - 1))
        log = (tmp_path / "logs" / f"{victim}.log").read_text()
        assert "refused Prepare" in log and "is beyond" in log


async def timed_transfers(client: Client, count: int) -> list[float]:
    """Seconds each of `count` sequential transfers took."""
    took = []
    for _ in range(count):
        began = trio.current_time()
        assert (await client.transfer("A", "B", 1)).ok
        took.append(trio.current_time() - began)
    return took


async def test_a_print_log_flood_that_is_never_read_changes_no_leader_and_is_cut_off(
    tmp_path: Path,
) -> None:
    """The issue's 60 print_log requests from a client that never reads took
    the leader from 105 MB to 1,039 MB and, built in the core loop, caused a
    leader change. Now: answered off the core loop, within a share of the
    time; the reader that does not read is disconnected at the reply bound;
    the leader's memory comes back near where it was."""
    with tls_processes(tmp_path, initial_balance=10**7) as launcher:
        config = launcher.config
        await wait_until_answering(launcher, config.node_ids)
        leader = await replicas.wait_for_leader(config, timeout_s=30)
        async with open_client(config, "A") as client:
            with trio.fail_after(60):
                for _ in range(25):  # a log worth printing: 20,000 transfers
                    assert (await client.transfers([("A", "B", 1)] * 800)).ok
            view = await replicas.ask(config, leader, ControlOp.print_view)
            pid = launcher.pid(leader)
            assert pid is not None
            before = resident_bytes(pid)
            assert before is not None
            flooder = await connect_as(config, leader, tls.operator("admin"))
            request = wire.encode_frame(
                ControlRequest(op=ControlOp.print_log), cluster_id=config.cluster_id, sender=0
            )
            log_path = tmp_path / "logs" / f"{leader}.log"
            took: list[float] = []
            with trio.fail_after(120):
                try:
                    while "does not read" not in log_path.read_text():
                        await flooder.send_all(request * 128)  # twice what may wait
                        with trio.move_on_after(3):
                            while True:  # a real client meanwhile
                                took += await timed_transfers(client, 1)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # cut off
                while "does not read" not in log_path.read_text():
                    await trio.sleep(0.1)
            await flooder.aclose()
            took += await timed_transfers(client, 20)
        await trio.sleep(2)
        after = resident_bytes(pid)
        assert after is not None
        assert launcher.exited() == {}
        print(
            "FIG", before / 2**20, after / 2**20, max(took), len(took), sorted(took)[len(took) // 2]
        )
        assert max(took) < 0.5, f"a transfer took {max(took):.3f} s during the flood"
        later = await replicas.ask(config, leader, ControlOp.print_view)
        assert (later["role"], later["ballot"]) == ("leader", view["ballot"])  # no election
        # The flood, unbounded, grew it by about 1 GB; the thousands of transfers
        # the test itself makes (log, client table, allocator) take up to ~11 MB.
        assert after - before < 32 * 2**20, (
            f"{before / 2**20:.0f} MB before, {after / 2**20:.0f} after"
        )


async def test_two_thousand_idle_connections_and_a_slowloris_do_not_slow_a_real_client(
    tmp_path: Path,
) -> None:
    """The issue: EMFILE under 1,100 idle connections made a snapshot's
    temporary file fail and the replica exit. Now strangers beyond
    connections_max make room for each other, a TLS handshake or a frame
    dribbled a byte at a time is cut off at its deadline, and a client with
    a certificate is served as fast as before."""
    crowd = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < crowd + 200:
        if hard < crowd + 200:
            pytest.skip(f"{crowd} connections need more file descriptors than {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (crowd + 200, hard))
    with tls_processes(tmp_path, initial_balance=1000) as launcher:
        config = launcher.config
        await wait_until_answering(launcher, config.node_ids)
        leader = await replicas.wait_for_leader(config, timeout_s=30)
        async with open_client(config, "A") as client:
            with trio.fail_after(30):
                calm = await timed_transfers(client, 50)
            opened = 0
            async with trio.open_nursery() as nursery:

                async def stranger() -> None:
                    """An idle connection that comes back a second after it is closed."""
                    nonlocal opened
                    while True:
                        with contextlib.suppress(OSError):
                            async with await TcpNetwork(config).connect(leader) as stream:
                                opened += 1
                                while await stream.receive_some(1024):
                                    pass
                        await trio.sleep(1)

                async def slowloris() -> None:
                    """With a certificate: a frame's header a byte per second."""
                    stream = await connect_as(config, leader, tls.client("A"))
                    frame = wire.encode_frame(
                        ControlRequest(op=ControlOp.ping), cluster_id=config.cluster_id, sender=0
                    )
                    with contextlib.suppress(trio.BrokenResourceError):
                        for byte in frame:
                            await stream.send_all(bytes([byte]))
                            await trio.sleep(1)

                for _ in range(crowd):
                    nursery.start_soon(stranger)
                with trio.fail_after(60):
                    while opened < crowd:
                        await trio.sleep(0.1)
                    nursery.start_soon(slowloris)
                    crowded = []
                    with trio.move_on_after(constants.partial_frame_timeout_ms / 1000 + 2):
                        while True:
                            crowded += await timed_transfers(client, 1)
                            await trio.sleep(0.01)
                    async with open_client(config, "B") as newcomer:  # a new connection too
                        assert (await newcomer.transfer("B", "C", 1)).ok
                nursery.cancel_scope.cancel()
        assert launcher.exited() == {}
        log = (tmp_path / "logs" / f"{leader}.log").read_text()
        assert "and it has not shown who it is" in log  # strangers made room
        assert "a frame not finished within" in log  # the slowloris was cut off
    calm_p50, crowded_p50 = statistics.median(calm), statistics.median(crowded)
    # Generous: the crowd's own process shares this machine's cores (CI runs
    # other work beside it); before the connection limit, the replica exited.
    assert crowded_p50 < calm_p50 + 0.05, (calm_p50, crowded_p50)
    assert max(crowded) < 2.0, max(crowded)
