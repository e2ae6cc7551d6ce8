"""The client library against in-process clusters (MemoryNetwork, autojump clock)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import ledgerpaxos
from ledgerpaxos import client as client_module
from ledgerpaxos.client import ClientTimeout, TransferReply, control, open_client
from ledgerpaxos.core.messages import Command, CommandKind, ControlOp, Transfer
from tests.conftest import Cluster, open_cluster


def test_the_package_exports_the_public_api() -> None:
    assert ledgerpaxos.open_client is open_client
    assert ledgerpaxos.TransferReply is TransferReply
    assert ledgerpaxos.ClientTimeout is ClientTimeout
    assert ledgerpaxos.load_config is not None and ledgerpaxos.ConfigError is not None
    assert ledgerpaxos.Client is client_module.Client


async def test_request_numbers_strictly_increase_even_when_the_clock_stands_still(
    cluster: Cluster, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    await cluster.wait_for_leader()
    numbers = []
    async with cluster.client("A") as client:
        for _ in range(3):
            numbers.append((await client.transfer("A", "B", 1)).request_no)
        monkeypatch.setattr(client_module.time, "time_ns", lambda: 5_000_000)  # far in the past
        for _ in range(2):
            numbers.append((await client.transfer("A", "B", 1)).request_no)
    assert numbers == sorted(set(numbers))
    assert numbers[3] == numbers[2] + 1
    monkeypatch.undo()
    async with cluster.client("A") as again:  # a restarted client starts above the old one
        reply = await again.transfer("B", "A", 5)
        assert reply.ok and reply.request_no > numbers[-1]
        assert (await again.balances())["A"] == 10


async def test_a_client_without_any_replica_raises_client_timeout(
    tmp_path: Path, autojump_clock: object
) -> None:
    async with open_cluster(tmp_path, start=False) as cluster, cluster.client("A") as client:
        started = trio.current_time()
        with pytest.raises(ClientTimeout, match="no reply"):
            await client.transfer("A", "B", 1, timeout=3.5)
        assert trio.current_time() - started == pytest.approx(3.5)


async def test_the_client_tries_every_replica_and_adopts_the_leader_named_in_the_reply(
    cluster: Cluster, autojump_clock: object
) -> None:
    leader = await cluster.wait_for_leader()
    assert leader == "n1"  # the client's first guess
    await cluster.control("n1", ControlOp.kill_leader)
    async with cluster.client("A") as client:
        started = trio.current_time()
        reply = await client.transfer("A", "B", 1)
        assert reply.ok and reply.leader not in (None, "n1")
        assert trio.current_time() - started >= cluster.config.timers.client_timeout_ms / 1000
        assert client.leader == reply.leader
        started = trio.current_time()
        assert (await client.transfer("A", "B", 1)).ok
        assert trio.current_time() - started < 0.1  # straight to the new leader


async def test_the_client_reconnects_after_its_replica_restarts(
    cluster: Cluster, autojump_clock: object
) -> None:
    await cluster.wait_for_leader()
    async with cluster.client("A") as client:
        assert (await client.transfer("A", "B", 1)).ok
        await cluster.restart(client.leader)
        await cluster.wait_for_leader()
        with trio.fail_after(10):
            assert (await client.transfer("A", "B", 1)).ok
        assert (await client.balances())["B"] == 12
    assert client._connections == {}  # every connection closed with the client


async def test_transfers_carries_many_transfers_in_one_request(
    cluster: Cluster, autojump_clock: object
) -> None:
    await cluster.wait_for_leader()
    async with cluster.client("A") as client:
        reply = await client.transfers([("A", "B", 1)] * 10 + [("B", "C", 20)])
        assert reply.ok and len(reply.results) == 11
        assert (await client.balances())["C"] == 30
        with pytest.raises(ValueError):
            await client.transfers([])


async def test_every_reply_says_where_its_request_was_executed_and_a_resend_the_same(
    cluster: Cluster, autojump_clock: object
) -> None:
    await cluster.wait_for_leader()
    async with cluster.client("A") as first, cluster.client("c1") as second:
        async with trio.open_nursery() as nursery:  # two at once: one slot may hold both
            for client in (first, second):
                nursery.start_soon(client.transfer, "A", "B", 1)
        replies = [await first.transfer("A", "B", 1), await second.transfer("B", "C", 1)]
        read = await first.read()
        assert read.balances == await first.balances()
        session = second.session
        assert session is not None
    positions = [(r.slot, r.index) for r in replies] + [(read.slot, read.index)]
    assert positions == sorted(set(positions)) and positions[0][0] >= 1
    # A re-sent request is answered from the client table: the same place.
    slot, index = replies[1].slot, replies[1].index
    resent = await cluster.raw_request(
        cluster.node_ids[0],
        Command(
            client_id="c1",
            request_no=replies[1].request_no,
            kind=CommandKind.transfer,
            session=session,
            transfers=(Transfer(sender="B", receiver="C", amount=1),),
        ),
    )
    assert (resent.outcome.slot, resent.outcome.index) == (slot, index)


async def test_control_answers_every_operation(cluster: Cluster, autojump_clock: object) -> None:
    leader = await cluster.wait_for_leader()
    async with cluster.client("A") as client:
        assert (await client.transfers([("A", "B", 3), ("B", "C", 1)])).ok
        await client.balances()
    await cluster.wait_until(cluster.balances_agree)

    ping = await cluster.control("n2", "ping")
    assert ping == {
        "node": "n2",
        "alive": True,
        "role": "follower",
        "leader": leader,
        "paused": None,
        "ok": True,
    }
    log = await cluster.control(leader, ControlOp.print_log)
    batches = [e["batch"] for e in log["entries"]]
    transfer = "(A, B, 3) (B, C, 1)"
    assert any(b and b[0].startswith("A#") and b[0].endswith(transfer) for b in batches)
    assert any(b and b[0].endswith(" read") for b in batches)
    assert {e["status"] for e in log["entries"]} == {"E"}
    status = await cluster.control(leader, ControlOp.print_status)
    assert set(status["status"].values()) == {"E"} and "1" in status["status"]
    assert (await cluster.control(leader, ControlOp.print_status, 99))["status"] == {"99": "-"}
    db = await cluster.control("n3", ControlOp.print_db)
    assert db["balances"]["A"] == 7 and db["balances"]["C"] == 11 and db["alive"]
    view = await cluster.control("n4", ControlOp.print_view)
    assert view["leader"] == leader and view["views"][-1]["leader"] == leader
    assert view["ballot"] == view["views"][-1]["ballot"] == view["promised"]

    assert (await cluster.control("n4", ControlOp.set_alive, 0))["alive"] is False
    assert (await cluster.control("n4", ControlOp.ping))["alive"] is False
    assert (await cluster.control("n4", ControlOp.set_alive, 1))["alive"] is True


async def test_reset_wipes_a_replica_which_then_catches_up(
    cluster: Cluster, autojump_clock: object
) -> None:
    leader = await cluster.wait_for_leader()
    follower = next(n for n in cluster.node_ids if n != leader)
    async with cluster.client("A") as client:
        for _ in range(12):
            assert (await client.transfer("A", "B", 1)).ok
            assert (await client.transfer("B", "A", 1)).ok
        assert (await client.transfer("A", "C", 4)).ok
    await cluster.set_alive(follower, False)
    body = await cluster.control(follower, ControlOp.reset)
    assert body["ok"] and body["alive"] is True
    balances = await cluster.wait_until(cluster.balances_agree)
    assert balances["A"] == 6 and balances["C"] == 14
    restarted = await cluster.restart(follower)  # what it caught up with is on its disk
    assert restarted.core.balances() == balances


async def test_reset_is_refused_unless_the_config_allows_it(
    tmp_path: Path, autojump_clock: object
) -> None:
    async with open_cluster(tmp_path, allow_reset=False) as cluster:
        await cluster.wait_for_leader()
        async with cluster.client("A") as client:
            assert (await client.transfer("A", "B", 3)).ok
        reply = await control(cluster.config, "n1", ControlOp.reset, network=cluster.network)
        assert not reply.ok and "only a config with allow_reset = true" in reply.body
        assert cluster.replicas["n1"].core.balances()["A"] == 7  # nothing wiped
