"""One nemesis run: clients load the real cluster while faults come and go.

The phases:

1. start five replicas (tools/nemesis/cluster.py) and wait for a leader;
2. for `duration` seconds: every client (each owning its account) sends
   transfers from its account and reads, one at a time, never giving up on a
   request (a re-send keeps its number, so it applies once); an auditor reads
   every balance. Meanwhile the fault loop: a calm gap, one fault (touching at
   most f replicas), its heal, then wait until the cluster has recovered (every
   replica answers as leader or follower, none paused or rejoining, all
   executed up to the leader's commit slot at the heal) and time that;
3. heal whatever is left; every request still in flight must be answered;
4. check the history (tools/nemesis/history.py) against every replica's
   final balances, and the checkpoint digests against each other;
5. kill -9 all five, start them again, and check again.

Fault kinds (`FAULT_KINDS`): kill (kill -9, restart later), leader-kill,
pause (SIGSTOP, SIGCONT later; the leader half the time), the partitions
(with nftables: a minority cut off both ways, the leader with one follower
cut off, a one-way cut of one replica's outgoing packets, a bridge: two pairs
that reach each other only through the fifth), disk-full (the tmpfs replica's
disk filled, then freed), disk-lost (kill -9, data directory deleted, started
again: with --recover), wal-flip (kill -9, one byte flipped in the middle of
the newest WAL segment, started again without a flag).
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from ledgerpaxos import replicas
from ledgerpaxos.client import Client, open_client
from ledgerpaxos.core.messages import CommandKind, ControlOp, Transfer
from tools.nemesis import net
from tools.nemesis.cluster import (
    AUDITOR,
    NemesisCluster,
    fill,
    initial_balance,
    tmpfs_unavailable,
)
from tools.nemesis.history import Op, Verdict, check

log = logging.getLogger("ledgerpaxos.nemesis")

FAULT_KINDS = (
    "kill",
    "leader-kill",
    "pause",
    "partition",
    "leader-partition",
    "one-way",
    "bridge",
    "disk-full",
    "disk-lost",
    "wal-flip",
)
NET_KINDS = frozenset({"partition", "leader-partition", "one-way", "bridge"})

duration_s_max = 3600
recover_timeout_s = 60.0  # after a heal, the cluster must be whole again within this
drain_timeout_s = 60.0  # after the run, every request in flight must be answered by then
converge_timeout_s = 60.0
control_timeout_s = 2.0
poll_s = 0.2
read_probability = 0.15
amount_max = 30


class NemesisError(Exception):
    """The run could not be carried out (a replica would not start, ...)."""


@attrs.define
class FaultRecord:
    kind: str
    nodes: tuple[str, ...]
    start_s: float
    healed_s: float = 0.0
    recovered_s: float | None = None  # None: not within recover_timeout_s

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_s is None else self.recovered_s - self.healed_s


@attrs.define
class RunResult:
    duration_s: float
    ops: list[Op]
    faults: list[FaultRecord]
    skipped_kinds: dict[str, str]  # kind -> why it did not run
    verdict: Verdict
    after_restart: list[str]  # problems found after kill -9 of all five
    digest_problems: list[str]
    replica_balances: dict[str, dict[str, int]]

    @property
    def ok(self) -> bool:
        return (
            self.verdict.ok
            and not self.after_restart
            and not self.digest_problems
            and all(f.recovered_s is not None for f in self.faults)
        )


class Nemesis:
    def __init__(
        self,
        cluster: NemesisCluster,
        *,
        duration_s: float,
        seed: int,
        kinds: tuple[str, ...],
        skipped: dict[str, str],
        partitioner: net.Partitioner | None,
        progress: Callable[[str], None],
    ) -> None:
        self.cluster = cluster
        self.config = cluster.config
        self.duration_s = duration_s
        # The faults draw from their own stream, each client from its own: the
        # kinds and their order follow from the seed, whatever the timing.
        self.seed = seed
        self.rng = random.Random(f"ledgerpaxos-nemesis/{seed}/faults")
        self.kinds = kinds
        self.skipped = skipped
        self.partitioner = partitioner
        self.progress = progress
        self.ops: list[Op] = []
        self.faults: list[FaultRecord] = []
        self.started = time.monotonic()
        self.stop_sending = trio.Event()
        self._round: list[str] = []
        # Scaled to the run: a 20 s run still sees a handful of faults.
        self.fault_s = (1.0, min(6.0, max(2.0, duration_s / 10)))
        self.calm_s = (0.5, min(3.0, max(1.0, duration_s / 20)))

    def now(self) -> float:
        return time.monotonic() - self.started

    # ------------------------------------------------------------ the run

    async def run(self) -> RunResult:
        self.cluster.start()
        leader = await replicas.wait_for_leader(self.config, timeout_s=60, check=self._no_exits)
        self.progress(f"leader {leader}; load and faults for {self.duration_s:.0f} s")
        self.started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for client_id in self.cluster.clients:
                nursery.start_soon(self._client, client_id)
            nursery.start_soon(self._auditor)
            await self._faults()
            self.stop_sending.set()
            self.progress("healed; waiting for the requests in flight")
            with trio.move_on_after(drain_timeout_s):
                while any(not op.answered for op in self.ops):
                    await trio.sleep(poll_s)
            nursery.cancel_scope.cancel()
        end = self.now()
        balances = await self._converged_balances()
        verdict = check(
            self.ops,
            initial=dict.fromkeys(self.cluster.clients, initial_balance),
            owners={c: c for c in self.cluster.clients},
            auditors=[AUDITOR],
            replica_balances=balances,
        )
        digest_problems = await self._digest_problems()
        self.progress("kill -9 of all five, then a restart")
        after = await self._after_restart(verdict.final_balances)
        return RunResult(
            duration_s=end,
            ops=self.ops,
            faults=self.faults,
            skipped_kinds=self.skipped,
            verdict=verdict,
            after_restart=after,
            digest_problems=digest_problems,
            replica_balances=balances,
        )

    def _no_exits(self) -> None:
        exited = self.cluster.exited()
        if exited:
            raise NemesisError(f"replicas exited: {exited}")

    # ------------------------------------------------------------ clients

    async def _client(self, client_id: str) -> None:
        others = [c for c in self.cluster.clients if c != client_id]
        rng = random.Random(f"ledgerpaxos-nemesis/{self.seed}/client/{client_id}")
        async with open_client(self.config, client_id) as client:
            while not self.stop_sending.is_set():
                if rng.random() < read_probability:
                    await self._send(
                        client, Op(client=client_id, kind="read", request_no=0, sent_s=self.now())
                    )
                else:
                    op = Op(
                        client=client_id,
                        kind="transfer",
                        request_no=0,
                        sent_s=self.now(),
                        sender=client_id,
                        receiver=rng.choice(others),
                        amount=rng.randint(1, amount_max),
                    )
                    await self._send(client, op)

    async def _auditor(self) -> None:
        async with open_client(self.config, AUDITOR) as client:
            while not self.stop_sending.is_set():
                await self._send(
                    client, Op(client=AUDITOR, kind="read", request_no=0, sent_s=self.now())
                )
                await trio.sleep(0.2)

    async def _send(self, client: Client, op: Op) -> None:
        self.ops.append(op)
        transfers = (
            (Transfer(sender=op.sender, receiver=op.receiver, amount=op.amount),)
            if op.kind == "transfer"
            else ()
        )
        kind = CommandKind.transfer if op.kind == "transfer" else CommandKind.read
        reply = await client.request(kind, transfers)  # no timeout: re-sent until answered
        op.replied_s = self.now()
        op.request_no = reply.request_no
        outcome = reply.outcome
        op.slot, op.index = outcome.slot, outcome.index
        if op.kind == "read":
            op.balances = dict(outcome.balances or ())
            op.ok = True
        else:
            op.ok, op.reason = outcome.ok, outcome.reason

    # ------------------------------------------------------------ faults

    async def _faults(self) -> None:
        end = self.duration_s
        while self.now() < end:
            await trio.sleep(min(self.rng.uniform(*self.calm_s), max(0.0, end - self.now())))
            if self.now() >= end - 1:
                break
            if not self._round:  # every kind once, in a new order each round
                self._round = self.rng.sample(self.kinds, len(self.kinds))
            kind = self._round.pop()
            record = await self._fault(kind, min(self.rng.uniform(*self.fault_s), end - self.now()))
            if record is None:
                continue
            self.faults.append(record)
            await self._recover(record)
            took = f"{record.recovery_s:.2f} s" if record.recovery_s is not None else "NOT"
            self.progress(
                f"{record.start_s:6.1f} s  {kind:<16} {','.join(record.nodes):<11} "
                f"recovered in {took}"
            )

    async def _answers(self, op: ControlOp) -> dict[str, dict[str, Any]]:
        """The answers of every replica that answers `op` in time, by node."""
        return replicas.bodies(await replicas.ask_all(self.config, op, timeout_s=control_timeout_s))

    async def _leader(self) -> str | None:
        return replicas.highest_leader(await self._answers(ControlOp.print_view))

    async def _fault(self, kind: str, hold_s: float) -> FaultRecord | None:
        cluster = self.cluster
        nodes = list(cluster.node_ids)
        leader = await self._leader()
        follower = self.rng.choice([n for n in nodes if n != leader])
        start = self.now()
        if kind in ("kill", "leader-kill", "disk-lost", "wal-flip"):
            victim = leader if kind == "leader-kill" and leader is not None else follower
            if self.rng.random() < 0.3 and kind == "disk-lost" and leader is not None:
                victim = leader
            cluster.kill(victim)
            if kind == "disk-lost":
                _empty(cluster.data_dir(victim))
            elif kind == "wal-flip" and not _flip_a_wal_byte(cluster.data_dir(victim), self.rng):
                log.info("no WAL segment to flip a byte in on %s", victim)
            await trio.sleep(hold_s)
            cluster.start_node(victim)
            return FaultRecord(kind, (victim,), start, healed_s=self.now())
        if kind == "pause":
            victim = leader if self.rng.random() < 0.5 and leader is not None else follower
            cluster.pause(victim)
            await trio.sleep(hold_s)
            cluster.resume(victim)
            return FaultRecord(kind, (victim,), start, healed_s=self.now())
        if kind == "disk-full":
            node = cluster.tmpfs_node
            assert node is not None
            filler = cluster.data_dir(node) / "nemesis-filler"
            await trio.to_thread.run_sync(fill, filler)
            await trio.sleep(hold_s)
            filler.unlink()
            return FaultRecord(kind, (node,), start, healed_s=self.now())
        assert kind in NET_KINDS and self.partitioner is not None
        host = cluster.host_of
        if kind == "partition":
            group = self.rng.sample(nodes, self.rng.choice((1, 2)))
            links = _both_ways(group, [n for n in nodes if n not in group])
        elif kind == "leader-partition":
            group = [leader or follower, follower]
            links = _both_ways(group, [n for n in nodes if n not in group])
        elif kind == "one-way":
            group = [leader if self.rng.random() < 0.5 and leader is not None else follower]
            links = [(group[0], n) for n in nodes if n != group[0]]
        else:  # bridge: {a, b} and {d, e} meet only through c
            shuffled = self.rng.sample(nodes, len(nodes))
            left, right = shuffled[:2], shuffled[3:]
            group = [*left, *right]
            links = _both_ways(left, right)
        self.partitioner.cut([(host(a), host(b)) for a, b in links])
        await trio.sleep(hold_s)
        self.partitioner.heal()
        return FaultRecord(kind, tuple(sorted(group)), start, healed_s=self.now())

    async def _recover(self, record: FaultRecord) -> None:
        """Wait until every replica answers as leader or follower of one
        leader and has executed what the leader had committed at the heal."""
        target: int | None = None
        deadline = record.healed_s + recover_timeout_s
        while self.now() < deadline:
            views = await self._answers(ControlOp.print_view)
            leader = replicas.highest_leader(views)
            if leader is not None:
                if target is None:
                    target = int(views[leader]["commit_slot"])
                whole = len(views) == len(self.cluster.node_ids) and all(
                    v["role"] in ("leader", "follower")
                    and v["alive"]
                    and not v.get("paused")
                    and v["leader"] == leader
                    and int(v["executed_slot"]) >= target
                    for v in views.values()
                )
                if whole:
                    record.recovered_s = self.now()
                    return
            await trio.sleep(poll_s)
        log.error(
            "%s on %s: not recovered within %.0f s", record.kind, record.nodes, recover_timeout_s
        )

    # ------------------------------------------------------------ after the run

    async def _converged_balances(self) -> dict[str, dict[str, int]]:
        """Every replica's balances, once they agree (or as they are at the deadline)."""
        deadline = trio.current_time() + converge_timeout_s
        while True:
            answers = await self._answers(ControlOp.print_db)
            balances = {n: dict(b["balances"]) for n, b in answers.items()}
            values = list(balances.values())
            agreed = len(values) == len(self.cluster.node_ids) and all(
                v == values[0] for v in values
            )
            if agreed or trio.current_time() > deadline:
                return balances
            await trio.sleep(poll_s)

    async def _digest_problems(self) -> list[str]:
        views = await self._answers(ControlOp.print_view)
        seen: dict[str, tuple[str, str]] = {}
        problems = []
        for node, view in sorted(views.items()):
            for slot, digest in view.get("checkpoint_digests", {}).items():
                known = seen.setdefault(slot, (node, digest))
                if known[1] != digest:
                    problems.append(
                        f"checkpoint {slot}: {known[0]} has digest {known[1][:16]}, {node} {digest[:16]}"
                    )
        return problems

    async def _after_restart(self, expected: dict[str, int]) -> list[str]:
        for node in self.cluster.node_ids:
            self.cluster.kill(node)
        self.cluster.start()
        try:
            await replicas.wait_for_leader(self.config, timeout_s=60, check=self._no_exits)
        except Exception as error:
            return [f"no leader after kill -9 of all five and a restart: {error}"]
        async with open_client(self.config, AUDITOR) as client:
            with trio.move_on_after(30):
                seen = await client.balances()
                if seen != expected:
                    return [f"after the restart a read shows {seen}, the replay {expected}"]
        balances = await self._converged_balances()
        return [
            f"after the restart {node} holds {b}, the replay {expected}"
            for node, b in sorted(balances.items())
            if b != expected
        ] + (
            []
            if len(balances) == len(self.cluster.node_ids)
            else [f"after the restart only {sorted(balances)} answered"]
        )


def _both_ways(group: list[str], rest: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a in group for b in rest] + [(b, a) for a in group for b in rest]


def _empty(directory: Path) -> None:
    """A lost disk: nothing left in the data directory (a mount point stays)."""
    for path in directory.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _flip_a_wal_byte(directory: Path, rng: random.Random) -> bool:
    segments = sorted(p for p in directory.glob("wal-*.log"))
    if not segments or segments[-1].stat().st_size < 256:
        return False
    data = bytearray(segments[-1].read_bytes())
    offset = rng.randrange(len(data) // 4, len(data) * 3 // 4)
    data[offset] ^= 1 << rng.randrange(8)
    segments[-1].write_bytes(bytes(data))
    return True


def available_kinds(
    *, no_tmpfs: str | None, no_partitions: str | None
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The fault kinds that can run here, and why the others cannot (the
    arguments: why there is no tmpfs, no partitions; None when there is)."""
    skipped: dict[str, str] = {}
    kinds = []
    for kind in FAULT_KINDS:
        if kind in NET_KINDS and no_partitions is not None:
            skipped[kind] = no_partitions
        elif kind == "disk-full" and no_tmpfs is not None:
            skipped[kind] = no_tmpfs
        else:
            kinds.append(kind)
    return tuple(kinds), skipped


async def run_nemesis(
    *,
    duration_s: float,
    clients: int,
    seed: int,
    progress: Callable[[str], None],
    keep: Path | None = None,
) -> RunResult:
    """One whole run in a fresh temporary directory (kept at `keep` if given)."""
    why_no_net = net.unavailable()
    why_no_tmpfs = tmpfs_unavailable()
    tmpfs = why_no_tmpfs is None
    kinds, skipped = available_kinds(no_tmpfs=why_no_tmpfs, no_partitions=why_no_net)
    for why in dict.fromkeys(skipped.values()):
        names = ", ".join(kind for kind, reason in skipped.items() if reason == why)
        progress(f"skipping {names}: {why}")
    directory = Path(tempfile.mkdtemp(prefix="ledgerpaxos-nemesis-"))
    partitioner = net.Partitioner() if why_no_net is None else None
    try:
        with NemesisCluster(directory, clients=clients, tmpfs=tmpfs) as cluster:
            nemesis = Nemesis(
                cluster,
                duration_s=duration_s,
                seed=seed,
                kinds=kinds,
                skipped=skipped,
                partitioner=partitioner,
                progress=progress,
            )
            return await nemesis.run()
    finally:
        if partitioner is not None:
            partitioner.close()
        if keep is not None:
            shutil.copytree(directory / "logs", keep, dirs_exist_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
