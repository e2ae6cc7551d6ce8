"""Whole clusters of real runtimes in one process: MemoryNetwork, autojump clock."""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path

import pytest
import trio

import wire
from ledgerpaxos import constants
from ledgerpaxos.client import ClientTimeout, open_client
from ledgerpaxos.config import make_local_config
from ledgerpaxos.core import ledger as rules
from ledgerpaxos.core.messages import (
    Ballot,
    Command,
    CommandKind,
    ControlOp,
    Heartbeat,
    Transfer,
)
from ledgerpaxos.host import ReadyExecutor
from ledgerpaxos.runtime import Replica, TcpNetwork
from ledgerpaxos.runtime import replica as replica_module
from ledgerpaxos.storage import StorageError
from ledgerpaxos.storage.identity import Start
from ledgerpaxos.testing.network import MemoryNetwork
from tests.conftest import Cluster, ReservePorts, open_cluster

INITIAL = dict.fromkeys("ABCDEFGHIJ", 10)


def expected_after(transfers: list[tuple[str, str, int]]) -> dict[str, int]:
    balances = dict(INITIAL)
    for sender, receiver, amount in transfers:
        balances[sender] -= amount
        balances[receiver] += amount
    return balances


def followers_of(cluster: Cluster, leader: str) -> list[str]:
    return [n for n in cluster.node_ids if n != leader]


async def test_commits_with_five_of_five_alive(cluster: Cluster, autojump_clock: object) -> None:
    await cluster.wait_for_leader()
    done = [("A", "B", 3), ("B", "C", 5), ("C", "A", 1)]
    async with cluster.client("A") as client:
        for t in done:
            assert (await client.transfer(*t)).ok
        assert await client.balances() == expected_after(done)
    assert await cluster.wait_until(cluster.balances_agree) == expected_after(done)


async def test_commits_with_three_of_five_alive(cluster: Cluster, autojump_clock: object) -> None:
    leader = await cluster.wait_for_leader()
    dead = followers_of(cluster, leader)[:2]
    for node in dead:
        await cluster.set_alive(node, False)
    done = [("A", "B", 3), ("D", "E", 4)]
    async with cluster.client("A") as client:
        for t in done:
            assert (await client.transfer(*t)).ok
        assert await client.balances() == expected_after(done)
    assert await cluster.wait_until(cluster.balances_agree) == expected_after(done)
    for node in dead:
        assert cluster.replicas[node].core.balances() == INITIAL


async def test_no_progress_with_two_of_five_alive_until_a_third_returns(
    cluster: Cluster, autojump_clock: object
) -> None:
    await cluster.wait_for_leader()
    dead = ["n3", "n4", "n5"]
    for node in dead:
        await cluster.set_alive(node, False)
    replies = []

    async with cluster.client("A") as client, trio.open_nursery() as nursery:

        async def transfer() -> None:
            replies.append(await client.transfer("A", "B", 2))

        nursery.start_soon(transfer)
        await trio.sleep(10)  # virtual: many client retries and elections
        assert replies == []
        assert cluster.replicas["n1"].core.balances() == INITIAL
        await cluster.set_alive("n3", True)
        with trio.fail_after(10):
            while not replies:
                await trio.sleep(0.01)
    assert replies[0].ok
    assert await cluster.wait_until(cluster.balances_agree) == expected_after([("A", "B", 2)])


async def test_leader_killed_a_new_leader_within_the_election_timeout_and_nothing_lost(
    cluster: Cluster, autojump_clock: object
) -> None:
    old = await cluster.wait_for_leader()
    done = [("A", "B", 1), ("B", "C", 2), ("C", "D", 3)]
    async with cluster.client("A") as client:
        for t in done:
            assert (await client.transfer(*t)).ok
        answers = {n: await cluster.control(n, ControlOp.kill_leader) for n in cluster.node_ids}
        assert [n for n, body in answers.items() if body["ok"]] == [old]
        assert "not the leader" in answers[next(n for n in cluster.node_ids if n != old)]["reason"]
        killed_at = trio.current_time()
        new = await cluster.wait_for_leader(not_=old)
        timeout_s = cluster.config.timers.election_timeout_ms_max / 1000
        assert trio.current_time() - killed_at <= timeout_s + 0.1
        assert new != old
        done.append(("D", "E", 4))
        reply = await client.transfer("D", "E", 4)
        assert reply.ok and reply.leader == new
        assert client.leader == new
        assert await client.balances() == expected_after(done)


async def _past_two_checkpoints(cluster: Cluster) -> list[tuple[str, str, int]]:
    """27 transfers, one slot each: slots past checkpoint 20; returns them."""
    done = [("ABCDEFGHIJ"[i % 10], "ABCDEFGHIJ"[(i + 1) % 10], 1) for i in range(27)]
    async with cluster.client("A") as client:
        for t in done:
            assert (await client.transfer(*t)).ok
    return done


async def test_a_large_snapshot_is_written_in_a_worker_thread_and_the_log_purged_after(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every snapshot taken as a large one (real clock: a thread's time
    is real), the write runs beside the loop and the leader purges its log
    once the file is durable; the laggard-free cluster goes on meanwhile."""
    monkeypatch.setattr(constants, "snapshot_in_loop_rows_max", 0)
    threads: list[bool] = []
    write = ReadyExecutor.write_snapshot_later

    def watched(self: ReadyExecutor[object], view: object) -> object:
        threads.append(threading.current_thread() is not threading.main_thread())
        return write(self, view)  # type: ignore[arg-type]

    monkeypatch.setattr(ReadyExecutor, "write_snapshot_later", watched)
    leader = await cluster.wait_for_leader()
    done = await _past_two_checkpoints(cluster)
    live = cluster.replicas[leader].core
    assert await cluster.wait_until(lambda: live.purge_slot >= 20)
    assert threads and all(threads)  # every snapshot of every replica: in a worker thread
    assert live.snapshot_slot >= 20 and live.balances() == expected_after(done)


async def test_dead_replica_catches_up_by_installing_a_checkpoint(
    cluster: Cluster, autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    leader = await cluster.wait_for_leader()
    laggard = followers_of(cluster, leader)[0]
    await cluster.set_alive(laggard, False)
    done = await _past_two_checkpoints(cluster)
    # the leader purged the log below a checkpoint the others hold
    live = cluster.replicas[leader].core
    assert await cluster.wait_until(lambda: live.purge_slot >= 20)
    behind = cluster.replicas[laggard].core
    assert behind.checkpoint_slot == 0 and behind.balances() == INITIAL

    await cluster.set_alive(laggard, True)
    behind = cluster.replicas[laggard].core
    await cluster.wait_until(lambda: behind.executed_slot == live.executed_slot, what="catch-up")
    assert behind.checkpoint_slot >= 20
    assert behind.balances() == live.balances() == expected_after(done)
    installed = [
        r.getMessage()
        for r in caplog.records
        if r.name == f"ledgerpaxos.runtime.{laggard}" and "installing checkpoint" in r.getMessage()
    ]
    assert installed, "the laggard caught up without installing a checkpoint"


async def test_cut_off_replica_coming_back_does_not_depose_a_healthy_leader(
    cluster: Cluster, autojump_clock: object
) -> None:
    leader = await cluster.wait_for_leader()
    view = await cluster.control(leader, ControlOp.print_view)
    cut = followers_of(cluster, leader)[-1]
    cluster.network.cut(cut)
    await trio.sleep(5)  # the cut-off replica times out again and again
    assert cluster.replicas[cut].core.leader is None
    cluster.network.heal(cut)
    await trio.sleep(5)
    after = await cluster.control(leader, ControlOp.print_view)
    assert after["role"] == "leader" and after["ballot"] == view["ballot"]
    assert cluster.replicas[cut].core.leader == leader
    async with cluster.client("A") as client:
        assert (await client.transfer("A", "B", 1)).ok


async def test_the_same_request_twice_is_applied_once_also_across_a_leader_change(
    cluster: Cluster, autojump_clock: object
) -> None:
    leader = await cluster.wait_for_leader()
    register = Command(client_id="raw", request_no=1, kind=CommandKind.register)
    registered = (await cluster.raw_request(leader, register)).outcome
    assert not registered.evicted
    command = Command(
        session=rules.session_number(registered.slot, registered.index),
        client_id="raw",
        request_no=7,
        kind=CommandKind.transfer,
        transfers=(Transfer(sender="A", receiver="B", amount=4),),
    )
    first = await cluster.raw_request(leader, command)
    again = await cluster.raw_request(leader, command)
    assert first.outcome.ok and again.outcome == first.outcome

    await cluster.control(leader, ControlOp.kill_leader)
    new = await cluster.wait_for_leader(not_=leader)
    third = await cluster.raw_request(new, command)
    assert third.outcome == first.outcome
    async with cluster.client("A") as client:
        assert await client.balances() == expected_after([("A", "B", 4)])


async def test_each_ledger_rule_rejects_with_its_reason(
    cluster: Cluster, autojump_clock: object
) -> None:
    await cluster.wait_for_leader()
    async with cluster.client("A") as client:
        cases = [
            (("A", "B", 0), rules.REASON_AMOUNT),
            (("A", "B", -3), rules.REASON_AMOUNT),
            (("Z", "B", 1), rules.REASON_UNKNOWN_SENDER),
            (("A", "Z", 1), rules.REASON_UNKNOWN_RECEIVER),
            (("A", "A", 1), rules.REASON_SAME_ACCOUNT),
            (("A", "B", 11), rules.REASON_INSUFFICIENT),
        ]
        for transfer, reason in cases:
            reply = await client.transfer(*transfer)
            assert not reply.ok and reply.reason == reason, transfer
        # many in one request: each judged on its own, in order
        reply = await client.transfers([("A", "B", 10), ("A", "C", 1), ("B", "C", 20)])
        assert [r.ok for r in reply.results] == [True, False, True]
        assert reply.results[1].reason == rules.REASON_INSUFFICIENT
        assert not reply.ok and reply.reason == rules.REASON_INSUFFICIENT
        assert await client.balances() == expected_after([("A", "B", 10), ("B", "C", 20)])


async def test_a_restarted_replica_keeps_its_balances(
    cluster: Cluster, autojump_clock: object
) -> None:
    await cluster.wait_for_leader()
    done = [("A", "B", 1), ("B", "C", 2), ("C", "A", 3)] * 5  # across a checkpoint
    async with cluster.client("A") as client:
        for t in done:
            assert (await client.transfer(*t)).ok
    expected = await cluster.wait_until(cluster.balances_agree)
    assert expected == expected_after(done)
    restarted = await cluster.restart("n2")
    assert restarted.core.balances() == expected  # straight from its data directory


async def test_a_whole_cluster_restarted_keeps_its_balances(
    tmp_path: Path, autojump_clock: object
) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.wait_for_leader()
        done = [("A", "B", 2), ("B", "C", 1), ("C", "A", 1)] * 4
        async with cluster.client("A") as client:
            for t in done:
                assert (await client.transfer(*t)).ok
            before = await client.balances()
        for node in cluster.node_ids:
            await cluster.stop(node)
        for node in cluster.node_ids:
            await cluster.start(node)
        await cluster.wait_for_leader()
        async with cluster.client("A") as client:
            assert await client.balances() == before == expected_after(done)


async def test_a_garbage_frame_closes_that_connection_and_the_replica_keeps_serving(
    cluster: Cluster, autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    leader = await cluster.wait_for_leader()
    caplog.set_level(logging.WARNING)
    # a client connection sending garbage
    async with await cluster.network.connect(leader) as stream:
        await stream.send_all(b"\x00garbage" * 8)
        with trio.fail_after(1):
            assert await stream.receive_some() == b""
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("memory:client" in w and "magic" in w for w in warnings)
    # a peer connection: one good frame, then a corrupted one
    caplog.clear()
    heartbeat = Heartbeat(
        ballot=cluster.replicas[leader].core.ballot,
        commit_slot=0,
        commit_chain=bytes(16),
        purge_slot=0,
    )
    frame = wire.encode_frame(heartbeat, cluster_id=1, sender=cluster.config.index_of(leader))
    follower = next(n for n in cluster.node_ids if n != leader)
    async with await cluster.network.connect(follower, source=leader) as stream:
        await stream.send_all(frame + frame[:-1] + b"\xff")
        with trio.fail_after(1):
            assert await stream.receive_some() == b""
    assert any("checksum" in r.getMessage() and leader in r.getMessage() for r in caplog.records)
    # a frame of another cluster
    caplog.clear()
    async with await cluster.network.connect(leader) as stream:
        await stream.send_all(wire.encode_frame(heartbeat, cluster_id=2, sender=0))
        with trio.fail_after(1):
            assert await stream.receive_some() == b""
    assert any("cluster 2" in r.getMessage() for r in caplog.records)

    async with cluster.client("A") as client:
        assert (await client.transfer("A", "B", 1)).ok
    assert cluster.leaders() == [leader]


async def test_a_peer_claiming_an_unknown_index_is_refused(
    cluster: Cluster, autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    await cluster.wait_for_leader()
    caplog.set_level(logging.WARNING)
    heartbeat = Heartbeat(ballot=Ballot(1, 1), commit_slot=0, commit_chain=bytes(16), purge_slot=0)
    frame = wire.encode_frame(heartbeat, cluster_id=1, sender=9)
    async with await cluster.network.connect("n1") as stream:
        await stream.send_all(frame)
        with trio.fail_after(1):
            assert await stream.receive_some() == b""
    assert any("not a peer" in r.getMessage() for r in caplog.records)


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


async def test_a_storage_failure_stops_the_replica_before_it_acknowledges(
    tmp_path: Path, autojump_clock: object
) -> None:
    config = make_local_config(1, 7001, tmp_path / "data", fsync=False)
    network = MemoryNetwork()
    replica = Replica(config, "n1", network=network, rng=random.Random(1), start=Start.format)
    failures: list[BaseException] = []

    async def run(*, task_status: trio.TaskStatus[int]) -> None:
        try:
            await replica.run(task_status=task_status)
        except BaseExceptionGroup as group:
            failures.extend(leaves(group))

    def broken_sync() -> None:
        raise StorageError(str(tmp_path), "fsync", OSError(5, "Input/output error"))

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        async with open_client(config, "A", network=network) as client:
            assert (await client.transfer("A", "B", 1)).ok
            replica.store.sync = broken_sync  # type: ignore[method-assign]
            with pytest.raises(ClientTimeout):
                await client.transfer("A", "B", 1, timeout=5)
    assert [type(f) for f in failures] == [StorageError]


async def test_a_follower_whose_disk_fails_stops_and_the_others_go_on(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A follower writes an Accept in the task that read it (not the core
    loop's): its storage failure must still stop that replica."""
    config = make_local_config(3, 7001, tmp_path / "data", fsync=False)
    network = MemoryNetwork()
    replicas = {
        n: Replica(config, n, network=network, rng=random.Random(i), start=Start.format)
        for i, n in enumerate(config.node_ids)
    }
    failures: dict[str, list[BaseException]] = {n: [] for n in replicas}

    async def run(node: str, *, task_status: trio.TaskStatus[int]) -> None:
        try:
            await replicas[node].run(task_status=task_status)
        except BaseExceptionGroup as group:
            failures[node].extend(leaves(group))

    def broken_sync() -> None:
        raise StorageError(str(tmp_path), "fsync", OSError(5, "Input/output error"))

    async with trio.open_nursery() as nursery:
        for node in replicas:
            await nursery.start(run, node)
        async with open_client(config, "A", network=network) as client:
            assert (await client.transfer("A", "B", 1)).ok
            leader = next(n for n, r in replicas.items() if r.core.role.value == "leader")
            follower = next(n for n in replicas if n != leader)
            replicas[follower].store.sync = broken_sync  # type: ignore[method-assign]
            for _ in range(3):
                assert (await client.transfer("A", "B", 1, timeout=10)).ok  # a majority is left
        with trio.fail_after(5):
            while not failures[follower]:
                await trio.sleep(0.01)
        assert all(not failures[n] for n in replicas if n != follower)
        nursery.cancel_scope.cancel()
    assert [type(f) for f in failures[follower]] == [StorageError]


async def test_over_tcp_one_task_reads_every_connection_and_drops_only_the_bad_one(
    tmp_path: Path, reserve_ports: ReservePorts
) -> None:
    """Real sockets go to the replica's poller: many clients are served, a
    connection that sends garbage is closed and forgotten, the rest go on."""
    config = make_local_config(1, reserve_ports(1), tmp_path / "data", fsync=False)
    network = TcpNetwork(config, reuse_port=True)
    replica = Replica(config, "n1", network=network, rng=random.Random(1), start=Start.format)
    async with trio.open_nursery() as nursery:
        await nursery.start(replica.run)
        poller = replica._poller
        assert poller is not None
        with trio.fail_after(20):
            garbage = await trio.open_tcp_stream("127.0.0.1", config.node("n1").port)
            await garbage.send_all(b"this is not a ledgerpaxos frame" * 4)
            assert await garbage.receive_some(100) == b""  # closed by the replica
            await garbage.aclose()

            accounts = config.accounts

            async def transfers(i: int) -> None:  # a ring: every balance ends where it began
                async with open_client(config, accounts[i]) as client:  # it owns accounts[i]
                    for _ in range(5):
                        reply = await client.transfer(accounts[i], accounts[(i + 1) % 8], 1)
                        assert reply.ok

            async with trio.open_nursery() as clients:
                for i in range(8):
                    clients.start_soon(transfers, i)
            assert replica.core.balances() == INITIAL
            assert sorted(replica.core.ledger.clients) == sorted(accounts[:8])
            while poller.inbound:  # the clients' connections end too
                await trio.sleep(0.01)
            idle = await trio.open_tcp_stream("127.0.0.1", config.node("n1").port)
            while not poller.inbound:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()  # stops with a connection still registered
    await idle.aclose()


async def test_a_peer_using_another_nodes_ballot_is_refused_and_the_replica_goes_on(
    cluster: Cluster, autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    leader = await cluster.wait_for_leader()
    caplog.set_level(logging.WARNING)
    follower = next(n for n in cluster.node_ids if n != leader)
    impostor = next(n for n in cluster.node_ids if n not in (leader, follower))
    ballot = cluster.replicas[leader].core.ballot  # not the impostor's to use
    heartbeat = Heartbeat(ballot=ballot, commit_slot=0, commit_chain=bytes(16), purge_slot=0)
    frame = wire.encode_frame(heartbeat, cluster_id=1, sender=cluster.config.index_of(impostor))
    async with await cluster.network.connect(follower, source=impostor) as stream:
        await stream.send_all(frame)
        await trio.sleep(0.1)
    refused = f"refused Heartbeat from {impostor}: Heartbeat for ballot {ballot} of another node"
    assert any(r.getMessage() == refused and r.levelname == "ERROR" for r in caplog.records)
    async with cluster.client("A") as client:
        assert (await client.transfer("A", "B", 1)).ok


async def test_requests_arriving_together_share_one_fsync(
    cluster: Cluster, autojump_clock: object
) -> None:
    leader = await cluster.wait_for_leader()
    store = cluster.replicas[leader].store
    syncs = 0
    real_sync = store.sync

    def counting_sync() -> None:
        nonlocal syncs
        syncs += 1
        real_sync()

    store.sync = counting_sync  # type: ignore[method-assign]
    accounts = "ABCDEFGHIJ"
    clients = [f"c{i}" for i in range(30)]
    async with trio.open_nursery() as nursery:
        for i, client_id in enumerate(clients):

            async def transfer(client_id: str = client_id, i: int = i) -> None:
                async with cluster.client(client_id) as client:
                    assert (await client.transfer(accounts[i % 10], accounts[(i + 1) % 10], 1)).ok

            nursery.start_soon(transfer)
    # Each client registers, then transfers: one slot for all registrations,
    # one for all transfers (a few more where one arrives late).
    assert cluster.replicas[leader].core.executed_slot <= 6
    assert syncs <= 6, f"{syncs} fsyncs for {2 * len(clients)} requests"


async def test_a_cancelled_wait_for_inbox_room_lets_tasks_step_again(tmp_path: Path) -> None:
    """A reader that waits for room in a full inbox and is cancelled sent
    nothing; afterwards, with the inbox drained, readers may step again."""
    config = make_local_config(3, 7001, tmp_path)  # never listens: no port needed
    replica = Replica(config, "n1", rng=random.Random(1))
    tick = replica_module._TICK
    for _ in range(constants.inbox_messages_max):
        await replica._to_inbox(tick)
    with trio.move_on_after(1) as waited:
        await replica._to_inbox(tick)  # the inbox is full: waits, then is cancelled
    assert waited.cancelled_caught
    assert replica._inbox_queued == constants.inbox_messages_max
    while True:
        try:
            replica._took([replica._inbox_out.receive_nowait()])  # as the core loop does
        except trio.WouldBlock:
            break
    assert replica._inbox_queued == 0 and replica._may_step_here()


async def test_the_inbox_is_bounded_in_bytes_and_always_takes_one_item(tmp_path: Path) -> None:
    """Frames of peers may be up to message_size_max each: the inbox holds
    inbox_bytes_max of them, more waits for the core loop; one item bigger
    than the bound gets in alone."""
    config = make_local_config(3, 7001, tmp_path)
    replica = Replica(config, "n1", rng=random.Random(1))
    heartbeat = Heartbeat(ballot=Ballot(1, 2), commit_slot=0, commit_chain=bytes(16), purge_slot=0)
    third = constants.inbox_bytes_max // 3
    for _ in range(3):
        await replica._to_inbox(replica_module._FromPeer(heartbeat, "n2", third))
    with trio.move_on_after(1) as waited:
        await replica._to_inbox(replica_module._FromPeer(heartbeat, "n2", third))
    assert waited.cancelled_caught  # a fourth third does not fit
    assert replica._inbox_bytes == 3 * third and replica._inbox_queued == 3

    async def drain_later() -> None:
        await trio.sleep(1)
        items = [replica._inbox_out.receive_nowait() for _ in range(3)]
        replica._took(items)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain_later)
        huge = replica_module._FromPeer(heartbeat, "n2", 2 * constants.inbox_bytes_max)
        await replica._to_inbox(huge)  # in once the inbox is empty
        assert trio.current_time() >= 1
    assert replica._inbox_bytes == 2 * constants.inbox_bytes_max
    replica._took([replica._inbox_out.receive_nowait()])
    assert replica._inbox_bytes == 0 and replica._inbox_queued == 0


@pytest.mark.trio
async def test_a_peer_connection_leaves_from_the_dialing_nodes_own_address(
    tmp_path: Path, reserve_ports: ReservePorts
) -> None:
    """Nodes on 127.0.0.11 and 127.0.0.12: n2 sees n1's connection come from
    127.0.0.11, as on a host with many addresses; a client's goes unbound."""
    ports = reserve_ports(2)
    config = make_local_config(2, ports, tmp_path, hosts=["127.0.0.11", "127.0.0.12"])
    seen: list[str] = []

    async def note(stream: trio.abc.Stream) -> None:
        assert isinstance(stream, trio.SocketStream)
        seen.append(stream.socket.getpeername()[0])
        await stream.aclose()

    network = TcpNetwork(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(network.serve, "n2", note)
        for source in ("n1", None):
            stream = await network.connect("n2", source=source)
            await stream.aclose()
        with trio.fail_after(5):
            while len(seen) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert seen[0] == "127.0.0.11"
