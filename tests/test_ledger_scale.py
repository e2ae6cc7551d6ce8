"""Bank scale in the state machine: accounts opened through the log, bounded
client sessions, reads of some accounts, numbered initial accounts, the
incremental digest and the spacing of large snapshots (core/ledger.py)."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import attrs
import pytest
import trio

from ledgerpaxos.client import SessionEvicted
from ledgerpaxos.config import ConfigError, config_from_dict, config_to_dict
from ledgerpaxos.core import Ledger
from ledgerpaxos.core.accounts import AccountNames
from ledgerpaxos.core.ledger import (
    REASON_ACCOUNT_EXISTS,
    REASON_NOT_AUTHORIZED,
    REASON_OPEN_FOR_OTHERS,
    session_number,
    state_digest,
)
from ledgerpaxos.core.messages import (
    Command,
    CommandKind,
    ControlOp,
    Outcome,
    Snapshot,
    Transfer,
)
from ledgerpaxos.runtime.control import db_page
from tests.conftest import Cluster, open_cluster
from tests.corenet import CoreNet
from tests.test_core import elected


class Requests:
    """Commands of one ledger, numbered per client as a client library would."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.numbers: dict[str, int] = {}
        self.sessions: dict[str, int] = {}  # as each client's last registration gave it
        self.slot = 0

    def run(self, client: str, kind: CommandKind, **fields: object) -> Outcome | None:
        self.numbers[client] = self.numbers.get(client, 0) + 1
        number = self.numbers[client]
        if kind in (CommandKind.transfer, CommandKind.open):
            fields.setdefault("session", self.sessions.get(client, 0))
        command = Command(client_id=client, request_no=number, kind=kind, **fields)  # type: ignore[arg-type]
        return self.again(command)

    def again(self, command: Command) -> Outcome | None:
        self.slot += 1
        return self.ledger.execute(command, slot=self.slot)

    def register(self, *clients: str) -> None:
        for client in clients:
            outcome = self.run(client, CommandKind.register)
            assert outcome is not None and not outcome.evicted
            self.sessions[client] = session_number(outcome.slot, outcome.index)

    def transfer(self, client: str, sender: str, receiver: str, amount: int) -> Command:
        self.numbers[client] = self.numbers.get(client, 0) + 1
        return Command(
            client_id=client,
            request_no=self.numbers[client],
            kind=CommandKind.transfer,
            session=self.sessions.get(client, 0),
            transfers=(Transfer(sender=sender, receiver=receiver, amount=amount),),
        )

    def open(self, client: str, *accounts: str, owner: str = "") -> Outcome:
        outcome = self.run(client, CommandKind.open, accounts=accounts, owner=owner)
        assert outcome is not None
        return outcome


# ---------------------------------------------------------------- opening accounts


def test_a_client_opens_accounts_it_owns_at_zero_and_only_it_debits_them() -> None:
    ledger = Ledger("AB", 10, operators=["admin"])
    r = Requests(ledger)
    r.register("A", "B", "admin")
    opened = r.open("A", "A-savings", "A-travel")
    assert opened.ok and len(opened.results) == 2
    assert ledger.balance("A-savings") == 0 and ledger.owner("A-savings") == "A"
    assert ledger.total == 20  # money only moves between accounts
    assert r.again(r.transfer("A", "A", "A-savings", 4)).ok  # type: ignore[union-attr]
    assert r.again(r.transfer("A", "A-savings", "B", 1)).ok  # type: ignore[union-attr]
    stolen = r.again(r.transfer("B", "A-savings", "B", 1))
    assert stolen is not None and stolen.reason == REASON_NOT_AUTHORIZED
    assert ledger.all_balances() == {"A": 6, "B": 11, "A-savings": 3, "A-travel": 0}
    own = r.run("A", CommandKind.read)
    assert own is not None and own.balances == (("A", 6), ("A-savings", 3), ("A-travel", 0))


def test_an_opening_is_refused_with_a_reason_when_the_name_is_taken_or_malformed() -> None:
    ledger = Ledger("AB", 10, operators=["admin"])
    r = Requests(ledger)
    r.register("A", "admin", "mallory")
    r.open("A", "X")
    outcome = r.open("A", "B", "X", "with space", "", "x" * 33, "ok")
    reasons = [result.reason for result in outcome.results]
    assert reasons[:2] == [REASON_ACCOUNT_EXISTS, REASON_ACCOUNT_EXISTS]
    assert "not allowed" in (reasons[2] or "") and "empty" in (reasons[3] or "")
    assert "longer than 32 bytes" in (reasons[4] or "") and reasons[5] is None
    refused = r.open("mallory", "M", owner="A")
    assert refused.results[0].reason == REASON_OPEN_FOR_OTHERS and ledger.balance("M") is None
    assert r.open("admin", "for-A", owner="A").ok  # an operator opens for anyone
    assert ledger.owner("for-A") == "A" and ledger.accounts_of("A") == ["A", "X", "ok", "for-A"]


def test_an_opening_is_exactly_once_and_travels_in_snapshots() -> None:
    ledger = Ledger("AB", 10)
    r = Requests(ledger)
    r.register("A")
    opening = Command(
        client_id="A",
        request_no=5,
        kind=CommandKind.open,
        session=r.sessions["A"],
        accounts=("A2",),
    )
    first = r.again(opening)
    assert first is not None and first.ok
    assert r.again(opening) is None  # a re-sent opening: applied once, the stored answer kept
    assert ledger.stored_outcome("A", 5) == first
    r.numbers["A"] = 5
    assert r.again(r.transfer("A", "A", "A2", 3)).ok  # type: ignore[union-attr]
    snapshot = ledger.snapshot(r.slot, chain=bytes(16))
    assert snapshot.opened == (("A2", "A", 3),) and snapshot.balances == (("A", 7),)
    assert state_digest(snapshot, 10) == snapshot.digest == ledger.digest()
    other = Ledger("AB", 10)
    other.install(snapshot)
    assert other.all_balances() == ledger.all_balances() and other.owner("A2") == "A"
    assert other.digest() == ledger.digest()
    assert other.snapshot(r.slot, chain=bytes(16)) == snapshot


# ---------------------------------------------------------------- sessions


def test_a_registration_beyond_the_bound_evicts_the_session_committed_longest_ago() -> None:
    ledger = Ledger("ABC", 10, sessions_max=2)
    r = Requests(ledger)
    r.register("A", "B")
    assert r.again(r.transfer("A", "A", "C", 1)).ok  # type: ignore[union-attr]  # A is newer than B now
    r.register("C")
    assert set(ledger.clients) == {"A", "C"} and ledger.evictions == 1
    refused = r.again(r.transfer("B", "B", "C", 1))
    assert refused == Outcome(evicted=True, slot=r.slot)
    assert ledger.balance("B") == 10 and "B" not in ledger.clients  # refused, never applied


def test_an_evicted_clients_retry_is_never_applied_twice() -> None:
    ledger = Ledger("ABC", 10, sessions_max=1)
    r = Requests(ledger)
    r.register("A")
    first = r.transfer("A", "A", "C", 4)
    assert r.again(first).ok  # type: ignore[union-attr]  # applied; its reply is lost
    r.register("B")  # evicts A
    retry = r.again(first)  # A did not hear: it re-sends
    assert retry is not None and retry.evicted  # the outcome is unknown: refused
    r.numbers["A"] = first.request_no
    r.register("A")  # A registers anew (evicting B): a session under another number
    again = r.again(first)
    assert again is not None and again.evicted  # it names the old session: never applied
    assert r.again(attrs.evolve(first, session=r.sessions["A"])) is None  # older than the session
    assert ledger.all_balances() == {"A": 6, "B": 10, "C": 14}


def test_reads_are_not_stored_and_need_no_session() -> None:
    ledger = Ledger("ABC", 10, auditors=["audit"])
    r = Requests(ledger)
    read = r.run("A", CommandKind.read, accounts=("B", "A", "Z"))
    assert read is not None and read.balances == (("A", 10),)  # B is not A's, Z is no account
    assert ledger.clients == {}  # nothing stored
    audit = r.run("audit", CommandKind.read, accounts=("C", "B"))
    assert audit is not None and audit.balances == (("C", 10), ("B", 10))
    again = r.again(Command(client_id="A", request_no=1, kind=CommandKind.read))
    assert again is not None and again.balances == (("A", 10),)  # a read is never a duplicate


def test_eviction_in_a_cluster_refuses_and_a_retry_is_never_applied_twice() -> None:
    net = CoreNet(client_sessions_max=1)
    leader = elected(net)
    applied = net.submit(leader, "A", [("A", "J", 2)])
    net.run(20)
    assert net.reply_for(leader, applied).outcome.ok  # type: ignore[union-attr]
    net.register(leader, "B")  # evicts A's session
    net.request(leader, applied)  # A re-sends: it never heard the answer
    net.run(20)
    replies = [r for r in net.replies[leader] if r.request_no == applied.request_no]
    assert replies[-1].outcome.evicted  # refused, not applied again
    for node in net.ids:
        assert net.cores[node].balances()["J"] == 12
        assert set(net.cores[node].ledger.clients) == {"B"}
    net.check_agreement()


async def test_the_client_reports_an_eviction_as_unknown_and_registers_anew(
    tmp_path: Path, autojump_clock: object
) -> None:
    async with open_cluster(tmp_path, 3, client_sessions_max=1, clients={}) as cluster:
        await cluster.wait_for_leader()
        async with cluster.client("A") as a, cluster.client("B") as b:
            assert (await a.transfer("A", "J", 1)).ok  # registers A's session first
            assert (await b.transfer("B", "J", 1)).ok  # B's registration evicts A
            with pytest.raises(SessionEvicted, match="unknown"):
                await a.transfer("A", "J", 1)
            assert (await a.transfer("A", "J", 1)).ok  # registered anew
            assert await a.balances() == {"A": 8}
        await settled(cluster, "J", 13)


async def settled(cluster: Cluster, account: str, balance: int) -> None:
    for node in cluster.config.node_ids:
        for _ in range(100):
            db = await cluster.control(node, ControlOp.print_db)
            # A follower may not have opened the account yet (core/fanout.py).
            if db["balances"].get(account) == balance:
                break
            await trio.sleep(0.05)
        assert db["balances"].get(account) == balance, node


async def test_the_client_opens_accounts_and_reads_some(
    tmp_path: Path, autojump_clock: object
) -> None:
    async with open_cluster(tmp_path, 3, clients={}) as cluster:  # A owns account A
        await cluster.wait_for_leader()
        async with cluster.client("A") as client:
            opened = await client.open_accounts(["A-2", "B"])
            assert [r.ok for r in opened.results] == [True, False]
            assert (await client.transfer("A", "A-2", 3)).ok
            assert await client.balances(["A-2"]) == {"A-2": 3}
            assert await client.balances() == {"A": 7, "A-2": 3}
        await settled(cluster, "A-2", 3)


# ---------------------------------------------------------------- many accounts


def test_numbered_initial_accounts_cost_nothing_until_used() -> None:
    names = AccountNames.numbered("a", 10_000_000)
    assert len(names) == 10_000_000 and names[0] == "a0000000" and names[-1] == "a9999999"
    assert "a0000042" in names and "a10000000" not in names and "a000004" not in names
    assert "a００００００1" not in names  # digits are ASCII digits only
    ledger = Ledger(names, 100)
    r = Requests(ledger)
    r.register("a0000001")
    assert r.again(r.transfer("a0000001", "a0000001", "a9999999", 60)).ok  # type: ignore[union-attr]
    assert ledger.balances == {"a0000001": 40, "a9999999": 160}  # only what moved is kept
    assert ledger.total == 1_000_000_000 and ledger.account_count == 10_000_000
    assert ledger.page(9_999_998, 5) == [("a9999998", 100), ("a9999999", 160)]
    snapshot = ledger.snapshot(1, chain=bytes(16))
    assert len(snapshot.balances) == 2 and state_digest(snapshot, 100) == snapshot.digest


def test_the_config_names_many_accounts_compactly() -> None:
    base = {
        "cluster_id": 1,
        "initial_balance": 5,
        "nodes": {"n1": {"host": "127.0.0.1", "port": 7001}},
    }
    config = config_from_dict({**base, "accounts": {"prefix": "acct-", "count": 1000}})
    assert config.accounts == AccountNames.numbered("acct-", 1000)
    assert config.accounts[999] == "acct-999" and config.client_ids == ()
    assert config_from_dict(config_to_dict(config)) == attrs.evolve(config, path=None)
    assert config_from_dict({**base, "accounts": ["A"]}).client_sessions_max == 65_536
    for accounts, match in [
        ({"prefix": "a b", "count": 2}, r"accounts\.prefix: account name contains"),
        ({"prefix": "a", "count": 0}, r"accounts\.count: expected an integer >= 1"),
        ({"prefix": "a" * 30, "count": 10_000}, r"accounts\.prefix: account name is longer"),
        ({"count": 3}, r"accounts\.prefix"),
        ({"prefix": "a", "count": 3, "size": 1}, r"accounts\.size: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=match):
            config_from_dict({**base, "accounts": accounts})
    with pytest.raises(ConfigError, match="client_sessions_max"):
        config_from_dict({**base, "accounts": ["A"], "client_sessions_max": 0})


def test_print_db_answers_a_page_at_a_time() -> None:
    net = CoreNet(accounts=AccountNames.numbered("a", 2_500))
    core = net.cores["n1"]
    first = db_page(core, 0)
    assert len(first["balances"]) == 1_000 and first["next"] == 1_000
    assert first["accounts"] == 2_500 and first["total"] == core.ledger.total
    last = db_page(core, 2_000)
    assert list(last["balances"])[:2] == ["a2000", "a2001"] and last["next"] is None
    assert json.dumps(last)  # a control answer is JSON


def _busy_ledger(count: int) -> tuple[Ledger, Requests]:
    """A numbered ledger where client c owns a000000 and has moved some balances
    and opened some accounts."""
    ledger = Ledger(AccountNames.numbered("a", count, 6), 10**9, {"c": ["a000000"]})
    r = Requests(ledger)
    r.register("c")
    r.open("c", "c-1", "c-2")
    for i in range(1, count, 2):
        assert r.again(r.transfer("c", "a000000", f"a{i:06}", 1)).ok  # type: ignore[union-attr]
    assert r.again(r.transfer("c", "a000000", "c-1", 5)).ok  # type: ignore[union-attr]
    return ledger, r


def test_a_frozen_view_builds_the_state_of_its_checkpoint_while_the_ledger_goes_on() -> None:
    ledger, r = _busy_ledger(200)
    expected = ledger.snapshot(r.slot, chain=bytes(16))
    view = ledger.freeze(r.slot, chain=bytes(16))  # costs no row
    for i in range(1, 200, 3):  # balances of the view change, and accounts move first
        assert r.again(r.transfer("c", "a000000", f"a{i:06}", 2)).ok  # type: ignore[union-attr]
    assert r.again(r.transfer("c", "c-1", "a000002", 5)).ok  # type: ignore[union-attr]
    r.open("c", "c-3")  # an account the view did not have
    r.register("d")  # a session it did not have
    assert view.build() == expected
    assert state_digest(expected, 10**9) == expected.digest
    ledger.thaw()
    later = ledger.snapshot(r.slot, chain=bytes(16))
    assert later != expected and state_digest(later, 10**9) == later.digest == ledger.digest()
    # An install replaces the ledger's rows: the view reads the old ones, unchanged.
    view = ledger.freeze(r.slot, chain=bytes(16))
    ledger.install(expected)
    assert view.build() == later
    assert ledger.snapshot(expected.slot, chain=bytes(16)) == expected


def test_a_view_built_in_another_thread_sees_its_checkpoint_whatever_the_interleaving() -> None:
    """The way the runtime builds it: in a worker thread, while the loop
    executes transfers on the same accounts."""
    ledger, r = _busy_ledger(60_000)
    expected = ledger.snapshot(r.slot, chain=bytes(16))
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the threads take turns often: many interleavings
    try:
        _build_while_transferring(ledger, r, expected)
    finally:
        sys.setswitchinterval(switching)


def _build_while_transferring(ledger: Ledger, r: Requests, expected: Snapshot) -> None:
    for _ in range(3):
        view = ledger.freeze(r.slot, chain=bytes(16))
        built: list[Snapshot] = []
        worker = threading.Thread(target=lambda v=view, out=built: out.append(v.build()))
        worker.start()
        i = 0
        while worker.is_alive():  # the loop goes on: every row the view reads may change
            i = i % 59_999 + 1
            ledger.execute(r.transfer("c", "a000000", f"a{i:06}", 1), slot=r.slot)
            ledger.execute(r.transfer("c", "c-1", "c-2", 1), slot=r.slot)
        worker.join()
        assert i > 0  # it did go on while the view was read
        assert built == [expected]
        ledger.thaw()
        ledger.install(expected)  # back to the checkpoint for the next round


def test_snapshots_of_a_large_state_wait_until_the_work_pays_for_them() -> None:
    net = CoreNet(snapshot_interval=10, snapshot_transfers_min=10**9)
    leader = elected(net)
    core = net.cores[leader]
    net.register(leader, "A")
    many = [f"x{i}" for i in range(12_000)]  # more rows than snapshot_rows_cheap_max
    for start in range(0, len(many), 4_000):
        net.submit(leader, "A", kind=CommandKind.open, accounts=many[start : start + 4_000])
        net.run(5)
    assert core.ledger.rows > 12_000 and core.executed_slot < 10
    for _ in range(30):
        net.submit(leader, "A", [("A", "B", 1)])
        net.run(2)
    # 10 slots have passed, but not rows * snapshot_work_per_row_min of work yet
    assert core.checkpoint_slot >= 30 and core.snapshot_slot == 0


def test_a_late_registration_from_before_an_eviction_never_brings_back_the_old_session() -> None:
    ledger = Ledger("ABC", 10, sessions_max=1)
    r = Requests(ledger)
    old_registration = Command(client_id="A", request_no=1, kind=CommandKind.register)
    registered = r.again(old_registration)
    assert registered is not None
    session = session_number(registered.slot, registered.index)
    transfer = Command(
        client_id="A",
        request_no=2,
        kind=CommandKind.transfer,
        session=session,
        transfers=(Transfer(sender="A", receiver="C", amount=4),),
    )
    assert r.again(transfer).ok  # type: ignore[union-attr]  # applied; the reply is lost
    r.register("B")  # evicts A
    late = r.again(old_registration)  # re-sent late: a new session, under another number
    assert late is not None and not late.evicted and late.slot == r.slot
    assert ledger.clients["A"].session == session_number(r.slot, 0) != session
    retry = r.again(transfer)  # names the old session
    assert retry is not None and retry.evicted  # so it is refused, never applied twice
    assert ledger.all_balances() == {"A": 6, "B": 10, "C": 14}
    snapshot = ledger.snapshot(r.slot, chain=bytes(16))  # sessions travel in snapshots
    other = Ledger("ABC", 10, sessions_max=1)
    other.install(snapshot)
    assert other.clients == ledger.clients and other.digest() == ledger.digest()
    assert state_digest(snapshot, 10) == snapshot.digest
    assert other.execute(transfer, slot=r.slot + 1) == Outcome(evicted=True, slot=r.slot + 1)
