"""What the shell does, as trio code: one object living in the shell's trio thread.

The cmd2 commands in tools/shell/app.py parse, call one method here (through
`trio.from_thread.run`) and print what it returns with tools/shell/views.py.
Tests drive this object directly under pytest-trio (in-process cluster, autojump
clock), without cmd2 or threads.

Every method is bounded in time: control requests by `control_timeout_s`,
requests to the ledger and leader searches by `wait_s`. Anything the user should
hear about (unreachable replica, unknown node or account, malformed CSV, nothing
loaded) is a ShellError whose text is the whole message.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import trio

from ledgerpaxos import replicas, tls
from ledgerpaxos.client import Client, ClientTimeout, TransferReply, open_client
from ledgerpaxos.config import Config
from ledgerpaxos.core.accounts import account_name_problem
from ledgerpaxos.core.messages import ControlOp
from ledgerpaxos.runtime.network import Network
from ledgerpaxos.testsets.driver import Driver, SetReport, TxnResult
from ledgerpaxos.testsets.parser import TestSet, TestSetError, load_test_sets
from tools.cluster.launcher import Launcher, LaunchError, wait_until_answering

wait_s_default = 5.0
catch_up_poll_s = 0.1


class ShellError(Exception):
    """A command could not do what was asked; str() is the message for the user."""


@attrs.frozen(kw_only=True)
class NodeAnswer:
    """One replica's answer to a control request, or why there is none."""

    node: str
    body: dict[str, Any] | None = None
    error: str | None = None  # "unreachable at 127.0.0.1:5002 (connection refused): ..."
    hint: str | None = None  # how to get it running, when unreachable


@attrs.frozen(kw_only=True)
class LoadResult:
    path: str
    sets: tuple[TestSet, ...]

    @property
    def transfers(self) -> int:
        return sum(len(s.transfers) for s in self.sets)


@attrs.frozen(kw_only=True)
class NextResult:
    report: SetReport
    total_sets: int
    remaining: int  # sets still to run
    earlier_completed: tuple[TxnResult, ...]  # left pending by earlier sets, answered now
    alive: dict[str, bool | None]  # when stuck: what each replica says (None: unreachable)
    majority: int

    @property
    def rejected(self) -> tuple[TxnResult, ...]:
        return tuple(
            r
            for r in (*self.earlier_completed, *self.report.finished)
            if r.reply is not None and not r.reply.ok
        )

    def to_json(self) -> dict[str, Any]:
        report = self.report

        def txn(r: TxnResult) -> dict[str, Any]:
            out: dict[str, Any] = {
                "set": r.set_number,
                "line": r.txn.line,
                "sender": r.txn.sender,
                "receiver": r.txn.receiver,
                "amount": r.txn.amount,
            }
            if r.reply is not None:
                out["ok"] = r.reply.ok
                out["reason"] = r.reply.reason
            return out

        return {
            "set": report.number,
            "live_nodes": list(report.live_nodes),
            "done": report.done,
            "finished": [txn(r) for r in report.finished],
            "earlier_completed": [txn(r) for r in self.earlier_completed],
            "rejected": [txn(r) for r in self.rejected],
            "pending": [txn(r) for r in report.pending],
            "killed": list(report.killed),
            "unreachable": list(report.unreachable),
            "alive": self.alive,
            "remaining": self.remaining,
        }


ProgressCallback = Callable[[int, int], None]


class Backend:
    """The shell's cluster operations, run inside one trio nursery."""

    def __init__(
        self,
        config: Config,
        nursery: trio.Nursery,
        *,
        network: Network | None = None,
        wait_s: float = wait_s_default,
        launcher: Launcher | None = None,
        control_timeout_s: float = 2.0,
        client_id: str | None = None,
    ) -> None:
        self.config = config
        self.network = network
        self.wait_s = wait_s
        self.launcher = launcher
        self.control_timeout_s = control_timeout_s
        self.driver = Driver(config, nursery, network=network)
        self.loaded: LoadResult | None = None
        self._nursery = nursery
        self._client: Client | None = None
        # The shell reads as an auditor (the operator's name): every balance.
        self._client_id = client_id or (
            config.auditors[0] if config.auditors else f"shell-{os.getpid()}"
        )

    # ------------------------------------------------------------ checking names

    def check_node(self, node_id: str) -> str:
        if node_id not in self.config.node_ids:
            raise ShellError(
                f"unknown node {node_id!r}; the nodes are {', '.join(self.config.node_ids)}"
            )
        return node_id

    def check_account(self, account: str) -> str:
        """A name that can be an account: one of the config's, or one opened
        through the log (the ledger says whether it exists)."""
        if account in self.config.accounts:
            return account
        problem = account_name_problem(account)
        if problem is not None:
            accounts = self.config.accounts
            known = accounts.describe() if accounts.is_numbered else ", ".join(accounts)
            raise ShellError(f"{problem}: {account!r}; the config's accounts are {known}")
        return account

    def start_hint(self, node_id: str) -> str:
        """How the user gets a replica running."""
        if self.launcher is not None:
            return f"`restart {node_id}` starts it again"
        config = self.config.path if self.config.path is not None else "CONFIG"
        return (
            f"start it with `ledgerpaxos-replica --id {node_id} --config {config}`, "
            "or run the whole cluster with `make cluster` (ledgerpaxos-shell --launch)"
        )

    def unreachable(self, node_id: str, error: BaseException) -> str:
        """'n2 is unreachable at 127.0.0.1:5002 (connection refused): ...' without the hint."""
        node = self.config.node(node_id)
        if isinstance(error, ClientTimeout):
            why = f"no answer within {self.control_timeout_s:g} s"
        elif isinstance(error, ConnectionRefusedError) or _refused(error):
            why = "connection refused"
        else:
            why = str(error) or type(error).__name__
        return f"unreachable at {node.host}:{node.port} ({why}): it may be crashed or not started"

    # ------------------------------------------------------------ control

    async def ask(self, node_id: str, op: ControlOp, argument: int = 0) -> dict[str, Any]:
        """One control request; ShellError naming the replica if it cannot be reached."""
        self.check_node(node_id)
        answer = (await self.ask_all(op, argument, [node_id]))[node_id]
        if answer.body is not None:
            return answer.body
        if answer.hint is None:  # refused: the reason says it all
            raise ShellError(str(answer.error))
        raise ShellError(f"{node_id} is {answer.error}; {answer.hint}")

    async def ask_all(
        self, op: ControlOp, argument: int = 0, nodes: Iterable[str] | None = None
    ) -> dict[str, NodeAnswer]:
        """The same control request to many replicas at once, each answer or its error."""
        answers = await replicas.ask_all(
            self.config,
            op,
            argument,
            nodes=nodes,
            network=self.network,
            timeout_s=self.control_timeout_s,
        )
        return {n: self._shell_answer(a) for n, a in answers.items()}

    def _shell_answer(self, answer: replicas.Answer) -> NodeAnswer:
        if answer.body is not None:
            return NodeAnswer(node=answer.node, body=answer.body)
        if isinstance(answer.error, replicas.ControlRefused):
            return NodeAnswer(node=answer.node, error=str(answer.error))
        assert answer.error is not None
        return NodeAnswer(
            node=answer.node,
            error=self.unreachable(answer.node, answer.error),
            hint=self.start_hint(answer.node),
        )

    async def ask_all_or_fail(
        self, op: ControlOp, argument: int = 0, nodes: Iterable[str] | None = None
    ) -> dict[str, NodeAnswer]:
        """ask_all, but a ShellError when not a single replica answered."""
        answers = await self.ask_all(op, argument, nodes)
        if answers and all(a.body is None for a in answers.values()):
            lines = "\n".join(f"  {a.node}: {a.error}" for a in answers.values())
            raise ShellError(
                f"no replica answered:\n{lines}\nAre the replicas running? Start the cluster with "
                "`make cluster` (ledgerpaxos-shell --launch), or each replica with "
                f"`ledgerpaxos-replica --id NODE --config {self.config.path or 'CONFIG'}`."
            )
        return answers

    async def alive_map(self) -> dict[str, bool | None]:
        """What every replica says about itself: alive, dead (simulated), None unreachable."""
        answers = await self.ask_all(ControlOp.ping)
        return {n: (a.body["alive"] if a.body is not None else None) for n, a in answers.items()}

    # ------------------------------------------------------------ test sets

    async def load(self, path: str) -> LoadResult:
        try:
            sets = load_test_sets(
                path, accounts=self.config.accounts, node_ids=self.config.node_ids
            )
        except TestSetError as error:
            raise ShellError(f"{error} (nothing loaded, nothing sent)") from None
        self.driver.load(sets)
        self.loaded = LoadResult(path=path, sets=tuple(sets))
        return self.loaded

    async def run_next(self, progress: ProgressCallback | None = None) -> NextResult:
        if self.loaded is None:
            raise ShellError(
                "nothing loaded: `load PATH` reads a CSV test-set file first, e.g. `load testdata/test.csv`"
            )
        if self.driver.remaining == 0:
            raise ShellError(
                f"all {len(self.loaded.sets)} sets of {self.loaded.path} have run; "
                "`reset` starts again from the first set, or `load` another file"
            )
        pending_before = self.driver.pending()
        report = await self.driver.run_next(wait_s=self.wait_s, progress=progress)
        earlier = tuple(r for r in pending_before if r.reply is not None)
        alive = {} if report.done else await self.alive_map()
        return NextResult(
            report=report,
            total_sets=len(self.loaded.sets),
            remaining=self.driver.remaining,
            earlier_completed=earlier,
            alive=alive,
            majority=self.config.majority,
        )

    # ------------------------------------------------------------ one-off requests

    async def _shell_client(self) -> Client:
        if self._client is None:
            self._client = await self._nursery.start(self._host_client)
        return self._client

    async def _host_client(self, *, task_status: trio.TaskStatus[Client]) -> None:
        # The shell's own requests go out as the operator's (it may act for any client).
        async with open_client(
            self.config,
            self._client_id,
            network=self.network,
            identity=tls.operator(tls.default_operator),
        ) as client:
            task_status.started(client)
            await trio.sleep_forever()

    async def _no_reply(self, what: str) -> ShellError:
        alive = await self.alive_map()
        return ShellError(f"no reply to {what} within {self.wait_s:g} s: {self.why_stuck(alive)}")

    def why_stuck(self, alive: dict[str, bool | None]) -> str:
        up = [n for n, a in alive.items() if a]
        dead = [n for n, a in alive.items() if a is False]
        down = [n for n, a in alive.items() if a is None]
        parts = [f"alive: {', '.join(up) or 'none'}"]
        if dead:
            parts.append(f"dead: {', '.join(dead)}")
        if down:
            parts.append(f"unreachable: {', '.join(down)}")
        state = "; ".join(parts)
        if len(up) < self.config.majority:
            return (
                f"no majority ({state}; {self.config.majority} of {len(self.config.nodes)} needed). "
                "`alive NODE on` or the next set's live nodes bring one back"
            )
        return f"a majority is alive ({state}) but nothing was decided yet: electing a leader? `print view` shows the views"

    async def transfer(
        self, sender: str, receiver: str, amount: int, *, client_id: str | None = None
    ) -> TransferReply:
        self.check_account(sender)
        self.check_account(receiver)
        try:
            # As the sender's client, who may debit it (the CSV sets' rule too).
            async with open_client(
                self.config, client_id or sender, network=self.network
            ) as client:
                reply = await client.transfer(sender, receiver, amount, timeout=self.wait_s)
        except ClientTimeout:
            error = await self._no_reply(f"transfer ({sender}, {receiver}, {amount})")
            raise ShellError(
                f"{error}; it was not confirmed and may still be applied later"
            ) from None
        await self._settle()
        return reply

    async def balances(self, accounts: Sequence[str] = ()) -> dict[str, int]:
        for account in accounts:
            self.check_account(account)
        client = await self._shell_client()
        try:
            return await client.balances(accounts, timeout=self.wait_s)
        except ClientTimeout:
            raise await self._no_reply("the balance read") from None

    async def open_accounts(
        self, accounts: Sequence[str], owner: str | None
    ) -> list[tuple[str, TransferReply]]:
        """Open `accounts` as the operator, each owned by `owner` (None: its namesake)."""
        groups = [(owner, list(accounts))] if owner else [(a, [a]) for a in accounts]
        client = await self._shell_client()
        replies = []
        try:
            for owned_by, names in groups:
                reply = await client.open_accounts(names, owner=owned_by, timeout=self.wait_s)
                replies.append((owned_by, reply))
        except ClientTimeout:
            raise await self._no_reply("the opening") from None
        await self._settle()
        return replies

    async def _settle(self) -> None:
        """Let the live replicas execute what was just committed (bounded), so that a
        `print db` right after shows them agreeing."""
        alive = await self.alive_map()
        await self.driver.settle(tuple(n for n, a in alive.items() if a))

    # ------------------------------------------------------------ failures

    async def kill_leader(self) -> str:
        with trio.move_on_after(self.wait_s):
            return await self.driver.kill_leader()
        alive = await self.alive_map()
        raise ShellError(f"no leader to kill within {self.wait_s:g} s: {self.why_stuck(alive)}")

    async def set_alive(self, node_id: str, alive: bool) -> dict[str, Any]:
        return await self.ask(node_id, ControlOp.set_alive, 1 if alive else 0)

    async def reset(self) -> dict[str, str]:
        """Every replica back to the initial balances, the loaded file to its first set.
        Returns {node: why} for the replicas that could not be reset (and says so)."""
        failed = await self.driver.reset()
        if failed:
            lines = "\n".join(
                f"  {n}: {self.unreachable(n, e)}; {self.start_hint(n)}" for n, e in failed.items()
            )
            raise ShellError(
                f"reset {len(self.config.nodes) - len(failed)} of {len(self.config.nodes)} replicas; "
                f"not reset:\n{lines}\nThen `reset` again."
            )
        return {}

    # ------------------------------------------------------------ processes

    def _need_launcher(self, what: str) -> Launcher:
        if self.launcher is None:
            raise ShellError(
                f"`{what}` works on replicas this shell started: run the shell with --launch "
                "(`make cluster`). These replicas were started elsewhere; `alive NODE off` "
                "simulates a failure instead."
            )
        return self.launcher

    def crash(self, node_id: str) -> int:
        """SIGKILL of the real process (run this in the shell's main thread)."""
        launcher = self._need_launcher("crash")
        self.check_node(node_id)
        if not launcher.running(node_id):
            raise ShellError(f"{node_id} is not running; `restart {node_id}` starts it")
        return launcher.crash(node_id)

    def start_again(self, node_id: str) -> int:
        """Start a crashed replica on its data directory (main thread); returns its pid."""
        launcher = self._need_launcher("restart")
        self.check_node(node_id)
        if launcher.running(node_id):
            raise ShellError(
                f"{node_id} is running (pid {launcher.pid(node_id)}); `crash {node_id}` first"
            )
        try:
            launcher.check_ports_free([node_id])
            return launcher.start(node_id).pid
        except LaunchError as error:
            raise ShellError(str(error)) from None

    async def wait_started(self, node_ids: Iterable[str], timeout_s: float | None = None) -> None:
        launcher = self._need_launcher("restart")
        try:
            kwargs = {} if timeout_s is None else {"timeout_s": timeout_s}
            await wait_until_answering(launcher, list(node_ids), network=self.network, **kwargs)
        except LaunchError as error:
            raise ShellError(str(error)) from None

    async def wait_caught_up(self, node_id: str) -> tuple[bool, int, int]:
        """Wait (up to wait_s) until node_id has executed every slot the others
        committed; returns (caught up, its executed slot, the target slot)."""
        target = executed = 0
        with trio.move_on_after(self.wait_s):
            while True:
                answers = await self.ask_all(ControlOp.print_view)
                views = {n: a.body for n, a in answers.items() if a.body is not None}
                others = [v["commit_slot"] for n, v in views.items() if n != node_id and v["alive"]]
                target = max(others, default=0)
                if node_id in views:
                    executed = views[node_id]["executed_slot"]
                    if executed >= target:
                        return True, executed, target
                await trio.sleep(catch_up_poll_s)
        return False, executed, target

    async def wait_for_leader(self, timeout_s: float) -> str | None:
        """The leader every replica names, None if they do not agree within timeout_s."""
        try:
            return await replicas.wait_for_leader(
                self.config, timeout_s=timeout_s, network=self.network
            )
        except replicas.NoLeader:
            return None

    async def aclose(self) -> None:
        await self.driver.aclose()


def _refused(error: BaseException | None, depth: int = 0) -> bool:
    """trio wraps a refused connect: OSError('all attempts to connect ... failed')
    caused by an ExceptionGroup of ConnectionRefusedError."""
    if error is None or depth > 5:
        return False
    if isinstance(error, OSError) and error.errno == errno.ECONNREFUSED:
        return True
    if isinstance(error, BaseExceptionGroup):
        return all(_refused(inner, depth + 1) for inner in error.exceptions)
    return _refused(error.__cause__, depth + 1)
