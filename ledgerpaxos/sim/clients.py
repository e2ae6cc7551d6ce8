"""Workload clients: transfers and balance reads, retried until answered.

A client has one request outstanding at a time and numbers its requests
1, 2, 3 ... (the exactly-once key is (client id, request number)). When no
reply comes within its timeout it re-sends the same request, to the leader
the last reply named or to another replica. After a reply it sometimes
behaves like a client that restarted without knowing whether its last request
went through: it sends that request once more, and must get the same answer
(from the replicas' client table).

A client registers its session before its first transfer or opening, and
again after a reply says its session was evicted (the ledger keeps only
`sessions_max`). Some requests open an account named after the client (or
one that exists, which the ledger refuses); accounts opened are senders of
their owner's transfers and receivers of everyone's.

Once the heal begins (or after `requests_max` requests) a client finishes its
outstanding request and stops.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ledgerpaxos.core.ledger import session_number
from ledgerpaxos.core.messages import (
    ClientReply,
    ClientRequest,
    Command,
    CommandKind,
    Transfer,
)
from ledgerpaxos.sim import coverage
from ledgerpaxos.sim.plan import WorkloadPlan

if TYPE_CHECKING:
    from ledgerpaxos.sim.harness import Simulation

UNKNOWN_ACCOUNT = "NOBODY"


class SimClient:
    def __init__(
        self,
        sim: Simulation,
        client_id: str,
        rng: random.Random,
        plan: WorkloadPlan,
        accounts: tuple[str, ...],
        replicas: tuple[str, ...],
    ) -> None:
        self.sim = sim
        self.client_id = client_id
        self.rng = rng
        self.plan = plan
        self.accounts = accounts
        self.replicas = replicas
        self.request_no = 0
        self.outstanding: Command | None = None
        self.target = rng.choice(replicas)
        self.leader_hint: str | None = None
        self._timer = 0  # generation of the pending timeout
        self._epoch: tuple[int, int, int] = (
            0,
            0,
            0,
        )  # leader changes, crashes, installs at first send
        self._resent = False
        self.finished = False
        self.submissions = 0
        self.resends = 0
        self.answered = 0
        self.last_answered = 0  # highest request number answered
        self.last_stored = 0  # and of those the client table keeps (not reads, not evicted)
        self.stored_session = 0  # the session that one was executed in
        self.session: int | None = None  # from the register's reply; None: register first
        self.owned: list[str] = []  # accounts this client opened

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.sim.queue.after(self._think(), self._next_request)

    def _think(self) -> int:
        return self.rng.randint(0, self.plan.think_us_max)

    def _next_request(self) -> None:
        if self.sim.healing or self.request_no >= self.plan.requests_max:
            self.finished = True
            return
        self.request_no += 1
        self.outstanding = self._make_command()
        self._resent = False
        self._epoch = self.sim.epoch()
        self._send()

    def _make_command(self) -> Command:
        rng, plan = self.rng, self.plan
        if self.session is None:
            return Command(
                client_id=self.client_id, request_no=self.request_no, kind=CommandKind.register
            )
        if rng.random() < plan.read_probability:
            named = rng.sample(self.accounts, rng.randint(0, 2))  # none: the client's own
            return Command(
                client_id=self.client_id,
                request_no=self.request_no,
                kind=CommandKind.read,
                accounts=tuple(named),
            )
        if rng.random() < plan.open_probability:
            taken = self.sim.opened + list(self.accounts)
            name = (
                rng.choice(taken) if rng.random() < 0.2 else f"{self.client_id}-{self.request_no}"
            )
            return Command(
                client_id=self.client_id,
                request_no=self.request_no,
                kind=CommandKind.open,
                session=self.session,
                accounts=(name,),
            )
        transfers = tuple(self._make_transfer() for _ in range(rng.randint(1, plan.transfers_max)))
        return Command(
            client_id=self.client_id,
            request_no=self.request_no,
            kind=CommandKind.transfer,
            session=self.session,
            transfers=transfers,
        )

    def _make_transfer(self) -> Transfer:
        rng, plan = self.rng, self.plan
        sender, receiver = rng.sample(self.accounts, 2)
        if self.owned and rng.random() < 0.3:
            sender = rng.choice(self.owned)
        if self.sim.opened and rng.random() < 0.3:
            receiver = rng.choice(self.sim.opened)
        amount = rng.randint(1, plan.amount_max)
        if rng.random() < plan.invalid_probability:
            flaw = rng.randrange(4)
            if flaw == 0:
                amount = -rng.randint(0, 5)  # zero or negative
            elif flaw == 1:
                receiver = sender
            elif flaw == 2:
                sender = UNKNOWN_ACCOUNT
            else:
                receiver = UNKNOWN_ACCOUNT
        return Transfer(sender=sender, receiver=receiver, amount=amount)

    # ------------------------------------------------------------ sending

    def _send(self) -> None:
        command = self.outstanding
        assert command is not None
        self.submissions += 1
        self.sim.send(self.client_id, self.target, ClientRequest(command=command))
        self._timer += 1
        timeout = self.plan.client_timeout_us
        self.sim.queue.after(
            self.rng.randint(timeout * 4 // 5, timeout * 6 // 5), self._timed_out, self._timer
        )

    def _resend(self) -> None:
        self.resends += 1
        self._resent = True
        self._send()

    def _timed_out(self, timer: int) -> None:
        if timer != self._timer or self.outstanding is None:
            return
        others = [r for r in self.replicas if r != self.target]
        if (
            self.leader_hint is not None
            and self.leader_hint != self.target
            and self.rng.random() < 0.5
        ):
            self.target = self.leader_hint
        elif others:
            self.target = self.rng.choice(others)
        self._resend()

    # ------------------------------------------------------------ replies

    def on_reply(self, sender: str, reply: ClientReply) -> None:
        sim = self.sim
        sim.safety.reply(self.client_id, reply)
        command = self.outstanding
        if command is None or (reply.client_id, reply.request_no) != (
            command.client_id,
            command.request_no,
        ):
            return  # a late or duplicated answer to something already answered
        self.outstanding = None
        self._timer += 1
        self.answered += 1
        self.last_answered = max(self.last_answered, command.request_no)
        if reply.leader is not None:
            self.leader_hint = reply.leader
        if self._resent:
            changes, crashes, installs = sim.epoch()
            if changes > self._epoch[0]:
                sim.marks.hit(coverage.RESEND_ACROSS_LEADER_CHANGE)
            if crashes > self._epoch[1]:
                sim.marks.hit(coverage.RESEND_ACROSS_CRASH)
            if installs > self._epoch[2]:
                sim.marks.hit(coverage.RESEND_ACROSS_INSTALL)
        outcome = reply.outcome
        registered = None
        if command.kind == CommandKind.register:
            registered = session_number(outcome.slot, outcome.index)
        stored = command.kind != CommandKind.read and not outcome.evicted
        if stored and command.request_no > self.last_stored:
            self.last_stored = command.request_no
            self.stored_session = command.session if registered is None else registered
        if registered is not None:
            self.session = registered
        elif outcome.evicted:
            self.session = None  # the outcome is unknown; register anew
            sim.marks.hit(coverage.SESSION_EVICTED)
        elif command.kind == CommandKind.open:
            # (not strict: a wrong reply is the reply check's to report)
            for name, result in zip(command.accounts, outcome.results):  # noqa: B905
                if result.ok and name not in self.owned:  # a re-sent opening is answered again
                    sim.marks.hit(coverage.ACCOUNT_OPENED)
                    self.owned.append(name)
                    sim.opened.append(name)
        elif any(not r.ok for r in outcome.results):
            sim.marks.hit(coverage.REJECTED_TRANSFER)
        if not sim.healing and self.rng.random() < self.plan.reconnect_probability:
            # Restarted without knowing the answer: ask again, same number.
            self.outstanding = command
            self._epoch = sim.epoch()
            self.target = self.rng.choice(self.replicas)
            self._resend()
            return
        sim.queue.after(self._think(), self._next_request)

    @property
    def done(self) -> bool:
        return self.outstanding is None and self.finished
