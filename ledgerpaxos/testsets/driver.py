"""Runs CSV test sets against a cluster, one set per `next`.

A set first makes exactly its live nodes alive (the others dead). Its legs then
run after whatever earlier sets left pending: within a leg every client (the
sender account) runs its transfers in order, one at a time, and clients run
concurrently; between legs the current leader is killed (LF). Transfers retry
until they are answered, so a set that lacks a majority stays pending and
completes once a later set brings a majority back.

Everything runs inside one trio nursery that the caller owns (the shell's trio
thread, or a test).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
import trio.lowlevel

from ledgerpaxos import constants, replicas
from ledgerpaxos.client import Client, ClientTimeout, TransferReply, open_client
from ledgerpaxos.config import Config
from ledgerpaxos.core.messages import ControlOp
from ledgerpaxos.runtime.network import Network
from ledgerpaxos.testsets.parser import TestSet, Txn

log = logging.getLogger("ledgerpaxos.driver")

leader_poll_s = replicas.leader_poll_s  # how often LF looks for the leader to kill
control_timeout_s = 2.0
settle_timeout_s = 2.0  # after a set, how long to wait for followers to execute
# Before a reset every replica is made dead for this long, so that frames still on
# the wire or queued for a peer that was down (a link reconnects within the backoff)
# arrive and are dropped, instead of handing the old ballots and log to a reset replica.
reset_quiet_s = constants.peer_reconnect_backoff_ms_max / 1000 + 0.3


@attrs.define
class TxnResult:
    set_number: int
    txn: Txn
    reply: TransferReply | None = None  # None while pending


@attrs.frozen(kw_only=True)
class SetReport:
    number: int
    live_nodes: tuple[str, ...]
    done: bool  # every transfer of this set and of earlier sets answered
    finished: tuple[TxnResult, ...]  # this set's answered transfers
    pending: tuple[TxnResult, ...]  # transfers of this or earlier sets still unanswered
    killed: tuple[str, ...]  # leaders killed by LF so far in this set
    unreachable: tuple[
        str, ...
    ] = ()  # replicas that did not answer set_alive (crashed, not started)


ProgressCallback = Callable[[int, int], None]  # (answered, total)


class Driver:
    def __init__(
        self, config: Config, nursery: trio.Nursery, *, network: Network | None = None
    ) -> None:
        self.config = config
        self.network = network
        self._outer = nursery
        self.sets: list[TestSet] = []
        self.position = 0  # index of the next set to run
        self.results: list[TxnResult] = []
        self._clients: dict[str, Client] = {}
        self._scope = trio.CancelScope()
        self._work_nursery: trio.Nursery | None = None
        self._previous_done: trio.Event | None = None
        self._progress = trio.Event()
        self._killed: dict[int, list[str]] = {}

    # ------------------------------------------------------------ sets

    def load(self, sets: list[TestSet]) -> None:
        assert sets
        self.sets = list(sets)
        self.position = 0

    @property
    def remaining(self) -> int:
        return len(self.sets) - self.position

    def pending(self) -> list[TxnResult]:
        return [r for r in self.results if r.reply is None]

    async def run_next(
        self, *, wait_s: float, progress: ProgressCallback | None = None
    ) -> SetReport:
        """Run the next set; return when it and all earlier work is done, or when
        nothing has completed for `wait_s` seconds (stuck: no majority)."""
        if self.position >= len(self.sets):
            raise IndexError("no set left to run")
        test_set = self.sets[self.position]
        self.position += 1
        await self._ensure_work_nursery()
        unreachable = await self.apply_live_nodes(test_set.live_nodes)
        results = [TxnResult(set_number=test_set.number, txn=t) for t in test_set.transfers]
        self.results.extend(results)
        done = trio.Event()
        previous = self._previous_done
        self._previous_done = done
        assert self._work_nursery is not None
        self._work_nursery.start_soon(self._run_set, test_set, results, previous, done)
        total = len(self.pending())
        while not done.is_set():
            self._progress = trio.Event()
            if progress is not None:
                progress(total - len(self.pending()), total)
            with trio.move_on_after(wait_s) as waited:
                async with trio.open_nursery() as waiters:
                    waiters.start_soon(_set_then_cancel, self._progress, waiters.cancel_scope)
                    waiters.start_soon(_set_then_cancel, done, waiters.cancel_scope)
            if waited.cancelled_caught:
                break
        if progress is not None:
            progress(total - len(self.pending()), total)
        if done.is_set():
            await self.settle(test_set.live_nodes)
        return SetReport(
            number=test_set.number,
            live_nodes=test_set.live_nodes,
            done=done.is_set(),
            finished=tuple(r for r in results if r.reply is not None),
            pending=tuple(self.pending()),
            killed=tuple(self._killed.get(test_set.number, [])),
            unreachable=tuple(unreachable),
        )

    async def _run_set(
        self,
        test_set: TestSet,
        results: list[TxnResult],
        previous: trio.Event | None,
        done: trio.Event,
    ) -> None:
        if previous is not None:
            await previous.wait()
        by_txn = iter(results)
        for index, leg in enumerate(test_set.legs):
            if index > 0:
                # The transactions before an LF are done: every live replica
                # has executed them (a follower learns the last commit point
                # only from the leader's next message) before the leader dies.
                killed_here = self._killed.get(test_set.number, [])
                await self.settle(tuple(n for n in test_set.live_nodes if n not in killed_here))
                killed = await self.kill_leader()
                self._killed.setdefault(test_set.number, []).append(killed)
                self._progress.set()
            leg_results = [next(by_txn) for _ in leg]
            per_client: dict[str, list[TxnResult]] = {}
            for r in leg_results:
                per_client.setdefault(r.txn.client, []).append(r)
            async with trio.open_nursery() as leg_nursery:
                for client_id, queue in per_client.items():
                    leg_nursery.start_soon(self._run_client_queue, client_id, queue)
        done.set()

    async def _run_client_queue(self, client_id: str, queue: list[TxnResult]) -> None:
        client = await self._client(client_id)
        for r in queue:
            r.reply = await client.transfer(r.txn.sender, r.txn.receiver, r.txn.amount)
            self._progress.set()

    # ------------------------------------------------------------ cluster operations

    async def apply_live_nodes(self, live: tuple[str, ...]) -> dict[str, Exception]:
        """Make exactly `live` alive. A replica that cannot be reached (crashed, not
        started) is skipped: returned with its error, the others are still set."""
        return await self._on_every_node(lambda node_id: self.set_alive(node_id, node_id in live))

    async def set_alive(self, node_id: str, alive: bool) -> None:
        await self.control(node_id, ControlOp.set_alive, 1 if alive else 0)

    async def control(self, node_id: str, op: ControlOp, argument: int = 0) -> dict[str, Any]:
        return await replicas.ask(
            self.config, node_id, op, argument, network=self.network, timeout_s=control_timeout_s
        )

    async def settle(self, live: tuple[str, ...], *, timeout_s: float = settle_timeout_s) -> bool:
        """Wait until every live replica has executed what any of them committed,
        so that `print db` right after a set shows the agreed balances."""
        with trio.move_on_after(timeout_s):
            while True:
                views = await self._views(live)
                if (
                    views
                    and len({v["executed_slot"] for v in views.values()}) == 1
                    and all(v["executed_slot"] >= v["commit_slot"] for v in views.values())
                ):
                    return True
                await trio.sleep(leader_poll_s)
        return False

    async def _views(self, nodes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """print_view of every replica in `nodes` that answers."""
        answers = await replicas.ask_all(
            self.config,
            ControlOp.print_view,
            nodes=nodes,
            network=self.network,
            timeout_s=control_timeout_s,
        )
        return replicas.bodies(answers)

    async def find_leader(self) -> str | None:
        """The live replica that leads with the highest ballot, if any."""
        return replicas.highest_leader(await self._views(tuple(self.config.node_ids)))

    async def kill_leader(self) -> str:
        """Kill the current leader, waiting for one to exist if an election is on."""
        while True:
            leader = await self.find_leader()
            if leader is not None:
                with contextlib.suppress(replicas.ControlRefused):
                    await self.control(leader, ControlOp.kill_leader)
                    log.info("LF: killed leader %s", leader)
                    return leader
            await trio.sleep(leader_poll_s)

    async def reset(self) -> dict[str, Exception]:
        """Stop all pending work, rewind the loaded file and reset every replica;
        returns the replicas that could not be reached (not reset) with their error."""
        await self._stop_work()
        self.position = 0
        self.results = []
        self._killed = {}
        # First silence everyone and let what is already on the wire arrive (and be
        # dropped): a replica reset while another still speaks with its old ballot
        # would take the old log back from it.
        failed = await self._on_every_node(lambda node_id: self.set_alive(node_id, False))
        await trio.sleep(reset_quiet_s)
        failed.update(
            await self._on_every_node(lambda node_id: self.control(node_id, ControlOp.reset))
        )
        return {n: failed[n] for n in self.config.node_ids if n in failed}

    async def _on_every_node(
        self, operation: Callable[[str], Awaitable[object]]
    ) -> dict[str, Exception]:
        """Run `operation` on every replica at once; the unreachable ones and why."""
        failed: dict[str, Exception] = {}

        async def one(node_id: str) -> None:
            try:
                await operation(node_id)
            except (OSError, ClientTimeout) as error:
                failed[node_id] = error

        async with trio.open_nursery() as nursery:
            for node_id in self.config.node_ids:
                nursery.start_soon(one, node_id)
        return {n: failed[n] for n in self.config.node_ids if n in failed}

    async def aclose(self) -> None:
        await self._stop_work()

    # ------------------------------------------------------------ plumbing

    async def _client(self, client_id: str) -> Client:
        if client_id not in self._clients:
            assert self._work_nursery is not None
            self._clients[client_id] = await self._work_nursery.start(self._host_client, client_id)
        return self._clients[client_id]

    async def _host_client(self, client_id: str, *, task_status: trio.TaskStatus[Client]) -> None:
        """Keeps one client open for as long as the work nursery lives."""
        async with open_client(self.config, client_id, network=self.network) as client:
            task_status.started(client)
            await trio.sleep_forever()

    async def _ensure_work_nursery(self) -> None:
        if self._work_nursery is None:
            self._scope = trio.CancelScope()
            await self._outer.start(self._hold_work_nursery)

    async def _hold_work_nursery(self, *, task_status: trio.TaskStatus[None]) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                self._work_nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        self._work_nursery = None
        self._clients = {}

    async def _stop_work(self) -> None:
        self._scope.cancel()
        while self._work_nursery is not None:
            await trio.lowlevel.checkpoint()
        self._previous_done = None


async def _set_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
