"""Nobody holds a replica's resources for long: stalled frames, silent
handshakes, oversized client frames, too many connections, floods of warnings."""

from __future__ import annotations

import logging
import random
import struct
import zlib
from pathlib import Path

import pytest
import trio

import wire
from ledgerpaxos import constants, tls
from ledgerpaxos.client import authenticated, open_client
from ledgerpaxos.config import make_local_config
from ledgerpaxos.core.messages import ControlOp, ControlRequest
from ledgerpaxos.runtime import Replica, TcpNetwork
from ledgerpaxos.storage.identity import Start
from tests.conftest import Cluster, ReservePorts
from tests.test_tls_runtime import tls_cluster, tls_config


async def closed_within(stream: trio.abc.Stream, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def test_a_frame_left_unfinished_closes_its_connection_and_clients_go_on(
    cluster: Cluster, autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    leader = await cluster.wait_for_leader()
    frame = wire.encode_frame(ControlRequest(op=ControlOp.ping), cluster_id=1, sender=0)
    async with await cluster.network.connect(leader) as slow:
        await slow.send_all(frame[:-3])  # all but the last bytes, then nothing (slowloris)
        async with cluster.client("A") as client:
            assert (await client.transfer("A", "B", 1)).ok  # served meanwhile
        timeout_s = constants.partial_frame_timeout_ms / 1000
        assert not await closed_within(slow, timeout_s / 2)
        assert await closed_within(slow, timeout_s)
    assert any("a frame not finished within" in r.getMessage() for r in caplog.records)


async def test_at_the_connection_limit_strangers_make_room_and_known_ones_do_not(
    cluster: Cluster, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    leader = await cluster.wait_for_leader()
    open_before = cluster.replicas[leader].connections_open  # its peers' links
    monkeypatch.setattr(constants, "connections_max", open_before + 3)
    idle = [await cluster.network.connect(leader) for _ in range(3)]
    await trio.sleep(0.1)
    newcomer = await cluster.network.connect(leader)  # the oldest silent one goes
    assert await closed_within(idle[0], 1)
    ping = wire.encode_frame(ControlRequest(op=ControlOp.ping), cluster_id=1, sender=0)
    known = [*idle[1:], newcomer]
    for stream in known:  # each says something: now every connection is known
        await stream.send_all(ping)
        assert await stream.receive_some(65536)
    async with await cluster.network.connect(leader) as one_too_many:
        assert await closed_within(one_too_many, 1)
    for stream in [*idle, newcomer]:
        await stream.aclose()
    await trio.sleep(0.1)
    async with cluster.client("A") as client:  # room again
        assert (await client.transfer("A", "B", 1)).ok


async def test_with_tls_a_crowd_of_idle_strangers_does_not_keep_a_client_out(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tls_config(tmp_path)
    async with tls_cluster(config) as network:
        monkeypatch.setattr(constants, "connections_max", 20)
        crowd = [await network.connect(n) for n in config.node_ids for _ in range(200)]
        async with open_client(config, "A", network=network) as client:
            with trio.fail_after(5):
                assert (await client.transfer("A", "B", 1)).ok
        for stream in crowd:
            await stream.aclose()


async def test_a_flood_of_garbage_is_logged_once_a_second(
    cluster: Cluster, autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    leader = await cluster.wait_for_leader()
    caplog.set_level(logging.WARNING)
    for _ in range(50):
        async with await cluster.network.connect(leader) as stream:
            await stream.send_all(b"\x00garbage" * 8)
            assert await closed_within(stream, 1)
    await trio.sleep(1.5)
    async with await cluster.network.connect(leader) as stream:
        await stream.send_all(b"\x00garbage" * 8)
        assert await closed_within(stream, 1)
    closing = [r.getMessage() for r in caplog.records if "closing the connection" in r.getMessage()]
    assert len(closing) == 2, closing
    assert "(49 more like it not logged)" in closing[1]


async def test_with_tls_a_silent_connection_and_an_oversized_client_frame_are_cut_off(
    tmp_path: Path, autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    config = tls_config(tmp_path)
    async with tls_cluster(config) as network:
        async with await network.connect("n1") as silent:
            timeout_s = constants.tls_handshake_timeout_ms / 1000
            assert await closed_within(silent, timeout_s + 2)
        context = tls.client_context(tls.Files(config.tls_dir), tls.client("A"))
        stream = await authenticated(await network.connect("n1"), context, tls.node("n1"))
        async with stream:
            frame = wire.encode_frame(ControlRequest(op=ControlOp.ping), cluster_id=1, sender=0)
            header = bytearray(frame[: wire.HEADER_SIZE])
            huge = constants.client_frame_bytes_max + 1
            # The body length lies at its place in the header: the same layout, a bigger claim.
            offset = bytes(header).find(struct.pack(">I", len(frame) - wire.HEADER_SIZE))
            assert offset > 0
            header[offset : offset + 4] = struct.pack(">I", huge)
            header[-4:] = struct.pack(">I", zlib.crc32(bytes(header[:-4])))  # a valid header
            await stream.send_all(bytes(header))
            assert await closed_within(stream, 2)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "no TLS handshake within" in messages
    assert f"a frame of {huge} bytes, above the {constants.client_frame_bytes_max}" in messages


async def test_a_client_that_does_not_read_its_replies_is_disconnected(
    tmp_path: Path, reserve_ports: ReservePorts, caplog: pytest.LogCaptureFixture
) -> None:
    """Over real TCP (socket buffers fill up, unlike memory streams): print_log
    asked again and again, never read."""
    config = make_local_config(
        1, reserve_ports(1), tmp_path / "data", fsync=False, initial_balance=10**6
    )
    replica = Replica(
        config,
        "n1",
        network=TcpNetwork(config, reuse_port=True),
        rng=random.Random(1),
        start=Start.format,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(replica.run)
        async with open_client(config, "A") as client:
            for _ in range(40):  # a log worth printing
                assert (await client.transfers([("A", "B", 1)] * 20)).ok
        request = wire.encode_frame(ControlRequest(op=ControlOp.print_log), cluster_id=1, sender=0)
        port = config.node("n1").port
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(30):
            try:
                while True:
                    await stream.send_all(request * 50)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # cut off
        await stream.aclose()
        assert any("does not read" in r.getMessage() for r in caplog.records)
        async with open_client(config, "A") as client:  # and the replica serves on
            assert (await client.transfer("A", "B", 1)).ok
        nursery.cancel_scope.cancel()


def test_print_log_answers_with_the_newest_entries_within_its_bounds() -> None:
    from ledgerpaxos.core import SlotView
    from ledgerpaxos.core.messages import Ballot, Command, CommandKind, Transfer
    from ledgerpaxos.runtime.control import newest_entries

    def view(slot: int, transfers: int) -> SlotView:
        command = Command(
            client_id="A",
            request_no=slot,
            kind=CommandKind.transfer,
            transfers=(Transfer(sender="A", receiver="B", amount=1),) * transfers,
        )
        return SlotView(slot=slot, ballot=Ballot(1, 1), status="E", batch=(command,))

    many = [view(slot, 1) for slot in range(1, 1501)]
    shown, left_out = newest_entries(many)
    assert (len(shown), left_out) == (constants.control_log_entries_max, 500)
    assert shown[0]["slot"] == 501 and shown[-1]["slot"] == 1500
    heavy = [view(slot, 8000) for slot in range(1, 11)]
    shown, left_out = newest_entries(heavy)
    assert [e["slot"] for e in shown] == [9, 10] and left_out == 8  # a third: 24,000 > 20,000
