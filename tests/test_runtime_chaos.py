"""Random faults (dead, cut-off, restarted replicas, killed leaders) under concurrent
clients: afterwards every replica agrees on the committed log and the balances,
and no money appeared or vanished. A failing seed becomes a permanent test."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from ledgerpaxos.core.messages import Batch, ControlOp
from tests.conftest import Cluster, open_cluster

SEEDS = range(4)


async def inject_faults(cluster: Cluster, rnd: random.Random, count: int) -> None:
    for _ in range(count):
        await trio.sleep(rnd.uniform(0.1, 1.5))
        node = rnd.choice(cluster.node_ids)
        fault = rnd.choice(["dead", "cut", "restart", "kill_leader"])
        if fault == "dead":
            await cluster.set_alive(node, False)
            await trio.sleep(rnd.uniform(0.2, 2))
            await cluster.set_alive(node, True)
        elif fault == "cut":
            cluster.network.cut(node)
            await trio.sleep(rnd.uniform(0.2, 2))
            cluster.network.heal(node)
        elif fault == "restart":
            await cluster.restart(node)
        else:
            for candidate in cluster.node_ids:
                if (await cluster.control(candidate, ControlOp.kill_leader))["ok"]:
                    await trio.sleep(rnd.uniform(0.2, 2))
                    await cluster.set_alive(candidate, True)


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_faults_keep_replicas_in_agreement(
    tmp_path: Path, autojump_clock: object, seed: int
) -> None:
    rnd = random.Random(seed)
    async with open_cluster(tmp_path, seed=seed) as cluster:
        await cluster.wait_for_leader()

        async def client(client_id: str) -> None:
            async with cluster.client(client_id) as c:
                for _ in range(15):
                    sender, receiver = rnd.sample("ABCDE", 2)
                    await c.transfer(sender, receiver, rnd.randint(1, 3))

        with trio.fail_after(300):
            async with trio.open_nursery() as nursery:
                for client_id in ("c1", "c2", "c3"):
                    nursery.start_soon(client, client_id)
                await inject_faults(cluster, rnd, 10)

        def settled() -> bool:
            executed = {r.core.executed_slot for r in cluster.replicas.values()}
            return len(executed) == 1 and cluster.balances_agree() is not None

        await cluster.wait_until(settled, timeout_s=60, what="agreement")
        balances = cluster.balances_agree()
        assert balances is not None and sum(balances.values()) == 100
        decided: dict[int, Batch] = {}
        for node_id, replica in cluster.replicas.items():
            for slot, entry in replica.core.log.items():
                if slot <= replica.core.commit_slot:
                    assert decided.setdefault(slot, entry.batch) == entry.batch, (node_id, slot)
